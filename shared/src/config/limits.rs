//! Limits on who may try to sign in and how often: the account lockout, concurrent password
//! checks, guests' upload quotas; and the end of the HS256 migration window.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::source::{ConfigError, Source};

#[derive(Debug, Clone)]
pub struct SignInLimits {
    /// Sign-in brute force: after this many failed sign-ins of one account within
    /// `lockout_window`, the account refuses sign-in until the window ends (0 = never).
    pub max_failed_sign_ins: u32,
    pub lockout_window: Duration,
    /// Password checks (argon2id, 19 MiB each) running at once in this process; more wait.
    pub password_check_concurrency: usize,
    /// Uploads a guest may start per day, and all guests from one address (0 = no quota).
    pub guest_uploads_per_day: u32,
    pub guest_uploads_per_address_per_day: u32,
}

impl SignInLimits {
    pub(super) fn parse(src: &Source) -> Result<Self, ConfigError> {
        Ok(Self {
            max_failed_sign_ins: src.parse("LOGIN_MAX_FAILURES", 5u32)?,
            lockout_window: Duration::from_secs(
                src.parse("LOGIN_LOCKOUT_SECS", 900u64)?.clamp(60, 86_400),
            ),
            guest_uploads_per_day: src.parse("GUEST_UPLOADS_PER_DAY", 20u32)?,
            guest_uploads_per_address_per_day: src
                .parse("GUEST_UPLOADS_PER_ADDRESS_PER_DAY", 50u32)?,
            password_check_concurrency: src
                .parse(
                    "PASSWORD_CHECK_CONCURRENCY",
                    std::thread::available_parallelism().map_or(2, |n| n.get().min(4)),
                )?
                .max(1),
        })
    }

    /// No lockout where passwords (or the admin key) are accepted, and no quota where guests
    /// are, is refused in production.
    pub(super) fn check_for_production(
        &self,
        passwords_accepted: bool,
        guests_allowed: bool,
    ) -> Result<(), ConfigError> {
        if self.max_failed_sign_ins == 0 && passwords_accepted {
            return Err(ConfigError::unsafe_setting(
                "LOGIN_MAX_FAILURES",
                "must not be 0 where passwords or the admin key are accepted",
            ));
        }
        if guests_allowed
            && (self.guest_uploads_per_day == 0 || self.guest_uploads_per_address_per_day == 0)
        {
            return Err(ConfigError::unsafe_setting(
                "GUEST_UPLOADS_PER_DAY",
                "guests need upload quotas (GUEST_UPLOADS_PER_DAY and \
                 GUEST_UPLOADS_PER_ADDRESS_PER_DAY above 0)",
            ));
        }
        Ok(())
    }
}

/// An RFC 3339 time setting.
pub(super) fn parse_time(
    src: &Source,
    key: &'static str,
) -> Result<Option<DateTime<Utc>>, ConfigError> {
    src.raw(key)
        .map(|raw| {
            DateTime::parse_from_rfc3339(raw.trim())
                .map(|at| at.with_timezone(&Utc))
                .map_err(|e| ConfigError::Invalid {
                    key,
                    reason: format!("not an RFC 3339 time: {e}"),
                })
        })
        .transpose()
}

/// With HS256 the verifying key is the signing key: every process that checks a token could
/// mint an admin one. Once RS256 is configured the HS256 secret must go, after a migration
/// window (`JWT_HS256_ACCEPTED_UNTIL`, at most 31 days ahead) for the HS256 tokens already out.
pub(super) fn check_hs256_retired(
    rsa_configured: bool,
    hs256_kept: bool,
    accepted_until: Option<DateTime<Utc>>,
) -> Result<(), ConfigError> {
    if !rsa_configured || !hs256_kept {
        return Ok(());
    }
    let now = Utc::now();
    match accepted_until {
        Some(until) if until > now && until <= now + chrono::Duration::days(31) => Ok(()),
        Some(until) if until <= now => Err(ConfigError::unsafe_setting(
            "INTERNAL_JWT_SECRET",
            "must be removed: its migration window (JWT_HS256_ACCEPTED_UNTIL) has ended",
        )),
        _ => Err(ConfigError::unsafe_setting(
            "INTERNAL_JWT_SECRET",
            "must not be set beside RS256 keys, except during a migration window \
             (JWT_HS256_ACCEPTED_UNTIL, at most 31 days ahead)",
        )),
    }
}
