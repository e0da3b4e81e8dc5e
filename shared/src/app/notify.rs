//! Notifications: queued when something happens (a transcription completes or fails, an EHR
//! delivery ends) and sent by the job consumers, so a receiver that is down gets them later
//! with the queue's backoff instead of never. Nothing is queued when none is configured.

use std::sync::Arc;

use super::{AppState, errors::JobError};
use crate::{
    domain::Notification,
    ports::{Job, JobQueue, Notifier, RecordStore},
    telemetry,
};

/// Queues notifications.
#[derive(Clone)]
pub struct Notifications {
    queue: Option<Arc<dyn JobQueue>>,
}

impl AppState {
    pub fn notifications(&self) -> Notifications {
        Notifications {
            queue: self
                .notifier
                .is_some()
                .then(|| self.transcribe_queue.clone()),
        }
    }

    /// Sends one queued notification: with the latest transcript text only where
    /// `WEBHOOK_INCLUDE_TEXT` allows it.
    pub async fn send_notification(&self, notification: &Notification) -> Result<(), JobError> {
        let Some(notifier) = &self.notifier else {
            return Ok(());
        };
        let include_text = self
            .config
            .notify
            .as_ref()
            .is_some_and(|n| n.include_text());
        let text = if include_text {
            text_of(self.records.as_ref(), notification).await?
        } else {
            None
        };
        let body = notification.body(text.as_deref()).to_string();
        send(notifier.as_ref(), notification, body.as_bytes()).await
    }
}

async fn text_of(
    records: &dyn RecordStore,
    notification: &Notification,
) -> Result<Option<String>, JobError> {
    let record = records
        .get(&notification.transcription_id)
        .await
        .map_err(JobError::Records)?;
    Ok(record.and_then(|r| r.transcript).map(|t| t.text))
}

async fn send(notifier: &dyn Notifier, n: &Notification, body: &[u8]) -> Result<(), JobError> {
    notifier
        .send(&n.id.to_string(), body)
        .await
        .map_err(JobError::Notify)?;
    tracing::info!(notification_id = %n.id, kind = n.kind.as_str(), "notification sent");
    Ok(())
}

impl Notifications {
    /// Queues `notification`. A queue that fails is logged, never the caller's failure: the
    /// work it reports is done either way.
    pub async fn emit(&self, notification: Notification) {
        let Some(queue) = &self.queue else {
            return;
        };
        let kind = notification.kind;
        let job = Job::Notify { notification };
        if let Err(err) = queue.enqueue(&job, &telemetry::job_origin()).await {
            tracing::error!(kind = kind.as_str(), error.cause_chain = %telemetry::error_chain(&err), "could not queue a notification");
        }
    }
}
