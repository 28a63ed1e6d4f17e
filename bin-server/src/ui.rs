//! The web UI: the assets `build.rs` built from the `frontend` crate, embedded in the binary.
//!
//! - `/assets/{version}/{file}`: the wasm, its JS glue, the stylesheet; the version is a hash of
//!   all of them, so they are cached for a year as `immutable`. A client that accepts gzip gets
//!   the gzip `build.rs` made at the best level (most of what the browser downloads is the wasm).
//! - the app's pages (`/`, `/bins/{bin}`, `/webhooks`): the SPA shell (`index.html`, `no-cache`),
//!   whose client-side router renders the page. The shell is served for these routes only, never as
//!   a catch-all: `/api/...`, `/b/...` and unknown paths keep the server's JSON 404, except that
//!   a browser asking for an unknown page (`Accept: text/html`) gets the shell, answered `404`,
//!   whose router shows "Page not found" ([`not_found_page`], called by the router's fallback).
//!
//! [`router`] has no fallback, so it merges into any router.

use api::ErrorBody;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::compression::CompressionLayer;

/// One file under `/assets/{version}/`, embedded by `build.rs` (`ui_assets.rs`).
struct Asset {
    /// Its path under the versioned prefix.
    name: &'static str,
    bytes: &'static [u8],
    /// `bytes` gzipped (Zopfli), when that is smaller.
    gzip: Option<&'static [u8]>,
}

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));
}

pub use embedded::ASSET_VERSION;

/// Assets change only with their version in the URL.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// The shell names the current asset version: always revalidate it.
const NO_CACHE: &str = "no-cache";
/// Scripts only from this origin (the wasm needs `wasm-unsafe-eval`); captured content is shown as
/// text, and this makes any slip inert too. Inline styles are allowed for the list's positioning.
const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
    object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// The client-side routes of the `frontend` crate (`app.rs`): each serves the shell.
pub const PAGES: &[&str] = &[
    "/",
    "/bins/{bin}",
    "/bins/{bin}/requests/{seq}",
    "/webhooks",
];

/// Routes serving the UI, with gzip for clients that accept it (the assets' made by `build.rs`,
/// the shell's per response).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    PAGES
        .iter()
        .fold(Router::new(), |r, page| r.route(page, get(index)))
        .route("/assets/{version}/{*file}", get(asset))
        .layer(CompressionLayer::new())
}

async fn index() -> Response {
    shell()
}

/// A browser asking for a page that does not exist gets the UI's "Page not found" (the shell,
/// answered `404`), not the API's JSON: a `GET`/`HEAD` that accepts `text/html`, outside `/api/`,
/// `/b/` and `/assets/`. `None` for everything else, which keeps the JSON 404.
pub fn not_found_page<B>(req: &axum::http::Request<B>) -> Option<Response> {
    let path = req.uri().path();
    let page_like = matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    ) && !["/api/", "/b/", "/assets/"]
        .iter()
        .any(|p| path.starts_with(p));
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    (page_like && wants_html).then(|| {
        let mut res = shell();
        *res.status_mut() = StatusCode::NOT_FOUND;
        res
    })
}

fn shell() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(NO_CACHE)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        embedded::INDEX_HTML,
    )
        .into_response()
}

