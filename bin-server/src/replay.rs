//! # Replay: sending a captured request again
//!
//! Used by `POST /api/bins/{bin}/requests/{id}/replay` (the server sends) and by
//! `bin-server forward` (the CLI sends, to a URL only it can reach). The body goes out
//! byte-exact; so do the method, the query and the headers, except the hop-by-hop ones and those
//! the HTTP client must compute itself (`Host`, `Content-Length`, `Transfer-Encoding`, ...).
//! Header names go out lower-case (the HTTP client normalises them; HTTP says case does not
//! matter, and HTTP/2 requires lower case).
//!
//! The route's replays obey the server's outbound policy ([`send_checked`]); `forward`'s do
//! not ([`send`]): they leave the user's machine toward the user's own app.

use std::time::{Duration, Instant};

use api::error_chain;
use reqwest::Url;

/// How long one replayed request may take before it is reported as failed.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of the target's answer kept in the outcome: enough to read an error message.
pub const EXCERPT_BYTES: usize = 4096;

/// Headers a proxy must not forward (RFC 9110 §7.6.1) plus those the client recomputes.
const NOT_FORWARDED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
];

/// Whether a header is left out of replays.
pub fn is_not_forwarded(name: &[u8]) -> bool {
    NOT_FORWARDED
        .iter()
        .any(|h| h.as_bytes().eq_ignore_ascii_case(name))
}

/// The replay route's HTTP client: under the server's outbound policy (see
/// [`sender::outbound`]), with no user agent of its own (the captured headers go out as they
/// came). `bin-server forward` builds its own, unrestricted one: it runs on the user's machine
/// toward their own app.
pub fn checked_client(outbound: &sender::Outbound) -> sender::outbound::OutboundClient {
    outbound.client(|b| b.timeout(TIMEOUT))
}

/// The URL a captured request is replayed to: `base`, then the captured path below the bin
/// (when `append_path` and it is not just `/`), then the captured query (after any query
/// `base` has).
pub fn target_url(
    base: &str,
    path: &str,
    query: Option<&str>,
    append_path: bool,
) -> Result<Url, String> {
    let parsed = Url::parse(base).map_err(|e| format!("url {base:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("url {base:?} must be http:// or https://"));
    }
    let (head, base_query) = match base.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (base, None),
    };
    let mut url = head.to_owned();
    if append_path && path != "/" && !path.is_empty() {
        url = format!("{}{path}", url.trim_end_matches('/'));
    }
    let query = match (base_query, query) {
        (Some(a), Some(b)) if !a.is_empty() => Some(format!("{a}&{b}")),
        (Some(a), None) => Some(a.to_owned()),
        (_, Some(b)) => Some(b.to_owned()),
        (None, None) => None,
    };
    if let Some(q) = query {
        url.push('?');
        url.push_str(&q);
    }
    Url::parse(&url).map_err(|e| format!("{url:?} is not a URL: {e}"))
}

/// Sends one request and reports what happened (never an `Err`: a failure is an outcome).
/// Unrestricted: `bin-server forward`'s replay on the user's machine.
pub async fn send<'h>(
    client: &reqwest::Client,
    url: Url,
    method: &str,
    headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
    body: Vec<u8>,
) -> api::ReplayOut {
    let shown = url.to_string();
    exchange(
        shown,
        |m| client.request(m, url),
        method,
        headers,
        body,
        Instant::now(),
    )
    .await
}

/// [`send`] under the outbound policy: a refused target (checked here, and on its addresses
/// when connecting) is an outcome whose `error` names the address and the policy.
pub async fn send_checked<'h>(
    client: &sender::outbound::OutboundClient,
    url: Url,
    method: &str,
    headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
    body: Vec<u8>,
) -> api::ReplayOut {
    let started = Instant::now();
    let shown = url.to_string();
    match client.prepare(url).await {
        Ok(prepared) => {
            exchange(
                shown,
                |m| prepared.request(m),
                method,
                headers,
                body,
                started,
            )
            .await
        }
        Err(refused) => api::ReplayOut {
            url: shown,
            status: None,
            duration_ms: started.elapsed().as_millis() as u64,
            response_excerpt: None,
            error: Some(refused.to_string()),
        },
    }
}

async fn exchange<'h>(
    shown: String,
    request: impl FnOnce(reqwest::Method) -> reqwest::RequestBuilder,
    method: &str,
    headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
    body: Vec<u8>,
    started: Instant,
) -> api::ReplayOut {
    let fail = |error: String, started: Instant| api::ReplayOut {
        url: shown.clone(),
        status: None,
        duration_ms: started.elapsed().as_millis() as u64,
        response_excerpt: None,
        error: Some(error),
    };
    let method = match reqwest::Method::from_bytes(method.as_bytes()) {
        Ok(m) => m,
        Err(_) => return fail(format!("{method:?} is not an HTTP method"), started),
    };
    let mut out = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        if is_not_forwarded(name) {
            continue;
        }
        // Captured headers came through an HTTP parser, so they are valid; skip any that is not.
        if let (Ok(n), Ok(v)) = (
            reqwest::header::HeaderName::from_bytes(name),
            reqwest::header::HeaderValue::from_bytes(value),
        ) {
            out.append(n, v);
        }
    }
    let sent = request(method).headers(out).body(body).send().await;
    let mut response = match sent {
        Ok(r) => r,
        Err(e) => {
            let error = match sender::outbound::refusal(&e) {
                Some(refused) => refused.to_string(),
                None => error_chain(&e),
            };
            return fail(error, started);
        }
    };
    let status = response.status().as_u16();
    // Read only the excerpt: a huge answer costs neither memory nor time here.
    let mut excerpt = Vec::new();
    while excerpt.len() < EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = EXCERPT_BYTES - excerpt.len();
                excerpt.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    api::ReplayOut {
        url: shown.clone(),
        status: Some(status),
        duration_ms: started.elapsed().as_millis() as u64,
        response_excerpt: Some(String::from_utf8_lossy(&excerpt).into_owned()),
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_urls() {
        let u = |b, p, q, a| target_url(b, p, q, a).unwrap().to_string();
        assert_eq!(
            u("http://localhost:3000/hook", "/", None, true),
            "http://localhost:3000/hook"
        );
        assert_eq!(
            u("http://localhost:3000/hook/", "/gh/push", Some("a=1"), true),
            "http://localhost:3000/hook/gh/push?a=1"
        );
        assert_eq!(
            u("http://h/x?k=v", "/p", Some("a=%20"), false),
            "http://h/x?k=v&a=%20"
        );
        assert_eq!(u("http://h", "/", Some(""), true), "http://h/?");
        assert!(target_url("ftp://h", "/", None, true).is_err());
        assert!(target_url("not a url", "/", None, true).is_err());
    }

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        assert!(is_not_forwarded(b"Transfer-Encoding"));
        assert!(is_not_forwarded(b"HOST"));
        assert!(!is_not_forwarded(b"X-Hub-Signature-256"));
    }
}
