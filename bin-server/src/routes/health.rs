//! Liveness (`/healthz`) and Prometheus metrics (`/metrics`).

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

#[utoipa::path(get, path = "/healthz", tag = "server",
    responses(
        (status = 200, description = "Up, and the store answers", body = api::Health),
        (status = 503, description = "The store cannot be reached", body = api::Health)))]
/// `200 ok` when the store answers, `503 unavailable` (with the reason) when it does not.
async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<api::Health>) {
    let health = state.store.health().await;
    let status = if health.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let out = api::Health {
        status: if health.is_ok() { "ok" } else { "unavailable" }.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        store: state.store.backend().into(),
        error: health.err().map(|e| e.to_string()),
    };
    (status, Json(out))
}

#[utoipa::path(get, path = "/metrics", tag = "server",
    responses((status = 200, description = "Prometheus text", content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // An unreachable store still gets its metrics page: zeros, and `hookbin_store_up 0`.
    let stats = state.store.stats().await;
    let up = u64::from(stats.is_ok());
    let s = stats.unwrap_or_default();
    let l = state.store.limits();
    let m = &state.metrics;
    let mut out = String::with_capacity(2048);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    let backend = format!("{{backend=\"{}\"}}", state.store.backend());
    metric(
        "hookbin_store_info",
        "gauge",
        "The store backend this instance uses (--store).",
        &[(&backend, 1)],
    );
    metric(
        "hookbin_store_up",
        "gauge",
        "1 when the store answered this scrape, 0 when it could not be reached.",
        &[("", up)],
    );
    metric("hookbin_bins", "gauge", "Bins that exist.", &[("", s.bins)]);
    metric(
        "hookbin_bins_max",
        "gauge",
        "The --max-bins limit.",
        &[("", l.max_bins as u64)],
    );
    metric(
        "hookbin_captures_total",
        "counter",
        "Requests captured.",
        &[("", s.captures_total)],
    );
    metric(
        "hookbin_requests_stored",
        "gauge",
        "Captured requests stored now.",
        &[("", s.requests_stored)],
    );
    metric(
        "hookbin_bytes_stored",
        "gauge",
        "Bytes of stored requests (bodies and heads).",
        &[("", s.bytes_stored)],
    );
    metric(
        "hookbin_bytes_max",
        "gauge",
        "The --max-bytes budget.",
        &[("", l.max_bytes)],
    );
    metric(
        "hookbin_evictions_total",
        "counter",
        "Stored requests evicted to make room, by the limit that forced it.",
        &[
            ("{reason=\"bin_limit\"}", s.evicted_by_bin_limit),
            ("{reason=\"byte_budget\"}", s.evicted_by_byte_budget),
        ],
    );
    metric(
        "hookbin_truncated_total",
        "counter",
        "Captures whose body was cut at the limit.",
        &[("", s.truncated_total)],
    );
    metric(
        "hookbin_sse_subscribers",
        "gauge",
        "Open live streams.",
        &[("", m.sse_subscribers.load(Relaxed))],
    );
    metric(
        "hookbin_sse_resyncs_total",
        "counter",
        "Live subscribers that fell behind and were told to resync.",
        &[("", m.sse_resyncs.load(Relaxed))],
    );
    metric(
        "hookbin_outbound_refused_total",
        "counter",
        "Test events, delivery attempts and replays refused by --outbound-policy or because \
         they named this server outside its bins.",
        &[("", state.hooks.outbound().refused_total())],
    );
    metric(
        "hookbin_api_refused_total",
        "counter",
        "Calls refused by the origin guard, by reason: a Host that is none of this server's \
         names, a write from another site, a write body that is not JSON.",
        &[
            (
                "{reason=\"host_not_allowed\"}",
                m.refused_host.load(Relaxed),
            ),
            (
                "{reason=\"forbidden_origin\"}",
                m.refused_origin.load(Relaxed),
            ),
            (
                "{reason=\"unsupported_media_type\"}",
                m.refused_content_type.load(Relaxed),
            ),
        ],
    );
    metric(
        "hookbin_tap_fallbacks_total",
        "counter",
        "Requests whose raw head disagreed with hyper's parse (captured with headers as parsed, \
         headers_exact false).",
        &[("", m.tap_fallbacks.load(Relaxed))],
    );
    metric(
        "hookbin_waiters",
        "gauge",
        "wait long-polls holding now (subscribed to the bin, waiting for a matching capture).",
        &[("", m.waiters.load(Relaxed))],
    );
    metric(
        "hookbin_live_subscribers",
        "gauge",
        "Live-event subscriptions on this instance (SSE streams, smee streams, waiters).",
        &[("", state.store.live().subscribers() as u64)],
    );
    metric(
        "hookbin_sse_renders_total",
        "counter",
        "Captured requests serialised for live streams (once per capture, shared by subscribers).",
        &[("", m.sse_renders.load(Relaxed))],
    );
    metric(
        "hookbin_searches_queued_total",
        "counter",
        "Text searches that waited for a scan slot (all were busy).",
        &[("", m.searches_queued.load(Relaxed))],
    );
    let c = &state.config.conn_limits;
    metric(
        "hookbin_connections_open",
        "gauge",
        "Connections open now.",
        &[("", m.connections_open.load(Relaxed))],
    );
    metric(
        "hookbin_connections_max",
        "gauge",
        "The --max-connections limit.",
        &[("", c.max_connections as u64)],
    );
    metric(
        "hookbin_connections_refused_total",
        "counter",
        "Connections closed on accept, without a response, by the limit that refused them.",
        &[
            (
                "{reason=\"max_connections\"}",
                m.refused_max_connections.load(Relaxed),
            ),
            ("{reason=\"per_ip\"}", m.refused_per_ip.load(Relaxed)),
        ],
    );
    metric(
        "hookbin_connection_timeouts_total",
        "counter",
        "Connections closed by a deadline: a head not complete within --header-timeout, no \
         request within --idle-timeout, a body with no bytes within --idle-timeout, a response \
         the client read nothing of within --idle-timeout.",
        &[
            ("{kind=\"header\"}", m.timeouts_header.load(Relaxed)),
            ("{kind=\"idle\"}", m.timeouts_idle.load(Relaxed)),
            ("{kind=\"body\"}", m.timeouts_body.load(Relaxed)),
            ("{kind=\"write\"}", m.timeouts_write.load(Relaxed)),
        ],
    );
    metric(
        "hookbin_inflight_body_bytes",
        "gauge",
        "Bytes of capture bodies received and not yet stored.",
        &[("", m.inflight_body_bytes.load(Relaxed))],
    );
    metric(
        "hookbin_inflight_body_bytes_max",
        "gauge",
        "The --max-inflight-bytes budget.",
        &[("", c.max_inflight_bytes)],
    );
    metric(
        "hookbin_captures_refused_total",
        "counter",
        "Captures answered 503 server_busy because --max-inflight-bytes was reached.",
        &[(
            "{reason=\"inflight_bytes\"}",
            m.captures_refused_busy.load(Relaxed),
        )],
    );
    metric(
        "hookbin_capture_body_errors_total",
        "counter",
        "Capture bodies that did not arrive whole and were not stored: malformed chunked \
         framing (answered 400) or cut off by the client.",
        &[
            ("{reason=\"framing\"}", m.body_framing_errors.load(Relaxed)),
            ("{reason=\"cut_off\"}", m.bodies_cut_off.load(Relaxed)),
        ],
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}
