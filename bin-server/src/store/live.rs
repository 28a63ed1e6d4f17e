//! The instance's live feed: one broadcast channel per watched bin plus one for all bins.
//!
//! Backends publish here what this instance must hear; SSE streams, `wait` and the smee stream
//! subscribe here. A channel exists only while somebody listens, so a capture nobody watches
//! costs one map lookup and builds no event. A subscriber that falls more than its buffer
//! behind gets `Lagged` and rereads the store ([`super::Store::read_after`]).

use dashmap::DashMap;
use tokio::sync::broadcast;

use super::{BinName, LiveEvent};

/// Live events buffered per bin subscriber before it is told to resync: enough for bursts of a
/// few hundred requests while the client reads, small enough that a stalled client costs little.
const BIN_EVENTS_BUFFER: usize = 256;
/// The same for subscribers of all bins.
const ALL_EVENTS_BUFFER: usize = 1024;

/// See the module docs.
pub struct LiveHub {
    bins: DashMap<BinName, broadcast::Sender<LiveEvent>>,
    all: broadcast::Sender<LiveEvent>,
}

impl std::fmt::Debug for LiveHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveHub")
            .field("watched_bins", &self.bins.len())
            .field("all_subscribers", &self.all.receiver_count())
            .finish()
    }
}

impl Default for LiveHub {
    fn default() -> Self {
        Self {
            bins: DashMap::new(),
            all: broadcast::channel(ALL_EVENTS_BUFFER).0,
        }
    }
}

impl LiveHub {
    /// Live events of one bin, from now on. Whether the bin exists is the caller's business
    /// (subscribe first, then read the store, so nothing falls between the two).
    pub fn subscribe(&self, bin: &BinName) -> broadcast::Receiver<LiveEvent> {
        self.bins
            .entry(bin.clone())
            .or_insert_with(|| broadcast::channel(BIN_EVENTS_BUFFER).0)
            .subscribe()
    }

    /// Live events of all bins, from now on.
    pub fn subscribe_all(&self) -> broadcast::Receiver<LiveEvent> {
        self.all.subscribe()
    }

    /// Whether anybody on this instance listens to `bin` (its own stream or all bins).
    pub fn watched(&self, bin: &str) -> bool {
        self.all.receiver_count() > 0 || self.bins.contains_key(bin)
    }

    /// Sends the event `make` builds to the bin's subscribers and those of all bins. Nobody
    /// watching: nothing is built (a capture then allocates no shared rendering). The event is
    /// built once and cloned into both channels, so both kinds of subscriber share what is
    /// rendered for it.
    pub fn publish(&self, bin: &str, make: impl FnOnce() -> LiveEvent) {
        let to_all = self.all.receiver_count() > 0;
        let to_bin = match self.bins.get(bin) {
            Some(tx) if tx.receiver_count() > 0 => Some(tx.clone()),
            Some(tx) => {
                drop(tx);
                // Everyone left: drop the channel (unless somebody subscribed meanwhile; the
                // check runs under the map's lock, as `subscribe` does).
                self.bins.remove_if(bin, |_, tx| tx.receiver_count() == 0);
                None
            }
            None => None,
        };
        if to_bin.is_none() && !to_all {
            return;
        }
        let event = make();
        // A send fails only when every receiver left meanwhile: then nobody is watching.
        if let Some(tx) = to_bin {
            let _ = tx.send(event.clone());
        }
        if to_all {
            let _ = self.all.send(event);
        }
    }

    /// Tells every subscriber (of each bin and of all bins) that the live feed was interrupted
    /// and events may have been missed ([`LiveEvent::Resync`]): each rereads the store from
    /// its cursor. A backend whose feed comes from a server calls this after reconnecting.
    pub fn resync_all(&self) {
        for tx in self.bins.iter() {
            let _ = tx.send(LiveEvent::Resync);
        }
        let _ = self.all.send(LiveEvent::Resync);
    }

    /// Subscriptions open on this instance (each bin's and all bins').
    pub fn subscribers(&self) -> usize {
        self.all.receiver_count()
            + self
                .bins
                .iter()
                .map(|tx| tx.receiver_count())
                .sum::<usize>()
    }

    /// Drops the channels nobody listens to any more (bins watched once and then left alone
    /// would otherwise keep theirs until their next event).
    pub fn prune(&self) {
        self.bins.retain(|_, tx| tx.receiver_count() > 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cleared(bin: &str) -> LiveEvent {
        LiveEvent::Cleared {
            bin: BinName::parse(bin).unwrap(),
        }
    }

    #[test]
    fn events_reach_their_bin_and_all_bins_and_nothing_is_built_unwatched() {
        let hub = LiveHub::default();
        let a = BinName::parse("a").unwrap();
        hub.publish("a", || panic!("nobody watches: nothing may be built"));
        let mut rx_a = hub.subscribe(&a);
        let mut rx_all = hub.subscribe_all();
        hub.publish("a", || cleared("a"));
        hub.publish("b", || cleared("b"));
        assert!(matches!(rx_a.try_recv(), Ok(LiveEvent::Cleared { bin }) if bin.as_str() == "a"));
        assert!(rx_a.try_recv().is_err(), "b's event is not a's");
        assert!(matches!(rx_all.try_recv(), Ok(LiveEvent::Cleared { bin }) if bin.as_str() == "a"));
        assert!(matches!(rx_all.try_recv(), Ok(LiveEvent::Cleared { bin }) if bin.as_str() == "b"));
        assert!(hub.watched("b"), "all-bins subscribers watch every bin");
        drop(rx_all);
        assert!(!hub.watched("b"));

        // The last subscriber gone: the channel goes with the next event or prune.
        drop(rx_a);
        assert!(hub.watched("a"));
        hub.publish("a", || panic!("nobody watches a any more"));
        assert!(!hub.watched("a"));
        let rx = hub.subscribe(&a);
        drop(rx);
        hub.prune();
        assert!(!hub.watched("a"));
    }
}
