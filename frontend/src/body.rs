//! Views of a captured body, derived from its exact bytes and never rewriting them: pretty JSON
//! (as tokens to colour), decoded form fields, multipart parts, raw text, hex dump.
//!
//! Pure functions over bytes and strings, so they are unit-tested on the host. Every output is
//! plain text for the UI to render as text nodes: captured content is hostile.

use api::{BodyEncoding, CapturedRequestOut};
use base64::Engine as _;

/// The body's exact bytes (decoding the API's base64 for non-UTF-8 bodies).
pub fn bytes(req: &CapturedRequestOut) -> Vec<u8> {
    let body = req.body.as_deref().unwrap_or("");
    match req.body_encoding {
        BodyEncoding::Utf8 => body.as_bytes().to_vec(),
        BodyEncoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap_or_default(),
    }
}

/// The ways a body can be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Json,
    Form,
    Multipart,
    Raw,
    Hex,
}

impl View {
    pub fn label(self) -> &'static str {
        match self {
            View::Json => "JSON",
            View::Form => "Form",
            View::Multipart => "Multipart",
            View::Raw => "Raw",
            View::Hex => "Hex",
        }
    }
}

/// The media type of a `Content-Type` value, lower-cased, without parameters.
pub fn media_type(content_type: Option<&str>) -> String {
    content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The views that make sense for this body, best first.
pub fn views(content_type: Option<&str>, body: &[u8]) -> Vec<View> {
    let media = media_type(content_type);
    let text = std::str::from_utf8(body).ok();
    let mut out = Vec::new();
    if let Some(t) = text
        && is_json(t)
    {
        out.push(View::Json);
    }
    if media == "application/x-www-form-urlencoded" {
        out.push(View::Form);
    }
    if media.starts_with("multipart/") && boundary(content_type.unwrap_or("")).is_some() {
        out.push(View::Multipart);
    }
    if text.is_some() {
        out.push(View::Raw);
    }
    out.push(View::Hex);
    out
}

/// Whether `text` is one complete JSON document.
pub fn is_json(text: &str) -> bool {
    !text.trim().is_empty() && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

/// Why `text` is not one JSON document (serde_json's message), or `None` when it is.
pub fn json_error(text: &str) -> Option<String> {
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .err()
        .map(|e| e.to_string())
}

/// Valid JSON text re-indented as [`pretty_json`] does it, as one string: two texts give the
/// same one when they differ only in whitespace.
pub fn pretty_json_text(text: &str) -> String {
    pretty_json(text).into_iter().map(|(_, s)| s).collect()
}

/// What a token of pretty-printed JSON is, for colouring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonToken {
    Key,
    String,
    Number,
    Literal,
    Punct,
    Space,
}

impl JsonToken {
    pub fn class(self) -> &'static str {
        match self {
            JsonToken::Key => "j-key",
            JsonToken::String => "j-str",
            JsonToken::Number => "j-num",
            JsonToken::Literal => "j-lit",
            JsonToken::Punct => "j-punct",
            JsonToken::Space => "",
        }
    }
}

/// Re-indents valid JSON text (two spaces) into coloured tokens, keeping keys in their order and
/// numbers and strings exactly as written. Adjacent tokens of one kind are merged.
pub fn pretty_json(text: &str) -> Vec<(JsonToken, String)> {
    let mut out: Vec<(JsonToken, String)> = Vec::new();
    let push = |out: &mut Vec<(JsonToken, String)>, kind: JsonToken, s: &str| match out.last_mut() {
        Some((k, prev)) if *k == kind => prev.push_str(s),
        _ => out.push((kind, s.to_owned())),
    };
    let chars: Vec<char> = text.chars().collect();
    let mut depth = 0usize;
    let mut i = 0;
    // The open containers, to know whether a `,` is followed by a key.
    let mut stack: Vec<char> = Vec::new();
    // Whether the next string is an object key.
    let mut expect_key = false;
    let newline = |out: &mut Vec<(JsonToken, String)>, depth: usize| {
        let mut s = String::from("\n");
        s.push_str(&"  ".repeat(depth));
        push(out, JsonToken::Space, &s);
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                i += 1;
            }
            '{' | '[' => {
                // Empty container: keep `{}` / `[]` together.
                let mut j = i + 1;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let close = if c == '{' { '}' } else { ']' };
                if j < chars.len() && chars[j] == close {
                    push(&mut out, JsonToken::Punct, &format!("{c}{close}"));
                    i = j + 1;
                    expect_key = false;
                    continue;
                }
                push(&mut out, JsonToken::Punct, &c.to_string());
                stack.push(c);
                depth += 1;
                newline(&mut out, depth);
                expect_key = c == '{';
                i += 1;
            }
            '}' | ']' => {
                stack.pop();
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                push(&mut out, JsonToken::Punct, &c.to_string());
                expect_key = false;
                i += 1;
            }
            ',' => {
                push(&mut out, JsonToken::Punct, ",");
                newline(&mut out, depth);
                expect_key = stack.last() == Some(&'{');
                i += 1;
            }
            ':' => {
                push(&mut out, JsonToken::Punct, ":");
                push(&mut out, JsonToken::Space, " ");
                expect_key = false;
                i += 1;
            }
            '"' => {
                let start = i;
                i += 1;
                while i < chars.len() {
                    match chars[i] {
                        '\\' => i += 2,
                        '"' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
                let s: String = chars[start..i.min(chars.len())].iter().collect();
                let kind = if expect_key {
                    JsonToken::Key
                } else {
                    JsonToken::String
                };
                // Keys and values are separate tokens even when adjacent kinds match.
                out.push((kind, s));
                expect_key = false;
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !matches!(chars[i], ',' | '}' | ']' | ':' | ' ' | '\t' | '\n' | '\r')
                {
                    i += 1;
                }
                let s: String = chars[start..i].iter().collect();
                let kind = if matches!(s.as_str(), "true" | "false" | "null") {
                    JsonToken::Literal
                } else {
                    JsonToken::Number
                };
                out.push((kind, s));
            }
        }
    }
    out
}

