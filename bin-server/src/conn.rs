//! # Connections: accept loop, graceful shutdown, and the raw-head tap
//!
//! hyper parses headers into a `HeaderMap`, which lower-cases names and groups duplicates by
//! name. A capture must keep them as they came: original case, arrival order, duplicates in
//! place. So every HTTP/1 connection's bytes pass through a [`Tap`] whose [`Tracker`] follows the
//! message framing exactly as hyper 1's h1 server does (`proto/h1/role.rs` for the head and the
//! body length, `proto/h1/decode.rs` for chunked bodies: which bytes end a line, chunk
//! extensions, the trailer section and their limits), and queues each request head's header
//! lines. Requests on a connection are served in order, so the handler for the n-th request takes
//! the n-th queued head ([`ConnInfo`]).
//!
//! Wire code must not trust a second parser to agree with the first, so the handler also checks
//! the queued head against hyper's parse of the same request ([`Tracker::next_head`]: method,
//! target, and every header name and value). Where hyper would reject the bytes, where the tap
//! cannot follow (HTTP/2, upgrades, heads over [`MAX_HEAD`]) or on any disagreement, the tap
//! steps aside for the rest of the connection and captures fall back to the `HeaderMap`
//! (lower-case names, repeats grouped), marked `headers_exact: false`.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::store::RawHeaders;

mod watch;

pub use watch::{
    Activity, ConnLimits, Refusal, RequestGuard, Slot, Slots, TimeoutKind, Tracked, Watched,
    WatchedBody, raise_open_files_limit,
};

/// Largest request head the tap follows (hyper's own limit, its read buffer, is about 400 KiB;
/// past this we fall back). A partial head is buffered up to this size, no more.
const MAX_HEAD: usize = 64 * 1024;
/// Heads queued ahead of the handlers on one connection (pipelining); past this the tap steps
/// aside rather than buffer without bound.
const MAX_QUEUED_HEADS: usize = 64;

// hyper's own limits, which the tap must apply exactly as hyper does: a head or body hyper
// refuses ends the connection, and one it accepts must be followed byte for byte.
/// Header lines in a request head (hyper's `DEFAULT_MAX_HEADERS`; `serve()` keeps the default)
/// and lines in a trailer section.
const HYPER_MAX_HEADERS: usize = 100;
/// Longest request target hyper accepts (`MAX_URI_LEN`).
const HYPER_MAX_URI: usize = u16::MAX as usize - 1;
/// Chunk extension bytes hyper accepts in one body (`CHUNKED_EXTENSIONS_LIMIT`).
const HYPER_CHUNK_EXTENSIONS: u64 = 16 * 1024;
/// Trailer section bytes hyper accepts (`TRAILER_LIMIT`).
const HYPER_TRAILER_BYTES: usize = 16 * 1024;
/// Largest `Content-Length` hyper accepts (`DecodedLength::MAX_LEN`).
const HYPER_MAX_CONTENT_LENGTH: u64 = u64::MAX - 2;

/// One request head as it came off the wire.
#[derive(Debug, Clone)]
pub struct RawHead {
    method: Box<[u8]>,
    target: Box<[u8]>,
    pub headers: RawHeaders,
    /// The lines hyper keeps in its `HeaderMap`, as parsed (offsets into `headers`), so the
    /// check against hyper's parse does not split the lines again.
    kept: Box<[Field]>,
    /// hyper removed a `Content-Length` entry from its map, which reorders its names.
    reordered: bool,
}

/// One header line's name and value (without the white space around it), as byte ranges of
/// [`RawHead::headers`].
#[derive(Debug, Clone, Copy)]
struct Field {
    name: (u32, u32),
    value: (u32, u32),
}

impl RawHead {
    /// Whether this is the head hyper parsed as `method`, `uri` and `headers`: same method, same
    /// target, and the same header lines as hyper keeps them (names compared without case, each
    /// name's values in order, and as many values in all).
    fn is_hypers(&self, method: &http::Method, uri: &http::Uri, headers: &http::HeaderMap) -> bool {
        self.method.as_ref() == method.as_str().as_bytes()
            && self.target_is(uri)
            && same_headers(self, headers)
    }

    fn field(&self, f: Field) -> Option<(&[u8], &[u8])> {
        let block = self.headers.as_bytes();
        let range = |(start, end): (u32, u32)| block.get(start as usize..end as usize);
        Some((range(f.name)?, range(f.value)?))
    }

    fn target_is(&self, uri: &http::Uri) -> bool {
        // `http::Uri` drops a fragment; of an absolute-form target it keeps the path and query,
        // with the path `/` when there is none (`http://h` and `http://h?q` are `/`, `/?q`).
        let raw = &self.target[..];
        let raw = &raw[..raw.iter().position(|&b| b == b'#').unwrap_or(raw.len())];
        let parsed = uri.path_and_query().map_or("", |pq| pq.as_str()).as_bytes();
        if raw.first() == Some(&b'/') {
            return raw == parsed;
        }
        let Some(scheme_end) = raw.windows(3).position(|w| w == b"://") else {
            return raw.ends_with(parsed); // `*` (OPTIONS)
        };
        let after = &raw[scheme_end + 3..];
        let path_and_query = &after[after
            .iter()
            .position(|&b| b == b'/' || b == b'?')
            .unwrap_or(after.len())..];
        let (path, query) = match path_and_query.iter().position(|&b| b == b'?') {
            Some(q) => (&path_and_query[..q], Some(&path_and_query[q + 1..])),
            None => (path_and_query, None),
        };
        let path: &[u8] = if path.is_empty() { b"/" } else { path };
        path == uri.path().as_bytes() && query == uri.query().map(str::as_bytes)
    }
}

