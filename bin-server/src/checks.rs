//! # Checks on captured requests: JSON Schema and signatures
//!
//! A bin may carry a JSON Schema and a signing secret. Both are parsed once, when the bin is
//! saved, into [`Checks`], which the capture path runs on every request before it is stored
//! (through the store's [`CaptureCheck`] seam). The outcome travels with the request as
//! [`api::Validation`] and [`api::SignatureCheck`].
//!
//! - Schema: draft 2020-12 unless the schema's `$schema` names another draft; `format` is
//!   asserted (an `"email"` that is not one fails), as CI users expect. Remote `$ref`s are not
//!   fetched. A body that is not JSON fails with one error at path `""`.
//! - Signatures, each verified over the exact body bytes, comparisons in constant time:
//!   - `standard` ([Standard Webhooks]): `webhook-id`, `webhook-timestamp`, `webhook-signature`,
//!     secret `whsec_<base64>`, 300 s tolerance; verified by the sender library.
//!   - `github`: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`, keyed with the
//!     secret as given.
//!   - `stripe`: `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">[,v1=...]`, keyed
//!     with the secret as given (`whsec_...` included), timestamps older than 300 s refused
//!     (as Stripe's own libraries do).
//!
//! [Standard Webhooks]: https://www.standardwebhooks.com/

use api::{SignatureCheck, Validation, ValidationError};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::store::{CaptureCheck, HeaderIter, NewCapture};

type HmacSha256 = Hmac<Sha256>;

/// Violations reported per request at most: enough to fix a payload, bounded so that a huge
/// invalid body cannot make its stored record huge.
pub const MAX_ERRORS: usize = 20;
/// Longest message kept per violation (messages quote the offending value).
const MAX_MESSAGE: usize = 300;
/// How old a signed timestamp may be (Standard Webhooks and Stripe both use 5 minutes).
pub const TOLERANCE_SECS: u64 = 300;
/// Longest secret accepted: far beyond any real one, small enough to bound what a bin holds.
const MAX_SECRET: usize = 1024;

/// A compiled JSON Schema.
#[derive(Debug, Clone)]
pub struct SchemaCheck {
    validator: jsonschema::Validator,
}

impl SchemaCheck {
    /// Compiles `schema`; the error names what is wrong with it.
    pub fn compile(schema: &serde_json::Value) -> Result<Self, String> {
        if !(schema.is_object() || schema.is_boolean()) {
            return Err("a JSON Schema must be an object or a boolean".into());
        }
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(schema)
            .map_err(|e| {
                let at = e.instance_path().as_str();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("at {at}: {e}")
                }
            })?;
        Ok(Self { validator })
    }

    /// Checks a parsed document.
    pub fn validate(&self, doc: &serde_json::Value) -> Validation {
        let errors: Vec<ValidationError> = self
            .validator
            .iter_errors(doc)
            .take(MAX_ERRORS)
            .map(|e| ValidationError {
                path: e.instance_path().as_str().to_owned(),
                message: clip(e.to_string()),
            })
            .collect();
        Validation {
            valid: errors.is_empty(),
            errors,
        }
    }

    /// Checks a body as received: one that is not JSON is invalid.
    pub fn validate_body(&self, body: &[u8]) -> Validation {
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(doc) => self.validate(&doc),
            Err(e) => not_json(&e),
        }
    }
}

/// The outcome for a body that is not JSON at all.
pub fn not_json(e: &serde_json::Error) -> Validation {
    Validation {
        valid: false,
        errors: vec![ValidationError {
            path: String::new(),
            message: format!("not_json: the body is not JSON ({e})"),
        }],
    }
}

fn clip(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// How a sender signs its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureScheme {
    Standard,
    Github,
    Stripe,
}

impl SignatureScheme {
    pub const NAMES: &'static str = "standard, github or stripe";

