//! # HTTP routes
//!
//! One module per resource, each exporting `router()`; this module merges them and holds the
//! conversions from store types to the wire types of the `api` crate.

pub mod auth;
pub mod bins;
pub mod capture;
pub mod checks;
pub mod export;
pub mod health;
pub mod openapi;
pub mod origin;
pub mod replay;
pub mod requests;
pub mod smee;
pub mod stream;
pub mod wait;
pub mod webhooks;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};

use crate::AppState;
use crate::store::{BinSnapshot, CapturedRequest};

/// All routes, without state. Their errors are the JSON error body, axum's own rejections
/// included ([`crate::error::json_rejections`]); [`crate::app`] puts the origin guard
/// ([`origin::guard`]) in front.
pub fn router() -> Router<AppState> {
    let routes = Router::new()
        .merge(bins::router())
        .merge(requests::router())
        .merge(stream::router())
        .merge(wait::router())
        .merge(export::router())
        .merge(replay::router())
        .merge(smee::router())
        .merge(health::router())
        .merge(webhooks::router())
        .merge(auth::router())
        .merge(openapi::router())
        // One log line per API call (method, path, status, latency) at `info`. A route layer:
        // captures (the fallback, and the fast path that skips this router) are not logged, so
        // they pay nothing for it.
        .route_layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO))
                .on_request(())
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .fallback(capture::fallback);
    crate::error::json_rejections(routes)
}

/// The base capture URLs are built on: `--capture-url`, else `--public-url`, else the bound
/// address (the rule and its exceptions: [`origin`]). Never a name only the `Host` header gave.
#[derive(Debug, Clone)]
pub struct BaseUrl(pub String);

impl FromRequestParts<AppState> for BaseUrl {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let site = origin::site_of(parts, state);
        let host = origin::request_host(&parts.headers, &parts.uri);
        Ok(Self(site.capture_base(host)))
    }
}

impl BaseUrl {
    pub fn capture_url(&self, bin: &str) -> String {
        format!("{}/b/{bin}", self.0)
    }
}

pub fn bin_out(b: BinSnapshot, base: &BaseUrl) -> api::BinOut {
    api::BinOut {
        url: base.capture_url(b.name.as_str()),
        id: b.name.to_string(),
        created_at: rfc3339(b.created_at),
        last_activity: rfc3339(b.last_activity),
        request_count: b.request_count,
        total_captured: b.total_captured,
        bytes_stored: b.bytes_stored,
        evicted: b.evicted,
        response: b.settings.response,
        limits: api::BinLimits {
            max_requests: b.max_requests,
            max_body_bytes: b.max_body_bytes,
        },
        schema: b.settings.schema,
        signature_scheme: b.settings.signature.map(|(scheme, _)| scheme),
        token: None,
    }
}

/// A captured request on the wire; `with_body` false gives the summary used by lists.
pub fn request_out(bin: &str, r: &CapturedRequest, with_body: bool) -> api::CapturedRequestOut {
    let (body, body_encoding) = match std::str::from_utf8(r.body()) {
        Ok(text) => (with_body.then(|| text.to_owned()), api::BodyEncoding::Utf8),
        Err(_) => (
            with_body.then(|| base64::engine::general_purpose::STANDARD.encode(r.body())),
            api::BodyEncoding::Base64,
        ),
    };
    api::CapturedRequestOut {
        id: r.id.to_string(),
        bin: bin.to_owned(),
        seq: r.seq,
        received_at: rfc3339(r.received_at),
        method: r.method().to_owned(),
        path: r.path().to_owned(),
        query: r.query().map(str::to_owned),
        headers: r
            .headers()
            .map(|(n, v)| api::Header {
                name: String::from_utf8_lossy(n).into_owned(),
                value: String::from_utf8_lossy(v).into_owned(),
            })
            .collect(),
        headers_exact: r.headers_exact(),
        content_type: r.content_type().map(str::to_owned),
        body,
        body_encoding,
        body_size: r.body().len() as u64,
        truncated: r.truncated(),
        remote_addr: r.remote_addr.to_string(),
        validation: r.validation.as_deref().cloned(),
        signature: r.signature.as_deref().cloned(),
    }
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-11-27T20:42:03.123456Z`.
pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use crate::store::StoreLimits;
    use crate::{AppState, ServerConfig, app};

    async fn call(state: &AppState, req: Request<Body>) -> (StatusCode, serde_json::Value) {
        let resp = app(state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[tokio::test]
    async fn capture_without_a_connection_tap_falls_back_to_the_header_map() {
        let state = AppState::new(StoreLimits::default(), ServerConfig::default());
        let (status, bin) = call(
            &state,
            Request::put("/api/bins/one")
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(bin["url"], "http://localhost/b/one");
        let req = Request::post("/b/one/x?y=1")
            .header("X-Mixed-Case", "v")
            .body(Body::from("hello"))
            .unwrap();
        let (status, ack) = call(&state, req).await;
        assert_eq!(status, StatusCode::OK);
        let (_, r) = call(
            &state,
            Request::get(format!(
                "/api/bins/one/requests/{}",
                ack["request_id"].as_str().unwrap()
            ))
            .body(Body::empty())
            .unwrap(),
        )
        .await;
        assert_eq!(r["headers"][0]["name"], "x-mixed-case");
        assert_eq!(r["headers_exact"], false);
        assert_eq!(r["path"], "/x");
        assert_eq!(r["query"], "y=1");
        assert_eq!(r["body"], "hello");
        assert_eq!(r["remote_addr"], "0.0.0.0:0");
    }

    #[tokio::test]
    async fn unknown_routes_get_the_json_error_body() {
        let state = AppState::new(StoreLimits::default(), ServerConfig::default());
        let (status, body) = call(
            &state,
            Request::get("/api/nope").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "not_found");
    }
}
