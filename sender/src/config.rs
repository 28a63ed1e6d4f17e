//! Settings of [`crate::Hooks`], and the `bin-server serve` flags that set them (flattened into
//! bin-server's own flags, so the server's command line stays the one place to configure it).

use std::path::PathBuf;
use std::time::Duration;

use api::units::{parse_duration, parse_duration_list};

use crate::delivery::DeliveryConfig;
use crate::outbound::OutboundConfig;

/// Settings of [`crate::Hooks`].
#[derive(Debug, Clone)]
pub struct HooksConfig {
    /// A user catalog replacing the built-in one.
    pub catalog_path: Option<PathBuf>,
    /// Webhooks kept at most; creating one more is refused (409 `webhook_limit`): webhooks are
    /// configuration, never evicted.
    pub max_webhooks: usize,
    /// Largest event payload accepted by emit, once serialised; bounds the logs' memory.
    pub max_payload_bytes: usize,
    pub delivery: DeliveryConfig,
    /// Where deliveries and test events may connect. The default, `all`, suits a server in a
    /// test or on loopback; `bin-server serve` sets it from `--outbound-policy` or the bind
    /// address.
    pub outbound: OutboundConfig,
}

impl Default for HooksConfig {
    fn default() -> Self {
        Self {
            catalog_path: None,
            max_webhooks: 1000,
            max_payload_bytes: 256 * 1024,
            delivery: DeliveryConfig::default(),
            outbound: OutboundConfig::default(),
        }
    }
}

/// A retry schedule flag value (`5s,5m,30m` or `none`), read by [`api::units::parse_duration_list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(pub Vec<Duration>);

impl RetrySchedule {
    /// The clap value parser of a schedule flag.
    pub fn parse(text: &str) -> Result<Self, String> {
        parse_duration_list(text).map(RetrySchedule)
    }
}

/// The sending side's flags of `bin-server serve` (each also read from its `HOOKBIN_*`
/// variable).
#[derive(Debug, Clone, clap::Args)]
pub struct HooksArgs {
    /// An event catalog (JSON) replacing the built-in Ultimate Multisite events.
    #[arg(long, env = "HOOKBIN_CATALOG")]
    pub catalog: Option<PathBuf>,
    /// Delays between delivery attempts, comma-separated (`none`: no retries), e.g.
    /// `5s,5m,30m`. Each is a whole number with ms, s, m, h or d; a bare number is seconds.
    /// Jitter adds up to 20 %; a longer Retry-After wins.
    #[arg(long, env = "HOOKBIN_RETRY_SCHEDULE", default_value = "5s,5m,30m,2h,5h,10h,10h",
          value_parser = RetrySchedule::parse)]
    pub retry_schedule: RetrySchedule,
    /// Whole-request timeout of one delivery attempt, e.g. `15s` or `1500ms` (ms, s, m, h, d;
    /// a bare number is seconds).
    #[arg(long, env = "HOOKBIN_DELIVERY_TIMEOUT", default_value = "15s",
          value_parser = parse_duration)]
    pub delivery_timeout: Duration,
    /// Connect timeout of one delivery attempt, e.g. `5s` (ms, s, m, h, d; a bare number is
    /// seconds).
    #[arg(long, env = "HOOKBIN_DELIVERY_CONNECT_TIMEOUT", default_value = "5s",
          value_parser = parse_duration)]
    pub delivery_connect_timeout: Duration,
    /// Webhooks at most; creating one more is refused.
    #[arg(long, env = "HOOKBIN_MAX_WEBHOOKS", default_value_t = 1000)]
    pub max_webhooks: usize,
    /// Failed messages in a row that disable a webhook (0: never).
    #[arg(long, env = "HOOKBIN_DISABLE_AFTER_FAILURES", default_value_t = 5)]
    pub disable_after_failures: u32,
    /// Unfinished messages per webhook; past it a new message is logged as failed ("queue
    /// full") at once and can be resent later.
    #[arg(long, env = "HOOKBIN_MAX_PENDING_PER_WEBHOOK", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_pending_per_webhook: u32,
    /// Messages kept in each webhook's log for listing and resend; the oldest finished one is
    /// dropped first (and counted). At least `--max-pending-per-webhook`.
    #[arg(long, env = "HOOKBIN_MAX_MESSAGES_PER_WEBHOOK", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_messages_per_webhook: u32,
    /// Attempts kept in each webhook's log; the oldest is dropped first (and counted).
    #[arg(long, env = "HOOKBIN_MAX_ATTEMPTS_PER_WEBHOOK", default_value_t = 500,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts_per_webhook: u32,
}

impl HooksArgs {
    /// The settings these flags give. The message log holds at least the pending bound, so an
    /// unfinished message is never evicted.
    pub fn to_config(&self) -> HooksConfig {
        let mut config = HooksConfig {
            catalog_path: self.catalog.clone(),
            max_webhooks: self.max_webhooks,
            ..HooksConfig::default()
        };
        let d = &mut config.delivery;
        d.retry_schedule = self.retry_schedule.0.clone();
        d.request_timeout = self.delivery_timeout;
        d.connect_timeout = self.delivery_connect_timeout;
        d.disable_after_failures = self.disable_after_failures;
        d.max_pending_per_webhook = self.max_pending_per_webhook as usize;
        d.max_messages_per_webhook = self
            .max_messages_per_webhook
            .max(self.max_pending_per_webhook) as usize;
        d.max_attempts_per_webhook = self.max_attempts_per_webhook as usize;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        hooks: HooksArgs,
    }

    #[test]
    fn flags_set_the_config() {
        let flags = Flags::try_parse_from([
            "x",
            "--retry-schedule",
            "1s,1s,2s",
            "--delivery-timeout",
            "2s",
            "--disable-after-failures",
            "0",
            "--max-pending-per-webhook",
            "50",
            "--max-messages-per-webhook",
            "10",
        ])
        .unwrap();
        let c = flags.hooks.to_config();
        assert_eq!(
            c.delivery.retry_schedule,
            [1, 1, 2].map(Duration::from_secs)
        );
        assert_eq!(c.delivery.request_timeout, Duration::from_secs(2));
        assert_eq!(c.delivery.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.delivery.disable_after_failures, 0);
        // The log never holds fewer messages than may be pending.
        assert_eq!(c.delivery.max_pending_per_webhook, 50);
        assert_eq!(c.delivery.max_messages_per_webhook, 50);

        let defaults = Flags::try_parse_from(["x"]).unwrap().hooks.to_config();
        assert_eq!(
            defaults.delivery.retry_schedule,
            crate::delivery::default_schedule()
        );
        // One rule for every duration flag: a bare number is seconds.
        let bare =
            Flags::try_parse_from(["x", "--retry-schedule", "1,2", "--delivery-timeout", "3"])
                .unwrap()
                .hooks
                .to_config();
        assert_eq!(
            bare.delivery.retry_schedule,
            [1, 2].map(Duration::from_secs)
        );
        assert_eq!(bare.delivery.request_timeout, Duration::from_secs(3));
        let none = Flags::try_parse_from(["x", "--retry-schedule", "none"]).unwrap();
        assert!(none.hooks.to_config().delivery.retry_schedule.is_empty());

        let e = Flags::try_parse_from(["x", "--retry-schedule", "1s,soon"])
            .err()
            .unwrap();
        assert!(e.to_string().contains("\"soon\" is not a duration"), "{e}");
    }
}
