//! When to try again, decided in one place: which outcomes are worth a retry, the persisted
//! schedule with jitter, and the receiver's `Retry-After`.

use easm_domain::parse_duration;
use std::time::Duration;

/// The delays of the retries after the first attempt (`EASM_WEBHOOK_RETRY_SCHEDULE`).
#[derive(Clone, Debug, PartialEq)]
pub struct RetrySchedule(Vec<Duration>);

pub const DEFAULT_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,10h";

/// The longest wait a receiver's `Retry-After` can impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

impl RetrySchedule {
    /// `5s,5m,30m,2h`: numbers with a unit of ms, s, m, h or d; empty means no retries.
    pub fn parse(text: &str) -> Result<RetrySchedule, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(RetrySchedule(vec![]));
        }
        text.split(',')
            .map(|part| parse_duration(part.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map(RetrySchedule)
    }

    /// Retries after the first attempt.
    pub fn retries(&self) -> i64 {
        self.0.len() as i64
    }

    /// The wait before the retry after `step` retries were used, with +/-20% jitter so that
    /// deliveries that failed together do not come back together; None when none is left.
    pub fn delay(&self, step: i64, jitter: f64) -> Option<Duration> {
        let base = self.0.get(usize::try_from(step).ok()?)?;
        Some(base.mul_f64(1.0 + 0.2 * jitter.clamp(-1.0, 1.0)))
    }
}

impl Default for RetrySchedule {
    fn default() -> Self {
        RetrySchedule::parse(DEFAULT_SCHEDULE).expect("the default schedule parses")
    }
}

/// What an attempt came to.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Outcome {
    /// The receiver answered with this status; `retry_after` is its parsed `Retry-After`.
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    /// Could not connect, or no complete answer within the timeouts.
    #[default]
    Transport,
    /// Refused before connecting (the URL or its addresses are not allowed).
    Refused,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Delivered,
    /// Worth another attempt, not before `at_least` if the receiver asked for it.
    Retry {
        at_least: Option<Duration>,
    },
    /// Another attempt would get the same answer.
    GiveUp,
}

pub fn classify(outcome: &Outcome) -> Verdict {
    match outcome {
        Outcome::Status { code, .. } if (200..300).contains(code) => Verdict::Delivered,
        Outcome::Status { code, retry_after } if *code == 408 || *code == 429 || *code >= 500 => {
            Verdict::Retry {
                at_least: retry_after.map(|d| d.min(MAX_RETRY_AFTER)),
            }
        }
        Outcome::Status { .. } | Outcome::Refused => Verdict::GiveUp,
        Outcome::Transport => Verdict::Retry { at_least: None },
    }
}

/// `Retry-After` as seconds or as an HTTP date, relative to `now` (unix seconds).
pub fn parse_retry_after(value: &str, now: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value)
        .ok()?
        .timestamp();
    Some(Duration::from_secs(at.saturating_sub(now).max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_default_and_test_schedules() {
        let s = RetrySchedule::default();
        assert_eq!(s.retries(), 7);
        assert_eq!(s.delay(0, 0.0), Some(Duration::from_secs(5)));
        assert_eq!(s.delay(1, 0.0), Some(Duration::from_secs(300)));
        assert_eq!(s.delay(6, 0.0), Some(Duration::from_secs(36000)));
        assert_eq!(s.delay(7, 0.0), None);
        let t = RetrySchedule::parse("1s,1s").unwrap();
        assert_eq!(t.retries(), 2);
        assert_eq!(RetrySchedule::parse("").unwrap().retries(), 0);
        assert_eq!(
            RetrySchedule::parse("250ms, 2d").unwrap(),
            RetrySchedule(vec![
                Duration::from_millis(250),
                Duration::from_secs(172800)
            ])
        );
        for bad in ["5", "5x", "s", "1s,,2s", "-1s"] {
            assert!(RetrySchedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn jitter_stays_within_a_fifth() {
        let s = RetrySchedule::parse("10s").unwrap();
        assert_eq!(s.delay(0, 1.0), Some(Duration::from_secs(12)));
        assert_eq!(s.delay(0, -1.0), Some(Duration::from_secs(8)));
        assert_eq!(s.delay(0, 7.0), Some(Duration::from_secs(12)));
    }

    #[test]
    fn classifies_outcomes() {
        let status = |code| Outcome::Status {
            code,
            retry_after: None,
        };
        assert_eq!(classify(&status(200)), Verdict::Delivered);
        assert_eq!(classify(&status(204)), Verdict::Delivered);
        for code in [408, 429, 500, 502, 503, 504] {
            assert_eq!(
                classify(&status(code)),
                Verdict::Retry { at_least: None },
                "{code}"
            );
        }
        for code in [301, 302, 400, 401, 403, 404, 410, 413] {
            assert_eq!(classify(&status(code)), Verdict::GiveUp, "{code}");
        }
        assert_eq!(
            classify(&Outcome::Transport),
            Verdict::Retry { at_least: None }
        );
        assert_eq!(classify(&Outcome::Refused), Verdict::GiveUp);
        assert_eq!(
            classify(&Outcome::Status {
                code: 429,
                retry_after: Some(Duration::from_secs(999_999))
            }),
            Verdict::Retry {
                at_least: Some(MAX_RETRY_AFTER)
            }
        );
    }

    #[test]
    fn reads_retry_after_in_both_forms() {
        assert_eq!(parse_retry_after("120", 0), Some(Duration::from_secs(120)));
        let now = 1_700_000_000;
        let date = chrono::DateTime::from_timestamp(now + 30, 0)
            .unwrap()
            .to_rfc2822();
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