/// Decodes `application/x-www-form-urlencoded` text into (name, value) pairs, in order,
/// duplicates kept. Invalid percent-escapes are kept as written.
pub fn form_fields(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// `+` as space and `%XX` escapes, decoded as UTF-8 (lossy).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The query string's parameters, decoded (same rules as a form).
pub fn query_params(query: &str) -> Vec<(String, String)> {
    form_fields(query)
}

/// The `boundary` parameter of a multipart `Content-Type`.
pub fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (k, v) = param.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
            .filter(|b| !b.is_empty())
    })
}

/// One part of a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The part's headers as written.
    pub headers: Vec<(String, String)>,
    /// `name` of its `Content-Disposition`.
    pub name: Option<String>,
    /// `filename` of its `Content-Disposition`.
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Splits a multipart body at its boundary. Parts that are cut off (a truncated body) are
/// returned as far as they go.
pub fn multipart_parts(body: &[u8], boundary: &str) -> Vec<Part> {
    let delim = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let Some(first) = find(body, &delim, 0) else {
        return parts;
    };
    let mut pos = first + delim.len();
    loop {
        // `--` after a delimiter closes the body.
        if body[pos..].starts_with(b"--") {
            break;
        }
        // Skip the line break after the delimiter.
        pos = skip_crlf(body, pos);
        let next = find(body, &delim, pos);
        let end = next.unwrap_or(body.len());
        // The line break before the next delimiter belongs to the delimiter.
        let mut chunk = &body[pos..end];
        if next.is_some() {
            chunk = chunk
                .strip_suffix(b"\r\n")
                .or_else(|| chunk.strip_suffix(b"\n"))
                .unwrap_or(chunk);
        }
        parts.push(parse_part(chunk));
        match next {
            Some(n) => pos = n + delim.len(),
            None => break,
        }
        if pos >= body.len() {
            break;
        }
    }
    parts
}

fn skip_crlf(body: &[u8], pos: usize) -> usize {
    if body[pos..].starts_with(b"\r\n") {
        pos + 2
    } else if body[pos..].starts_with(b"\n") {
        pos + 1
    } else {
        pos
    }
}

