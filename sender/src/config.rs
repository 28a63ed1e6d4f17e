//! Settings of [`crate::Hooks`], and the `bin-server serve` flags that set them (flattened into
//! bin-server's own flags, so the server's command line stays the one place to configure it).

use std::path::PathBuf;
use std::time::Duration;

use crate::delivery::{self, DeliveryConfig, DurationError};

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
}

impl Default for HooksConfig {
    fn default() -> Self {
        Self {
            catalog_path: None,
            max_webhooks: 1000,
            max_payload_bytes: 256 * 1024,
            delivery: DeliveryConfig::default(),
        }
    }
}

/// A retry schedule flag value (`5s,5m,30m` or `none`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(pub Vec<Duration>);

fn parse_schedule(text: &str) -> Result<RetrySchedule, DurationError> {
    delivery::parse_schedule(text).map(RetrySchedule)
}

/// The sending side's flags of `bin-server serve` (each also read from its `HOOKBIN_*`
/// variable).
#[derive(Debug, Clone, clap::Args)]
pub struct HooksArgs {
    /// An event catalog (JSON) replacing the built-in Ultimate Multisite events.
    #[arg(long, env = "HOOKBIN_CATALOG")]
    pub catalog: Option<PathBuf>,
    /// Delays between delivery attempts (comma-separated; `none`: no retries). Jitter adds up
    /// to 20 %; a longer Retry-After wins.
    #[arg(long, env = "HOOKBIN_RETRY_SCHEDULE", default_value = "5s,5m,30m,2h,5h,10h,10h",
          value_parser = parse_schedule)]
    pub retry_schedule: RetrySchedule,
    /// Whole-request timeout of one delivery attempt.
    #[arg(long, env = "HOOKBIN_DELIVERY_TIMEOUT", default_value = "15s",
          value_parser = delivery::parse_duration)]
    pub delivery_timeout: Duration,
    /// Connect timeout of one delivery attempt.
    #[arg(long, env = "HOOKBIN_DELIVERY_CONNECT_TIMEOUT", default_value = "5s",
          value_parser = delivery::parse_duration)]
    pub delivery_connect_timeout: Duration,
    /// Webhooks at most; creating one more is refused.
    #[arg(long, env = "HOOKBIN_MAX_WEBHOOKS", default_value_t = 1000)]
    pub max_webhooks: usize,
    /// Failed messages in a row that disable a webhook (0: never).
    #[arg(long, env = "HOOKBIN_DISABLE_AFTER_FAILURES", default_value_t = 5)]
    pub disable_after_failures: u32,
}

impl HooksArgs {
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

        let defaults = Flags::try_parse_from(["x"]).unwrap().hooks.to_config();
        assert_eq!(
            defaults.delivery.retry_schedule,
            delivery::default_schedule()
        );

        let e = Flags::try_parse_from(["x", "--retry-schedule", "1s,soon"])
            .err()
            .unwrap();
        assert!(
            e.to_string().contains("`soon`: must start with a number"),
            "{e}"
        );
    }
}