/// Whether `head`'s header lines are what hyper built `map` from: the lines hyper keeps (every
/// one but the `Content-Length` lines it drops), names compared without case, each name's values
/// in order, and as many values in all.
fn same_headers(head: &RawHead, map: &http::HeaderMap) -> bool {
    let n = head.kept.len();
    if n != map.len() || n > HYPER_MAX_HEADERS {
        return false; // hyper refuses heads with more lines
    }
    let line = |i: usize| head.field(head.kept[i]);
    if head.reordered {
        let Some(lines) = (0..n).map(line).collect::<Option<Vec<_>>>() else {
            return false;
        };
        return same_values_per_name(&lines, map);
    }
    // The map yields each name's values together, names in the order they first came, so the
    // lines grouped the same way must match it item for item. At most HYPER_MAX_HEADERS (100)
    // lines, so the quadratic grouping stays small and `done` fits a u128.
    let mut items = map.iter();
    let mut matches = |(n, v): (&[u8], &[u8])| {
        items.next().is_some_and(|(k, hv)| {
            k.as_str().as_bytes().eq_ignore_ascii_case(n) && hv.as_bytes() == v
        })
    };
    let mut done = 0u128;
    for i in 0..n {
        if done & (1 << i) != 0 {
            continue;
        }
        let Some(first @ (name, _)) = line(i) else {
            return false;
        };
        if !matches(first) {
            return false;
        }
        for j in i + 1..n {
            if done & (1 << j) != 0 {
                continue;
            }
            let Some(other @ (n, _)) = line(j) else {
                return false;
            };
            if n.len() == name.len() && n.eq_ignore_ascii_case(name) {
                done |= 1 << j;
                if !matches(other) {
                    return false;
                }
            }
        }
    }
    items.next().is_none()
}

/// [`same_headers`] by lookups: each name's values in order against the map's for that name.
fn same_values_per_name(lines: &[(&[u8], &[u8])], map: &http::HeaderMap) -> bool {
    lines.iter().enumerate().all(|(i, &(name, _))| {
        if lines[..i].iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return true; // compared with its first line
        }
        let Ok(name_str) = std::str::from_utf8(name) else {
            return false;
        };
        let mut want = lines[i..]
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, v)| v);
        let mut got = map.get_all(name_str).iter();
        loop {
            match (want.next(), got.next()) {
                (None, None) => return true,
                (Some(w), Some(g)) if w == g.as_bytes() => {}
                _ => return false,
            }
        }
    })
}

/// What the connection knows about a request, put in its extensions.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote_addr: SocketAddr,
    /// The exact head, when the tap could follow the connection.
    pub head: Option<RawHead>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Head,
    /// A `Content-Length` body: bytes left.
    Length(u64),
    Chunked(Chunked),
    /// Not following any more (HTTP/2, upgrade, oversize head, or bytes hyper refuses).
    Off,
}

/// A chunked body, as hyper's `Decoder` walks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunked {
    state: Chunk,
    /// The size being read, then the data bytes left.
    size: u64,
    /// Extension bytes so far in this body.
    extensions: u64,
    /// Trailer lines so far.
    trailers: usize,
}

/// hyper's `ChunkedState`, state for state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Start,
    Size,
    SizeLws,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
}

/// Bytes hyper would refuse: the connection ends there, and the tap stops following.
#[derive(Debug)]
struct Refused;

/// Follows HTTP/1 framing over the bytes read from a connection.
#[derive(Debug)]
struct Tracker {
    framing: Framing,
    /// A head split across reads, or a body's trailer section (hyper's `trailers_buf`).
    buf: Vec<u8>,
    heads: VecDeque<RawHead>,
    /// Set when a queued head disagreed with hyper's parse; the connection counts it
    /// (`hookbin_tap_fallbacks_total`) and clears it.
    disagreed: bool,
}

impl Default for Tracker {
    fn default() -> Self {
        Self {
            framing: Framing::Head,
            buf: Vec::new(),
            heads: VecDeque::new(),
            disagreed: false,
        }
    }
}

