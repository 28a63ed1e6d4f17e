//! `bin-server wait`: blocks until N requests matching the filters are in a bin, then judges
//! them against the bin's checks and an optional local schema.
//!
//! Requests are taken oldest first: the first call has no cursor (or `--after`), so requests that
//! arrived before `wait` started count; each further one waits after the last match. Waits
//! longer than the server's 300 s maximum are chained. The first request that fails a check ends
//! the wait at once (exit 1): a CI job learns of a bad payload without sitting out the timeout.

use std::time::Duration;

use super::client::{Client, ClientError};
use crate::checks::{SchemaCheck, describe_failures, passed};

/// What to wait for.
#[derive(Debug, Clone, Default)]
pub struct WaitOptions {
    pub bin: String,
    pub timeout: Duration,
    pub method: Option<String>,
    pub path: Option<String>,
    /// `Name: value` (or `Name`).
    pub headers: Vec<String>,
    /// `/pointer=value` (or `/pointer`).
    pub json: Vec<String>,
    /// Checked here, on top of the bin's own checks.
    pub schema: Option<SchemaCheck>,
    /// A sequence number or request id.
    pub after: Option<String>,
    /// Requests to wait for (at least 1).
    pub count: u32,
}

/// How a wait ended.
#[derive(Debug)]
pub enum WaitOutcome {
    /// All `count` requests arrived and passed every check.
    Matched(Vec<api::CapturedRequestOut>),
    /// A matching request failed the schema or signature check; the last one in the list.
    Violation {
        requests: Vec<api::CapturedRequestOut>,
        message: String,
    },
    /// The time ran out with fewer than `count` requests.
    Timeout {
        requests: Vec<api::CapturedRequestOut>,
        message: String,
    },
}

impl WaitOptions {
    fn query(&self, after: Option<&str>) -> Vec<(String, String)> {
        let mut q = Vec::new();
        if let Some(m) = &self.method {
            q.push(("method".into(), m.clone()));
        }
        if let Some(p) = &self.path {
            q.push(("path".into(), p.clone()));
        }
        for h in &self.headers {
            q.push(("header".into(), h.clone()));
        }
        for j in &self.json {
            q.push(("json".into(), j.clone()));
        }
        if let Some(a) = after {
            q.push(("after".into(), a.to_owned()));
        }
        q
    }

    /// The filters in words, for messages.
    fn describe(&self) -> String {
        let q = self.query(None);
        if q.is_empty() {
            "any request".into()
        } else {
            let parts: Vec<String> = q.iter().map(|(k, v)| format!("{k} {v}")).collect();
            format!("a request with {}", parts.join(", "))
        }
    }
}

/// Why `r` fails, or `None` when it passes the bin's checks and `schema`.
fn violations(r: &api::CapturedRequestOut, schema: Option<&SchemaCheck>) -> Option<String> {
    let local = schema.map(|s| s.validate_body(&r.body_bytes()));
    let mut problems = Vec::new();
    if !passed(r.validation.as_ref(), r.signature.as_ref()) {
        problems.push(describe_failures(
            r.validation.as_ref(),
            r.signature.as_ref(),
        ));
    }
    if let Some(v) = local.as_ref().filter(|v| !v.valid) {
        problems.push(format!("--schema: {}", describe_failures(Some(v), None)));
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// Runs the wait; `on_match` sees each matching request as it arrives (the CLI prints it).
pub async fn wait(
    client: &Client,
    opts: &WaitOptions,
    mut on_match: impl FnMut(&api::CapturedRequestOut),
) -> Result<WaitOutcome, ClientError> {
    let count = opts.count.max(1) as usize;
    let deadline = tokio::time::Instant::now() + opts.timeout;
    let mut after = opts.after.clone();
    let mut got: Vec<api::CapturedRequestOut> = Vec::new();
    while got.len() < count {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let found = client
            .wait_once(
                &opts.bin,
                &opts.query(after.as_deref()),
                left.min(api::WAIT_MAX_TIMEOUT),
            )
            .await?;
        let Some(r) = found else {
            if tokio::time::Instant::now() < deadline {
                continue; // a chained wait longer than the server's maximum
            }
            let message = format!(
                "timed out after {} waiting for {} in bin {:?} ({} of {count} arrived)",
                api::units::format_duration(opts.timeout),
                opts.describe(),
                opts.bin,
                got.len(),
            );
            return Ok(WaitOutcome::Timeout {
                requests: got,
                message,
            });
        };
        on_match(&r);
        after = Some(r.seq.to_string());
        let problems = violations(&r, opts.schema.as_ref());
        let seq = r.seq;
        got.push(r);
        if let Some(p) = problems {
            return Ok(WaitOutcome::Violation {
                requests: got,
                message: format!(
                    "request #{seq} in bin {:?} failed its checks: {p}",
                    opts.bin
                ),
            });
        }
    }
    Ok(WaitOutcome::Matched(got))
}
