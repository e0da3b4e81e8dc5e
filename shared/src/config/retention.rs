//! What is kept, and for how long: records and audio under `RETENTION_DAYS`, or, with
//! `STORE_PHI=false`, only the transcript, for the client to collect within a window.

use std::time::Duration;

use super::source::{ConfigError, Source};

#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// `false`: audio is deleted once transcribed, and records live for the delivery window.
    pub store_phi: bool,
    pub retention_days: u32,
    /// With `STORE_PHI=false`: how long a record (and its transcript) is kept for the client
    /// to collect, counted from the upload. Replaces `RETENTION_DAYS`.
    pub phi_delivery_window: Duration,
    pub sweep_interval: Duration,
}

impl RetentionConfig {
    pub(super) fn parse(src: &Source) -> Result<Self, ConfigError> {
        Ok(Self {
            store_phi: src.flag("STORE_PHI", true)?,
            retention_days: src.parse("RETENTION_DAYS", 30)?,
            phi_delivery_window: Duration::from_secs(
                src.parse("PHI_DELIVERY_WINDOW_MINUTES", 60u64)?
                    .clamp(1, 7 * 24 * 60)
                    * 60,
            ),
            sweep_interval: Duration::from_secs(
                src.parse("RETENTION_SWEEP_INTERVAL_SECS", 3600u64)?.max(1),
            ),
        })
    }

    /// How often the local sweep runs: `RETENTION_SWEEP_INTERVAL_SECS`, and with
    /// `STORE_PHI=false` often enough that nothing outlives its delivery window by much.
    pub fn sweep_every(&self) -> Duration {
        if self.store_phi {
            return self.sweep_interval;
        }
        let quarter = (self.phi_delivery_window / 4).max(Duration::from_secs(30));
        self.sweep_interval.min(quarter)
    }

    /// How long records are kept; `None` keeps them forever (`RETENTION_DAYS=0`).
    pub fn keep_for(&self) -> Option<chrono::Duration> {
        if !self.store_phi {
            return chrono::Duration::from_std(self.phi_delivery_window).ok();
        }
        (self.retention_days > 0).then(|| chrono::Duration::days(i64::from(self.retention_days)))
    }
}
