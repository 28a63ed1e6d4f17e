//! Checks a bin runs on every captured request: the API side of [`crate::checks`] (parsing the
//! `schema`, `secret` and `signature_scheme` fields of a bin into errors that name the problem).

use std::sync::Arc;

use crate::checks::{Checks, SchemaCheck, SignatureCheckConfig, SignatureScheme};
use crate::error::ApiError;
use crate::store::CaptureCheck;

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
