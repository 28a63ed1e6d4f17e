//! Standard Webhooks signatures (symmetric, `v1`): secrets, signing and verifying.
//!
//! The signed content is `{webhook-id}.{webhook-timestamp}.{body}` over the exact body bytes,
//! HMAC-SHA256 keyed with the base64-decoded part of the `whsec_...` secret. The
//! `webhook-signature` header is a space-separated list of `v1,<base64>` entries (several during
//! a key rotation); a receiver accepts when any one matches.
//!
//! [`verify`] takes plain header name/value pairs and bytes, so bin-server can check captured
//! requests without sharing any HTTP types with this crate.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying the message id.
pub const HEADER_ID: &str = "webhook-id";
/// Header carrying the unix time (seconds) of signing.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying `v1,<base64>` signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// `v1,` and the base64 of a SHA-256 tag.
const SIGNATURE_LEN: usize = 3 + 44;

/// Prefix of every symmetric secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Receivers reject timestamps further than this from their clock (all reference libraries do).
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// Key sizes the spec allows for secrets we accept from users or generate.
const MIN_KEY_BYTES: usize = 24;
const MAX_KEY_BYTES: usize = 64;
/// Size of the keys we generate: the middle of the allowed range, as strong as HMAC-SHA256 uses.
const GENERATED_KEY_BYTES: usize = 32;

/// Why a secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("must start with `whsec_`")]
    MissingPrefix,
    #[error("is empty after `whsec_`")]
    Empty,
    #[error("is not valid base64 after `whsec_`")]
    NotBase64,
    #[error("decodes to {0} bytes; it must be 24 to 64 bytes")]
    BadLength(usize),
}

/// A webhook signing secret: `whsec_` + base64 of 24 to 64 bytes. Parsed, never just checked.
#[derive(Clone)]
pub struct Secret {
    text: String,
    key: Vec<u8>,
    /// The HMAC keyed with `key`, before any message: every signature starts from a copy, so
    /// the key's two padding blocks are hashed once per secret instead of once per attempt.
    keyed: HmacSha256,
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        // The text determines the key (and so the keyed HMAC).
        self.text == other.text
    }
}

impl Eq for Secret {}

impl std::fmt::Debug for Secret {
    // A secret never ends up in logs by accident.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(whsec_***)")
    }
}

impl Secret {
    /// Parses a user-given secret, enforcing the spec's 24-64 byte key size.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let key = decode_key(text)?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
            return Err(SecretError::BadLength(key.len()));
        }
        Ok(Self::from_parts(text.to_owned(), key))
    }

    fn from_parts(text: String, key: Vec<u8>) -> Self {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
        let keyed = HmacSha256::new_from_slice(&key).expect("HMAC takes keys of any size");
        Self { text, key, keyed }
    }

    /// A fresh secret from the operating system's CSPRNG (through `rand`'s thread RNG).
    pub fn generate() -> Self {
        let mut key = vec![0u8; GENERATED_KEY_BYTES];
        rand::thread_rng().fill_bytes(&mut key);
        Self::from_parts(format!("{SECRET_PREFIX}{}", BASE64.encode(&key)), key)
    }

    /// The `whsec_...` text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The HMAC key (the decoded bytes).
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// `v1,<base64>` for one message.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut out = String::with_capacity(SIGNATURE_LEN);
        self.sign_into(msg_id, timestamp, body, &mut out);
        out
    }

    /// [`Secret::sign`], appended to `out`.
    fn sign_into(&self, msg_id: &str, timestamp: i64, body: &[u8], out: &mut String) {
        let tag = feed(self.keyed.clone(), msg_id, timestamp, body)
            .finalize()
            .into_bytes();
        out.push_str("v1,");
        BASE64.encode_string(tag, out);
    }
}

