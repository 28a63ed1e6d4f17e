//! A captured request, stored compactly: method, path, query, headers and body live in one
//! exact-size allocation (`data`), indexed by offsets. At 1 KiB bodies this keeps the whole
//! request near 1.3 KiB of heap, where a `HeaderMap` plus separate buffers costs several times
//! that (and keeping hyper's `Bytes` would pin the connection's whole read buffer).

use std::net::SocketAddr;

use api::{SignatureCheck, Validation};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Headers in arrival order, duplicates kept, original case: the header lines of the request
/// head exactly as they came off the wire (`Name: value\r\n` ...), so capturing them is one copy.
/// [`HeaderIter`] splits them on demand. Header lines never contain a bare line break and names
/// never contain `:` (the HTTP/1 parser rejects both), so the splitting is unambiguous.
///
/// Lines rebuilt from a parsed header map instead ([`RawHeaders::push`]: HTTP/2, or when the
/// connection tap could not follow) are not exact, and say so ([`RawHeaders::is_exact`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawHeaders {
    lines: Vec<u8>,
    exact: bool,
}

impl RawHeaders {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Self {
            lines: Vec::with_capacity(n),
            exact: false,
        }
    }

    /// The header lines of a parsed HTTP/1 head, kept as they are.
    pub fn from_wire(lines: &[u8]) -> Self {
        Self {
            lines: lines.to_vec(),
            exact: true,
        }
    }

    /// Appends one header as a `name: value` line (for headers that did not come through the
    /// wire tap; the lines are then not exact). Bytes that would break the lines (`:` or a line
    /// break in a name, a line break in a value) cannot come from a parsed HTTP message; they are
    /// replaced rather than trusted.
    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        let bad_name = |b: u8| b == b':' || b == b'\n' || b == b'\r';
        let bad_value = |b: u8| b == b'\n' || b == b'\r';
        self.exact = false;
        self.lines.reserve(name.len() + value.len() + 4);
        self.lines
            .extend(name.iter().map(|&b| if bad_name(b) { b'_' } else { b }));
        self.lines.extend_from_slice(b": ");
        self.lines
            .extend(value.iter().map(|&b| if bad_value(b) { b' ' } else { b }));
        self.lines.extend_from_slice(b"\r\n");
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.lines
    }

    pub fn iter(&self) -> HeaderIter<'_> {
        HeaderIter(&self.lines)
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Whether these are the head's lines as they came off the wire (original case, order and
    /// duplicates), rather than rebuilt from a parsed header map (lower-case names, repeats
    /// grouped by name).
    pub fn is_exact(&self) -> bool {
        self.exact
    }
}

/// Iterates `(name, value)` pairs of header lines; values without the optional white space
/// around them (RFC 9110 section 5.5), as every HTTP library presents them.
#[derive(Debug, Clone)]
pub struct HeaderIter<'a>(&'a [u8]);

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.0.is_empty() {
                return None;
            }
            let end = self
                .0
                .iter()
                .position(|&b| b == b'\n')
                .unwrap_or(self.0.len());
            let line = &self.0[..end];
            self.0 = self.0.get(end + 1..).unwrap_or(&[]);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
            let value = line.get(colon + 1..).unwrap_or(&[]);
            let value = value.trim_ascii_start();
            let trailing = value
                .iter()
                .rev()
                .take_while(|&&b| b == b' ' || b == b'\t')
                .count();
            return Some((&line[..colon], &value[..value.len() - trailing]));
        }
    }
}

/// Body bytes reserved before any arrive, when the request announces at least that many: most
/// webhooks fit, so they are read into one allocation; a head that announces a large body and
/// sends nothing holds no more than this.
pub const EAGER_BODY: usize = 4096;