impl Tracker {
    fn feed(&mut self, mut input: &[u8]) {
        while !input.is_empty() {
            match self.framing {
                Framing::Off => return,
                Framing::Head if self.buf.is_empty() => {
                    // The usual case: a whole head in this read, parsed where it lies.
                    match self.parse_head(input) {
                        Some(taken) => input = &input[taken..],
                        None => {
                            if self.framing == Framing::Head {
                                self.buf.extend_from_slice(input);
                            }
                            return;
                        }
                    }
                }
                Framing::Head => {
                    // A head split across reads. Like hyper, parse again only when the new bytes
                    // may end it (a line break followed by an empty line), so a head sent a byte
                    // at a time costs linear time, not quadratic.
                    let before = self.buf.len();
                    self.buf.extend_from_slice(input);
                    if !may_end_head(&self.buf, before) {
                        if self.buf.len() >= MAX_HEAD {
                            self.off();
                        }
                        return;
                    }
                    let buf = std::mem::take(&mut self.buf);
                    match self.parse_head(&buf) {
                        Some(taken) => {
                            // Go on with whatever followed the head. The depth of this recursion
                            // is 1: the rest starts with an empty buffer.
                            self.feed(&buf[taken..]);
                        }
                        None => {
                            if self.framing == Framing::Head {
                                self.buf = buf;
                            }
                        }
                    }
                    return;
                }
                Framing::Length(n) => {
                    let k = n.min(input.len() as u64);
                    input = &input[k as usize..];
                    self.framing = if n == k {
                        Framing::Head
                    } else {
                        Framing::Length(n - k)
                    };
                }
                Framing::Chunked(mut c) => {
                    if c.state == Chunk::Data {
                        let k = c.size.min(input.len() as u64);
                        input = &input[k as usize..];
                        c.size -= k;
                        if c.size == 0 {
                            c.state = Chunk::DataCr;
                        }
                        self.framing = Framing::Chunked(c);
                        continue;
                    }
                    let b = input[0];
                    input = &input[1..];
                    self.framing = match self.chunk_byte(&mut c, b) {
                        Ok(false) => Framing::Chunked(c),
                        Ok(true) => Framing::Head,
                        Err(Refused) => {
                            self.off();
                            return;
                        }
                    };
                }
            }
        }
    }

