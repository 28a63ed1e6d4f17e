//! One attempt: the signed POST, the answer read within bounds, and its [`Verdict`].

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::schedule::parse_retry_after;
use crate::outbound::{self, Outbound, OutboundClient};
use crate::signing::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, SignedHeaders, unix_now};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

/// How much of a request or response body an attempt's log keeps (the rest is cut and
/// flagged): enough to read any webhook payload or error page, bounded so a huge answer cannot
/// fill memory.
pub const LOGGED_BODY_BYTES: usize = 64 * 1024;

/// Former name of [`LOGGED_BODY_BYTES`].
pub const RESPONSE_EXCERPT_BYTES: usize = LOGGED_BODY_BYTES;

/// What one attempt found; the log keeps it as it is (see [`super::log`]) and spells it out
/// for the API only when read.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub started_at: DateTime<Utc>,
    /// The signed headers sent (`content-type` and the three Standard Webhooks ones).
    pub request_headers: HeaderList,
    pub request_body_size: u64,
    /// The body sent, its first [`LOGGED_BODY_BYTES`] (shared with the message when it is no
    /// longer; `request_body_size` is the whole size).
    pub request_body: Bytes,
    pub status: Option<u16>,
    pub duration: Duration,
    pub response_headers: HeaderList,
    /// The answer's first [`LOGGED_BODY_BYTES`]; none when there was no answer.
    pub response_body: Option<Bytes>,
    /// The answer went on past [`LOGGED_BODY_BYTES`].
    pub response_truncated: bool,
    pub error: Option<String>,
    pub retry_after: Option<Duration>,
    pub verdict: Verdict,
}

impl AttemptResult {
    /// The answer's body as text (lossy UTF-8), as the API shows it.
    pub fn response_text(&self) -> Option<String> {
        self.response_body.as_deref().map(lossy)
    }

    /// True when the body sent was longer than the part kept.
    pub fn request_body_truncated(&self) -> bool {
        self.request_body_size > self.request_body.len() as u64
    }
}

/// Text from bytes that are nearly always UTF-8 (JSON, HTTP answers): checked by the fast
/// path, converted byte by byte only when they are not.
pub(crate) fn lossy(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Headers as an attempt's log keeps them: in order, names as the HTTP client gives them, the
/// values copied into one buffer of their own (two allocations whatever the count; a value the
/// client sliced from a connection's read buffer would keep that whole buffer alive).
#[derive(Debug, Clone, Default)]
pub struct HeaderList {
    /// Each name with the end of its value in `values`.
    names: Vec<(HeaderName, usize)>,
    values: Vec<u8>,
}

impl HeaderList {
    pub fn from_map(map: &HeaderMap) -> Self {
        let mut names = Vec::with_capacity(map.len());
        let size = map.iter().map(|(_, v)| v.len()).sum();
        let mut values = Vec::with_capacity(size);
        for (name, value) in map {
            values.extend_from_slice(value.as_bytes());
            names.push((name.clone(), values.len()));
        }
        Self { names, values }
    }

    /// `(name, value)` in order; values are bytes (HTTP allows any, the log shows them lossy).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        let mut start = 0;
        self.names.iter().map(move |(name, end)| {
            let value = &self.values[start..*end];
            start = *end;
            (name.as_str(), value)
        })
    }

    /// The first value of `name` (lower case).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// As the API shows them.
    pub fn to_api(&self) -> Vec<api::Header> {
        self.iter()
            .map(|(name, value)| api::Header {
                name: name.to_owned(),
                value: lossy(value),
            })
            .collect()
    }
}

/// What an attempt means for its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx.
    Delivered,
    /// Network error, timeout, 408, 429 or 5xx: worth another try.
    Retry,
    /// 410 Gone: the receiver asks us to stop; the webhook gets disabled.
    Gone,
    /// Any other answer (3xx, 4xx): retrying would get the same answer.
    Fail,
}

fn verdict_for(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        408 | 429 | 500..=599 => Verdict::Retry,
        410 => Verdict::Gone,
        _ => Verdict::Fail,
    }
}

fn status_error(status: u16) -> String {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    match status {
        300..=399 => format!("HTTP {status} {reason}: redirects are not followed"),
        _ => format!("HTTP {status} {reason}").trim_end().to_owned(),
    }
}

/// The sender CLI's HTTP client (`sender send`, a local tool: unrestricted, system proxies
/// honoured): timeouts set, redirects never followed (a redirect is a failure per Standard
/// Webhooks). The engine uses an [`OutboundClient`] instead, which adds the outbound policy.
pub fn http_client(connect_timeout: Duration, user_agent: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .user_agent(user_agent)
        .build()
        .expect("the TLS backend initialises")
}