fn decode_key(text: &str) -> Result<Vec<u8>, SecretError> {
    let encoded = text
        .strip_prefix(SECRET_PREFIX)
        .ok_or(SecretError::MissingPrefix)?;
    if encoded.is_empty() {
        return Err(SecretError::Empty);
    }
    BASE64.decode(encoded).map_err(|_| SecretError::NotBase64)
}

fn mac(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any size");
    feed(mac, msg_id, timestamp, body)
}

/// The signed content, `{msg_id}.{timestamp}.{body}`, fed to a keyed HMAC.
fn feed(mut mac: HmacSha256, msg_id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The three Standard Webhooks headers of one signed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub id: String,
    pub timestamp: i64,
    /// Space-separated `v1,<base64>` entries, one per secret.
    pub signature: String,
}

impl SignedHeaders {
    /// Signs `body` with every secret given (more than one during a key rotation).
    pub fn new(secrets: &[&Secret], msg_id: &str, timestamp: i64, body: &[u8]) -> Self {
        let mut signature = String::with_capacity(secrets.len() * (SIGNATURE_LEN + 1));
        for (i, secret) in secrets.iter().enumerate() {
            if i > 0 {
                signature.push(' ');
            }
            secret.sign_into(msg_id, timestamp, body, &mut signature);
        }
        Self {
            id: msg_id.to_owned(),
            timestamp,
            signature,
        }
    }

    /// As `(name, value)` pairs, ready to put on a request.
    pub fn pairs(&self) -> [(&'static str, String); 3] {
        [
            (HEADER_ID, self.id.clone()),
            (HEADER_TIMESTAMP, self.timestamp.to_string()),
            (HEADER_SIGNATURE, self.signature.clone()),
        ]
    }
}

/// Why a signed request did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the secret {0}")]
    Secret(SecretError),
    #[error("missing header `{0}`")]
    MissingHeader(&'static str),
    #[error("header `webhook-timestamp` is not a unix time in seconds: {0:?}")]
    BadTimestamp(String),
    #[error("timestamp is {0} s old, more than the {1} s tolerated")]
    TooOld(i64, u64),
    #[error("timestamp is {0} s in the future, more than the {1} s tolerated")]
    InFuture(i64, u64),
    #[error("header `webhook-signature` has no `v1,` entry")]
    NoV1Signature,
    #[error("no signature matches")]
    NoMatch,
}

/// Checks a received request: headers as `(name, value)` pairs (names compared without case;
/// a repeated `webhook-signature` header counts with all its entries), the exact body bytes,
/// the receiver's clock `now` (unix seconds) and the tolerance on the timestamp.
///
/// The secret is read leniently (any non-empty base64 key after `whsec_`) because the sender
/// under test may use a key size we would not generate.
pub fn verify<I, K, V>(
    secret: &str,
    headers: I,
    body: &[u8],
    now: i64,
    tolerance_secs: u64,
) -> Result<(), VerifyError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let key = decode_key(secret).map_err(VerifyError::Secret)?;
    let mut id = None;
    let mut timestamp = None;
    let mut signatures: Vec<String> = Vec::new();
    for (name, value) in headers {
        let name = name.as_ref();
        if name.eq_ignore_ascii_case(HEADER_ID) {
            id = Some(value.as_ref().trim().to_owned());
        } else if name.eq_ignore_ascii_case(HEADER_TIMESTAMP) {
            timestamp = Some(value.as_ref().trim().to_owned());
        } else if name.eq_ignore_ascii_case(HEADER_SIGNATURE) {
            signatures.extend(value.as_ref().split_whitespace().map(str::to_owned));
        }
    }
    let id = id.ok_or(VerifyError::MissingHeader(HEADER_ID))?;
    let timestamp_text = timestamp.ok_or(VerifyError::MissingHeader(HEADER_TIMESTAMP))?;
    if signatures.is_empty() {
        return Err(VerifyError::MissingHeader(HEADER_SIGNATURE));
    }
    let timestamp: i64 = timestamp_text
        .parse()
        .map_err(|_| VerifyError::BadTimestamp(timestamp_text.clone()))?;
    let tolerance = i64::try_from(tolerance_secs).unwrap_or(i64::MAX);
    let age = now.saturating_sub(timestamp);
    if age > tolerance {
        return Err(VerifyError::TooOld(age, tolerance_secs));
    }
    if -age > tolerance {
        return Err(VerifyError::InFuture(-age, tolerance_secs));
    }
    let mut saw_v1 = false;
    for entry in &signatures {
        let Some(encoded) = entry.strip_prefix("v1,") else {
            continue;
        };
        saw_v1 = true;
        let Ok(tag) = BASE64.decode(encoded) else {
            continue;
        };
        // `verify_slice` compares in constant time.
        if mac(&key, &id, timestamp, body).verify_slice(&tag).is_ok() {
            return Ok(());
        }
    }
    Err(if saw_v1 {
        VerifyError::NoMatch
    } else {
        VerifyError::NoV1Signature
    })
}