    pub fn parse(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "standard" | "standard-webhooks" => Ok(Self::Standard),
            "github" => Ok(Self::Github),
            "stripe" => Ok(Self::Stripe),
            other => Err(format!(
                "signature_scheme {other:?} is not known: use {}",
                Self::NAMES
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Github => "github",
            Self::Stripe => "stripe",
        }
    }

    /// The header that carries the signature.
    pub fn header(self) -> &'static str {
        match self {
            Self::Standard => "webhook-signature",
            Self::Github => "X-Hub-Signature-256",
            Self::Stripe => "Stripe-Signature",
        }
    }
}

/// A scheme and the secret its signatures are checked with.
#[derive(Clone)]
pub struct SignatureCheckConfig {
    pub scheme: SignatureScheme,
    secret: String,
}

impl std::fmt::Debug for SignatureCheckConfig {
    // A secret never ends up in logs by accident.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignatureCheckConfig")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl SignatureCheckConfig {
    /// Checks that the secret suits the scheme.
    pub fn new(scheme: SignatureScheme, secret: &str) -> Result<Self, String> {
        if secret.is_empty() {
            return Err("secret is empty".into());
        }
        if secret.len() > MAX_SECRET {
            return Err(format!("secret is longer than {MAX_SECRET} bytes"));
        }
        if scheme == SignatureScheme::Standard {
            use base64::Engine;
            let key = secret.strip_prefix("whsec_").ok_or(
                "a Standard Webhooks secret starts with `whsec_` (then base64 of the key)",
            )?;
            match base64::engine::general_purpose::STANDARD.decode(key) {
                Ok(k) if !k.is_empty() => {}
                _ => return Err("the part of the secret after `whsec_` is not base64".into()),
            }
        }
        Ok(Self {
            scheme,
            secret: secret.to_owned(),
        })
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Verifies one request; `now` is the receiver's clock in unix seconds.
    pub fn verify(&self, headers: HeaderIter<'_>, body: &[u8], now: i64) -> SignatureCheck {
        match self.scheme {
            SignatureScheme::Standard => verify_standard(&self.secret, headers, body, now),
            SignatureScheme::Github => verify_github(&self.secret, headers, body),
            SignatureScheme::Stripe => verify_stripe(&self.secret, headers, body, now),
        }
    }
}

fn outcome(status: &str, reason: Option<String>) -> SignatureCheck {
    SignatureCheck {
        status: status.to_owned(),
        reason,
    }
}

fn valid() -> SignatureCheck {
    outcome("valid", None)
}

fn invalid(reason: impl Into<String>) -> SignatureCheck {
    outcome("invalid", Some(reason.into()))
}

fn missing(reason: impl Into<String>) -> SignatureCheck {
    outcome("missing", Some(reason.into()))
}

fn verify_standard(secret: &str, headers: HeaderIter<'_>, body: &[u8], now: i64) -> SignatureCheck {
    let pairs = headers.map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v)));
    match sender::signing::verify(secret, pairs, body, now, TOLERANCE_SECS) {
        Ok(()) => valid(),
        Err(e @ sender::VerifyError::MissingHeader(_)) => missing(e.to_string()),
        Err(e) => invalid(e.to_string()),
    }
}

fn header<'a>(mut headers: HeaderIter<'a>, name: &str) -> Option<&'a [u8]> {
    headers
        .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| v)
}

fn hmac(secret: &str) -> HmacSha256 {
    // HMAC takes keys of any length: this cannot fail.
    HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size")
}

fn verify_github(secret: &str, headers: HeaderIter<'_>, body: &[u8]) -> SignatureCheck {
    let Some(value) = header(headers, "x-hub-signature-256") else {
        return missing("no X-Hub-Signature-256 header");
    };
    let value = String::from_utf8_lossy(value);
    let Some(hex) = value.trim().strip_prefix("sha256=") else {
        return invalid("X-Hub-Signature-256 does not start with `sha256=`");
    };
    let Some(tag) = hex_decode(hex) else {
        return invalid("X-Hub-Signature-256 is not `sha256=` and 64 hex digits");
    };
    let mut mac = hmac(secret);
    mac.update(body);
    match mac.verify_slice(&tag) {
        Ok(()) => valid(),
        Err(_) => invalid("the signature does not match the body and secret"),
    }
}

