//! "Copy as cURL": a shell command that replays a captured request byte-exact.

use api::{BodyEncoding, CapturedRequestOut};

/// Headers curl computes itself, or that describe the connection the request came on.
const SKIPPED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

/// Quotes `s` for a POSIX shell: single quotes, with `'` written as `'\''`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The URL the request was sent to: the bin's capture URL, the path below it and the raw query.
pub fn request_url(capture_url: &str, req: &CapturedRequestOut) -> String {
    let mut url = capture_url.trim_end_matches('/').to_owned();
    if req.path != "/" || capture_url.ends_with('/') {
        url.push_str(&req.path);
    }
    if let Some(q) = &req.query {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// A curl command sending the same method, headers (in order, duplicates kept) and body bytes to
/// the same URL. A body that is not UTF-8 is piped in from base64 so no byte changes.
pub fn command(capture_url: &str, req: &CapturedRequestOut) -> String {
    let mut parts = vec!["curl".to_owned()];
    if req.method != "GET" || req.body.as_deref().is_some_and(|b| !b.is_empty()) {
        parts.push(format!("-X {}", shell_quote(&req.method)));
    }
    parts.push(shell_quote(&request_url(capture_url, req)));
    for h in &req.headers {
        if SKIPPED_HEADERS.contains(&h.name.to_ascii_lowercase().as_str()) {
            continue;
        }
        parts.push(format!(
            "-H {}",
            shell_quote(&format!("{}: {}", h.name, h.value))
        ));
    }
    let body = req.body.as_deref().unwrap_or("");
    let mut prefix = String::new();
    if !body.is_empty() {
        match req.body_encoding {
            // curl reads `--data-binary @name` as a file to send: such a body is piped in.
            BodyEncoding::Utf8 if body.starts_with('@') => {
                prefix = format!("printf %s {} | ", shell_quote(body));
                parts.push("--data-binary @-".to_owned());
            }
            BodyEncoding::Utf8 => parts.push(format!("--data-binary {}", shell_quote(body))),
            BodyEncoding::Base64 => {
                prefix = format!("printf %s {} | base64 -d | ", shell_quote(body));
                parts.push("--data-binary @-".to_owned());
            }
        }
    }
    format!("{prefix}{}", parts.join(" \\\n  "))
}

/// The example shown next to a capture URL.
pub fn example(capture_url: &str) -> String {
    format!(
        "curl -X POST {} -H 'Content-Type: application/json' -d '{{\"hello\": \"world\"}}'",
        shell_quote(capture_url)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::Header;

    fn req(body: &str, encoding: BodyEncoding) -> CapturedRequestOut {
        CapturedRequestOut {
            id: "r1".into(),
            bin: "ci".into(),
            seq: 1,
            received_at: "2026-01-01T00:00:00.000000Z".into(),
            method: "POST".into(),
            path: "/hooks/it's".into(),
            query: Some("a=1&b=2".into()),
            headers: vec![
                Header {
                    name: "Host".into(),
                    value: "x".into(),
                },
                Header {
                    name: "X-Dup".into(),
                    value: "1".into(),
                },
                Header {
                    name: "X-Dup".into(),
                    value: "it's 2".into(),
                },
                Header {
                    name: "Content-Length".into(),
                    value: "5".into(),
                },
            ],
            headers_exact: true,
            content_type: None,
            body: Some(body.into()),
            body_encoding: encoding,
            body_size: 5,
            truncated: false,
            remote_addr: "127.0.0.1:1".into(),
            validation: None,
            signature: None,
        }
    }

    #[test]
    fn quotes_everything_and_keeps_duplicate_headers() {
        let cmd = command("http://h/b/ci", &req("{'a'}", BodyEncoding::Utf8));
        assert_eq!(
            cmd,
            "curl \\\n  -X 'POST' \\\n  'http://h/b/ci/hooks/it'\\''s?a=1&b=2' \\\n  -H 'X-Dup: 1' \\\n  -H 'X-Dup: it'\\''s 2' \\\n  --data-binary '{'\\''a'\\''}'"
        );
    }

    #[test]
    fn binary_bodies_are_piped_from_base64() {
        let cmd = command("http://h/b/ci", &req("AAH/", BodyEncoding::Base64));
        assert!(
            cmd.starts_with("printf %s 'AAH/' | base64 -d | curl"),
            "{cmd}"
        );
        assert!(cmd.ends_with("--data-binary @-"), "{cmd}");
    }

    #[test]
    fn a_body_beginning_with_an_at_sign_is_piped_not_read_as_a_file() {
        let cmd = command("http://h/b/ci", &req("@/etc/passwd", BodyEncoding::Utf8));
        assert!(cmd.starts_with("printf %s '@/etc/passwd' | curl"), "{cmd}");
        assert!(cmd.ends_with("--data-binary @-"), "{cmd}");
        assert!(!cmd.contains("--data-binary '@"), "{cmd}");
    }

    #[test]
    fn the_bin_itself_has_no_trailing_path() {
        let mut r = req("", BodyEncoding::Utf8);
        r.path = "/".into();
        r.query = None;
        assert_eq!(request_url("http://h/b/ci", &r), "http://h/b/ci");
    }
}
