//! The HTTP client of the subcommands: one `reqwest::Client` and the server's base URL, with
//! the server's JSON errors turned into [`ClientError`]s that read as one line.

use std::time::Duration;

use futures_util::StreamExt;

use api::error_chain;

/// Why a call to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the server at {server}: {cause} (is `bin-server serve` running? set --server or HOOKBIN_SERVER)"
    )]
    Connect { server: String, cause: String },
    #[error("{message} ({status} {code})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("{0}")]
    Other(String),
    /// Whoever reads our stdout stopped (`... | head`): not an error, the command stops quietly
    /// with status 0.
    #[error("the output was closed")]
    OutputClosed,
}

impl ClientError {
    /// A failed write of the command's output.
    pub fn output(e: &std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Self::OutputClosed
        } else {
            Self::Other(format!("cannot write the output: {e}"))
        }
    }
}

/// A client of one bin-server.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// `Bearer TOKEN`, sent with every call to the server (never to a `forward` target, which
    /// has its own HTTP client); marked sensitive so it stays out of debug output.
    authorization: Option<reqwest::header::HeaderValue>,
}

impl Client {
    /// `server` is the base URL (`http://127.0.0.1:8080`).
    pub fn new(server: &str) -> Result<Self, ClientError> {
        let base = server.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base)
            .map_err(|e| ClientError::Other(format!("--server {server:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ClientError::Other(format!(
                "--server {server:?} must be an http:// or https:// URL"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ClientError::Other(error_chain(&e)))?;
        Ok(Self {
            base,
            http,
            authorization: None,
        })
    }

    /// Sends `Authorization: Bearer TOKEN` with every call (the server's `--auth-token` or a
    /// bin's own token).
    pub fn with_token(mut self, token: &str) -> Result<Self, ClientError> {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| ClientError::Other("--token must be visible ASCII".into()))?;
        value.set_sensitive(true);
        self.authorization = Some(value);
        Ok(self)
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request, mapping transport errors and non-2xx answers (other than `allow`).
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        allow: &[u16],
    ) -> Result<reqwest::Response, ClientError> {
        let req = match &self.authorization {
            Some(value) => req.header(reqwest::header::AUTHORIZATION, value.clone()),
            None => req,
        };
        let resp = req.send().await.map_err(|e| self.transport(&e))?;
        let status = resp.status().as_u16();
        if resp.status().is_success() || allow.contains(&status) {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<api::ErrorBody>(&text) {
            Ok(body) if status == 401 => ClientError::Api {
                status,
                code: body.error.code,
                message: format!(
                    "{} ({})",
                    body.error.message,
                    if self.authorization.is_some() {
                        "the --token given is not accepted here"
                    } else {
                        "pass --token or set HOOKBIN_TOKEN"
                    }
                ),
            },
            Ok(body) => ClientError::Api {
                status,
                code: body.error.code,
                message: body.error.message,
            },
            Err(_) => ClientError::Api {
                status,
                code: "http_error".into(),
                message: format!("the server answered {status}: {}", text.trim()),
            },
        })
    }

    fn transport(&self, e: &reqwest::Error) -> ClientError {
        if e.is_connect() || e.is_timeout() || e.is_request() {
            ClientError::Connect {
                server: self.base.clone(),
                cause: error_chain(e),
            }
        } else {
            ClientError::Other(error_chain(e))
        }
    }

    /// `POST /api/bins`, or `PUT /api/bins/{name}` when `input` names the bin (idempotent).
    pub async fn create_bin(&self, input: &api::BinIn) -> Result<api::BinOut, ClientError> {
        let req = match &input.name {
            Some(name) => self.http.put(self.url(&format!("/api/bins/{name}"))),
            None => self.http.post(self.url("/api/bins")),
        };
        self.json(self.send(req.json(input), &[]).await?).await
    }

    /// `GET /api/bins/{bin}`.
    pub async fn bin(&self, bin: &str) -> Result<api::BinOut, ClientError> {
        let req = self.http.get(self.url(&format!("/api/bins/{bin}")));
        self.json(self.send(req, &[]).await?).await
    }

    /// One long poll of `GET /api/bins/{bin}/wait` with `query`'s filters and `after`, for
    /// `timeout` (at most [`api::WAIT_MAX_TIMEOUT`]); `None` when the server timed out (408).
    pub async fn wait_once(
        &self,
        bin: &str,
        query: &api::WaitQuery,
        timeout: Duration,
    ) -> Result<Option<api::CapturedRequestOut>, ClientError> {
        let query = api::WaitQuery {
            timeout: Some(timeout),
            ..query.clone()
        };
        let req = self
            .http
            .get(self.url(&format!("/api/bins/{bin}/wait")))
            .query(&query.pairs())
            // The server answers by `timeout`; leave room for a slow network.
            .timeout(timeout + Duration::from_secs(30));
        let resp = self.send(req, &[408]).await?;
        if resp.status().as_u16() == 408 {
            return Ok(None);
        }
        self.json(resp).await.map(Some)
    }

    /// `GET /api/bins/{bin}/export?format=...`, streamed into `out`.
    pub async fn export(
        &self,
        bin: &str,
        format: &str,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<u64, ClientError> {
        let req = self
            .http
            .get(self.url(&format!("/api/bins/{bin}/export")))
            .query(&[("format", format)]);
        let resp = self.send(req, &[]).await?;
        let mut body = resp.bytes_stream();
        let mut n = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| self.transport(&e))?;
            out.write_all(&chunk).map_err(|e| ClientError::output(&e))?;
            n += chunk.len() as u64;
        }
        out.flush().map_err(|e| ClientError::output(&e))?;
        Ok(n)
    }

    /// Opens `GET /api/bins/{bin}/stream`, resuming after sequence number `after`.
    pub async fn stream(&self, bin: &str, after: u64) -> Result<reqwest::Response, ClientError> {
        let req = self
            .http
            .get(self.url(&format!("/api/bins/{bin}/stream")))
            .header("accept", "text/event-stream")
            .header("last-event-id", after.to_string());
        self.send(req, &[]).await
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        resp: reqwest::Response,
    ) -> Result<T, ClientError> {
        let bytes = resp.bytes().await.map_err(|e| self.transport(&e))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            ClientError::Other(format!(
                "the server's answer is not what this client expects: {e}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_urls() {
        assert!(Client::new("http://127.0.0.1:8080/").is_ok());
        assert!(Client::new("127.0.0.1:8080").is_err());
        assert!(Client::new("ftp://x").is_err());
    }
}
