//! The API contract: an OpenAPI 3.1 document generated from the handlers' `#[utoipa::path]`
//! annotations and the `api` crate's types (never written by hand), served at
//! `GET /api/openapi.json`. CI fuzzes the running server against it (`scripts/openapi-fuzz.sh`).

use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;

use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hookbin",
        description = "Capture URLs, the bins that keep what they receive, live streams, CI \
                       routes and the webhook sender. Captures themselves (`ANY /b/{bin}/...`) \
                       answer what each bin is configured to answer and are not described here.",
    ),
    paths(
        super::bins::list,
        super::bins::create,
        super::bins::read,
        super::bins::put,
        super::bins::patch,
        super::bins::delete,
        super::requests::list,
        super::requests::clear,
        super::requests::read,
        super::requests::delete,
        super::requests::raw,
        super::export::export,
        super::export::curl,
        super::replay::replay,
        super::wait::wait,
        super::stream::bin_stream,
        super::stream::all_stream,
        super::smee::smee,
        super::health::healthz,
        super::health::metrics,
        super::auth::login,
        super::auth::logout,
        super::webhooks::events,
        super::webhooks::emit,
        super::webhooks::list,
        super::webhooks::create,
        super::webhooks::read,
        super::webhooks::update,
        super::webhooks::remove,
        super::webhooks::test,
        super::webhooks::rotate_secret,
        super::webhooks::deliveries,
        super::webhooks::message,
        super::webhooks::resend,
        super::webhooks::retry_now,
        super::webhooks::changes,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "bins", description = "Bins and their settings"),
        (name = "requests", description = "What bins captured"),
        (name = "ci", description = "Waiting for, exporting and replaying requests"),
        (name = "live", description = "Live streams (Server-Sent Events)"),
        (name = "server", description = "Health, metrics, sessions"),
        (name = "webhooks", description = "The sender: the event catalog, webhooks, test events, emit, the delivery log, resend"),
    )
)]
pub struct ApiDoc;

/// `--auth-token` servers want `Authorization: Bearer TOKEN` (the admin's, or a bin's own).
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/api/openapi.json", get(document))
}

async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_json_route_is_in_the_document() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let paths = doc["paths"].as_object().unwrap();
        for (path, method) in [
            ("/api/bins", "post"),
            ("/api/bins/{bin}", "patch"),
            ("/api/bins/{bin}/requests", "get"),
            ("/api/bins/{bin}/wait", "get"),
            ("/api/bins/{bin}/requests/{id}/replay", "post"),
            ("/healthz", "get"),
            ("/api/events", "get"),
            ("/api/events/{slug}/emit", "post"),
            ("/api/webhooks", "get"),
            ("/api/webhooks", "post"),
            ("/api/webhooks/{id}", "get"),
            ("/api/webhooks/{id}", "patch"),
            ("/api/webhooks/{id}", "delete"),
            ("/api/webhooks/{id}/test", "post"),
            ("/api/webhooks/{id}/deliveries", "get"),
            ("/api/deliveries/stream", "get"),
            ("/api/deliveries/{id}", "get"),
            ("/api/deliveries/{id}/resend", "post"),
        ] {
            assert!(paths[path][method].is_object(), "{method} {path}");
        }
        // Error bodies are described once and referenced.
        assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
        // Every error names each invalid field in a typed list.
        let detail = &doc["components"]["schemas"]["ErrorDetail"];
        assert_eq!(
            detail["properties"]["errors"]["items"]["$ref"], "#/components/schemas/FieldError",
            "{detail}"
        );
        let field = &doc["components"]["schemas"]["FieldError"];
        assert_eq!(field["required"], serde_json::json!(["field", "message"]));
        // Each webhook route documents its errors with that body.
        for (path, method, status) in [
            ("/api/webhooks", "post", "422"),
            ("/api/webhooks", "post", "409"),
            ("/api/webhooks/{id}", "patch", "404"),
            ("/api/events/{slug}/emit", "post", "404"),
            ("/api/deliveries/{id}/resend", "post", "409"),
        ] {
            let schema =
                &paths[path][method]["responses"][status]["content"]["application/json"]["schema"];
            assert_eq!(
                schema["$ref"], "#/components/schemas/ErrorBody",
                "{method} {path} {status}"
            );
        }
        for schema in [
            "WebhookIn",
            "WebhookOut",
            "DeliveryLog",
            "AttemptOut",
            "EmitOut",
        ] {
            assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
        }
    }
}