/// Unix time in seconds from the system clock.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Vector {
        secret: &'static str,
        id: &'static str,
        timestamp: i64,
        body: &'static str,
        signature: &'static str,
    }

    // The published vectors (reference/standard-webhooks.md).
    const VECTORS: [Vector; 2] = [
        Vector {
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
            timestamp: 1614265330,
            body: r#"{"test": 2432232314}"#,
            signature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        },
        Vector {
            secret: "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            id: "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            timestamp: 1649367553,
            body: r#"{"email":"test@example.com","username":"test_user"}"#,
            signature: "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        },
    ];

    fn headers<'a>(id: &'a str, ts: &'a str, sig: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("Webhook-Id", id),
            ("webhook-timestamp", ts),
            ("WEBHOOK-SIGNATURE", sig),
        ]
    }

    #[test]
    fn published_vectors_sign_and_verify() {
        for v in &VECTORS {
            let secret = Secret::parse(v.secret).unwrap();
            assert_eq!(
                secret.sign(v.id, v.timestamp, v.body.as_bytes()),
                v.signature
            );
            let ts = v.timestamp.to_string();
            verify(
                v.secret,
                headers(v.id, &ts, v.signature),
                v.body.as_bytes(),
                v.timestamp,
                300,
            )
            .unwrap();
        }
    }

    #[test]
    fn published_wrong_signature_does_not_verify() {
        let v = &VECTORS[0];
        let ts = v.timestamp.to_string();
        let bad = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
        assert_eq!(
            verify(
                v.secret,
                headers(v.id, &ts, bad),
                v.body.as_bytes(),
                v.timestamp,
                300
            ),
            Err(VerifyError::NoMatch)
        );
        // One good entry among several is enough (key rotation).
        let rotated = format!("{bad} {}", v.signature);
        verify(
            v.secret,
            headers(v.id, &ts, &rotated),
            v.body.as_bytes(),
            v.timestamp,
            300,
        )
        .unwrap();
    }

    #[test]
    fn timestamps_beyond_tolerance_fail() {
        let v = &VECTORS[0];
        let ts = v.timestamp.to_string();
        let h = || headers(v.id, &ts, v.signature);
        let body = v.body.as_bytes();
        assert_eq!(
            verify(v.secret, h(), body, v.timestamp + 301, 300),
            Err(VerifyError::TooOld(301, 300))
        );
        assert_eq!(
            verify(v.secret, h(), body, v.timestamp - 301, 300),
            Err(VerifyError::InFuture(301, 300))
        );
        verify(v.secret, h(), body, v.timestamp + 300, 300).unwrap();
        verify(v.secret, h(), body, v.timestamp - 300, 300).unwrap();
    }

    #[test]
    fn tampered_body_or_id_fails() {
        let v = &VECTORS[1];
        let ts = v.timestamp.to_string();
        assert_eq!(
            verify(
                v.secret,
                headers(v.id, &ts, v.signature),
                b"{}",
                v.timestamp,
                300
            ),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify(
                v.secret,
                headers("msg_other", &ts, v.signature),
                v.body.as_bytes(),
                v.timestamp,
                300
            ),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn missing_and_malformed_headers_are_named() {
        let v = &VECTORS[0];
        let body = v.body.as_bytes();
        let only_id = vec![("webhook-id", v.id)];
        assert_eq!(
            verify(v.secret, only_id, body, v.timestamp, 300),
            Err(VerifyError::MissingHeader(HEADER_TIMESTAMP))
        );
        assert_eq!(
            verify(v.secret, headers(v.id, "soon", v.signature), body, 0, 300),
            Err(VerifyError::BadTimestamp("soon".into()))
        );
        let ts = v.timestamp.to_string();
        assert_eq!(
            verify(
                v.secret,
                headers(v.id, &ts, "v2,abc"),
                body,
                v.timestamp,
                300
            ),
            Err(VerifyError::NoV1Signature)
        );
    }

    #[test]
    fn secrets_are_parsed_strictly() {
        assert_eq!(Secret::parse("whsec_"), Err(SecretError::Empty));
        assert_eq!(
            Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SecretError::MissingPrefix)
        );
        assert_eq!(Secret::parse("whsec_!!!!"), Err(SecretError::NotBase64));
        // 16 bytes: too short for the spec.
        let short = format!("whsec_{}", BASE64.encode([7u8; 16]));
        assert_eq!(Secret::parse(&short), Err(SecretError::BadLength(16)));
        let long = format!("whsec_{}", BASE64.encode([7u8; 65]));
        assert_eq!(Secret::parse(&long), Err(SecretError::BadLength(65)));
        // A bare `whsec_` is an error for verify too.
        assert_eq!(
            verify("whsec_", Vec::<(&str, &str)>::new(), b"", 0, 300),
            Err(VerifyError::Secret(SecretError::Empty))
        );
        assert!(!format!("{:?}", Secret::generate()).contains("whsec_A"));
    }

    #[test]
    fn generated_secrets_are_valid_and_distinct() {
        let a = Secret::generate();
        let b = Secret::generate();
        assert_ne!(a, b);
        assert_eq!(Secret::parse(a.as_str()).unwrap().key(), a.key());
        assert_eq!(a.key().len(), GENERATED_KEY_BYTES);
    }

    /// Round trips against an implementation nobody here wrote (the `standardwebhooks` crate).
    #[test]
    fn round_trips_with_the_standardwebhooks_crate() {
        for _ in 0..20 {
            let secret = Secret::generate();
            let oracle = standardwebhooks::Webhook::new(secret.as_str()).unwrap();
            let id = format!("msg_{}", rand::random::<u64>());
            let now = unix_now();
            let body =
                serde_json::json!({"n": rand::random::<u32>(), "text": "héllo \"x\""}).to_string();
            // Ours -> theirs.
            let ours = SignedHeaders::new(&[&secret], &id, now, body.as_bytes());
            let mut map = http::HeaderMap::new();
            for (name, value) in ours.pairs() {
                map.insert(name, value.parse().unwrap());
            }
            oracle.verify(body.as_bytes(), &map).unwrap();
            // Theirs -> ours.
            let theirs = oracle.sign(&id, now, body.as_bytes()).unwrap();
            assert_eq!(theirs, ours.signature);
            let ts = now.to_string();
            verify(
                secret.as_str(),
                headers(&id, &ts, &theirs),
                body.as_bytes(),
                now,
                300,
            )
            .unwrap();
        }
        // And a published vector through the oracle.
        let v = &VECTORS[1];
        let oracle = standardwebhooks::Webhook::new(v.secret).unwrap();
        assert_eq!(
            oracle.sign(v.id, v.timestamp, v.body.as_bytes()).unwrap(),
            v.signature
        );
    }
}
