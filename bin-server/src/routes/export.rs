//! Getting captured requests out: a whole bin as HAR 1.2 or NDJSON, one request as a curl
//! command that replays it byte-exact.
//!
//! - `GET /api/bins/{bin}/export?format=har|ndjson` (default `ndjson`): oldest first, streamed
//!   (a full bin is never rendered into one buffer). NDJSON lines are the requests as
//!   `GET .../requests/{id}` returns them. HAR is what browsers' DevTools import: bodies that are
//!   not UTF-8 are given as base64 with `"_encoding": "base64"` in `postData`; the response is
//!   the bin's configured status (413 for truncated requests), as HAR needs one.
//! - `GET /api/bins/{bin}/requests/{id}/curl[?url=...]`: a POSIX shell command; the body is
//!   written by `printf` (octal escapes, so any byte, NUL included, survives) into
//!   `curl --data-binary @-`. Without `url` it replays to the request's own capture URL; with
//!   it, to `url` plus the captured path below the bin and query (as replay does). curl's own
//!   default headers that the original lacked (`User-Agent`, `Accept`, `Content-Type`,
//!   `Expect`) are switched off.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use futures_util::stream;
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::error::ApiError;
use crate::routes::{BaseUrl, request_out};
use crate::store::{CapturedRequest, PageQuery, RequestFilter};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/bins/{bin}/export", get(export))
        .route("/api/bins/{bin}/requests/{id}/curl", get(curl))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// `ndjson` (default) or `har`.
    format: Option<String>,
}

/// The URL a request was captured at.
fn capture_url(base: &BaseUrl, bin: &str, r: &CapturedRequest) -> String {
    let mut url = base.capture_url(bin);
    if r.path() != "/" {
        url.push_str(r.path());
    }
    if let Some(q) = r.query() {
        url.push('?');
        url.push_str(q);
    }
    url
}