/// A request on its way into the store: built once, its body appended as it streams in.
#[derive(Debug)]
pub struct NewCapture {
    data: Vec<u8>,
    /// The size `data` will have if the body is as long as announced: growth stops there, so a
    /// body of the announced size ends in an exactly sized buffer.
    expected: usize,
    /// End offsets of method, path, query and headers in `data`; the body follows.
    ends: [u32; 4],
    has_query: bool,
    headers_exact: bool,
    /// The body was larger than the bin's limit and was cut at it.
    pub truncated: bool,
    pub remote_addr: SocketAddr,
    pub validation: Option<Box<Validation>>,
    pub signature: Option<Box<SignatureCheck>>,
}

impl NewCapture {
    /// Starts a capture; `body_hint` is the expected body size (e.g. `Content-Length`, capped).
    ///
    /// The hint is a claim, not bytes: only [`EAGER_BODY`] of it is reserved up front, the rest
    /// as the body arrives ([`Self::push_body`]), so a head announcing a large body costs
    /// nothing until the bytes come.
    pub fn new(
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: &RawHeaders,
        body_hint: usize,
        remote_addr: SocketAddr,
    ) -> Self {
        let head = method.len() + path.len() + query.map_or(0, str::len) + headers.lines.len();
        let mut data = Vec::with_capacity(head + body_hint.min(EAGER_BODY));
        let mut ends = [0u32; 4];
        for (i, part) in [
            method.as_bytes(),
            path.as_bytes(),
            query.unwrap_or("").as_bytes(),
            headers.as_bytes(),
        ]
        .into_iter()
        .enumerate()
        {
            data.extend_from_slice(part);
            ends[i] = offset(data.len());
        }
        Self {
            data,
            expected: head + body_hint,
            ends,
            has_query: query.is_some(),
            headers_exact: headers.exact,
            truncated: false,
            remote_addr,
            validation: None,
            signature: None,
        }
    }

    /// Appends body bytes. The buffer grows with what arrived (doubling, so at most twice the
    /// bytes received), never to a size a header merely announced, and stops at the announced
    /// size.
    pub fn push_body(&mut self, chunk: &[u8]) {
        let need = self.data.len() + chunk.len();
        if need > self.data.capacity() {
            let target = need
                .max(self.data.capacity() * 2)
                .min(self.expected.max(need));
            self.data.reserve_exact(target - self.data.len());
        }
        self.data.extend_from_slice(chunk);
    }

    pub fn body(&self) -> &[u8] {
        &self.data[self.ends[3] as usize..]
    }

    pub fn headers(&self) -> HeaderIter<'_> {
        HeaderIter(&self.data[self.ends[2] as usize..self.ends[3] as usize])
    }

    /// Seals the capture with its identity. The allocation is shrunk to its exact size.
    pub(crate) fn finish(self, seq: u64, received_at: DateTime<Utc>) -> CapturedRequest {
        CapturedRequest {
            id: Uuid::new_v4(),
            seq,
            received_at,
            remote_addr: self.remote_addr,
            data: self.data.into_boxed_slice(),
            ends: self.ends,
            flags: u8::from(self.has_query)
                | (u8::from(self.truncated) << 1)
                | (u8::from(self.headers_exact) << 2),
            validation: self.validation,
            signature: self.signature,
        }
    }
}

fn offset(n: usize) -> u32 {
    // Bodies are capped far below 4 GiB by `--max-body`, enforced before they are read.
    u32::try_from(n).expect("captured request larger than 4 GiB")
}

/// One captured request, immutable once stored (shared by `Arc` with the API and live streams).
#[derive(Debug)]
pub struct CapturedRequest {
    pub id: Uuid,
    /// Per-bin sequence number, from 1, never reused.
    pub seq: u64,
    pub received_at: DateTime<Utc>,
    pub remote_addr: SocketAddr,
    data: Box<[u8]>,
    ends: [u32; 4],
    /// Bit 0: has a query; bit 1: truncated; bit 2: headers exact.
    flags: u8,
    pub validation: Option<Box<Validation>>,
    pub signature: Option<Box<SignatureCheck>>,
}

impl CapturedRequest {
    fn part(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.data[start..self.ends[i] as usize]
    }

