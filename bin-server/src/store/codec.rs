//! What persistent backends write: a bin's settings as JSON (one format for SQLite and Redis),
//! and captured requests as bytes ([`CapturedRequest::encode`]).
//!
//! [`CapturedRequest::encode`]: super::CapturedRequest::encode

use api::BinResponse;
use serde::{Deserialize, Serialize};

use super::BinSettings;

/// [`BinSettings`] as stored. Field names are part of the on-disk format: add, never rename.
#[derive(Debug, Serialize, Deserialize)]
struct StoredSettings {
    response: BinResponse,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_requests: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_body_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schema: Option<serde_json::Value>,
    /// `[scheme, secret]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<(String, String)>,
    /// Hex of the SHA-256 of the bin's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_hash: Option<String>,
}

/// A bin's settings as the JSON text persistent backends keep.
pub fn settings_to_json(s: &BinSettings) -> String {
    let stored = StoredSettings {
        response: s.response.clone(),
        max_requests: s.max_requests,
        max_body_bytes: s.max_body_bytes,
        schema: s.schema.clone(),
        signature: s.signature.clone(),
        token_hash: s.token_hash.map(|h| hex(&h)),
    };
    serde_json::to_string(&stored).expect("settings serialise")
}

/// Reads what [`settings_to_json`] wrote.
pub fn settings_from_json(text: &str) -> Result<BinSettings, String> {
    let s: StoredSettings =
        serde_json::from_str(text).map_err(|e| format!("stored bin settings: {e}"))?;
    let token_hash = match s.token_hash {
        None => None,
        Some(h) => Some(unhex32(&h).ok_or("stored bin settings: token_hash is not 32 hex bytes")?),
    };
    Ok(BinSettings {
        response: s.response,
        max_requests: s.max_requests,
        max_body_bytes: s.max_body_bytes,
        schema: s.schema,
        signature: s.signature,
        token_hash,
    })
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex32(s: &str) -> Option<[u8; 32]> {
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip() {
        let s = BinSettings {
            response: BinResponse {
                status: 202,
                headers: vec![api::Header {
                    name: "X-A".into(),
                    value: "1".into(),
                }],
                body: Some("ok".into()),
                delay_ms: 5,
            },
            max_requests: Some(3),
            max_body_bytes: None,
            schema: Some(serde_json::json!({"type": "object"})),
            signature: Some(("standard".into(), "whsec_abc".into())),
            token_hash: Some([0xab; 32]),
        };
        assert_eq!(settings_from_json(&settings_to_json(&s)).unwrap(), s);
        let plain = BinSettings::default();
        assert_eq!(
            settings_to_json(&plain),
            r#"{"response":{"status":200,"headers":[],"delay_ms":0}}"#
        );
        assert_eq!(
            settings_from_json(&settings_to_json(&plain)).unwrap(),
            plain
        );
        assert!(settings_from_json(r#"{"response":{},"token_hash":"zz"}"#).is_err());
    }
}