    /// One byte of a chunked body outside chunk data, exactly as hyper's `ChunkedState::step`
    /// takes it. Returns whether the body ended.
    fn chunk_byte(&mut self, c: &mut Chunked, b: u8) -> Result<bool, Refused> {
        let hex = |b: u8| char::from(b).to_digit(16).map(u64::from);
        c.state = match c.state {
            Chunk::Start => {
                c.size = hex(b).ok_or(Refused)?;
                Chunk::Size
            }
            Chunk::Size => match b {
                b'\t' | b' ' => Chunk::SizeLws,
                b';' => Chunk::Extension,
                b'\r' => Chunk::SizeLf,
                _ => {
                    let d = hex(b).ok_or(Refused)?;
                    c.size = c
                        .size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(d))
                        .ok_or(Refused)?;
                    Chunk::Size
                }
            },
            Chunk::SizeLws => match b {
                b'\t' | b' ' => Chunk::SizeLws,
                b';' => Chunk::Extension,
                b'\r' => Chunk::SizeLf,
                _ => return Err(Refused),
            },
            Chunk::Extension => match b {
                b'\r' => Chunk::SizeLf,
                b'\n' => return Err(Refused),
                _ => {
                    c.extensions += 1;
                    if c.extensions >= HYPER_CHUNK_EXTENSIONS {
                        return Err(Refused);
                    }
                    Chunk::Extension
                }
            },
            Chunk::SizeLf if b == b'\n' => {
                if c.size == 0 {
                    Chunk::EndCr
                } else {
                    Chunk::Data
                }
            }
            Chunk::DataCr if b == b'\r' => Chunk::DataLf,
            Chunk::DataLf if b == b'\n' => Chunk::Start,
            // The trailer section: a line ends at CRLF only (a bare LF is part of the line), and
            // the section at an empty line.
            Chunk::EndCr if b == b'\r' => {
                if !self.buf.is_empty() {
                    self.trailer_byte(b)?;
                }
                Chunk::EndLf
            }
            Chunk::EndCr => {
                if self.buf.is_empty() {
                    self.buf.push(b);
                } else {
                    self.trailer_byte(b)?;
                }
                Chunk::Trailer
            }
            Chunk::Trailer => {
                self.trailer_byte(b)?;
                if b == b'\r' {
                    Chunk::TrailerLf
                } else {
                    Chunk::Trailer
                }
            }
            Chunk::TrailerLf if b == b'\n' => {
                if c.trailers >= HYPER_MAX_HEADERS {
                    return Err(Refused);
                }
                c.trailers += 1;
                self.trailer_byte(b)?;
                Chunk::EndCr
            }
            Chunk::EndLf if b == b'\n' => {
                if !self.buf.is_empty() {
                    self.trailer_byte(b)?;
                    let trailers = std::mem::take(&mut self.buf);
                    check_trailers(&trailers, c.trailers)?;
                }
                return Ok(true);
            }
            Chunk::SizeLf
            | Chunk::DataCr
            | Chunk::DataLf
            | Chunk::TrailerLf
            | Chunk::EndLf
            | Chunk::Data => return Err(Refused),
        };
        Ok(false)
    }

    fn trailer_byte(&mut self, b: u8) -> Result<(), Refused> {
        self.buf.push(b);
        if self.buf.len() >= HYPER_TRAILER_BYTES {
            return Err(Refused);
        }
        Ok(())
    }

    fn off(&mut self) {
        self.framing = Framing::Off;
        self.buf = Vec::new();
    }

    /// Parses one head at the start of `data` as hyper's `Server::parse` does, queues it and sets
    /// the body framing. Returns the bytes it took, or `None` when the head is incomplete or the
    /// tap turned off.
    fn parse_head(&mut self, data: &[u8]) -> Option<usize> {
        match self.try_parse_head(data) {
            Ok(Some(taken)) => Some(taken),
            Ok(None) if data.len() < MAX_HEAD => None,
            Ok(None) | Err(Refused) => {
                self.off();
                None
            }
        }
    }

    fn try_parse_head(&mut self, data: &[u8]) -> Result<Option<usize>, Refused> {
        // Uninitialised slots: zeroing them cost more than parsing a typical head.
        let mut slots =
            [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; HYPER_MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        // hyper's server default: `ParserConfig::default()`, `HYPER_MAX_HEADERS` slots. Blank
        // lines before the request line are skipped (RFC 9112 section 2.2) and counted in `len`.
        let len = match httparse::ParserConfig::default()
            .parse_request_with_uninit_headers(&mut req, data, &mut slots)
        {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(Refused),
        };
        if len > MAX_HEAD {
            return Err(Refused);
        }
        let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version)
        else {
            return Err(Refused);
        };
        // What else hyper checks before it takes the head. (It also parses the target as a
        // `Uri`; when that fails it answers 400 and closes the connection before any service
        // call, so the queued head is never handed on: not worth a copy of every target here.)
        if target.len() > HYPER_MAX_URI || http::Method::from_bytes(method.as_bytes()).is_err() {
            return Err(Refused);
        }
        let http11 = version == 1;
        // The body length, as `Server::parse` decides it (RFC 9112 section 6.3).
        let mut content_length: Option<u64> = None;
        let mut te = false;
        let mut te_chunked = false;
        // A Content-Length before the first Transfer-Encoding, which hyper then removes.
        let mut cl_before_te = false;
        let mut upgrade = method == "CONNECT";
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                if !http11 {
                    return Err(Refused);
                }
                te = true;
                content_length = None;
                te_chunked = is_chunked(h.value);
            } else if h.name.eq_ignore_ascii_case("content-length") {
                if te {
                    continue;
                }
                cl_before_te = true;
                let n = digits(h.value)
                    .filter(|&n| n <= HYPER_MAX_CONTENT_LENGTH)
                    .ok_or(Refused)?;
                if content_length.is_some_and(|prev| prev != n) {
                    return Err(Refused);
                }
                content_length = Some(n);
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade = http11;
            }
        }
        if te && !te_chunked {
            return Err(Refused);
        }
        if self.heads.len() >= MAX_QUEUED_HEADS {
            return Err(Refused);
        }
        // The header lines, kept as they came: from after the request line to the blank line.
        let start = method.as_ptr() as usize - data.as_ptr() as usize;
        let lines = data[start..len]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(len, |i| start + i + 1);
        // The lines hyper keeps: with a Transfer-Encoding no Content-Length, otherwise the first.
        let block = data.as_ptr() as usize + lines;
        let range = |b: &[u8]| {
            let start = (b.as_ptr() as usize).wrapping_sub(block) as u32;
            (start, start.wrapping_add(b.len() as u32))
        };
        let mut first_cl = true;
        let kept = req
            .headers
            .iter()
            .filter(|h| {
                if !h.name.eq_ignore_ascii_case("content-length") {
                    return true;
                }
                let keep = !te && first_cl;
                first_cl = false;
                keep
            })
            .map(|h| Field {
                name: range(h.name.as_bytes()),
                value: range(h.value),
            })
            .collect();
        self.heads.push_back(RawHead {
            method: method.as_bytes().into(),
            target: target.as_bytes().into(),
            headers: RawHeaders::from_wire(&data[lines..len]),
            kept,
            reordered: te && cl_before_te,
        });
        self.framing = if upgrade {
            // What follows may be another protocol (when the answer is 101).
            Framing::Off
        } else if te {
            Framing::Chunked(Chunked {
                state: Chunk::Start,
                size: 0,
                extensions: 0,
                trailers: 0,
            })
        } else {
            match content_length {
                Some(n) if n > 0 => Framing::Length(n),
                _ => Framing::Head,
            }
        };
        if self.framing == Framing::Off {
            self.buf = Vec::new();
            return Ok(None);
        }
        Ok(Some(len))
    }

    /// The head of the request hyper hands the service, when the tap has it and it is the one
    /// hyper parsed. On any disagreement the tap turns off for the rest of the connection: the
    /// queue cannot be trusted any more.
    fn next_head(
        &mut self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
    ) -> Option<RawHead> {
        let head = self.heads.pop_front()?;
        if head.is_hypers(method, uri, headers) {
            return Some(head);
        }
        tracing::warn!("the connection tap disagrees with hyper's parse; headers as parsed");
        self.disagreed = true;
        self.off();
        self.heads = VecDeque::new();
        None
    }
}

