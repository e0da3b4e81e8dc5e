//! Per-caller quotas (`RATE_LIMIT_PER_MINUTE`) and the sign-in lockout, counted in the
//! deployment's [`AccessLedger`] so they hold across processes, Lambda instances and cold
//! starts: a fixed one-minute window per caller. When the ledger cannot be reached, requests
//! are counted in this process instead ([`LocalWindows`]): a limit that holds per instance
//! beats none, and an outage of the counters is not an outage of the API. The HTTP middleware
//! decides who the caller is and answers 429.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::ports::{AccessLedger, StoreError};

const WINDOW: Duration = Duration::from_secs(60);
/// Windows kept before stale ones are dropped, so memory stays bounded.
const MAX_TRACKED: usize = 10_000;

/// The in-process fallback: windows kept for the life of the process.
#[derive(Debug)]
pub struct LocalWindows {
    per_minute: u32,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

/// The outcome of one request against its caller's window.
pub struct Decision {
    pub allowed: bool,
    pub remaining: u32,
    pub reset: Duration,
}

impl LocalWindows {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
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

/// Requests per caller per minute, counted in the shared ledger.
pub struct RateLimiter {
    per_minute: u32,
    /// What is counted (`rate`: every request; `ehr-lookup`: directory searches).
    scope: &'static str,
    ledger: Arc<dyn AccessLedger>,
    fallback: LocalWindows,
}

impl RateLimiter {
    pub fn new(per_minute: u32, ledger: Arc<dyn AccessLedger>) -> Self {
        Self::for_scope("rate", per_minute, ledger)
    }

    /// A limit on one kind of request, counted apart from the others.
    pub fn for_scope(scope: &'static str, per_minute: u32, ledger: Arc<dyn AccessLedger>) -> Self {
        Self {
            per_minute,
            scope,
            ledger,
            fallback: LocalWindows::new(per_minute),
        }
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Counts one request of `caller` at `now` against its window.
    pub async fn check(&self, caller: &str, now: DateTime<Utc>) -> Decision {
        // A caller already over the limit in this process alone is over it everywhere: it is
        // refused without a write to the shared store (a flood costs the store nothing).
        let local = self.fallback.check(caller.to_owned(), Instant::now());
        if !local.allowed {
            return local;
        }
        match self
            .ledger
            .increment(&format!("{}:{caller}", self.scope), now, WINDOW)
            .await
        {
            Ok(counted) => {
                let limit = u64::from(self.per_minute);
                Decision {
                    allowed: counted.count <= limit,
                    remaining: u32::try_from(limit.saturating_sub(counted.count))
                        .unwrap_or_default(),
                    reset: (counted.window_ends - now).to_std().unwrap_or_default(),
                }
            }
            Err(err) => {
                tracing::warn!(
                    error.cause_chain = %crate::ports::error_chain(&err),
                    "rate-limit counters unavailable: counting in this process"
                );
                local
            }
        }
    }
}

/// Brute force against one account: after `max_failures` failed sign-ins within a window,
/// the account refuses every sign-in, right password or not, until the window ends. Other
/// accounts are not affected. Counted in the shared ledger; when it cannot be read, sign-in
/// is refused (503) rather than left unguarded.
pub struct SignInGuard {
    max_failures: u32,
    window: Duration,
    ledger: Arc<dyn AccessLedger>,
}

impl SignInGuard {
    pub fn new(max_failures: u32, window: Duration, ledger: Arc<dyn AccessLedger>) -> Self {
        Self {
            max_failures,
            window,
            ledger,
        }
    }

    /// The counter of `account`: the name as typed, hashed — bounded, and no attacker's text
    /// in the store.
    fn key(account: &str) -> String {
        let digest = Sha256::digest(account.trim().to_lowercase().as_bytes());
        format!("sign-in-failures:{}", hex::encode(&digest[..16]))
    }

    /// `Some(time until the lockout ends)` when `account` is locked out at `now`.
    pub async fn locked_for(
        &self,
        account: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>, StoreError> {
        if self.max_failures == 0 {
            return Ok(None);
        }
        let counted = self.ledger.count(&Self::key(account), now).await?;
        Ok(counted
            .filter(|c| c.count >= u64::from(self.max_failures))
            .map(|c| (c.window_ends - now).to_std().unwrap_or_default()))
    }

    /// Counts a failed sign-in of `account`; the window starts at the first failure.
    pub async fn failed(&self, account: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        if self.max_failures == 0 {
            return Ok(());
        }
        self.ledger
            .increment(&Self::key(account), now, self.window)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_allows_the_limit_then_refuses_until_it_resets() {
        let limiter = LocalWindows::new(3);
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