#[utoipa::path(get, path = "/api/bins/{bin}/export", tag = "ci", params(("bin" = String, Path, description = "The bin's name", example = "fuzz"), ExportParams),
    responses(
        (status = 200, description = "NDJSON (one request per line) or HAR 1.2", content_type = "application/x-ndjson"),
        (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
async fn export(
    State(state): State<AppState>,
    Path(bin): Path<String>,
    base: BaseUrl,
    params: Result<Query<ExportParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let format = p.format.as_deref().unwrap_or("ndjson");
    let snapshot = state.store.get_bin(&bin).await?;
    let page = state
        .store
        .requests(
            &bin,
            &PageQuery {
                limit: usize::MAX,
                before: None,
                after: None,
                filter: RequestFilter::default(),
            },
        )
        .await?;
    // Oldest first.
    let requests: Vec<Arc<CapturedRequest>> = page.requests.into_iter().rev().collect();
    let (content_type, ext, body) = match format {
        "ndjson" => {
            let chunks = requests.into_iter().map(move |r| {
                let mut line =
                    serde_json::to_vec(&request_out(&bin, &r, true)).expect("wire types serialize");
                line.push(b'\n');
                Ok::<_, std::convert::Infallible>(Bytes::from(line))
            });
            (
                "application/x-ndjson",
                "ndjson",
                Body::from_stream(stream::iter(chunks)),
            )
        }
        "har" => {
            let status = snapshot.settings.response.status;
            let head = serde_json::to_string(&json!({
                "version": "1.2",
                "creator": {"name": "Hookbin", "version": env!("CARGO_PKG_VERSION")},
            }))
            .expect("static JSON");
            // `{"log":{...,"entries":[` + entries + `]}}`, streamed one entry at a time.
            let open = format!("{{\"log\":{},\"entries\":[", &head[..head.len() - 1]);
            let bin_name = bin.clone();
            let entries = requests.into_iter().enumerate().map(move |(i, r)| {
                let mut chunk = if i == 0 { Vec::new() } else { b",".to_vec() };
                let entry = har_entry(&base, &bin_name, &r, status);
                serde_json::to_writer(&mut chunk, &entry).expect("JSON values serialize");
                Ok::<_, std::convert::Infallible>(Bytes::from(chunk))
            });
            let chunks = std::iter::once(Ok(Bytes::from(open)))
                .chain(entries)
                .chain(std::iter::once(Ok(Bytes::from_static(b"]}}"))));
            (
                "application/json",
                "har",
                Body::from_stream(stream::iter(chunks)),
            )
        }
        other => {
            return Err(ApiError::bad_request(
                "invalid_format",
                format!("format={other:?} is not known: use har or ndjson"),
            ));
        }
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) =
        HeaderValue::from_str(&format!("attachment; filename=\"{}.{ext}\"", snapshot.name))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

fn har_entry(base: &BaseUrl, bin: &str, r: &CapturedRequest, status: u16) -> serde_json::Value {
    let headers: Vec<_> = r
        .headers()
        .map(|(n, v)| {
            json!({
                "name": String::from_utf8_lossy(n),
                "value": String::from_utf8_lossy(v),
            })
        })
        .collect();
    let query: Vec<_> = r
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            json!({"name": n, "value": v})
        })
        .collect();
    let mut request = json!({
        "method": r.method(),
        "url": capture_url(base, bin, r),
        "httpVersion": "HTTP/1.1",
        "cookies": [],
        "headers": headers,
        "queryString": query,
        "headersSize": -1,
        "bodySize": r.body().len(),
    });
    if !r.body().is_empty() {
        let mime = r.content_type().unwrap_or("application/octet-stream");
        request["postData"] = match std::str::from_utf8(r.body()) {
            Ok(text) => json!({"mimeType": mime, "text": text, "params": []}),
            Err(_) => json!({
                "mimeType": mime,
                "text": base64::engine::general_purpose::STANDARD.encode(r.body()),
                "params": [],
                "_encoding": "base64",
            }),
        };
    }
    let status = if r.truncated() { 413 } else { status };
    json!({
        "startedDateTime": r.received_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "time": 0,
        "request": request,
        "response": {
            "status": status,
            "statusText": "",
            "httpVersion": "HTTP/1.1",
            "cookies": [],
            "headers": [],
            "content": {"size": 0, "mimeType": "x-unknown"},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": -1,
        },
        "cache": {},
        "timings": {"send": 0, "wait": 0, "receive": 0},
        "_hookbin": {
            "id": r.id.to_string(),
            "seq": r.seq,
            "truncated": r.truncated(),
            "headers_exact": r.headers_exact(),
            "remote_addr": r.remote_addr.to_string(),
        },
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CurlParams {
    /// Send to this URL (plus the request's path below the bin) instead of the capture URL.
    url: Option<String>,
}

#[utoipa::path(get, path = "/api/bins/{bin}/requests/{id}/curl", tag = "ci", params(("bin" = String, Path, description = "The bin's name", example = "fuzz"), ("id" = String, Path, description = "A request id (UUID) or sequence number", example = "1"), CurlParams),
    responses(
        (status = 200, description = "A shell script that replays the request byte-exact with curl", content_type = "text/plain"),
        (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
async fn curl(
    State(state): State<AppState>,
    Path((bin, id)): Path<(String, String)>,
    base: BaseUrl,
    params: Result<Query<CurlParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let r = state.store.request(&bin, &id).await?;
    let url = match p.url {
        None => capture_url(&base, &bin, &r),
        Some(u) => crate::replay::target_url(&u, r.path(), r.query(), true)
            .map_err(|e| ApiError::bad_request("invalid_url", e))?
            .to_string(),
    };
    let mut resp = curl_command(&r, &url).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(resp)
}

/// Single-quotes `s` for a POSIX shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A `printf` format that prints exactly `bytes`: printable ASCII as is, `%` and `\` escaped,
/// anything else as a three-digit octal escape (three digits always, so a following digit is
/// never read as part of it). A leading `-` is escaped too: `printf` would read a format such
/// as `--boundary` (every multipart body) or `-n` as an option, print nothing and let curl send
/// an empty body (`--` is no remedy: dash's and bash's `printf` builtins disagree on it).
fn printf_format(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() + 2);
    s.push('\'');
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'-' if i == 0 => s.push_str(r"\055"),
            b'%' => s.push_str("%%"),
            b'\\' => s.push_str(r"\\"),
            b'\'' => s.push_str(r"'\''"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\{b:03o}");
            }
        }
    }
    s.push('\'');
    s
}

/// The shell command that replays `r` to `url` with curl.
pub fn curl_command(r: &CapturedRequest, url: &str) -> String {
    let body = r.body();
    let has = |name: &str| r.header(name).is_some();
    let sends_body = !body.is_empty() || has("content-length") || has("transfer-encoding");
    let mut cmd = String::new();
    if !body.is_empty() {
        cmd.push_str("printf ");
        cmd.push_str(&printf_format(body));
        cmd.push_str(" | ");
    }
    cmd.push_str("curl --globoff --path-as-is");
    if r.method() == "HEAD" {
        cmd.push_str(" --head");
    } else {
        cmd.push_str(" -X ");
        cmd.push_str(&sh_quote(r.method()));
    }
    cmd.push(' ');
    cmd.push_str(&sh_quote(url));
    for (name, value) in r.headers() {
        if crate::replay::is_not_forwarded(name) {
            continue;
        }
        let name = String::from_utf8_lossy(name);
        let value = String::from_utf8_lossy(value);
        // `Name;` is curl's way to send a header with an empty value.
        let h = if value.is_empty() {
            format!("{name};")
        } else {
            format!("{name}: {value}")
        };
        cmd.push_str(" \\\n  -H ");
        cmd.push_str(&sh_quote(&h));
    }
    // Switch off what curl would add on its own.
    let mut off = vec![];
    if !has("user-agent") {
        off.push("User-Agent:");
    }
    if !has("accept") {
        off.push("Accept:");
    }
    if sends_body {
        if !has("content-type") {
            off.push("Content-Type:");
        }
        off.push("Expect:");
    }
    for h in off {
        cmd.push_str(" \\\n  -H ");
        cmd.push_str(&sh_quote(h));
    }
    if !body.is_empty() {
        cmd.push_str(" \\\n  --data-binary @-");
    } else if sends_body {
        cmd.push_str(" \\\n  --data-binary ''");
    }
    cmd.push('\n');
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printf_escapes_everything_risky() {
        assert_eq!(printf_format(b"a%b\\c'd"), r"'a%%b\\c'\''d'");
        assert_eq!(printf_format(&[0, b'1', 10, 255]), r"'\0001\012\377'");
        assert_eq!(printf_format(b"--b-"), r"'\055-b-'");
    }

    #[test]
    fn quotes() {
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }
}