    pub fn method(&self) -> &str {
        std::str::from_utf8(self.part(0)).unwrap_or("?")
    }

    /// The path below the bin, as sent (percent-encoding kept).
    pub fn path(&self) -> &str {
        std::str::from_utf8(self.part(1)).unwrap_or("/")
    }

    /// The raw query string without `?`; `None` when the URL had no `?`.
    pub fn query(&self) -> Option<&str> {
        (self.flags & 1 != 0).then(|| std::str::from_utf8(self.part(2)).unwrap_or(""))
    }

    pub fn headers(&self) -> HeaderIter<'_> {
        HeaderIter(self.part(3))
    }

    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The stored body bytes (cut at the limit when `truncated`).
    pub fn body(&self) -> &[u8] {
        &self.data[self.ends[3] as usize..]
    }

    pub fn truncated(&self) -> bool {
        self.flags & 2 != 0
    }

    /// Whether the header lines are exactly as they came off the wire (see
    /// [`RawHeaders::is_exact`]).
    pub fn headers_exact(&self) -> bool {
        self.flags & 4 != 0
    }

    /// Bytes this request holds in the store (counted against the global byte budget).
    pub fn stored_bytes(&self) -> u64 {
        self.data.len() as u64
    }
}

/// The first byte of [`CapturedRequest::encode`]'s format.
const FORMAT_V1: u8 = 1;