/// The tracker for the fuzz target in `bin-server/fuzz` (feature `fuzzing`); not an API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    /// The tap's largest buffered head.
    pub const MAX_HEAD: usize = super::MAX_HEAD;
    /// The tap's largest buffered trailer section.
    pub const MAX_TRAILERS: usize = super::HYPER_TRAILER_BYTES;
    /// The most heads the tap queues.
    pub const MAX_QUEUED_HEADS: usize = super::MAX_QUEUED_HEADS;

    /// A queued head: method, target, header lines.
    pub type Head = (Vec<u8>, Vec<u8>, Vec<u8>);

    /// A connection's tracker, fed bytes as reads would.
    #[derive(Debug, Default)]
    pub struct Tracker(super::Tracker);

    impl Tracker {
        pub fn feed(&mut self, bytes: &[u8]) {
            self.0.feed(bytes);
        }

        /// Takes the heads queued so far.
        pub fn take_heads(&mut self) -> Vec<Head> {
            self.0
                .heads
                .drain(..)
                .map(|h| {
                    (
                        h.method.into_vec(),
                        h.target.into_vec(),
                        h.headers.as_bytes().to_vec(),
                    )
                })
                .collect()
        }

        pub fn buffered(&self) -> usize {
            self.0.buf.len()
        }

        pub fn queued(&self) -> usize {
            self.0.heads.len()
        }

        pub fn is_off(&self) -> bool {
            self.0.framing == super::Framing::Off
        }
    }
}

/// hyper's `is_complete_fast`: whether the bytes from `before` on (with the 3 before them) hold
/// the end of a head (`\n\n` or `\n\r\n`).
fn may_end_head(buf: &[u8], before: usize) -> bool {
    let tail = &buf[before.saturating_sub(3)..];
    tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n")
}

/// hyper's `headers::is_chunked_`: the last encoding of a visible-ASCII value is `chunked`.
fn is_chunked(value: &[u8]) -> bool {
    // `HeaderValue::to_str`: visible ASCII and tabs only.
    let visible = value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b));
    visible
        && std::str::from_utf8(value).is_ok_and(|s| {
            s.rsplit(',')
                .next()
                .is_some_and(|e| e.trim().eq_ignore_ascii_case("chunked"))
        })
}

/// hyper's `headers::from_digits`: decimal digits only (no sign, no space), no overflow.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// hyper's `decode_trailers`: the section must parse as `count` header lines with valid names
/// and values, or hyper fails the body.
fn check_trailers(section: &[u8], count: usize) -> Result<(), Refused> {
    let mut slots = vec![httparse::EMPTY_HEADER; count];
    match httparse::parse_headers(section, &mut slots) {
        Ok(httparse::Status::Complete((_, headers))) => headers
            .iter()
            .all(|h| {
                http::HeaderName::from_bytes(h.name.as_bytes()).is_ok()
                    && http::HeaderValue::from_bytes(h.value).is_ok()
            })
            .then_some(())
            .ok_or(Refused),
        _ => Err(Refused),
    }
}

/// An I/O wrapper that shows every byte read to the connection's [`Tracker`].
struct Tap<T> {
    io: T,
    /// Shared with the connection's service; only this connection's task touches it, so the
    /// lock is never contended (it exists because hyper wants `Send + 'static` services).
    tracker: Arc<Mutex<Tracker>>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tap<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                let mut t = self.tracker.lock().unwrap_or_else(|e| e.into_inner());
                t.feed(new);
            }
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tap<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, within `limits` (see [`watch`]): each
/// connection takes a [`Slot`] (or is closed at once) and has its deadlines. On shutdown it stops
/// accepting, closes at once every connection that is idle, mid-head or mid-body, lets running
/// handlers finish for up to `limits.shutdown_grace` (a bin's response delay ends early on
/// shutdown by itself), then drops whatever is left and returns.
pub async fn serve<S, F>(
    listener: TcpListener,
    app: S,
    shutdown: impl Future<Output = ()> + Send,
    limits: ConnLimits,
    metrics: Arc<crate::Metrics>,
) -> io::Result<()>
where
    S: Fn(axum::extract::Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = axum::response::Response> + Send + 'static,
{
    // No hyper timer and so no hyper `header_read_timeout`: `Watched` keeps the deadlines (its
    // module docs say why).
    let builder = auto::Builder::new(TokioExecutor::new());
    let slots = Slots::new(&limits, Arc::clone(&metrics));
    // `closing`: stop taking requests, close what is not running a handler; `force`: the grace
    // period is over, drop everything.
    let closing = CancellationToken::new();
    let force = CancellationToken::new();
    // Each connection task holds a sender; when the last one is gone, every connection is.
    let (open_tx, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote_addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Over a cap: closed at once, no response (answering would cost what the cap saves).
        let Ok(slot) = slots.take(remote_addr) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let activity = Activity::new();
        let watched = Watched::new(
            stream,
            Arc::clone(&activity),
            &limits,
            Arc::clone(&metrics),
            closing.clone(),
        );
        let tracker = Arc::new(Mutex::new(Tracker::default()));
        let io = TokioIo::new(Tap {
            io: watched,
            tracker: Arc::clone(&tracker),
        });
        let app = app.clone();
        let conn_activity = Arc::clone(&activity);
        let conn_metrics = Arc::clone(&metrics);
        let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            let head = {
                let mut t = tracker.lock().unwrap_or_else(|e| e.into_inner());
                let head = t.next_head(req.method(), req.uri(), req.headers());
                if std::mem::take(&mut t.disagreed) {
                    conn_metrics
                        .tap_fallbacks
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                head
            };
            req.extensions_mut().insert(ConnInfo { remote_addr, head });
            let guard = activity.request_started();
            let activity = Arc::clone(&activity);
            let response =
                app(req.map(|body| axum::body::Body::new(WatchedBody::new(body, activity))));
            async move {
                let response = response.await;
                Ok::<_, std::convert::Infallible>(response.map(|body| Tracked::new(body, guard)))
            }
        });
        let conn = builder.serve_connection(io, service).into_owned();
        let closing = closing.clone();
        let force = force.clone();
        let open = open_tx.clone();
        tokio::spawn(async move {
            let _open = open;
            let _slot = slot;
            tokio::pin!(conn);
            tokio::select! {
                // Shutdown first: a connection woken by it is closed, not read from again.
                biased;
                () = closing.cancelled() => {}
                ended = conn.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!("connection from {remote_addr} ended: {e}");
                    }
                    return;
                }
            }
            // Idle, mid-head or mid-body: close now (dropping the connection).
            if !conn_activity.handler_running() {
                return;
            }
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                _ = conn.as_mut() => {}
                () = force.cancelled() => {}
            }
        });
    }
    drop(listener);
    drop(open_tx);
    closing.cancel();
    tokio::select! {
        _ = all_closed.recv() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(
                "shutdown: requests still running after {:?}; closing their connections",
                limits.shutdown_grace
            );
            force.cancel();
        }
    }
    Ok(())
}