async fn asset(Path((version, file)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let found = (version == ASSET_VERSION)
        .then(|| embedded::ASSETS.iter().find(|a| a.name == file))
        .flatten();
    let Some(asset) = found else {
        return not_found(&format!("no UI asset /assets/{version}/{file}"));
    };
    // Whether to send the gzip depends on the request: caches must know.
    let varies = asset.gzip.is_some();
    let gzipped = asset.gzip.filter(|_| accepts_gzip(&headers));
    let mut res = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(asset.name)),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE)),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        gzipped.unwrap_or(asset.bytes),
    )
        .into_response();
    if gzipped.is_some() {
        // Already encoded: the compression layer leaves a response with this header alone.
        res.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if varies {
        res.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    res
}

/// Whether `Accept-Encoding` lists `gzip` (or `*`) without `q=0`.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

fn not_found(message: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(ErrorBody::new("not_found", message)),
    )
        .into_response()
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get(uri: &str, accept_gzip: bool) -> Response {
        let mut req = Request::get(uri);
        if accept_gzip {
            req = req.header(header::ACCEPT_ENCODING, "gzip");
        }
        router::<()>()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[test]
    fn unknown_pages_are_the_shell_for_browsers_only() {
        let req = |method: &str, uri: &str, accept: &str| {
            Request::builder()
                .method(method)
                .uri(uri)
                .header(header::ACCEPT, accept)
                .body(())
                .unwrap()
        };
        let html = "text/html,application/xhtml+xml,*/*;q=0.8";
        let page = not_found_page(&req("GET", "/nope/deeper", html)).expect("a page");
        assert_eq!(page.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            header_of(&page, header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
        assert!(not_found_page(&req("GET", "/nope", "application/json")).is_none());
        assert!(not_found_page(&req("POST", "/nope", html)).is_none());
        assert!(not_found_page(&req("GET", "/api/nope", html)).is_none());
        assert!(not_found_page(&req("GET", "/b/x", html)).is_none());
        assert!(not_found_page(&req("GET", "/assets/x/y.js", html)).is_none());
    }

    fn header_of(res: &Response, name: header::HeaderName) -> &str {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    #[tokio::test]
    async fn root_and_page_paths_serve_the_uncached_shell() {
        for path in ["/", "/bins/abc", "/webhooks", "/webhooks?x=1"] {
            let res = get(path, false).await;
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            assert_eq!(
                header_of(&res, header::CONTENT_TYPE),
                "text/html; charset=utf-8"
            );
            assert_eq!(header_of(&res, header::CACHE_CONTROL), NO_CACHE);
            assert!(header_of(&res, header::CONTENT_SECURITY_POLICY).contains("script-src 'self'"));
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let body = String::from_utf8(body.to_vec()).unwrap();
            assert!(
                body.contains(&format!("/assets/{ASSET_VERSION}/")),
                "{body}"
            );
        }
    }

    #[tokio::test]
    async fn other_paths_are_not_the_shell() {
        for path in ["/api", "/api/bins", "/b/x", "/assets/x", "/bins", "/nope"] {
            let res = get(path, false).await;
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }

    #[tokio::test]
    async fn assets_are_immutable_typed_and_gzipped() {
        for &Asset { name, bytes, gzip } in embedded::ASSETS {
            let url = format!("/assets/{ASSET_VERSION}/{name}");
            let res = get(&url, false).await;
            assert_eq!(res.status(), StatusCode::OK, "{name}");
            assert_eq!(header_of(&res, header::CACHE_CONTROL), IMMUTABLE);
            assert_eq!(header_of(&res, header::CONTENT_TYPE), content_type(name));
            assert_eq!(header_of(&res, header::CONTENT_ENCODING), "", "{name}");
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], bytes, "{name} is served byte-exact");

            let Some(gzipped) = gzip else { continue };
            assert!(gzipped.len() < bytes.len(), "{name}");
            let res = get(&url, true).await;
            assert_eq!(res.status(), StatusCode::OK, "{name}");
            assert_eq!(header_of(&res, header::CONTENT_ENCODING), "gzip", "{name}");
            assert_eq!(header_of(&res, header::CONTENT_TYPE), content_type(name));
            assert_eq!(header_of(&res, header::VARY), "accept-encoding", "{name}");
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], gzipped, "{name}: the gzip build.rs made");
            let mut plain = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut plain)
                .unwrap();
            assert_eq!(plain, bytes, "{name}: the gzip is of the asset");
        }
        let Some(wasm) = embedded::ASSETS.iter().find(|a| a.name.ends_with(".wasm")) else {
            return; // built with HOOKBIN_SKIP_UI
        };
        assert!(wasm.gzip.is_some(), "the wasm is served gzipped");
        let res = get(&format!("/assets/{ASSET_VERSION}/{}", wasm.name), true).await;
        assert_eq!(header_of(&res, header::CONTENT_ENCODING), "gzip");
        assert_eq!(header_of(&res, header::CONTENT_TYPE), "application/wasm");
    }

    #[test]
    fn gzip_is_sent_only_when_accepted() {
        let accepts = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            }
            accepts_gzip(&headers)
        };
        assert!(accepts(&["gzip"]));
        assert!(accepts(&["gzip, deflate, br, zstd"]));
        assert!(accepts(&["br", "GZIP;q=0.5"]));
        assert!(accepts(&["*"]));
        assert!(!accepts(&[]));
        assert!(!accepts(&["br, deflate"]));
        assert!(!accepts(&["gzip;q=0"]));
        assert!(!accepts(&["gzip; q=0.0, br"]));
        assert!(!accepts(&["x-gzip"]));
    }

    #[tokio::test]
    async fn in_the_app_pages_get_the_shell_and_api_paths_keep_json_404s() {
        let app = crate::app(crate::AppState::new(
            crate::store::StoreLimits::default(),
            crate::ServerConfig::default(),
        ));
        let call = |uri: &'static str| {
            let app = app.clone();
            async move {
                app.oneshot(Request::get(uri).body(Body::empty()).unwrap())
                    .await
                    .unwrap()
            }
        };
        for page in ["/", "/bins/some-bin", "/webhooks"] {
            let res = call(page).await;
            assert_eq!(res.status(), StatusCode::OK, "{page}");
            assert_eq!(header_of(&res, header::CACHE_CONTROL), NO_CACHE, "{page}");
        }
        for path in ["/api/nope", "/api/bins/nope", "/b", "/nope"] {
            let res = call(path).await;
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let err: ErrorBody = serde_json::from_slice(&body).unwrap();
            assert!(err.error.code.contains("not_found"), "{path}: {err:?}");
        }
    }

    #[tokio::test]
    async fn a_stale_asset_version_is_a_json_404() {
        let res = get("/assets/0000000000000000/frontend.js", false).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        assert_eq!(header_of(&res, header::CONTENT_TYPE), "application/json");
    }
}