impl CapturedRequest {
    /// The request as bytes for a persistent backend (SQLite row, Redis value): a small binary
    /// head (format, id, sequence, time, peer, offsets, flags, the check results as JSON) and
    /// then the stored bytes as they are. [`Self::decode`] gives back an equal request.
    pub fn encode(&self) -> Vec<u8> {
        let json = |v: Option<Vec<u8>>| v.unwrap_or_default();
        let validation = json(
            self.validation
                .as_ref()
                .map(|v| serde_json::to_vec(v).expect("validation serialises")),
        );
        let signature = json(
            self.signature
                .as_ref()
                .map(|s| serde_json::to_vec(s).expect("signature serialises")),
        );
        // The head: format, id, seq, time, address (1 + 16 at most), port, ends, flags and the
        // two lengths: 77 bytes at most. Sized exactly, the request is never copied to grow.
        let mut out = Vec::with_capacity(80 + validation.len() + signature.len() + self.data.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        let micros = self.received_at.timestamp_micros();
        out.extend_from_slice(&micros.to_le_bytes());
        match self.remote_addr.ip() {
            std::net::IpAddr::V4(ip) => {
                out.push(4);
                out.extend_from_slice(&ip.octets());
            }
            std::net::IpAddr::V6(ip) => {
                out.push(6);
                out.extend_from_slice(&ip.octets());
            }
        }
        out.extend_from_slice(&self.remote_addr.port().to_le_bytes());
        for end in self.ends {
            out.extend_from_slice(&end.to_le_bytes());
        }
        out.push(self.flags);
        for part in [&validation, &signature] {
            out.extend_from_slice(&offset(part.len()).to_le_bytes());
            out.extend_from_slice(part);
        }
        out.extend_from_slice(&self.data);
        out
    }

    /// Reads what [`Self::encode`] wrote; `None` for anything else (a damaged or foreign
    /// value is reported by the backend, never trusted).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        if r.take(1)?[0] != FORMAT_V1 {
            return None;
        }
        let id = Uuid::from_slice(r.take(16)?).ok()?;
        let seq = u64::from_le_bytes(r.array()?);
        let received_at = DateTime::from_timestamp_micros(i64::from_le_bytes(r.array()?))?;
        let ip: std::net::IpAddr = match r.take(1)?[0] {
            4 => <[u8; 4]>::try_from(r.take(4)?).ok()?.into(),
            6 => <[u8; 16]>::try_from(r.take(16)?).ok()?.into(),
            _ => return None,
        };
        let port = u16::from_le_bytes(r.array()?);
        let mut ends = [0u32; 4];
        for end in &mut ends {
            *end = u32::from_le_bytes(r.array()?);
        }
        let flags = r.take(1)?[0];
        let mut json = || -> Option<Option<&[u8]>> {
            let n = u32::from_le_bytes(r.array()?) as usize;
            let part = r.take(n)?;
            Some((n > 0).then_some(part))
        };
        let validation = json()?;
        let signature = json()?;
        let validation = match validation {
            Some(v) => Some(Box::new(serde_json::from_slice::<Validation>(v).ok()?)),
            None => None,
        };
        let signature = match signature {
            Some(v) => Some(Box::new(serde_json::from_slice::<SignatureCheck>(v).ok()?)),
            None => None,
        };
        let data: Box<[u8]> = r.0.into();
        // The offsets must describe the data, in order, or the accessors would panic.
        let mut prev = 0;
        for &end in &ends {
            if end < prev || end as usize > data.len() {
                return None;
            }
            prev = end;
        }
        Some(Self {
            id,
            seq,
            received_at,
            remote_addr: SocketAddr::new(ip, port),
            data,
            ends,
            flags,
            validation,
            signature,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip_byte_exact() {
        let mut h = RawHeaders::new();
        h.push(b"X-Dup", b"1");
        h.push(b"x-dup", b"2");
        h.push(b"Content-Type", b"application/octet-stream");
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut c = NewCapture::new("PATCH", "/a/%20b", Some(""), &h, 4, addr);
        c.push_body(&[0, 255, 10]);
        c.push_body(b"\r");
        c.truncated = true;
        let r = c.finish(7, Utc::now());
        assert_eq!(r.method(), "PATCH");
        assert_eq!(r.path(), "/a/%20b");
        assert_eq!(r.query(), Some(""));
        assert_eq!(r.body(), &[0, 255, 10, 13]);
        assert!(r.truncated());
        assert!(
            !r.headers_exact(),
            "pushed lines are rebuilt, not the wire's"
        );
        let hs: Vec<_> = r.headers().collect();
        assert_eq!(
            hs,
            vec![
                (&b"X-Dup"[..], &b"1"[..]),
                (&b"x-dup"[..], &b"2"[..]),
                (&b"Content-Type"[..], &b"application/octet-stream"[..])
            ]
        );
        assert_eq!(r.header("X-DUP"), Some(&b"1"[..]));
        assert_eq!(r.content_type(), Some("application/octet-stream"));
    }

    #[test]
    fn the_persistent_encoding_round_trips_and_rejects_damage() {
        let h = RawHeaders::from_wire(b"X-A: 1\r\nx-a: 2\r\n");
        let v6: SocketAddr = "[2001:db8::1]:4444".parse().unwrap();
        let mut c = NewCapture::new("POST", "/p/%41", Some("a=1&b"), &h, 3, v6);
        c.push_body(&[0, 1, 255]);
        c.validation = Some(Box::new(Validation {
            valid: false,
            errors: vec![api::ValidationError {
                path: "/a".into(),
                message: "required".into(),
            }],
        }));
        let r = c.finish(
            42,
            DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
        );
        let bytes = r.encode();
        let back = CapturedRequest::decode(&bytes).expect("decodes");
        assert_eq!(back.id, r.id);
        assert_eq!(back.seq, 42);
        assert_eq!(back.received_at, r.received_at);
        assert_eq!(back.remote_addr, v6);
        assert_eq!(back.method(), "POST");
        assert_eq!(back.path(), "/p/%41");
        assert_eq!(back.query(), Some("a=1&b"));
        assert_eq!(back.body(), &[0, 1, 255]);
        assert!(back.headers_exact() && !back.truncated());
        assert_eq!(back.headers().count(), 2);
        assert_eq!(back.validation, r.validation);
        assert_eq!(back.signature, None);
        assert_eq!(back.stored_bytes(), r.stored_bytes());
        // Anything cut short, another format, or offsets past the data: refused, not trusted.
        for n in 0..bytes.len() - r.data.len() {
            assert!(CapturedRequest::decode(&bytes[..n]).is_none(), "cut at {n}");
        }
        let mut other = bytes.clone();
        other[0] = 9;
        assert!(CapturedRequest::decode(&other).is_none());
        let v4: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let r = NewCapture::new("GET", "/", None, &RawHeaders::new(), 0, v4).finish(1, Utc::now());
        let mut bytes = r.encode();
        let ends_at = 1 + 16 + 8 + 8 + 1 + 4 + 2;
        bytes[ends_at..ends_at + 4].copy_from_slice(&1000u32.to_le_bytes());
        assert!(CapturedRequest::decode(&bytes).is_none());
    }

    #[test]
    fn a_large_announced_body_is_not_reserved_before_it_arrives() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut c = NewCapture::new("POST", "/", None, &RawHeaders::new(), 1 << 20, addr);
        assert!(c.data.capacity() <= 4 + 1 + EAGER_BODY);
        // Growth follows the bytes (at most double) and stops at the announced size.
        let chunk = vec![7u8; 10_000];
        let mut sent = 0;
        while sent < 1 << 20 {
            let n = chunk.len().min((1 << 20) - sent);
            c.push_body(&chunk[..n]);
            sent += n;
            assert!(c.data.capacity() <= 2 * c.data.len() + EAGER_BODY);
        }
        assert_eq!(c.data.capacity(), c.data.len());
        let r = c.finish(1, Utc::now());
        assert_eq!(r.body().len(), 1 << 20);
    }

    #[test]
    fn small_bodies_take_one_exact_allocation() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut c = NewCapture::new("POST", "/", None, &RawHeaders::new(), 1024, addr);
        let cap = c.data.capacity();
        c.push_body(&[1; 1024]);
        assert_eq!(c.data.capacity(), cap);
        assert_eq!(c.data.capacity(), c.data.len());
        // Unannounced (chunked) bodies are shrunk to fit when sealed.
        let mut c = NewCapture::new("POST", "/", None, &RawHeaders::new(), 0, addr);
        for _ in 0..3 {
            c.push_body(&[2; 1000]);
        }
        assert_eq!(c.finish(1, Utc::now()).data.len(), 4 + 1 + 3000);
    }

