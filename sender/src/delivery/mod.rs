//! The delivery engine: sends signed messages, retries them, and logs every attempt.
//!
//! # How a message travels
//! [`Delivery::enqueue_many`] records an emit's messages in their webhooks' logs and queues
//! their tasks.
//! The task waits for a slot of its webhook (a per-webhook semaphore: that FIFO wait *is* the
//! per-endpoint queue), then for a slot of the whole engine (a global semaphore bounding
//! in-flight requests), then makes one attempt: a POST signed per Standard Webhooks with a
//! fresh timestamp. The answer decides:
//! - 2xx: delivered;
//! - network error, timeout, 408, 429, 5xx: retried after the next delay of the schedule (plus
//!   up to 20 % jitter, and no sooner than a `Retry-After` answer asks), until the schedule is
//!   used up, then failed;
//! - 410 Gone: failed, and the webhook is disabled;
//! - anything else (3xx: redirects are not followed; other 4xx): failed, no retry;
//! - refused by the outbound policy (see [`crate::outbound`]; the target is checked before
//!   sending and its addresses when connecting): failed, no retry (the policy would refuse it
//!   again), the refusal naming the address and the policy as the attempt's error.
//!
//! While a message waits for its retry it holds no slot, so a dead endpoint costs the others
//! nothing but the slots its own in-flight attempts hold (at most `max_in_flight_per_webhook`).
//! A message ends delivered or failed (kept in the log, resendable); on shutdown the messages
//! still pending or scheduled are reported in [`ShutdownReport`].
//!
//! # Bounds (all in [`DeliveryConfig`])
//! - `max_pending_per_webhook`: messages of one webhook not yet finished. At the bound a new
//!   message is not queued: it is logged as failed ("queue full") at once and can be resent.
//! - `max_messages_per_webhook`: messages kept in a webhook's log. Past it the oldest finished
//!   message is dropped and counted in `evicted_messages` (it can no longer be resent).
//! - `max_attempts_per_webhook`: attempts kept in a webhook's log; oldest dropped first and
//!   counted in `evicted_attempts`.
//! - `max_in_flight` and `max_in_flight_per_webhook`: concurrent requests.
//! - The bodies an attempt logs (the request sent, the answer) are cut at
//!   [`LOGGED_BODY_BYTES`] (64 KiB), with a truncated flag.

//!
//! # Layout
//! - [`schedule`]: retry schedules, durations and `Retry-After` (pure).
//! - [`attempt`]: one attempt: the signed request, the answer read within bounds, its verdict.
//! - [`decision`]: what an attempt means for its message (deliver, retry at T, fail,
//!   disable): one pure function.
//! - [`log`]: the per-webhook logs of messages and attempts, bounded.
//! - [`engine`]: [`Delivery`], the tasks that move messages through the above.

pub mod attempt;
pub mod decision;
pub mod engine;
pub mod log;
pub mod schedule;

use std::time::Duration;

pub use attempt::{
    AttemptResult, HeaderList, LOGGED_BODY_BYTES, RESPONSE_EXCERPT_BYTES, Verdict, checked_client,
    http_client, message_body, send_attempt, send_checked, send_checked_url,
};
pub use decision::{Attempted, Decision, RetryPolicy, decide};
pub use engine::{Delivery, DeliveryError, ShutdownReport, Unfinished};
pub use schedule::{default_schedule, jittered_delay, parse_retry_after, retry_delay};

/// The engine's settings.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Delays before the 2nd, 3rd, ... attempt. Empty: no retries.
    pub retry_schedule: Vec<Duration>,
    pub connect_timeout: Duration,
    /// Whole attempt: connect, send, answer headers and the excerpt of its body.
    pub request_timeout: Duration,
    pub max_in_flight: usize,
    pub max_in_flight_per_webhook: usize,
    pub max_pending_per_webhook: usize,
    pub max_messages_per_webhook: usize,
    pub max_attempts_per_webhook: usize,
    /// Failed messages in a row that disable a webhook; 0 never disables.
    pub disable_after_failures: u32,
    /// The longest `Retry-After` honoured; longer asks are cut to it so one answer cannot park a
    /// message forever.
    pub max_retry_after: Duration,
    pub user_agent: String,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            retry_schedule: default_schedule(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            max_in_flight: 256,
            max_in_flight_per_webhook: 4,
            max_pending_per_webhook: 1000,
            max_messages_per_webhook: 1000,
            max_attempts_per_webhook: 500,
            disable_after_failures: 5,
            max_retry_after: Duration::from_secs(24 * 3600),
            user_agent: format!("hookbin-sender/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}