fn parse_part(chunk: &[u8]) -> Part {
    let (head, body) = match find(chunk, b"\r\n\r\n", 0) {
        Some(i) => (&chunk[..i], &chunk[i + 4..]),
        None => match find(chunk, b"\n\n", 0) {
            Some(i) => (&chunk[..i], &chunk[i + 2..]),
            None => (chunk, &[][..]),
        },
    };
    let head = String::from_utf8_lossy(head);
    let headers: Vec<(String, String)> = head
        .lines()
        .filter_map(|line| {
            let (k, v) = line.split_once(':')?;
            Some((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let disposition = header("content-disposition").unwrap_or_default();
    Part {
        name: disposition_param(&disposition, "name"),
        filename: disposition_param(&disposition, "filename"),
        content_type: header("content-type"),
        headers,
        body: body.to_vec(),
    }
}

fn disposition_param(disposition: &str, key: &str) -> Option<String> {
    disposition.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Bytes shown by the hex view at most; the whole body is a download away.
pub const HEX_LIMIT: usize = 64 * 1024;

/// A classic hex dump: offset, 16 bytes in hex, the printable ASCII.
pub fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().min(HEX_LIMIT) * 4 + 16);
    for (line, chunk) in bytes[..bytes.len().min(HEX_LIMIT)].chunks(16).enumerate() {
        out.push_str(&format!("{:08x}  ", line * 16));
        for i in 0..16 {
            match chunk.get(i) {
                Some(b) => out.push_str(&format!("{b:02x} ")),
                None => out.push_str("   "),
            }
            if i == 7 {
                out.push(' ');
            }
        }
        out.push(' ');
        out.push('|');
        for b in chunk {
            out.push(if b.is_ascii_graphic() || *b == b' ' {
                *b as char
            } else {
                '.'
            });
        }
        out.push_str("|\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(tokens: &[(JsonToken, String)]) -> String {
        tokens.iter().map(|(_, s)| s.as_str()).collect()
    }

    #[test]
    fn pretty_json_text_sees_through_whitespace_only() {
        let a = pretty_json_text(r#"{"a": [1, 2.0], "b": "x y"}"#);
        assert_eq!(a, pretty_json_text("{\n \"a\":[1,2.0],\"b\":\"x y\"}"));
        assert_eq!(
            a,
            "{\n  \"a\": [\n    1,\n    2.0\n  ],\n  \"b\": \"x y\"\n}"
        );
        assert_ne!(a, pretty_json_text(r#"{"a": [1, 2], "b": "x y"}"#));
        assert_eq!(json_error(" [1] "), None);
        assert!(json_error("{nope").is_some());
    }

    #[test]
    fn pretty_json_keeps_order_and_exact_numbers() {
        let tokens = pretty_json(r#"{"z":1.50,"a":[true,null,"x\"y"],"e":{},"f":[]}"#);
        assert_eq!(
            render(&tokens),
            "{\n  \"z\": 1.50,\n  \"a\": [\n    true,\n    null,\n    \"x\\\"y\"\n  ],\n  \"e\": {},\n  \"f\": []\n}"
        );
        assert!(tokens.contains(&(JsonToken::Key, "\"z\"".into())));
        assert!(tokens.contains(&(JsonToken::Number, "1.50".into())));
        assert!(tokens.contains(&(JsonToken::Literal, "null".into())));
        assert!(tokens.contains(&(JsonToken::String, "\"x\\\"y\"".into())));
    }

    #[test]
    fn views_follow_content() {
        assert_eq!(
            views(Some("application/json"), b"{\"a\":1}"),
            [View::Json, View::Raw, View::Hex]
        );
        assert_eq!(
            views(Some("application/x-www-form-urlencoded"), b"a=1"),
            [View::Form, View::Raw, View::Hex]
        );
        assert_eq!(views(None, &[0xff, 0x00]), [View::Hex]);
        assert_eq!(
            views(Some("multipart/form-data; boundary=xyz"), b"--xyz--"),
            [View::Multipart, View::Raw, View::Hex]
        );
    }

    #[test]
    fn form_fields_decode_in_order_with_duplicates() {
        assert_eq!(
            form_fields("a=1&b=hello+world&a=%3Cscript%3E&c&bad=%zz"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "hello world".into()),
                ("a".into(), "<script>".into()),
                ("c".into(), "".into()),
                ("bad".into(), "%zz".into()),
            ]
        );
        assert_eq!(percent_decode("%E2%9C%93%"), "✓%");
    }

    #[test]
    fn multipart_parts_are_split_with_their_headers() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"field\"\r\n\r\nvalue\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01\r\n--XyZ--\r\n";
        assert_eq!(
            boundary("multipart/form-data; boundary=\"XyZ\"").as_deref(),
            Some("XyZ")
        );
        let parts = multipart_parts(body, "XyZ");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name.as_deref(), Some("field"));
        assert_eq!(parts[0].body, b"value");
        assert_eq!(parts[1].filename.as_deref(), Some("a.bin"));
        assert_eq!(
            parts[1].content_type.as_deref(),
            Some("application/octet-stream")
        );
        assert_eq!(parts[1].body, [0, 1]);
    }

    #[test]
    fn hex_dump_shows_offsets_bytes_and_ascii() {
        let dump = hex_dump(b"Hello\x00\xffworld!!!!!!xyz");
        let mut lines = dump.lines();
        assert_eq!(
            lines.next().unwrap(),
            "00000000  48 65 6c 6c 6f 00 ff 77  6f 72 6c 64 21 21 21 21  |Hello..world!!!!|"
        );
        assert!(
            lines
                .next()
                .unwrap()
                .starts_with("00000010  21 21 78 79 7a ")
        );
    }
}