/// The engine's HTTP clients: [`http_client`]'s settings, under the outbound policy.
pub fn checked_client(
    outbound: &Outbound,
    connect_timeout: Duration,
    user_agent: &str,
) -> OutboundClient {
    outbound.client(|b| b.connect_timeout(connect_timeout).user_agent(user_agent))
}

/// Describes a transport error with its causes ("connection refused", "operation timed out").
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {} ms", timeout.as_millis());
    }
    let kind = if e.is_connect() {
        "connection failed"
    } else if e.is_request() || e.is_body() {
        "request failed"
    } else {
        "error"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        // hyper-util's "client error (Connect)" only repeats the kind.
        if !text.contains(&s_text) && !s_text.starts_with("client error (") {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    if text == kind {
        text = format!("{kind}: {e}");
    }
    text
}

/// Sends one signed POST and reads at most [`LOGGED_BODY_BYTES`] of the answer
/// (unrestricted: the CLI's direct send).
pub async fn send_attempt(
    client: &reqwest::Client,
    timeout: Duration,
    url: &str,
    secrets: &[&crate::signing::Secret],
    message_id: &str,
    body: Bytes,
) -> AttemptResult {
    attempt(client.post(url), timeout, secrets, message_id, body).await
}

/// [`send_attempt`] under the outbound policy: a refused target is an attempt that failed
/// (verdict [`Verdict::Fail`]: the policy will refuse it again, so it is not retried), with the
/// refusal, naming the address and the policy, as its error. The body is signed with every
/// secret given (a webhook's current one and, during a rotation's grace period, the previous).
pub async fn send_checked(
    client: &OutboundClient,
    timeout: Duration,
    url: &str,
    secrets: &[&crate::signing::Secret],
    message_id: &str,
    body: Bytes,
) -> AttemptResult {
    // Saved URLs were parsed when saved, so a parse error cannot happen here; it would fail
    // the same way every time.
    match reqwest::Url::parse(url) {
        Ok(parsed) => send_checked_url(client, timeout, &parsed, secrets, message_id, body).await,
        Err(e) => refused(
            format!("url {url:?} is not a URL: {e}"),
            secrets,
            message_id,
            &body,
        ),
    }
}

/// [`send_checked`] to a URL parsed already (the engine parses a webhook's URL once, not once
/// per attempt).
pub async fn send_checked_url(
    client: &OutboundClient,
    timeout: Duration,
    url: &reqwest::Url,
    secrets: &[&crate::signing::Secret],
    message_id: &str,
    body: Bytes,
) -> AttemptResult {
    match client.prepare(url.clone()).await {
        Ok(prepared) => {
            let request = prepared.request(reqwest::Method::POST);
            attempt(request, timeout, secrets, message_id, body).await
        }
        Err(e) => refused(e.to_string(), secrets, message_id, &body),
    }
}

/// An attempt that never went out: `error` says why, and it is not retried.
fn refused(
    error: String,
    secrets: &[&crate::signing::Secret],
    message_id: &str,
    body: &Bytes,
) -> AttemptResult {
    let (mut result, _) = attempt_result(secrets, message_id, body);
    result.error = Some(error);
    result.verdict = Verdict::Fail;
    result
}

/// The start of an attempt's record (when, what it sends) and the headers to send; no headers
/// when the message id cannot be a header value (the record then says so, verdict
/// [`Verdict::Fail`]: it would fail the same way again).
fn attempt_result(
    secrets: &[&crate::signing::Secret],
    message_id: &str,
    body: &Bytes,
) -> (AttemptResult, Option<HeaderMap>) {
    let kept = if body.len() > LOGGED_BODY_BYTES {
        // Not a slice of the message: the log's bound holds after the message is gone.
        Bytes::copy_from_slice(&body[..LOGGED_BODY_BYTES])
    } else {
        body.clone()
    };
    let mut result = AttemptResult {
        started_at: Utc::now(),
        request_headers: HeaderList::default(),
        request_body_size: body.len() as u64,
        request_body: kept,
        status: None,
        duration: Duration::ZERO,
        response_headers: HeaderList::default(),
        response_body: None,
        response_truncated: false,
        error: None,
        retry_after: None,
        verdict: Verdict::Retry,
    };
    match signed_headers(secrets, message_id, body) {
        Ok(headers) => {
            result.request_headers = HeaderList::from_map(&headers);
            (result, Some(headers))
        }
        Err(e) => {
            result.error = Some(e);
            result.verdict = Verdict::Fail;
            (result, None)
        }
    }
}

const WEBHOOK_ID: HeaderName = HeaderName::from_static(HEADER_ID);
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static(HEADER_TIMESTAMP);
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static(HEADER_SIGNATURE);

/// `content-type` and the signed Standard Webhooks headers, in that order.
fn signed_headers(
    secrets: &[&crate::signing::Secret],
    message_id: &str,
    body: &Bytes,
) -> Result<HeaderMap, String> {
    let signed = SignedHeaders::new(secrets, message_id, unix_now(), body);
    let bad = |e: reqwest::header::InvalidHeaderValue| format!("request failed: {e}");
    let mut headers = HeaderMap::with_capacity(4);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(WEBHOOK_ID, HeaderValue::from_str(&signed.id).map_err(bad)?);
    headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(signed.timestamp));
    headers.insert(
        WEBHOOK_SIGNATURE,
        HeaderValue::try_from(signed.signature).map_err(bad)?,
    );
    Ok(headers)
}

