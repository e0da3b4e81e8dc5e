//! The one retry schedule: exponential in the attempt number, capped, with jitter so workers
//! that failed together do not come back together. Jobs use it between receives, and the
//! cloud engine between the calls of one attempt.

use std::time::Duration;

use rand::Rng;

/// No wait is ever longer than this, whatever the attempt number.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
}

impl Backoff {
    /// Waits of `base`, `2 × base`, `4 × base`… up to [`MAX_BACKOFF`].
    pub fn new(base: Duration) -> Self {
        Self {
            base,
            cap: MAX_BACKOFF,
        }
    }

    /// At most `cap` (a caller with a tighter deadline).
    pub fn capped_at(self, cap: Duration) -> Self {
        Self {
            cap: cap.min(MAX_BACKOFF),
            ..self
        }
    }

    /// The wait before attempt `attempt + 1` (`attempt` counts from 1), within ±25 % of the
    /// exponential figure, and never shorter than what the other side asked for
    /// (`Retry-After`).
    pub fn delay(&self, attempt: u32, asked: Option<Duration>) -> Duration {
        let exponential = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.cap);
        let jittered = exponential.mul_f64(rand::rng().random_range(0.75..=1.25));
        jittered.max(asked.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_are_capped_and_honour_what_was_asked() {
        let backoff = Backoff::new(Duration::from_secs(2));
        assert!(backoff.delay(1, None) <= Duration::from_millis(2500));
        assert!(backoff.delay(3, None) >= Duration::from_secs(6));
        assert!(backoff.delay(30, None) <= MAX_BACKOFF.mul_f64(1.25));
        assert!(backoff.delay(1, Some(Duration::from_secs(60))) >= Duration::from_secs(60));
        let tight = backoff.capped_at(Duration::from_secs(4));
        assert!(tight.delay(10, None) <= Duration::from_secs(5));
    }
}
