//! `bin-server forward BIN --to URL`: follows a bin's live stream and replays each new request,
//! byte-exact, to a URL this machine can reach (like `stripe listen --forward-to`).
//!
//! Requests are forwarded one at a time, in capture order. The stream is resumed with
//! `Last-Event-ID`, so when it drops (server restart, network) the requests captured meanwhile
//! that the bin still holds are forwarded after the reconnect, none twice. A `resync` (this
//! client fell behind the live stream) is handled the same way; one that says the bin holds
//! nothing as new as our last request (re-created, or a memory server restarted) starts again
//! from the bin's first request.

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;

use eventsource_stream::{EventStreamError, Eventsource};

use api::error_chain;

use super::client::{Client, ClientError};
use crate::replay;

/// The longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What happened, for the caller to print.
#[derive(Debug)]
pub enum ForwardEvent {
    /// Following the bin's stream (again).
    Connected,
    /// One request was replayed.
    Forwarded {
        seq: u64,
        method: String,
        path: String,
        outcome: api::ReplayOut,
    },
    /// The stream dropped; retrying after `retry_in`.
    Disconnected { reason: String, retry_in: Duration },
}

impl std::fmt::Display for ForwardEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connected => write!(f, "connected, forwarding new requests"),
            Self::Forwarded {
                seq,
                method,
                path,
                outcome,
            } => {
                write!(f, "#{seq} {method} {path} -> ")?;
                match (&outcome.status, &outcome.error) {
                    (Some(s), _) => write!(f, "{s} ({} ms)", outcome.duration_ms),
                    (None, Some(e)) => write!(f, "error: {e}"),
                    (None, None) => write!(f, "no answer"),
                }
            }
            Self::Disconnected { reason, retry_in } if retry_in.is_zero() => {
                write!(f, "stream lost ({reason}); reconnecting now")
            }
            Self::Disconnected { reason, retry_in } => write!(
                f,
                "stream lost ({reason}); reconnecting in {}s",
                retry_in.as_secs()
            ),
        }
    }
}

/// Forwards until `shutdown` resolves (then `Ok`) or the bin is gone (then `Err`).
pub async fn forward(
    client: &Client,
    bin: &str,
    to: &str,
    shutdown: impl Future<Output = ()>,
    mut report: impl FnMut(ForwardEvent),
) -> Result<(), ClientError> {
    // Fails early on a bad target or an unknown bin.
    replay::target_url(to, "/", None, true).map_err(ClientError::Other)?;
    // Requests already in the bin are not forwarded: start after the newest one.
    let mut last = client.bin(bin).await?.total_captured;
    let http = reqwest::Client::builder()
        .timeout(replay::TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ClientError::Other(error_chain(&e)))?;
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_secs(1);
    loop {
        let session = follow(client, &http, bin, to, &mut last, &mut report);
        let reason = tokio::select! {
            () = &mut shutdown => return Ok(()),
            r = session => match r {
                // Behind the live stream: resume from the store at once.
                Ok(Ended::Behind) => {
                    report(ForwardEvent::Disconnected {
                        reason: "fell behind the live stream".into(),
                        retry_in: Duration::ZERO,
                    });
                    continue;
                }
                Ok(Ended::Dropped(reason)) => {
                    backoff = Duration::from_secs(1);
                    reason
                }
                // The bin is gone or the server refuses: no point in retrying.
                Err(e @ (ClientError::Api { .. } | ClientError::Other(_) | ClientError::OutputClosed)) => {
                    return Err(e);
                }
                Err(e @ ClientError::Connect { .. }) => e.to_string(),
            },
        };
        report(ForwardEvent::Disconnected {
            reason,
            retry_in: backoff,
        });
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Why a connection to the stream ended, when a reconnect may help.
enum Ended {
    /// The server said `resync`: this client missed live events.
    Behind,
    /// The stream broke or closed.
    Dropped(String),
}

/// One connection to the stream.
async fn follow(
    client: &Client,
    http: &reqwest::Client,
    bin: &str,
    to: &str,
    last: &mut u64,
    report: &mut impl FnMut(ForwardEvent),
) -> Result<Ended, ClientError> {
    let resp = client.stream(bin, *last).await?;
    let mut events = resp.bytes_stream().eventsource();
    while let Some(ev) = events.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(EventStreamError::Transport(e)) => {
                return Ok(Ended::Dropped(error_chain(&e)));
            }
            Err(e) => return Ok(Ended::Dropped(format!("unreadable event stream: {e}"))),
        };
        match ev.event.as_str() {
            "ready" => report(ForwardEvent::Connected),
            "request" => {
                let r: api::CapturedRequestOut = serde_json::from_str(&ev.data)
                    .map_err(|e| ClientError::Other(format!("unreadable request event: {e}")))?;
                if r.seq <= *last {
                    continue;
                }
                *last = r.seq;
                let url = replay::target_url(to, &r.path, r.query.as_deref(), true)
                    .map_err(ClientError::Other)?;
                let headers: Vec<(&[u8], &[u8])> = r
                    .headers
                    .iter()
                    .map(|h| (h.name.as_bytes(), h.value.as_bytes()))
                    .collect();
                let outcome = replay::send(http, url, &r.method, headers, r.body_bytes()).await;
                report(ForwardEvent::Forwarded {
                    seq: r.seq,
                    method: r.method.clone(),
                    path: r.path.clone(),
                    outcome,
                });
            }
            "resync" => {
                // The bin holds nothing as new as our last request: it was re-created, or
                // the server restarted on a memory store. Everything it holds now is new to
                // us: start again from its first request.
                let reset = serde_json::from_str::<api::ResyncEvent>(&ev.data)
                    .is_ok_and(|r| r.reason.as_deref() == Some("last_event_id_ahead"));
                if reset {
                    *last = 0;
                }
                return Ok(Ended::Behind);
            }
            "bin_deleted" => {
                return Err(ClientError::Other(format!("bin {bin:?} was deleted")));
            }
            _ => {}
        }
    }
    Ok(Ended::Dropped("the server closed the stream".into()))
}
