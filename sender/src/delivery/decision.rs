//! What an attempt means for its message: one pure function, [`decide`], from the attempt's
//! verdict and the run so far to the next step. The engine only carries it out.

use std::time::Duration;

use super::attempt::Verdict;
use super::schedule::jittered_delay;

/// The reason a webhook gets when its endpoint answers 410 Gone.
pub const GONE_REASON: &str = "the endpoint answered 410 Gone";

/// The next step of a message after one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Delivered: the message is done, the webhook's run of failures ends.
    Deliver,
    /// Try again after `delay` (the schedule's delay with its jitter, or a longer
    /// `Retry-After`): the message is scheduled at now + `delay`.
    Retry { delay: Duration },
    /// The message ends failed with `error`; the webhook stays as it is (its count of failed
    /// messages in a row goes up).
    Fail { error: String },
    /// The message ends failed with `error` and the webhook is disabled with `reason`.
    Disable { error: String, reason: String },
}

/// The inputs of [`decide`] that come from the attempt.
#[derive(Debug, Clone, Copy)]
pub struct Attempted<'a> {
    pub verdict: Verdict,
    /// The attempt's error text (`HTTP 500 Internal Server Error`, `connection failed: ...`).
    pub error: Option<&'a str>,
    /// What the answer's `Retry-After` asked for.
    pub retry_after: Option<Duration>,
}

/// The retry settings [`decide`] reads.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy<'a> {
    /// Delays before the 2nd, 3rd, ... attempt of a run.
    pub schedule: &'a [Duration],
    /// The longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

/// Decides after an attempt. `failed_before` counts the failed (retryable) attempts of this run
/// before this one (a resend starts a new run); `jitter` in `0.0..=1.0` picks where in the
/// schedule's 0-20 % jitter band the delay falls (the engine draws it at random; tests fix it).
///
/// - 2xx: [`Decision::Deliver`].
/// - network error, timeout, 408, 429, 5xx: [`Decision::Retry`] while the schedule lasts (no
///   sooner than `Retry-After`, capped), then [`Decision::Fail`] "gave up after N failed
///   attempts: ...".
/// - 410 Gone: [`Decision::Disable`].
/// - anything else (3xx, other 4xx, a refusal of the outbound policy): [`Decision::Fail`].
pub fn decide(
    attempt: Attempted<'_>,
    failed_before: u32,
    policy: RetryPolicy<'_>,
    jitter: f64,
) -> Decision {
    let error = || attempt.error.unwrap_or("failed").to_owned();
    match attempt.verdict {
        Verdict::Delivered => Decision::Deliver,
        Verdict::Gone => Decision::Disable {
            error: error(),
            reason: GONE_REASON.to_owned(),
        },
        Verdict::Fail => Decision::Fail { error: error() },
        Verdict::Retry => {
            let failed = failed_before.saturating_add(1);
            match jittered_delay(
                policy.schedule,
                failed,
                attempt.retry_after,
                policy.max_retry_after,
                jitter,
            ) {
                Some(delay) => Decision::Retry { delay },
                None => Decision::Fail {
                    error: format!("gave up after {failed} failed attempts: {}", error()),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn decisions_table() {
        let schedule = [S, 10 * S];
        let policy = RetryPolicy {
            schedule: &schedule,
            max_retry_after: 60 * S,
        };
        let at = |verdict, error, retry_after| Attempted {
            verdict,
            error,
            retry_after,
        };
        let fail = |e: &str| Decision::Fail { error: e.into() };
        let retry = |delay| Decision::Retry { delay };
        let e500 = Some("HTTP 500 Internal Server Error");
        #[rustfmt::skip]
        let table: Vec<(Attempted<'_>, u32, f64, Decision)> = vec![
            // 2xx: delivered, whatever the run so far.
            (at(Verdict::Delivered, None, None), 0, 0.0, Decision::Deliver),
            (at(Verdict::Delivered, None, Some(30 * S)), 5, 0.5, Decision::Deliver),
            // Retryable: the schedule, with its jitter band.
            (at(Verdict::Retry, e500, None), 0, 0.0, retry(S)),
            (at(Verdict::Retry, e500, None), 0, 1.0, retry(S * 6 / 5)),
            (at(Verdict::Retry, e500, None), 1, 0.5, retry(11 * S)),
            // Jitter outside 0..=1 is clamped.
            (at(Verdict::Retry, e500, None), 0, 7.0, retry(S * 6 / 5)),
            // Retry-After: wins when longer, capped, never shortens the schedule.
            (at(Verdict::Retry, Some("HTTP 429 Too Many Requests"), Some(30 * S)), 0, 0.0, retry(30 * S)),
            (at(Verdict::Retry, e500, Some(3600 * S)), 0, 0.0, retry(60 * S)),
            (at(Verdict::Retry, e500, Some(S / 2)), 1, 0.0, retry(10 * S)),
            // Schedule used up.
            (at(Verdict::Retry, e500, None), 2, 0.0,
             fail("gave up after 3 failed attempts: HTTP 500 Internal Server Error")),
            (at(Verdict::Retry, None, None), 2, 0.0, fail("gave up after 3 failed attempts: failed")),
            (at(Verdict::Retry, e500, None), u32::MAX, 0.0,
             fail(&format!("gave up after {} failed attempts: HTTP 500 Internal Server Error", u32::MAX))),
            // 410: the message fails and the webhook is disabled.
            (at(Verdict::Gone, Some("HTTP 410 Gone"), None), 0, 0.0,
             Decision::Disable { error: "HTTP 410 Gone".into(), reason: GONE_REASON.into() }),
            // Other answers, refusals: failed, no retry even with schedule left.
            (at(Verdict::Fail, Some("HTTP 422 Unprocessable Entity"), Some(S)), 0, 0.0,
             fail("HTTP 422 Unprocessable Entity")),
            (at(Verdict::Fail, Some("refused by --outbound-policy public-only"), None), 0, 0.0,
             fail("refused by --outbound-policy public-only")),
        ];
        for (i, (attempt, failed_before, jitter, want)) in table.into_iter().enumerate() {
            assert_eq!(
                decide(attempt, failed_before, policy, jitter),
                want,
                "row {i}: {attempt:?} after {failed_before} failures"
            );
        }
    }

    #[test]
    fn no_schedule_means_no_retry() {
        let policy = RetryPolicy {
            schedule: &[],
            max_retry_after: S,
        };
        let attempt = Attempted {
            verdict: Verdict::Retry,
            error: Some("timed out after 15000 ms"),
            retry_after: Some(S),
        };
        assert_eq!(
            decide(attempt, 0, policy, 0.0),
            Decision::Fail {
                error: "gave up after 1 failed attempts: timed out after 15000 ms".into()
            }
        );
    }
}
