//! Retry schedules and `Retry-After`: pure functions. Durations and schedules as people type them
//! are read by [`api::units`], the one set of rules of every flag.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

/// 5s, 5m, 30m, 2h, 5h, 10h, 10h: about 28 hours in all, so a receiver down for a day still
/// gets its messages.
pub fn default_schedule() -> Vec<Duration> {
    api::units::parse_duration_list("5s,5m,30m,2h,5h,10h,10h").expect("valid default")
}

/// The delay before the next attempt after `failed` failed attempts of a run (1 = the first
/// attempt failed), or `None` when the schedule is used up.
///
/// Jitter adds up to 20 % so that messages failing together do not come back together; the
/// delay never goes below the schedule's. A `Retry-After` longer than that wins, up to
/// `max_retry_after`.
pub fn retry_delay(
    schedule: &[Duration],
    failed: u32,
    retry_after: Option<Duration>,
    max_retry_after: Duration,
    rng: &mut impl Rng,
) -> Option<Duration> {
    jittered_delay(
        schedule,
        failed,
        retry_after,
        max_retry_after,
        rng.gen_range(0.0..=1.0),
    )
}

/// [`retry_delay`] with the jitter given: `jitter` in `0.0..=1.0` (clamped) picks where in the
/// 0-20 % band the delay falls.
pub fn jittered_delay(
    schedule: &[Duration],
    failed: u32,
    retry_after: Option<Duration>,
    max_retry_after: Duration,
    jitter: f64,
) -> Option<Duration> {
    let base = *schedule.get(usize::try_from(failed).ok()?.checked_sub(1)?)?;
    let delay = base + base.mul_f64(0.2 * jitter.clamp(0.0, 1.0));
    Some(match retry_after {
        Some(asked) => delay.max(asked.min(max_retry_after)),
        None => delay,
    })
}

/// Reads a `Retry-After` value: seconds, or an HTTP date (then relative to `now`).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = u64::from_str(v) {
        return Some(Duration::from_secs(secs));
    }
    let date = DateTime::parse_from_rfc2822(v).ok()?;
    Some(
        (date.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_default_schedule_spans_a_day() {
        assert_eq!(
            default_schedule(),
            [5, 300, 1800, 7200, 18000, 36000, 36000].map(Duration::from_secs)
        );
    }

    #[test]
    fn retry_delays_stay_within_jitter_bounds() {
        let schedule = [SECOND, 10 * SECOND];
        let cap = Duration::from_secs(3600);
        let mut rng = StdRng::seed_from_u64(7);
        let (mut low, mut high) = (Duration::MAX, Duration::ZERO);
        for _ in 0..2000 {
            let d = retry_delay(&schedule, 2, None, cap, &mut rng).unwrap();
            assert!(d >= 10 * SECOND && d <= 12 * SECOND, "{d:?}");
            low = low.min(d);
            high = high.max(d);
        }
        // The jitter really spreads the retries.
        assert!(low < Duration::from_millis(10_200) && high > Duration::from_millis(11_800));
        let first = retry_delay(&schedule, 1, None, cap, &mut rng).unwrap();
        assert!(first >= SECOND && first <= Duration::from_millis(1200));
        assert_eq!(retry_delay(&schedule, 3, None, cap, &mut rng), None);
        assert_eq!(retry_delay(&[], 1, None, cap, &mut rng), None);
        // Retry-After wins when longer, is capped, and never shortens the schedule.
        assert_eq!(
            retry_delay(&schedule, 1, Some(60 * SECOND), cap, &mut rng),
            Some(60 * SECOND)
        );
        assert_eq!(
            retry_delay(&schedule, 1, Some(cap * 10), cap, &mut rng),
            Some(cap)
        );
        let d = retry_delay(&schedule, 2, Some(SECOND), cap, &mut rng).unwrap();
        assert!(d >= 10 * SECOND);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("120", now), Some(120 * SECOND));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(60 * SECOND)
        );
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
