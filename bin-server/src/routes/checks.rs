//! Checks a bin runs on every captured request: a JSON Schema and a signature.

use crate::error::ApiError;

/// A bin's validated check settings.
#[derive(Debug, Default)]
pub struct BinChecks {
    pub schema: Option<serde_json::Value>,
    pub signature: Option<(String, String)>,
}

impl BinChecks {
    /// Validates the check settings of a bin body.
    pub fn parse(
        schema: Option<&serde_json::Value>,
        secret: Option<&str>,
        scheme: Option<&str>,
    ) -> Result<Self, ApiError> {
        if schema.is_some() || secret.is_some() || scheme.is_some() {
            return Err(ApiError::bad_request(
                "unsupported",
                "schema and signature checks are not available in this build",
            ));
        }
        Ok(Self::default())
    }
}
