//! The `api` types the UI reads its own way: the ones that carry free JSON (a bin's schema, an
//! event's example payload) as `serde_json::Value`. The UI keeps that JSON as the text the server
//! sent (`RawValue`): it only shows it (re-indented by [`crate::body::pretty_json`]) and sends
//! typed JSON back as written, so it needs no `Value`, whose parser, printer and map cost the
//! wasm more than the rest of these types. Each struct has the fields the UI uses, under the
//! `api` names; the others are skipped, and unknown fields are ignored (a newer server may add
//! some). Everything else is read with the `api` types themselves.

use api::{BinLimits, BinLimitsIn, BinResponse, EvictionCounts};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// JSON text as the server sent it, or as the user typed it (validated).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Json(pub Box<RawValue>);

impl Json {
    pub fn text(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for Json {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

/// A bin as the UI reads it (`api::BinOut`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BinOut {
    pub id: String,
    /// The capture URL.
    pub url: String,
    pub last_activity: String,
    /// Requests stored now.
    pub request_count: u64,
    pub evicted: EvictionCounts,
    pub response: BinResponse,
    pub limits: BinLimits,
    /// The JSON Schema every request is checked against, as the server sent it.
    #[serde(default)]
    pub schema: Option<Json>,
    #[serde(default)]
    pub signature_scheme: Option<String>,
}

/// `GET /api/bins` (`api::BinList`).
#[derive(Debug, Deserialize)]
pub struct BinList {
    pub bins: Vec<BinOut>,
}

/// What creates or changes a bin (`api::BinIn`), the schema sent as typed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BinIn {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<BinResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<BinLimitsIn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_scheme: Option<String>,
}

/// An event of the catalog (`api::EventOut`).
#[derive(Debug, Clone, Deserialize)]
pub struct EventOut {
    pub slug: String,
    pub name: String,
    pub description: String,
    /// The example payload, as the server sent it.
    pub example: Json,
}

/// `GET /api/events` (`api::EventList`).
#[derive(Debug, Deserialize)]
pub struct EventList {
    pub events: Vec<EventOut>,
}
