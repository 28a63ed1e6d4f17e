//! The instance's one reader of the live channel: every event any instance publishes (in its
//! scripts, so in the order the changes happened) is fanned out into this instance's
//! [`LiveHub`](super::LiveHub), and settings changes drop the cached capture settings.
//!
//! The reader pings every second; a ping without an answer, or the connection closing, makes
//! it reconnect (50 ms, doubling to 1 s between tries). While it is away nothing is cached
//! and `/healthz` says so; once subscribed again every subscriber gets
//! [`LiveEvent::Resync`] (SSE clients a `resync` event, waiters reread the store from their
//! cursor), since whatever was published meanwhile is lost to this instance.

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::PubSub;

use super::{BinName, CapturedRequest, LiveEvent, Shared};

/// How often the reader checks that its connection still answers.
const PING_EVERY: Duration = Duration::from_secs(1);
const PING_DEADLINE: Duration = Duration::from_secs(2);
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// A pub/sub connection subscribed to `channel`.
pub(super) async fn subscribe(client: &redis::Client, channel: &str) -> redis::RedisResult<PubSub> {
    let connect = async {
        let mut ps = client.get_async_pubsub().await?;
        ps.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(ps)
    };
    match tokio::time::timeout(super::DEADLINE, connect).await {
        Ok(r) => r,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "subscribing took too long",
        ))),
    }
}

/// Reads the feed until the store is dropped (which aborts this task).
pub(super) async fn run(
    client: redis::Client,
    channel: String,
    shared: Arc<Shared>,
    first: PubSub,
    shown: String,
) {
    let mut next = Some(first);
    let mut retry = RETRY_FIRST;
    loop {
        let ps = match next.take() {
            Some(ps) => ps,
            None => match subscribe(&client, &channel).await {
                Ok(ps) => {
                    tracing::info!("redis at {shown}: live feed subscribed again");
                    retry = RETRY_FIRST;
                    // Whatever changed while away is unknown: cache afresh, subscribers reread.
                    shared.invalidate_all();
                    shared.feed_up.store(true, SeqCst);
                    shared.live.resync_all();
                    ps
                }
                Err(e) => {
                    tracing::debug!("redis at {shown}: live feed: {e}");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_MAX);
                    continue;
                }
            },
        };
        let (mut sink, mut messages) = ps.split();
        // A batch's numbers, until its requests come (the next message, same transaction).
        let mut numbers = None;
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = messages.next() => match msg {
                    Some(msg) => dispatch(&shared, &mut numbers, msg.get_payload_bytes()),
                    None => break,
                },
                _ = ping.tick() => {
                    let answered = tokio::time::timeout(
                        PING_DEADLINE,
                        sink.ping::<redis::Value>(),
                    )
                    .await;
                    if !matches!(answered, Ok(Ok(_))) {
                        break;
                    }
                }
            }
        }
        tracing::warn!("redis at {shown}: live feed lost, reconnecting");
        shared.feed_up.store(false, SeqCst);
        shared.invalidate_all();
    }
}

/// The `q` event of a batch: its token and each request's sequence number (0: not stored).
pub(super) struct Numbers {
    token: u64,
    seqs: Vec<u64>,
}

/// Parses `q{token} {seq} {seq}...`.
fn numbers(data: &[u8]) -> Option<Numbers> {
    let mut words = std::str::from_utf8(data).ok()?.split(' ');
    let token = words.next()?.parse().ok()?;
    let seqs = words.map(str::parse).collect::<Result<_, _>>().ok()?;
    Some(Numbers { token, seqs })
}

/// The `B` event of a batch (`batch.rs` writes it) with the numbers of its `q` event: every
/// stored request of a watched bin goes to the hub, in the batch's order.
fn captured(shared: &Shared, numbers: Option<Numbers>, data: &[u8]) {
    let Some((token, mut rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let Some(numbers) = numbers.filter(|n| n.token == u64::from_le_bytes(*token)) else {
        // Its script did not run (a Redis that lost its scripts answers NOSCRIPT; the batch
        // goes again, numbers and all): nothing of it was stored.
        tracing::debug!("a batch event without its sequence numbers; skipped");
        return;
    };
    for seq in numbers.seqs {
        let Some((len, after)) = rest.split_first_chunk::<2>() else {
            break;
        };
        let len = u16::from_le_bytes(*len) as usize;
        let Some((name, after)) = after.split_at_checked(len) else {
            break;
        };
        let Some((len, after)) = after.split_first_chunk::<4>() else {
            break;
        };
        let len = u32::from_le_bytes(*len) as usize;
        let Some((encoded, after)) = after.split_at_checked(len) else {
            break;
        };
        rest = after;
        if seq == 0 {
            continue;
        }
        let Some(bin) = std::str::from_utf8(name)
            .ok()
            .filter(|n| shared.live.watched(n))
            .and_then(|n| BinName::parse(n).ok())
        else {
            continue;
        };
        let Some(mut request) = CapturedRequest::decode(encoded) else {
            tracing::warn!("a live event of bin {bin:?} does not decode; skipped");
            continue;
        };
        request.seq = seq;
        let request = Arc::new(request);
        shared.live.publish(bin.as_str(), || LiveEvent::Captured {
            bin: bin.clone(),
            request,
            rendered: Arc::default(),
        });
    }
}

/// One message of the channel. A batch of captures is two: `q` (from the capture script: the
/// batch's token and sequence numbers) and right after it `B` (the requests, see
/// [`captured`]). Every other is a kind byte, the bin's name, and for some kinds `\n` and a
/// payload (`d`: the request id's 16 bytes). `C` cleared, `x` bin deleted, `s` settings
/// changed.
fn dispatch(shared: &Shared, pending: &mut Option<Numbers>, payload: &[u8]) {
    let Some((&kind, rest)) = payload.split_first() else {
        return;
    };
    match kind {
        b'q' => {
            *pending = numbers(rest);
            return;
        }
        b'B' => return captured(shared, pending.take(), rest),
        _ => {}
    }
    let (name, data) = match rest.iter().position(|&b| b == b'\n') {
        Some(nl) => (&rest[..nl], &rest[nl + 1..]),
        None => (rest, &[][..]),
    };
    let Some(bin) = std::str::from_utf8(name)
        .ok()
        .and_then(|n| BinName::parse(n).ok())
    else {
        return;
    };
    let name = bin.as_str();
    match kind {
        b'd' => {
            let Ok(id) = uuid::Uuid::from_slice(data) else {
                return;
            };
            shared.live.publish(name, || LiveEvent::Deleted {
                bin: bin.clone(),
                id,
            });
        }
        b'C' => shared
            .live
            .publish(name, || LiveEvent::Cleared { bin: bin.clone() }),
        b'x' => {
            shared.invalidate(name);
            shared
                .live
                .publish(name, || LiveEvent::BinDeleted { bin: bin.clone() });
        }
        b's' => shared.invalidate(name),
        _ => {}
    }
}