#[cfg(test)]
mod differential;

#[cfg(test)]
mod tests {
    use super::*;

    type Lines = Vec<(String, String)>;

    fn lines(h: &RawHeaders) -> Lines {
        h.iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    fn names(t: &mut Tracker) -> Vec<Lines> {
        t.heads.drain(..).map(|h| lines(&h.headers)).collect()
    }

    fn fed(wire: &[u8]) -> Tracker {
        let mut t = Tracker::default();
        t.feed(wire);
        t
    }

    const PIPELINE: &[u8] =
        b"POST /b/x HTTP/1.1\r\nHost: a\r\nX-Dup: 1\r\nx-dup: 2\r\nContent-Length: 5\r\n\r\n\
        hello\
        PUT /b/x/y?q HTTP/1.1\r\nHOST: a\r\nTransfer-Encoding: chunked\r\n\r\n\
        3;ext=1\r\nabc\r\n0\r\nTrailer: t\r\n\r\n\
        \r\nGET /b/x HTTP/1.1\r\nHost: a\r\n\r\n";

    #[test]
    fn follows_pipelined_requests_in_one_read() {
        let mut t = fed(PIPELINE);
        let heads = names(&mut t);
        assert_eq!(heads.len(), 3);
        assert_eq!(heads[0][1], ("X-Dup".into(), "1".into()));
        assert_eq!(heads[0][2], ("x-dup".into(), "2".into()));
        assert_eq!(heads[1][0], ("HOST".into(), "a".into()));
        assert_eq!(heads[2].len(), 1);
        assert_eq!(t.framing, Framing::Head);
    }

    #[test]
    fn follows_the_same_bytes_at_every_split_point() {
        let whole = names(&mut fed(PIPELINE));
        let mut t = Tracker::default();
        for b in PIPELINE {
            t.feed(std::slice::from_ref(b));
        }
        assert_eq!(names(&mut t), whole);
        for at in 0..PIPELINE.len() {
            let mut t = Tracker::default();
            t.feed(&PIPELINE[..at]);
            t.feed(&PIPELINE[at..]);
            assert_eq!(names(&mut t), whole, "split at {at}");
        }
    }

    /// Issue 8: for hyper, a bare LF after the last chunk starts the trailer section, which ends
    /// at the next CRLF CRLF; the tap ended it at the LF and queued the trailer bytes as a head.
    #[test]
    fn a_bare_lf_after_the_last_chunk_starts_trailers_not_a_head() {
        let wire = b"POST /b/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\n\
            POST /b/b HTTP/1.1\r\nAuthorization: Bearer meant-for-a\r\n\r\n\
            POST /b/b HTTP/1.1\r\nX-Real: 1\r\n\r\n";
        let mut t = fed(wire);
        let heads = names(&mut t);
        assert_eq!(
            heads,
            vec![
                vec![("Transfer-Encoding".into(), "chunked".into())],
                vec![("X-Real".into(), "1".into())],
            ]
        );
        assert_eq!(t.framing, Framing::Head);
    }

    #[test]
    fn trailer_lines_end_at_crlf_only() {
        // One trailer line holding a bare LF: hyper then parses it as headers, and needs as many
        // header slots as CRLF-ended lines, so two headers in one such line fail the body.
        let ok = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: 1\r\n\r\n\
            GET /next HTTP/1.1\r\n\r\n";
        assert_eq!(fed(ok).heads.len(), 2);
        let two_in_one = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
            0\r\nA: 1\nB: 2\r\n\r\nGET /next HTTP/1.1\r\n\r\n";
        let t = fed(two_in_one);
        assert_eq!((t.heads.len(), t.framing), (1, Framing::Off));
    }

    #[test]
    fn chunked_bodies_hyper_refuses_turn_the_tap_off() {
        let head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        for body in [
            "zz\r\n",                  // not a size
            "3\nabc\r\n0\r\n\r\n",     // bare LF after the size
            "3;a\nabc\r\n0\r\n\r\n",   // bare LF in an extension
            "3\r\nabcX\r\n0\r\n\r\n",  // no CRLF after the data
            "3\r\nabc\n0\r\n\r\n",     // bare LF after the data
            "+3\r\nabc\r\n0\r\n\r\n",  // a sign
            "3 4\r\nabc\r\n0\r\n\r\n", // digits after white space
            "10000000000000000\r\n",   // overflows u64
            "0\r\nA: 1\rx\r\n\r\n",    // CR not followed by LF in a trailer
            "0\r\n\rx",                // CR not followed by LF at the end
        ] {
            let t = fed(format!("{head}{body}GET / HTTP/1.1\r\n\r\n").as_bytes());
            assert_eq!((t.heads.len(), t.framing), (1, Framing::Off), "{body:?}");
        }
    }

    #[test]
    fn chunked_bodies_hyper_accepts_are_followed() {
        let head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        for body in [
            "3\r\nabc\r\n0\r\n\r\n",
            "A \t ;name=\"quoted value\";x\r\n0123456789\r\n0\r\n\r\n",
            "3;\r\nabc\r\n00\r\n\r\n",
            "0\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
            "0\r\n\nGET /smuggled HTTP/1.1\r\nX: y\r\n\r\n",
        ] {
            let t = fed(format!("{head}{body}GET /next HTTP/1.1\r\n\r\n").as_bytes());
            assert_eq!(t.heads.len(), 2, "{body:?}");
            assert_eq!(&t.heads[1].target[..], b"/next", "{body:?}");
            assert_eq!(t.framing, Framing::Head, "{body:?}");
        }
        // hyper's limits: 16 KiB of extensions in a body, 16 KiB of trailers.
        let ext = format!("{head}1;{}\r\na\r\n0\r\n\r\n", "e".repeat(16 * 1024));
        assert_eq!(fed(ext.as_bytes()).framing, Framing::Off);
        let trailers = format!("{head}0\r\nX: {}\r\n\r\n", "t".repeat(16 * 1024));
        assert_eq!(fed(trailers.as_bytes()).framing, Framing::Off);
    }

    #[test]
    fn body_length_is_decided_as_hyper_decides_it() {
        let follow = |head: &str, body: &str| {
            let t = fed(format!("{head}\r\n{body}GET /next HTTP/1.1\r\n\r\n").as_bytes());
            (t.heads.len(), t.framing)
        };
        let cl = "POST / HTTP/1.1\r\nContent-Length: 3\r\n";
        assert_eq!(follow(cl, "abc"), (2, Framing::Head));
        let same = "POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 003\r\n";
        assert_eq!(follow(same, "abc"), (2, Framing::Head));
        // Transfer-Encoding wins over Content-Length, before or after it.
        let both = "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: gzip, chunked\r\n\
            Content-Length: 9\r\n";
        assert_eq!(follow(both, "0\r\n\r\n"), (2, Framing::Head));
        let bare_lf = "POST / HTTP/1.1\nContent-Length: 3\n";
        assert_eq!(
            fed(format!("{bare_lf}\nabcGET / HTTP/1.1\n\n").as_bytes())
                .heads
                .len(),
            2
        );
        for refused in [
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +3\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3 3\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 18446744073709551614\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\u{7f}\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n",
            "POST / HTTP/1.1\r\nX: a\rb\r\n",
            "POST /\u{1} HTTP/1.1\r\n",
            "POST / HTTP/1.2\r\n",
        ] {
            assert_eq!(follow(refused, "abc"), (0, Framing::Off), "{refused:?}");
        }
        let too_many = format!("GET / HTTP/1.1\r\n{}", "X: y\r\n".repeat(101));
        assert_eq!(follow(&too_many, ""), (0, Framing::Off));
        let just_enough = format!("GET / HTTP/1.1\r\n{}", "X: y\r\n".repeat(100));
        assert_eq!(follow(&just_enough, ""), (2, Framing::Head));
    }

    #[test]
    fn body_that_looks_like_a_request_is_not_a_head() {
        let fake = b"GET /b/x HTTP/1.1\r\nX-Fake: 1\r\n\r\n";
        let mut wire = format!(
            "POST /b/x HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            fake.len()
        )
        .into_bytes();
        wire.extend_from_slice(fake);
        wire.extend_from_slice(b"GET /b/x HTTP/1.1\r\nX-Real: 1\r\n\r\n");
        let heads = names(&mut fed(&wire));
        assert_eq!(heads.len(), 2);
        assert_eq!(heads[1][0].0, "X-Real");
    }

    #[test]
    fn steps_aside_for_http2_and_upgrades() {
        assert_eq!(
            fed(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").framing,
            Framing::Off
        );
        let t = fed(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        assert_eq!((t.heads.len(), t.framing), (1, Framing::Off));
        let t = fed(b"CONNECT h:1 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        assert_eq!((t.heads.len(), t.framing), (1, Framing::Off));
        // hyper upgrades HTTP/1.1 only.
        let t = fed(b"GET / HTTP/1.0\r\nUpgrade: websocket\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        assert_eq!((t.heads.len(), t.framing), (2, Framing::Head));
    }

    #[test]
    fn oversize_head_turns_the_tap_off() {
        let mut t = Tracker::default();
        t.feed(b"GET / HTTP/1.1\r\n");
        for _ in 0..2000 {
            t.feed(b"X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
            assert!(t.buf.len() < MAX_HEAD);
        }
        assert_eq!(t.framing, Framing::Off);
        // The same head in one read is refused too: the outcome does not depend on the splits.
        let mut one = b"GET / HTTP/1.1\r\n".to_vec();
        while one.len() <= MAX_HEAD {
            one.extend_from_slice(b"X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        one.extend_from_slice(b"\r\n");
        let t = fed(&one);
        assert_eq!((t.heads.len(), t.framing), (0, Framing::Off));
    }

    #[test]
    fn queued_heads_are_bounded() {
        let wire = b"GET / HTTP/1.1\r\n\r\n".repeat(MAX_QUEUED_HEADS + 1);
        let t = fed(&wire);
        assert_eq!((t.heads.len(), t.framing), (MAX_QUEUED_HEADS, Framing::Off));
    }

    fn header_map(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut m = http::HeaderMap::new();
        for (n, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    /// hyper's `Uri` gives an absolute-form target without a path the path `/` (the
    /// differential property test found `PATCH http://example.testaaaa HTTP/1.1`): that is the
    /// same target, not a disagreement. A different path still is.
    #[test]
    fn absolute_form_targets_compare_as_hyper_normalises_them() {
        let patch = http::Method::PATCH;
        let none = http::HeaderMap::new();
        for (target, parsed, same) in [
            ("http://example.test", "http://example.test/", true),
            ("http://example.test?a=1", "http://example.test/?a=1", true),
            (
                "http://example.test/x?a=1",
                "http://example.test/x?a=1",
                true,
            ),
            ("http://example.test#f", "http://example.test/", true),
            ("http://example.test?", "http://example.test?", true),
            ("http://example.test/x?", "http://example.test/x?", true),
            ("http://example.test?a", "http://example.test?b", false),
            ("http://example.test/x", "http://example.test/", false),
            ("http://example.test/a/x", "http://example.test/x", false),
        ] {
            let wire = format!("PATCH {target} HTTP/1.1\r\n\r\n");
            let uri: http::Uri = parsed.parse().unwrap();
            let mut t = fed(wire.as_bytes());
            assert_eq!(
                t.next_head(&patch, &uri, &none).is_some(),
                same,
                "{target} vs {parsed}"
            );
        }
    }

    #[test]
    fn next_head_checks_method_target_and_headers() {
        let get = http::Method::GET;
        let mut t = fed(
            b"GET /b/x?a=1 HTTP/1.1\r\nX-A: 1\r\nx-b: 2\r\nX-a: 3\r\n\r\n\
            GET /b/y HTTP/1.1\r\n\r\nGET /b/z HTTP/1.1\r\n\r\n",
        );
        let map = header_map(&[("x-a", "1"), ("x-a", "3"), ("x-b", "2")]);
        let head = t
            .next_head(&get, &"/b/x?a=1".parse().unwrap(), &map)
            .unwrap();
        assert_eq!(lines(&head.headers)[2], ("X-a".into(), "3".into()));
        assert!(head.headers.is_exact());
        // Another target: the queue is not to be trusted any more.
        let none = http::HeaderMap::new();
        assert!(
            t.next_head(&get, &"/b/other".parse().unwrap(), &none)
                .is_none()
        );
        assert_eq!((t.heads.len(), t.framing), (0, Framing::Off));
        assert!(t.next_head(&get, &"/b/z".parse().unwrap(), &none).is_none());
    }

    #[test]
    fn next_head_falls_back_on_any_header_disagreement() {
        let get = http::Method::GET;
        let uri: http::Uri = "/".parse().unwrap();
        let wire = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nA: 3\r\n\r\n";
        let agree = header_map(&[("a", "1"), ("a", "3"), ("b", "2")]);
        let mut t = fed(wire);
        assert!(t.next_head(&get, &uri, &agree).is_some());
        assert!(!t.disagreed);
        for differs in [
            header_map(&[("a", "3"), ("a", "1"), ("b", "2")]), // order within a name
            header_map(&[("a", "1"), ("b", "2")]),             // a value missing
            header_map(&[("a", "1"), ("a", "3"), ("b", "2"), ("c", "4")]), // one more
            header_map(&[("a", "1"), ("a", "3"), ("b", "x")]), // another value
            header_map(&[("a", "1"), ("a", "3"), ("c", "2")]), // another name
        ] {
            let mut t = fed(wire);
            assert!(t.next_head(&get, &uri, &differs).is_none(), "{differs:?}");
            assert_eq!(t.framing, Framing::Off);
            assert!(t.disagreed, "a disagreement is counted: {differs:?}");
        }
        assert!(
            fed(wire)
                .next_head(&http::Method::POST, &uri, &agree)
                .is_none()
        );
    }

    #[test]
    fn content_length_lines_hyper_drops_are_not_a_disagreement() {
        let post = http::Method::POST;
        let uri: http::Uri = "/".parse().unwrap();
        let wire = b"POST / HTTP/1.1\r\nContent-Length: 0\r\ncontent-length: 0\r\n\r\n";
        let map = header_map(&[("content-length", "0")]);
        assert!(fed(wire).next_head(&post, &uri, &map).is_some());
        let wire = b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        let map = header_map(&[("transfer-encoding", "chunked")]);
        assert!(fed(wire).next_head(&post, &uri, &map).is_some());
    }
}