fn verify_stripe(secret: &str, headers: HeaderIter<'_>, body: &[u8], now: i64) -> SignatureCheck {
    let Some(value) = header(headers, "stripe-signature") else {
        return missing("no Stripe-Signature header");
    };
    let value = String::from_utf8_lossy(value);
    let mut timestamp = None;
    let mut tags = Vec::new();
    for item in value.split(',') {
        match item.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t.to_owned()),
            Some(("v1", tag)) => tags.push(tag.to_owned()),
            _ => {}
        }
    }
    let Some(t) = timestamp else {
        return invalid("Stripe-Signature has no `t=` timestamp");
    };
    let Ok(ts) = t.parse::<i64>() else {
        return invalid(format!(
            "Stripe-Signature timestamp {t:?} is not a unix time"
        ));
    };
    if tags.is_empty() {
        return invalid("Stripe-Signature has no `v1=` signature");
    }
    let age = now.saturating_sub(ts);
    if age > TOLERANCE_SECS as i64 {
        return invalid(format!(
            "timestamp is {age} s old, more than the {TOLERANCE_SECS} s tolerated"
        ));
    }
    let mut mac = hmac(secret);
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    let ok = tags
        .iter()
        .filter_map(|tag| hex_decode(tag))
        .any(|tag| mac.clone().verify_slice(&tag).is_ok());
    if ok {
        valid()
    } else {
        invalid("no v1 signature matches the body and secret")
    }
}

