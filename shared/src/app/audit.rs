//! Recording to the audit trail: who did what to which record, and how it ended.

use std::sync::Arc;

use async_trait::async_trait;

use super::AppState;
use crate::{
    domain::{
        AuditAction, AuditEvent, AuditOutcome, AuditQuery, ChainLink, OwnerId, TranscriptionId,
    },
    ports::{AuditError, AuditLog},
    telemetry,
};

/// Links every event this process appends into its own hash chain before the store sees it
/// (see [`ChainLink`]): the trail becomes tamper-evident whatever the store allows, and
/// [`crate::domain::verify_chains`] finds where it was changed.
pub struct ChainedAuditLog {
    inner: Arc<dyn AuditLog>,
    writer: String,
    /// The last link written; held across the write so the chain has one order.
    last: tokio::sync::Mutex<Option<ChainLink>>,
}

impl ChainedAuditLog {
    pub fn new(inner: Arc<dyn AuditLog>) -> Self {
        Self {
            inner,
            writer: uuid::Uuid::new_v4().simple().to_string(),
            last: tokio::sync::Mutex::new(None),
        }
    }
}

#[async_trait]
impl AuditLog for ChainedAuditLog {
    async fn append(&self, event: &AuditEvent) -> Result<(), AuditError> {
        let mut last = self.last.lock().await;
        let linked = event.clone().link(&self.writer, last.as_ref());
        // Only a stored event moves the chain on: a failed write leaves no gap.
        self.inner.append(&linked).await?;
        *last = linked.chain;
        Ok(())
    }

    async fn query(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, AuditError> {
        self.inner.query(query).await
    }
}

/// The audit trail, as the use cases write to it.
#[derive(Clone)]
pub struct AuditTrail {
    log: Arc<dyn AuditLog>,
}

impl AppState {
    pub fn audit_trail(&self) -> AuditTrail {
        AuditTrail {
            log: self.audit.clone(),
        }
    }
}

impl AuditTrail {
    /// Appends an event, in the current request's correlation. A failure to audit is logged
    /// loudly but does not undo what already happened (the action is done; refusing the
    /// response would only hide its result).
    pub async fn record(&self, mut event: AuditEvent) {
        if event.correlation_id.is_none() {
            event.correlation_id = telemetry::current_correlation_id();
        }
        if let Err(err) = self.log.append(&event).await {
            tracing::error!(
                error = %telemetry::error_chain(&err),
                action = event.action.as_str(),
                "could not write the audit event"
            );
        }
    }

    /// Records, before it happens, that `subject` is shown PHI (a record, a transcript, a
    /// listing, its deliveries): when the trail cannot take the event, the disclosure must not
    /// happen (the caller answers 503).
    pub async fn record_disclosure(
        &self,
        subject: &OwnerId,
        action: AuditAction,
        record_id: Option<TranscriptionId>,
        detail: Option<String>,
    ) -> Result<(), AuditError> {
        let mut event = AuditEvent::now(action, AuditOutcome::Success, subject.as_str());
        event.record_id = record_id;
        event.detail = detail;
        event.correlation_id = telemetry::current_correlation_id();
        self.log.append(&event).await.inspect_err(|err| {
            tracing::error!(
                error = %telemetry::error_chain(err),
                action = action.as_str(),
                "could not write the audit event; nothing is shown"
            );
        })
    }

    /// Records that `subject` did `action` to one record, successfully.
    pub async fn record_success(
        &self,
        subject: &OwnerId,
        action: AuditAction,
        record_id: TranscriptionId,
    ) {
        let event = AuditEvent::now(action, AuditOutcome::Success, subject.as_str()).on(record_id);
        self.record(event).await;
    }

    /// The audit event of a finished key rotation.
    pub async fn record_key_rotation(&self, primary: &str, report: &super::keys::RotationReport) {
        let event = AuditEvent::now(
            AuditAction::KeyRotation,
            AuditOutcome::Success,
            "system:key-rotation",
        )
        .detail(format!(
            "primary key {primary}: {} records looked at, {} resealed, {} audio files resealed, \
             {} vocabularies resealed, {} EHR deliveries and logins resealed",
            report.records_scanned,
            report.records_resealed,
            report.audio_resealed,
            report.vocabularies_resealed,
            report.ehr_resealed
        ));
        self.record(event).await;
    }
}
