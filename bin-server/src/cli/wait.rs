//! `bin-server wait`: blocks until N requests matching the filters are in a bin, then judges
//! them against the bin's checks and an optional local schema.
//!
//! Requests are taken oldest first: the first call has no cursor (or `--after`), so requests that
//! arrived before `wait` started count; each further one waits after the last match. Waits
//! longer than the server's 300 s maximum are chained. The first request that fails a check ends
//! the wait at once (exit 1): a CI job learns of a bad payload without sitting out the timeout.

use std::time::Duration;

use super::client::{Client, ClientError};
use crate::checks::{SchemaCheck, describe_failures};

/// What to wait for.
#[derive(Debug, Clone, Default)]
pub struct WaitOptions {
    pub bin: String,
    /// How long to wait in all (chained polls when longer than [`api::WAIT_MAX_TIMEOUT`]).
    pub timeout: Duration,
    /// The filters, and `after` for the first poll (a sequence number or request id); its
    /// `timeout` is set per poll.
    pub query: api::WaitQuery,
    /// Checked here, on top of the bin's own checks.
    pub schema: Option<SchemaCheck>,
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
    /// The filters in words, for messages.
    fn describe(&self) -> String {
        let filters = api::WaitQuery {
            after: None,
            timeout: None,
            ..self.query.clone()
        };
        let q = filters.pairs();
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
    if !api::checks_passed(r.validation.as_ref(), r.signature.as_ref()) {
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
    let mut query = opts.query.clone();
    let mut got: Vec<api::CapturedRequestOut> = Vec::new();
    while got.len() < count {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let found = client
            .wait_once(&opts.bin, &query, left.min(api::WAIT_MAX_TIMEOUT))
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
        query.after = Some(r.seq.to_string());
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