async fn attempt(
    request: reqwest::RequestBuilder,
    timeout: Duration,
    secrets: &[&crate::signing::Secret],
    message_id: &str,
    body: Bytes,
) -> AttemptResult {
    let (mut result, headers) = attempt_result(secrets, message_id, &body);
    let Some(headers) = headers else {
        return result;
    };
    let request = request.timeout(timeout).headers(headers);
    let start = Instant::now();
    match request.body(body).send().await {
        Err(e) => match outbound::refusal(&e) {
            Some(refused) => {
                result.error = Some(refused.to_string());
                result.verdict = Verdict::Fail;
            }
            None => result.error = Some(describe(&e, timeout)),
        },
        Ok(mut response) => {
            let status = response.status().as_u16();
            result.status = Some(status);
            result.verdict = verdict_for(status);
            result.retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, Utc::now()));
            result.response_headers = HeaderList::from_map(response.headers());
            let mut excerpt: Vec<u8> = Vec::new();
            let mut body_error = None;
            loop {
                match response.chunk().await {
                    Ok(Some(chunk)) if excerpt.len() >= LOGGED_BODY_BYTES => {
                        // Full, and the answer goes on.
                        result.response_truncated |= !chunk.is_empty();
                        break;
                    }
                    Ok(Some(chunk)) => {
                        let room = LOGGED_BODY_BYTES - excerpt.len();
                        excerpt.extend_from_slice(&chunk[..chunk.len().min(room)]);
                        if chunk.len() > room {
                            result.response_truncated = true;
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        body_error = Some(describe(&e, timeout));
                        break;
                    }
                }
            }
            result.response_body = Some(Bytes::from(excerpt));
            if result.verdict != Verdict::Delivered {
                result.error = Some(status_error(status));
            } else if let Some(e) = body_error {
                // The 2xx status counts; an answer cut short afterwards is noted, not failed.
                result.error = Some(format!("delivered, but reading the answer failed: {e}"));
            }
        }
    }
    result.duration = start.elapsed();
    result
}

/// Wraps a payload in the webhook's envelope.
///
/// The payload's JSON text goes out byte for byte (`flat`), or byte for byte as `data`
/// (`standard`): keys keep their order and numbers their spelling.
pub fn message_body(
    envelope: api::Envelope,
    event: &str,
    payload: &serde_json::value::RawValue,
    at: DateTime<Utc>,
) -> Bytes {
    match envelope {
        api::Envelope::Flat => Bytes::copy_from_slice(payload.get().as_bytes()),
        api::Envelope::Standard => {
            let text = |s: &str| serde_json::to_string(s).expect("a string serialises");
            Bytes::from(format!(
                r#"{{"type":{},"timestamp":{},"data":{}}}"#,
                text(event),
                text(&crate::rfc3339(at)),
                payload.get()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_spec() {
        assert_eq!(verdict_for(204), Verdict::Delivered);
        for s in [408, 429, 500, 502, 503, 504] {
            assert_eq!(verdict_for(s), Verdict::Retry, "{s}");
        }
        assert_eq!(verdict_for(410), Verdict::Gone);
        for s in [301, 302, 400, 401, 404, 422] {
            assert_eq!(verdict_for(s), Verdict::Fail, "{s}");
        }
        assert_eq!(
            status_error(302),
            "HTTP 302 Found: redirects are not followed"
        );
        assert_eq!(status_error(503), "HTTP 503 Service Unavailable");
    }

    #[test]
    fn envelopes_shape_the_body() {
        let payload =
            serde_json::value::RawValue::from_string(r#"{"z":1, "a":1.50}"#.into()).unwrap();
        let at = Utc::now();
        let flat = message_body(api::Envelope::Flat, "payment_received", &payload, at);
        assert_eq!(&flat[..], br#"{"z":1, "a":1.50}"#);
        let std = message_body(api::Envelope::Standard, "payment_received", &payload, at);
        assert_eq!(
            std::str::from_utf8(&std).unwrap(),
            format!(
                r#"{{"type":"payment_received","timestamp":"{}","data":{{"z":1, "a":1.50}}}}"#,
                crate::rfc3339(at)
            )
        );
        let v: serde_json::Value = serde_json::from_slice(&std).unwrap();
        assert_eq!(v["type"], "payment_received");
    }
}
