//! Per-caller quotas (`RATE_LIMIT_PER_MINUTE`): a fixed one-minute window per caller, kept
//! for the life of the process. The HTTP middleware decides who the caller is and answers 429.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

const WINDOW: Duration = Duration::from_secs(60);
/// Windows kept before stale ones are dropped, so memory stays bounded.
const MAX_TRACKED: usize = 10_000;

#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

/// The outcome of one request against its caller's window.
pub struct Decision {
    pub allowed: bool,
    pub remaining: u32,
    pub reset: Duration,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Counts one request of `key` at `now` against its window.
    pub fn check(&self, key: String, now: Instant) -> Decision {
        let mut windows = self.windows.lock().expect("rate limit lock");
        if windows.len() >= MAX_TRACKED {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let (start, count) = windows.entry(key).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            *start = now;
            *count = 0;
        }
        let reset = WINDOW.saturating_sub(now.duration_since(*start));
        if *count >= self.per_minute {
            return Decision {
                allowed: false,
                remaining: 0,
                reset,
            };
        }
        *count += 1;
        Decision {
            allowed: true,
            remaining: self.per_minute - *count,
            reset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_allows_the_limit_then_refuses_until_it_resets() {
        let limiter = RateLimiter::new(3);
        let t0 = Instant::now();
        let remaining: Vec<_> = (0..3)
            .map(|_| limiter.check("a".into(), t0).remaining)
            .collect();
        assert_eq!(remaining, vec![2, 1, 0]);
        let refused = limiter.check("a".into(), t0 + Duration::from_secs(10));
        assert!(!refused.allowed);
        assert_eq!(refused.reset, Duration::from_secs(50));
        assert!(
            limiter.check("b".into(), t0).allowed,
            "callers are counted apart"
        );
        assert!(
            limiter.check("a".into(), t0 + WINDOW).allowed,
            "a new window"
        );
    }
}
