//! Checks a bin runs on every captured request: the API side of [`crate::checks`] (parsing the
//! `schema`, `secret` and `signature_scheme` fields of a bin into errors that name the problem).

use std::sync::Arc;

use crate::checks::{Checks, SchemaCheck, SignatureCheckConfig, SignatureScheme};
use crate::error::ApiError;
use crate::store::{CaptureCheck, CaptureSettings};

/// A bin's validated check settings.
#[derive(Debug, Default)]
pub struct BinChecks {
    /// The schema as given (returned by the API).
    pub schema: Option<serde_json::Value>,
    /// `(scheme, secret)`.
    pub signature: Option<(String, String)>,
    /// What captures run; `None` when the bin has no checks.
    pub compiled: Option<Arc<dyn CaptureCheck>>,
}

impl BinChecks {
    /// Validates the check settings of a bin body. A secret without a scheme means `standard`;
    /// a scheme without a secret is an error.
    pub fn parse(
        schema: Option<&serde_json::Value>,
        secret: Option<&str>,
        scheme: Option<&str>,
    ) -> Result<Self, ApiError> {
        let compiled_schema = schema
            .map(SchemaCheck::compile)
            .transpose()
            .map_err(|e| ApiError::bad_request("invalid_schema", format!("schema: {e}")))?;
        let signature = match (secret, scheme) {
            (None, None) => None,
            (None, Some(s)) => {
                return Err(ApiError::bad_request(
                    "invalid_signature",
                    format!("signature_scheme {s:?} needs a secret to check signatures with"),
                ));
            }
            (Some(secret), scheme) => {
                let scheme = SignatureScheme::parse(scheme.unwrap_or("standard"))
                    .map_err(|e| ApiError::bad_request("invalid_signature", e))?;
                Some(SignatureCheckConfig::new(scheme, secret).map_err(|e| {
                    ApiError::bad_request(
                        "invalid_signature",
                        format!("secret for scheme {}: {e}", scheme.as_str()),
                    )
                })?)
            }
        };
        let checks = Checks {
            schema: compiled_schema,
            signature,
        };
        Ok(Self {
            schema: schema.cloned(),
            signature: checks
                .signature
                .as_ref()
                .map(|s| (s.scheme.as_str().to_owned(), s.secret().to_owned())),
            compiled: (checks.schema.is_some() || checks.signature.is_some())
                .then(|| Arc::new(checks) as Arc<dyn CaptureCheck>),
        })
    }
}

/// The compiled checks of a bin's capture settings, compiled on first use and kept in the
/// settings value itself (which the store replaces when the settings change, so each settings
/// version is compiled once per instance). `None`: the bin has no checks.
pub fn compiled(settings: &CaptureSettings) -> Option<&Arc<dyn CaptureCheck>> {
    settings
        .compiled
        .get_or_init(|| {
            let (scheme, secret) = settings
                .signature
                .as_ref()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .unzip();
            match BinChecks::parse(settings.schema.as_ref(), secret, scheme) {
                Ok(checks) => checks.compiled,
                // Checked when the settings were saved: a stored value that no longer compiles
                // was damaged outside the API. Capture still works, unchecked, and says why.
                Err(e) => {
                    tracing::error!(
                        "a bin's stored checks do not compile, so they are skipped: {e:?}"
                    );
                    None
                }
            }
        })
        .as_ref()
}
