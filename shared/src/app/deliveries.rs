//! EHR deliveries: asking for a push (one outbox row, one job) and performing it. Safe to
//! perform again for the same delivery: one no longer pending is left alone, and every attempt
//! after the first looks for the note an earlier attempt may have written before it posts.

use std::sync::Arc;

use sha2::Digest;

use super::{AppState, EhrServices, audit::AuditTrail, errors::JobError};
use crate::{
    config::{EhrConfig, EhrLoginMode},
    domain::{
        AuditAction, AuditEvent, AuditOutcome, DeliveryStatus, EhrDelivery, EhrError, EhrLogin,
        EncounterSummary, EventKind, NoteDelivery, NoteError, NoteSection, Notification, OwnerId,
        PatientQuery, PatientSummary, Status, Transcript, TranscriptionRecord, delivery_marker,
        note_fields,
    },
    metrics::Metrics,
    ports::{Clock, ConnectionState, Job, QueueError, ReceivedJob, RecordStore, StoreError},
    telemetry,
};

/// The subject EHR jobs act as in the audit trail.
const PUSHER: &str = "system:ehr-push";

/// What EHR deliveries need.
pub struct Deliveries {
    ehr: EhrServices,
    records: Arc<dyn RecordStore>,
    audit: AuditTrail,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    config: EhrConfig,
    notifications: super::notify::Notifications,
}

