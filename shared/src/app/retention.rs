//! The retention sweep: deletes what the retention policy says must go, and first fails the
//! records whose work was abandoned, so that every record reaches a final state.

use std::sync::Arc;

use serde::Serialize;

use super::{
    AppState,
    audit::AuditTrail,
    records::{EraseError, Records},
    transcriptions::Transcriptions,
};
use crate::{
    config::RetentionConfig,
    domain::{AuditAction, AuditEvent, AuditOutcome},
    metrics::Metrics,
    ports::{Clock, RecordStore, StoreError},
    telemetry,
};

/// What a sweep needs.
pub struct Retention {
    records: Arc<dyn RecordStore>,
    /// Removes a record with its audio and EHR deliveries, as an owner's delete does.
    erasing: Records,
    audit: AuditTrail,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    policy: RetentionConfig,
    /// Tells an abandoned `processing` record from one still in hand.
    transcriptions: Transcriptions,
}

impl AppState {
    pub fn retention(&self) -> Retention {
        Retention {
            records: self.records.clone(),
            erasing: self.owned_records(),
            audit: self.audit_trail(),
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
            policy: self.config.retention.clone(),
            transcriptions: self.transcriptions(),
        }
    }
}

/// What a sweep did. Counts only: ids are in the audit log lines, never PHI.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RetentionReport {
    /// Retention in days; 0 means keep forever (nothing was swept).
    pub retention_days: u32,
    pub deleted_records: u64,
    pub deleted_audio: u64,
    /// Records whose audio could not be removed this time; the next sweep tries again.
    pub failed: u64,
    /// Records left `processing` past their lease (their worker stopped, or their last
    /// message was dead-lettered while the store failed), now `failed`.
    pub abandoned: u64,
}

const BATCH: u32 = 100;

/// The subject the sweep acts as in the audit trail.
const SWEEPER: &str = "system:retention";

/// What a record abandoned in `processing` is failed with.
pub const ABANDONED: &str =
    "abandoned: no worker finished it within its lease; upload the recording again";

impl Retention {
    /// Fails the abandoned records, then deletes audio and records older than `RETENTION_DAYS`
    /// (with `STORE_PHI=false`, older than `PHI_DELIVERY_WINDOW_MINUTES`; nothing with
    /// `RETENTION_DAYS=0`).
    pub async fn sweep(&self) -> Result<RetentionReport, StoreError> {
        let mut report = RetentionReport {
            retention_days: self.policy.retention_days,
            abandoned: self.reconcile().await?,
            ..Default::default()
        };
        if let Some(retention) = self.policy.keep_for() {
            self.delete_expired(retention, &mut report).await?;
        }
        self.metrics
            .record_retention_deletions(report.deleted_records);
        tracing::info!(
            retention_days = report.retention_days,
            deleted_records = report.deleted_records,
            failed = report.failed,
            abandoned = report.abandoned,
            "retention sweep finished"
        );
        Ok(report)
    }

    /// Fails the records stuck in `processing` past their lease: how many.
    async fn reconcile(&self) -> Result<u64, StoreError> {
        let now = self.clock.now();
        let stale_before = self.transcriptions.stale_before();
        let mut abandoned = 0;
        loop {
            let failed = self
                .records
                .fail_stale(stale_before, ABANDONED, now, BATCH)
                .await?;
            for id in &failed {
                tracing::warn!(transcription_id = %id, "abandoned in processing; failed by the sweep");
            }
            abandoned += failed.len() as u64;
            if failed.len() < BATCH as usize {
                return Ok(abandoned);
            }
        }
    }

    /// Audio goes first, so an interruption leaves a record that the next sweep finds again,
    /// never orphaned audio.
    async fn delete_expired(
        &self,
        retention: chrono::Duration,
        report: &mut RetentionReport,
    ) -> Result<(), StoreError> {
        let cutoff = self.clock.now() - retention;
        let mut skipped = std::collections::HashSet::new();
        loop {
            let batch = self
                .records
                .created_before(cutoff, BATCH + skipped.len() as u32)
                .await?;
            let batch: Vec<_> = batch
                .into_iter()
                .filter(|(id, _)| !skipped.contains(id))
                .collect();
            if batch.is_empty() {
                break;
            }
            for (id, _) in batch {
                let Some(record) = self.records.get(&id).await? else {
                    continue;
                };
                let erased = match self.erasing.erase(&record).await {
                    Ok(erased) => erased,
                    Err(EraseError::Audio(err)) => {
                        tracing::error!(transcription_id = %id, error.cause_chain = %telemetry::error_chain(&err), "retention: audio not deleted; will retry next sweep");
                        report.failed += 1;
                        skipped.insert(id);
                        continue;
                    }
                    Err(EraseError::Records(err)) => return Err(err),
                };
                report.deleted_audio += 1;
                if erased {
                    report.deleted_records += 1;
                    let event =
                        AuditEvent::now(AuditAction::Sweep, AuditOutcome::Success, SWEEPER).on(id);
                    self.audit.record(event).await;
                }
                tracing::info!(transcription_id = %id, "retention: deleted audio and record");
            }
        }
        if report.deleted_records > 0 {
            self.records.purge_residue().await?;
        }
        Ok(())
    }
}
