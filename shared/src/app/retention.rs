//! The retention sweep: deletes what the retention policy says must go, and first fails the
//! records whose work was abandoned, so that every record reaches a final state.

use serde::Serialize;

use super::{AppState, audit, transcriptions};
use crate::{
    domain::{AuditAction, AuditEvent, AuditOutcome},
    ports::StoreError,
};

/// What a sweep did. Counts only: ids are in the audit log lines, never PHI.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
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

/// Fails the abandoned records, then deletes audio and records older than `RETENTION_DAYS`
/// (with `STORE_PHI=false`, older than `PHI_DELIVERY_WINDOW_MINUTES`; nothing with
/// `RETENTION_DAYS=0`).
pub async fn sweep_retention(state: &AppState) -> Result<RetentionReport, StoreError> {
    let mut report = RetentionReport {
        retention_days: state.config.retention.retention_days,
        abandoned: reconcile(state).await?,
        ..Default::default()
    };
    if let Some(retention) = state.config.retention.keep_for() {
        delete_expired(state, retention, &mut report).await?;
    }
    state
        .metrics
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
async fn reconcile(state: &AppState) -> Result<u64, StoreError> {
    let now = state.clock.now();
    let stale_before = now - transcriptions::lease(state);
    let mut abandoned = 0;
    loop {
        let failed = state
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
    state: &AppState,
    retention: chrono::Duration,
    report: &mut RetentionReport,
) -> Result<(), StoreError> {
    let cutoff = state.clock.now() - retention;
    let mut skipped = std::collections::HashSet::new();
    loop {
        let batch = state
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
        for (id, audio_key) in batch {
            if let Err(err) = state.blobs.delete(&audio_key).await {
                tracing::error!(transcription_id = %id, error = %err, "retention: audio not deleted; will retry next sweep");
                report.failed += 1;
                skipped.insert(id);
                continue;
            }
            report.deleted_audio += 1;
            if let Some(ehr) = &state.ehr {
                ehr.deliveries.delete_for_transcription(&id).await?;
            }
            if state.records.delete(&id).await? {
                report.deleted_records += 1;
                let event =
                    AuditEvent::now(AuditAction::Sweep, AuditOutcome::Success, SWEEPER).on(id);
                audit::record(state, event).await;
            }
            tracing::info!(transcription_id = %id, "retention: deleted audio and record");
        }
    }
    if report.deleted_records > 0 {
        state.records.purge_residue().await?;
    }
    Ok(())
}