impl AppState {
    /// `None` when EHR push is not configured (`EHR_TARGET`).
    pub fn deliveries(&self) -> Option<Deliveries> {
        Some(Deliveries {
            ehr: self.ehr.clone()?,
            records: self.records.clone(),
            audit: self.audit_trail(),
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
            config: self.config.ehr.clone()?,
            notifications: self.notifications(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("could not read or write the EHR delivery")]
    Deliveries(#[from] StoreError),
    #[error("could not queue the push")]
    Queue(#[from] QueueError),
}

/// Where a clinician's link waits for the EHR's answer.
fn pending_link(owner: &OwnerId) -> String {
    format!("link-pending:{owner}")
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Ehr(#[from] EhrError),
    #[error("could not keep the link")]
    Store(#[from] StoreError),
    #[error("no link was started for this answer: start linking again")]
    NoPendingLink,
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    Ehr(#[from] EhrError),
    /// A disclosure that cannot be audited is not made.
    #[error("could not audit the look-up")]
    Audit(#[source] crate::ports::BoxError),
}

/// What a push request came to.
pub enum Requested {
    /// The same push was asked for before: that delivery.
    Existing(EhrDelivery),
    Queued(EhrDelivery),
}

/// What a push asks for.
pub struct PushRequest {
    pub patient_ref: String,
    pub encounter_ref: String,
    pub section: Option<NoteSection>,
}

/// How far one push got: its attempt number and the delivery, once read.
pub struct Attempt {
    pub number: u32,
    pub delivery: Option<EhrDelivery>,
}

impl Deliveries {
    /// The EHR this deployment pushes to (`openemr`, `fhir`).
    pub fn target(&self) -> &'static str {
        self.config.target.name()
    }

    /// Where the EHR answers, for an administrator (no credentials).
    pub fn endpoint(&self) -> String {
        self.ehr.client.describe()
    }

    /// The state of the deployment's shared EHR login (`None` where the EHR needs none).
    pub async fn connection(&self) -> Result<Option<ConnectionState>, EhrError> {
        self.ehr.client.connection_state(&EhrLogin::Shared).await
    }

    /// Whose login acts for `owner`: their own where clinicians link their accounts.
    pub fn login_for(&self, owner: &OwnerId) -> EhrLogin {
        match self.config.login {
            EhrLoginMode::Shared => EhrLogin::Shared,
            EhrLoginMode::PerClinician => EhrLogin::Clinician(owner.clone()),
        }
    }

    pub fn login_mode(&self) -> EhrLoginMode {
        self.config.login
    }

    /// The state of `owner`'s own link: `None` before they linked.
    pub async fn link_state(&self, owner: &OwnerId) -> Result<Option<ConnectionState>, EhrError> {
        self.ehr
            .client
            .connection_state(&self.login_for(owner))
            .await
    }

    /// Starts a clinician's link: a fresh state and PKCE verifier, kept sealed server-side
    /// (never in the browser's address bar), and the EHR's sign-in URL to send them to.
    pub async fn start_link(&self, owner: &OwnerId) -> Result<String, LinkError> {
        use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
        use rand::RngCore;
        let mut random = [0u8; 48];
        rand::rng().fill_bytes(&mut random);
        let verifier = URL_SAFE_NO_PAD.encode(&random[..32]);
        let state = URL_SAFE_NO_PAD.encode(&random[32..]);
        let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
        let pending = pending_link(owner);
        let _ = self.ehr.connections.forget(&pending).await;
        self.ehr
            .connections
            .rotate(&pending, None, &format!("{state} {verifier}"))
            .await?;
        Ok(self.ehr.client.link_url(&state, &challenge)?)
    }

    /// Finishes a clinician's link with the code the EHR sent back: only for the state this
    /// clinician's own pending link holds, once.
    pub async fn complete_link(
        &self,
        owner: &OwnerId,
        code: &str,
        state: &str,
    ) -> Result<(), LinkError> {
        let pending = pending_link(owner);
        let stored = self.ehr.connections.load(&pending).await?;
        let Some((held, _)) = stored else {
            return Err(LinkError::NoPendingLink);
        };
        // One answer per started link, right or wrong: a wrong state (a forged or replayed
        // answer) uses it up too.
        self.ehr.connections.forget(&pending).await?;
        let Some((expected, verifier)) = held.split_once(' ') else {
            return Err(LinkError::NoPendingLink);
        };
        if !constant_time_eq(expected.as_bytes(), state.as_bytes()) {
            return Err(LinkError::NoPendingLink);
        }
        self.ehr
            .client
            .complete_link(&self.login_for(owner), code, verifier)
            .await?;
        self.audit
            .record(
                AuditEvent::now(AuditAction::EhrLink, AuditOutcome::Success, owner.as_str())
                    .detail("linked their EHR account".to_owned()),
            )
            .await;
        Ok(())
    }

    /// Forgets a clinician's link.
    pub async fn unlink(&self, owner: &OwnerId) -> Result<bool, LinkError> {
        let removed = self.ehr.client.unlink(&self.login_for(owner)).await?;
        self.audit
            .record(
                AuditEvent::now(AuditAction::EhrLink, AuditOutcome::Success, owner.as_str())
                    .detail("unlinked their EHR account".to_owned()),
            )
            .await;
        Ok(removed)
    }

    /// A transcription's deliveries, oldest first.
    pub async fn of(&self, record: &TranscriptionRecord) -> Result<Vec<EhrDelivery>, StoreError> {
        self.ehr.deliveries.for_transcription(&record.id).await
    }

    /// Where an unstructured transcript goes when the push names no section.
    pub fn default_section(&self) -> NoteSection {
        self.config.default_section
    }

    /// Patients matching `query` in the EHR's directory; the search is audited by count only
    /// (never what was typed or found).
    pub async fn find_patients(
        &self,
        caller: &OwnerId,
        query: &PatientQuery,
    ) -> Result<Vec<PatientSummary>, LookupError> {
        let found = self
            .ehr
            .client
            .find_patients(query, &self.login_for(caller))
            .await?;
        self.audit_lookup(caller, "patient search", found.len())
            .await?;
        Ok(found)
    }

    /// A look-up in the EHR's directory, audited by what it was and how many it found.
    async fn audit_lookup(
        &self,
        caller: &OwnerId,
        what: &str,
        found: usize,
    ) -> Result<(), LookupError> {
        self.audit
            .record_disclosure(
                caller,
                AuditAction::EhrLookup,
                None,
                Some(format!("{what}: {found} found")),
            )
            .await
            .map_err(|e| LookupError::Audit(e.into()))
    }

    /// A patient's encounters, newest first; audited by count only.
    pub async fn encounters(
        &self,
        caller: &OwnerId,
        patient_ref: &str,
    ) -> Result<Vec<EncounterSummary>, LookupError> {
        let found = self
            .ehr
            .client
            .encounters(patient_ref, &self.login_for(caller))
            .await?;
        self.audit_lookup(caller, "encounter list", found.len())
            .await?;
        Ok(found)
    }

    /// Attempts per delivery before it fails.
    pub fn max_attempts(&self) -> u32 {
        self.config.max_attempts
    }

    /// Asks for a push of a completed transcription: the outbox row first, then the job, so a
    /// crash in between leaves a pending delivery that a second request returns, never a note
    /// without a record of it. The same push asked for again returns the first delivery.
    pub async fn request(
        &self,
        record: &TranscriptionRecord,
        requester: &OwnerId,
        push: PushRequest,
    ) -> Result<Requested, RequestError> {
        debug_assert_eq!(record.status, Status::Completed);
        let target = self.target();
        let existing = self.ehr.deliveries.for_transcription(&record.id).await?;
        if let Some(delivery) = existing
            .into_iter()
            .find(|d| d.covers(target, &push.patient_ref, &push.encounter_ref))
        {
            return Ok(Requested::Existing(delivery));
        }
        let delivery = EhrDelivery::new_pending(
            record.id,
            requester.clone(),
            target,
            push.patient_ref,
            push.encounter_ref,
            push.section.unwrap_or(self.config.default_section),
            self.clock.now(),
        );
        self.ehr.deliveries.insert(&delivery).await?;
        let job = Job::EhrPush {
            delivery_id: delivery.id,
        };
        if let Err(err) = self.ehr.queue.enqueue(&job, &telemetry::job_origin()).await {
            if let Err(not_failed) = self
                .ehr
                .deliveries
                .mark_failed(&delivery.id, "could not queue the push", self.clock.now())
                .await
            {
                tracing::error!(delivery_id = %delivery.id, error.cause_chain = %telemetry::error_chain(&not_failed), "could not fail a delivery that was not queued");
            }
            return Err(err.into());
        }
        let event = AuditEvent::now(
            AuditAction::EhrPush,
            AuditOutcome::Success,
            requester.as_str(),
        )
        .on(record.id)
        .detail(format!("requested delivery {}", delivery.id));
        self.audit.record(event).await;
        tracing::info!(transcription_id = %record.id, delivery_id = %delivery.id, "EHR push queued");
        Ok(Requested::Queued(delivery))
    }

    /// One attempt at a delivery. `Ok` when it was delivered, or when nothing is left to do.
    pub async fn push(
        &self,
        delivery_id: uuid::Uuid,
        message: &ReceivedJob,
        attempt: &mut Attempt,
    ) -> Result<(), JobError> {
        let Some(delivery) = self
            .ehr
            .deliveries
            .get(&delivery_id)
            .await
            .map_err(JobError::Deliveries)?
        else {
            tracing::info!(%delivery_id, "delivery no longer exists; nothing to do");
            return Ok(());
        };
        attempt.number = attempt.number.max(delivery.attempts + 1);
        let delivery = attempt.delivery.insert(delivery);
        if delivery.status != DeliveryStatus::Pending {
            tracing::info!(%delivery_id, status = delivery.status.as_str(), "already settled; redelivery ignored");
            return Ok(());
        }
        let now = self.clock.now();
        let elapsed = (now - delivery.created_at).to_std().unwrap_or_default();
        if elapsed > self.config.max_total {
            return Err(JobError::DeliveryWindowPassed);
        }
        let transcript = match self.records.get(&delivery.transcription_id).await {
            Ok(Some(record)) if record.status == Status::Completed => record.transcript,
            Ok(_) => None,
            Err(err) => return Err(JobError::Records(err)),
        }
        .ok_or(JobError::TranscriptGone)?;
        // Every attempt after the first may follow a lost answer: look before writing.
        let check_existing = delivery.attempts > 0 || message.receive_count > 1;
        if !self
            .ehr
            .deliveries
            .record_attempt(&delivery.id, now)
            .await
            .map_err(JobError::Deliveries)?
        {
            return Ok(());
        }
        let login = self.login_for(&delivery.owner);
        let note = Self::note_for(delivery, &transcript, check_existing, login)
            .map_err(|e| JobError::Ehr(EhrError::Permanent(e.to_string())))?;
        let correlation = message.origin.correlation_id.as_deref();
        let receipt = match self.ehr.client.deliver(&note).await {
            Ok(receipt) => receipt,
            Err(err) => {
                let detail = format!("attempt {}: {err}", delivery.attempts + 1);
                self.audit
                    .record(Self::audit_attempt(
                        delivery,
                        AuditOutcome::Failed,
                        detail,
                        correlation,
                    ))
                    .await;
                return Err(JobError::Ehr(err));
            }
        };
        // If this write fails the note is in the EHR: the retry finds it by its marker.
        self.ehr
            .deliveries
            .mark_delivered(&delivery.id, &receipt, self.clock.now())
            .await
            .map_err(JobError::Deliveries)?;
        self.delivered(delivery, &receipt, correlation).await;
        Ok(())
    }

    /// The note of a delivery, marked so that a later attempt can find it: the latest version
    /// of the transcript, each section in its own field where it was structured, else the
    /// whole text in the section the push asked for.
    pub fn note_for(
        delivery: &EhrDelivery,
        transcript: &Transcript,
        check_existing: bool,
        login: EhrLogin,
    ) -> Result<NoteDelivery, NoteError> {
        let marker = delivery_marker(&delivery.id.to_string());
        Ok(NoteDelivery {
            delivery_id: delivery.id,
            transcription_id: delivery.transcription_id,
            patient_ref: delivery.patient_ref.clone(),
            encounter_ref: delivery.encounter_ref.clone(),
            fields: note_fields(
                &note_content(delivery.section, transcript),
                &delivery.transcription_id,
                &marker,
            )?,
            marker,
            check_existing,
            login,
        })
    }

    /// Counts, logs and audits a delivered note.
    async fn delivered(
        &self,
        delivery: &EhrDelivery,
        receipt: &crate::domain::EhrReceipt,
        correlation: Option<&str>,
    ) {
        self.metrics.record_ehr("delivered");
        self.notify(delivery, EventKind::DeliveryDelivered).await;
        tracing::info!(delivery_id = %delivery.id, transcription_id = %delivery.transcription_id, found_existing = receipt.found_existing, "EHR note delivered");
        let detail = format!(
            "delivered; EHR note {}{}",
            receipt.note_id,
            if receipt.found_existing {
                " (found after a lost answer)"
            } else {
                ""
            }
        );
        self.audit
            .record(Self::audit_attempt(
                delivery,
                AuditOutcome::Success,
                detail,
                correlation,
            ))
            .await;
    }

    /// Marks the delivery failed with its reason, and audits it.
    pub async fn give_up(
        &self,
        delivery: &EhrDelivery,
        message: &ReceivedJob,
        reason: &str,
    ) -> Result<(), JobError> {
        self.metrics.record_ehr("failed");
        tracing::error!(delivery_id = %delivery.id, error.cause_chain = %reason, "EHR push failed");
        if let Err(err) = self
            .ehr
            .deliveries
            .mark_failed(&delivery.id, reason, self.clock.now())
            .await
        {
            return Err(JobError::Deliveries(err));
        }
        self.notify(delivery, EventKind::DeliveryFailed).await;
        self.audit
            .record(Self::audit_attempt(
                delivery,
                AuditOutcome::Failed,
                format!("failed: {reason}"),
                message.origin.correlation_id.as_deref(),
            ))
            .await;
        Ok(())
    }

    async fn notify(&self, delivery: &EhrDelivery, kind: EventKind) {
        let notification = Notification::new(kind, delivery.transcription_id, self.clock.now())
            .for_delivery(delivery.id);
        self.notifications.emit(notification).await;
    }

    fn audit_attempt(
        delivery: &EhrDelivery,
        outcome: AuditOutcome,
        detail: String,
        correlation_id: Option<&str>,
    ) -> AuditEvent {
        let mut event = AuditEvent::now(AuditAction::EhrPush, outcome, PUSHER)
            .on(delivery.transcription_id)
            .detail(detail);
        event.correlation_id = correlation_id.map(str::to_owned);
        event
    }
}

/// What a transcript puts in the chart, by SOAP field.
pub fn note_content(
    unstructured: NoteSection,
    transcript: &Transcript,
) -> Vec<(NoteSection, String)> {
    match &transcript.note {
        Some(note) => note.soap_fields(),
        None => vec![(unstructured, transcript.text.clone())],
    }
}