/// Decodes hex (either case); `None` for anything else.
fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|p| {
            let hi = (p[0] as char).to_digit(16)?;
            let lo = (p[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

/// Lower-case hex of `bytes`.
pub fn hex_encode(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A bin's compiled checks: what the capture path runs.
#[derive(Debug, Clone, Default)]
pub struct Checks {
    pub schema: Option<SchemaCheck>,
    pub signature: Option<SignatureCheckConfig>,
}

impl Checks {
    /// Runs the checks on a request as received.
    pub fn run(
        &self,
        headers: HeaderIter<'_>,
        body: &[u8],
        now: i64,
    ) -> (Option<Validation>, Option<SignatureCheck>) {
        (
            self.schema.as_ref().map(|s| s.validate_body(body)),
            self.signature
                .as_ref()
                .map(|s| s.verify(headers, body, now)),
        )
    }
}

impl CaptureCheck for Checks {
    fn check(&self, capture: &mut NewCapture) {
        let now = chrono::Utc::now().timestamp();
        let (validation, signature) = self.run(capture.headers(), capture.body(), now);
        capture.validation = validation.map(Box::new);
        capture.signature = signature.map(Box::new);
    }
}

/// One line describing why a request failed its checks, for the CLI and test failures.
pub fn describe_failures(
    validation: Option<&Validation>,
    signature: Option<&SignatureCheck>,
) -> String {
    let mut parts = Vec::new();
    if let Some(v) = validation.filter(|v| !v.valid) {
        for e in &v.errors {
            let at = if e.path.is_empty() { "/" } else { &e.path };
            parts.push(format!("{at}: {}", e.message));
        }
    }
    if let Some(s) = signature.filter(|s| s.status != "valid") {
        parts.push(format!(
            "signature {}{}",
            s.status,
            s.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RawHeaders;
    use serde_json::json;

    fn headers(pairs: &[(&str, &str)]) -> RawHeaders {
        let mut h = RawHeaders::new();
        for (n, v) in pairs {
            h.push(n.as_bytes(), v.as_bytes());
        }
        h
    }

    #[test]
    fn schema_errors_name_paths() {
        let s = SchemaCheck::compile(&json!({
            "type": "object",
            "required": ["id"],
            "properties": {"amount": {"type": "integer", "minimum": 0}}
        }))
        .unwrap();
        let v = s.validate_body(br#"{"amount": -3}"#);
        assert!(!v.valid);
        let paths: Vec<_> = v.errors.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"/amount"), "{v:?}");
        assert!(paths.contains(&""), "{v:?}");
        assert!(s.validate_body(br#"{"id": 1, "amount": 3}"#).valid);
        let v = s.validate_body(b"id=1");
        assert!(!v.valid);
        assert!(v.errors[0].message.starts_with("not_json"));
    }

    #[test]
    fn formats_are_asserted_and_bad_schemas_named() {
        let s = SchemaCheck::compile(&json!({"format": "email"})).unwrap();
        assert!(!s.validate(&json!("nope")).valid);
        assert!(s.validate(&json!("a@example.com")).valid);
        let err = SchemaCheck::compile(&json!({"type": "integr"})).unwrap_err();
        assert!(err.contains("integr"), "{err}");
        assert!(SchemaCheck::compile(&json!([1])).is_err());
    }

    #[test]
    fn errors_are_bounded() {
        let s = SchemaCheck::compile(&json!({"items": {"type": "string"}})).unwrap();
        let v = s.validate(&json!((0..100).collect::<Vec<_>>()));
        assert_eq!(v.errors.len(), MAX_ERRORS);
    }

    #[test]
    fn github_vector_from_its_docs() {
        // GitHub's documented example: secret "It's a Secret to Everybody", body "Hello, World!".
        let cfg = SignatureCheckConfig::new(SignatureScheme::Github, "It's a Secret to Everybody")
            .unwrap();
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let h = headers(&[("X-Hub-Signature-256", sig)]);
        assert_eq!(cfg.verify(h.iter(), b"Hello, World!", 0).status, "valid");
        assert_eq!(cfg.verify(h.iter(), b"Hello, World?", 0).status, "invalid");
        assert_eq!(
            cfg.verify(RawHeaders::new().iter(), b"x", 0).status,
            "missing"
        );
    }

    #[test]
    fn stripe_tolerance_and_rotation() {
        let secret = "whsec_test";
        let cfg = SignatureCheckConfig::new(SignatureScheme::Stripe, secret).unwrap();
        let body = br#"{"id":"evt_1"}"#;
        let sign = |t: i64| {
            let mut m = hmac(secret);
            m.update(format!("{t}.").as_bytes());
            m.update(body);
            hex_encode(&m.finalize().into_bytes())
        };
        let now = 1_700_000_000;
        let h = headers(&[(
            "Stripe-Signature",
            &format!("t={now},v1={},v0=00", sign(now)),
        )]);
        assert_eq!(cfg.verify(h.iter(), body, now + 10).status, "valid");
        let late = cfg.verify(h.iter(), body, now + 301);
        assert_eq!(late.status, "invalid");
        assert!(late.reason.unwrap().contains("301 s old"));
        let rotated = headers(&[(
            "stripe-signature",
            &format!("t={now},v1={},v1={}", "ab".repeat(32), sign(now)),
        )]);
        assert_eq!(cfg.verify(rotated.iter(), body, now).status, "valid");
    }

    #[test]
    fn standard_secrets_are_checked() {
        assert!(SignatureCheckConfig::new(SignatureScheme::Standard, "nope").is_err());
        assert!(SignatureCheckConfig::new(SignatureScheme::Standard, "whsec_!!").is_err());
        assert!(
            SignatureCheckConfig::new(
                SignatureScheme::Standard,
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
            )
            .is_ok()
        );
        assert!(SignatureScheme::parse("gitlab").is_err());
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(hex_decode("00ffA0"), Some(vec![0, 255, 160]));
        assert_eq!(hex_encode(&[0, 255, 160]), "00ffa0");
        assert_eq!(hex_decode("0"), None);
        assert_eq!(hex_decode("zz"), None);
    }
}