    #[test]
    fn no_query_differs_from_empty_query() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let r =
            NewCapture::new("GET", "/", None, &RawHeaders::new(), 0, addr).finish(1, Utc::now());
        assert_eq!(r.query(), None);
        assert_eq!(r.headers().count(), 0);
        assert!(r.body().is_empty());
    }

    #[test]
    fn pushed_lines_cannot_be_broken_by_separators() {
        let mut h = RawHeaders::new();
        h.push(b"a:b", b"c\nd:e\r");
        let v: Vec<_> = h.iter().collect();
        assert_eq!(v, vec![(&b"a_b"[..], &b"c d:e"[..])]);
    }

    #[test]
    fn wire_lines_are_exact_until_a_line_is_pushed() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut h = RawHeaders::from_wire(b"X-A: 1\r\n\r\n");
        assert!(h.is_exact());
        let r = NewCapture::new("GET", "/", None, &h, 0, addr).finish(1, Utc::now());
        assert!(r.headers_exact());
        assert!(!r.truncated() && r.query().is_none());
        h.push(b"x-b", b"2");
        assert!(!h.is_exact());
        assert!(!RawHeaders::new().is_exact());
    }

    #[test]
    fn wire_lines_split_into_names_and_trimmed_values() {
        let h = RawHeaders::from_wire(b"Host: a\r\nX-Empty:\r\nX-Pad: \t v w \t\r\nx-bare:1\n\r\n");
        let v: Vec<_> = h.iter().collect();
        assert_eq!(
            v,
            vec![
                (&b"Host"[..], &b"a"[..]),
                (&b"X-Empty"[..], &b""[..]),
                (&b"X-Pad"[..], &b"v w"[..]),
                (&b"x-bare"[..], &b"1"[..]),
            ]
        );
    }
}
