//! The CLI's HTTP client for a running bin-server's webhooks API (`--server`, `HOOKBIN_SERVER`).
//!
//! One reqwest `Client` with a timeout; every error answer is read as the project's JSON error
//! body so the CLI can print the server's own message. A server started with `--auth-token` needs
//! [`ServerClient::with_token`].

use std::time::Duration;

use api::error_chain;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a call to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("`{0}` is not a server URL (expected http://host:port)")]
    BadServerUrl(String),
    #[error("the token must be visible ASCII (it is sent in a header)")]
    BadToken,
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("unexpected answer from {url}: {reason}")]
    BadAnswer { url: String, reason: String },
}

/// A bin-server's `/api` seen from the CLI.
#[derive(Debug, Clone)]
pub struct ServerClient {
    base: reqwest::Url,
    http: reqwest::Client,
    /// `Bearer TOKEN` sent with every call; marked sensitive so debug output leaves it out.
    authorization: Option<reqwest::header::HeaderValue>,
}

impl ServerClient {
    /// `timeout` bounds each call; a test send waits for the endpoint, so keep it above the
    /// server's delivery timeout.
    pub fn new(server: &str, timeout: Duration) -> Result<Self, ClientError> {
        let mut base = reqwest::Url::parse(server.trim())
            .map_err(|_| ClientError::BadServerUrl(server.to_owned()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ClientError::BadServerUrl(server.to_owned()));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| ClientError::BadServerUrl(e.to_string()))?;
        Ok(Self {
            base,
            http,
            authorization: None,
        })
    }

    /// Sends `Authorization: Bearer TOKEN` with every call (the server's `--auth-token`).
    pub fn with_token(mut self, token: &str) -> Result<Self, ClientError> {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| ClientError::BadToken)?;
        value.set_sensitive(true);
        self.authorization = Some(value);
        Ok(self)
    }

    fn url(&self, path: &str) -> reqwest::Url {
        // `path` never starts with `/`, so it stays under the base path.
        self.base.join(path).expect("relative API paths join")
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let mut request = self.http.request(method, url.clone());
        if let Some(value) = &self.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, value.clone());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| ClientError::Unreachable {
            url: url.to_string(),
            reason: error_chain(&e),
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: url.to_string(),
                reason: error_chain(&e),
            })?;
        if !status.is_success() {
            return Err(match serde_json::from_slice::<api::ErrorBody>(&bytes) {
                Ok(body) => ClientError::Api {
                    status: status.as_u16(),
                    code: body.error.code,
                    message: body.error.message,
                },
                Err(_) => ClientError::Api {
                    status: status.as_u16(),
                    code: "http_error".into(),
                    message: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
                },
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadAnswer {
            url: url.to_string(),
            reason: e.to_string(),
        })
    }

    pub async fn events(&self) -> Result<api::EventList, ClientError> {
        self.call(reqwest::Method::GET, "api/events", None::<&()>)
            .await
    }

    pub async fn create_webhook(
        &self,
        input: &api::WebhookIn,
    ) -> Result<api::WebhookOut, ClientError> {
        self.call(reqwest::Method::POST, "api/webhooks", Some(input))
            .await
    }

    pub async fn list_webhooks(&self) -> Result<api::WebhookList, ClientError> {
        self.call(reqwest::Method::GET, "api/webhooks", None::<&()>)
            .await
    }

    /// By id or by name.
    pub async fn webhook(&self, id_or_name: &str) -> Result<api::WebhookOut, ClientError> {
        let path = format!("api/webhooks/{}", segment(id_or_name));
        self.call(reqwest::Method::GET, &path, None::<&()>).await
    }

    pub async fn delete_webhook(&self, id_or_name: &str) -> Result<api::WebhookOut, ClientError> {
        let path = format!("api/webhooks/{}", segment(id_or_name));
        self.call(reqwest::Method::DELETE, &path, None::<&()>).await
    }

    /// Changes the fields `patch` gives (by id or by name).
    pub async fn update_webhook(
        &self,
        id_or_name: &str,
        patch: &api::WebhookPatch,
    ) -> Result<api::WebhookOut, ClientError> {
        let path = format!("api/webhooks/{}", segment(id_or_name));
        self.call(reqwest::Method::PATCH, &path, Some(patch)).await
    }

    /// A new signing secret; the old one keeps signing beside it for `input.grace`.
    pub async fn rotate_secret(
        &self,
        id_or_name: &str,
        input: &api::RotateSecretIn,
    ) -> Result<api::WebhookOut, ClientError> {
        let path = format!("api/webhooks/{}/secret/rotate", segment(id_or_name));
        self.call(reqwest::Method::POST, &path, Some(input)).await
    }

    pub async fn test_webhook(
        &self,
        id_or_name: &str,
        event: Option<&str>,
    ) -> Result<api::TestOutcome, ClientError> {
        let mut path = format!("api/webhooks/{}/test", segment(id_or_name));
        if let Some(event) = event {
            path.push_str("?event=");
            path.push_str(&segment(event));
        }
        self.call(reqwest::Method::POST, &path, Some(&serde_json::json!({})))
            .await
    }

    pub async fn emit(
        &self,
        slug: &str,
        payload: Option<Box<serde_json::value::RawValue>>,
    ) -> Result<api::EmitOut, ClientError> {
        let path = format!("api/events/{}/emit", segment(slug));
        self.call(reqwest::Method::POST, &path, Some(&api::EmitIn { payload }))
            .await
    }

    /// The webhook's delivery log; `limit` caps its messages and attempts (server default 100).
    pub async fn deliveries(
        &self,
        id_or_name: &str,
        limit: Option<usize>,
    ) -> Result<api::DeliveryLog, ClientError> {
        let mut path = format!("api/webhooks/{}/deliveries", segment(id_or_name));
        if let Some(limit) = limit {
            path.push_str(&format!("?limit={limit}"));
        }
        self.call(reqwest::Method::GET, &path, None::<&()>).await
    }

    /// "Retry now": a message waiting for its next attempt is sent at once.
    pub async fn retry_now(
        &self,
        id_or_name: &str,
        message_id: &str,
    ) -> Result<api::MessageRef, ClientError> {
        let path = format!(
            "api/webhooks/{}/messages/{}/retry",
            segment(id_or_name),
            segment(message_id)
        );
        self.call(reqwest::Method::POST, &path, Some(&serde_json::json!({})))
            .await
    }

    pub async fn resend(&self, message_id: &str) -> Result<api::MessageRef, ClientError> {
        let path = format!("api/deliveries/{}/resend", segment(message_id));
        self.call(reqwest::Method::POST, &path, Some(&serde_json::json!({})))
            .await
    }
}

/// Percent-encodes one path segment (names may hold spaces or slashes).
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_under_the_base_and_are_encoded() {
        let c = ServerClient::new("http://127.0.0.1:9/prefix", Duration::from_secs(1)).unwrap();
        assert_eq!(
            c.url(&format!("api/webhooks/{}", segment("my hook/1")))
                .as_str(),
            "http://127.0.0.1:9/prefix/api/webhooks/my%20hook%2F1"
        );
        assert!(matches!(
            ServerClient::new("ftp://x", Duration::from_secs(1)),
            Err(ClientError::BadServerUrl(_))
        ));
        assert!(ServerClient::new("localhost:8080", Duration::from_secs(1)).is_err());
    }

    #[tokio::test]
    async fn an_unreachable_server_is_named() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let c = ServerClient::new(&format!("http://{addr}"), Duration::from_secs(5)).unwrap();
        let e = c.list_webhooks().await.unwrap_err();
        assert!(matches!(e, ClientError::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
    }
}
