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
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = messages.next() => match msg {
                    Some(msg) => dispatch(&shared, msg.get_payload_bytes()),
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

/// One message of the channel: a kind byte, the bin's name, and for some kinds `\n` and a
/// payload (`c`: the sequence number, 8 bytes little-endian, then the request as stored; `d`:
/// the request id's 16 bytes). `C` cleared, `x` bin
/// deleted, `s` settings changed.
fn dispatch(shared: &Shared, payload: &[u8]) {
    let Some((&kind, rest)) = payload.split_first() else {
        return;
    };
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
        b'c' => {
            if !shared.live.watched(name) {
                return;
            }
            // The sequence number (8 bytes, little-endian), then the request as stored.
            let decoded = data.split_first_chunk::<8>().and_then(|(seq, encoded)| {
                let mut request = CapturedRequest::decode(encoded)?;
                request.seq = u64::from_le_bytes(*seq);
                Some(request)
            });
            let Some(request) = decoded else {
                tracing::warn!("a live event of bin {name:?} does not decode; skipped");
                return;
            };
            let request = Arc::new(request);
            shared.live.publish(name, || LiveEvent::Captured {
                bin: bin.clone(),
                request,
                rendered: Arc::default(),
            });
        }
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
