//! The queue consumers: each message is decoded, handed to its use case in [`crate::app`], and
//! settled (acked, retried after the backoff, or dead-lettered) by one policy. The local worker
//! pool and the SQS-triggered Lambda functions both call these.

mod ehr_push;
mod settle;
mod transcribe;
#[cfg(feature = "local")]
mod worker;

pub use ehr_push::handle_ehr_message;
pub use transcribe::handle_transcribe_message;
#[cfg(feature = "local")]
pub use worker::{run_ehr_once, run_job_consumers, run_once, run_retention_timer};

use std::time::Duration;

/// What the consumer should do with a message after handling it.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// Done (or nothing left to do): delete the message.
    Ack,
    /// Failed this time; deliver again after `delay`.
    Retry { delay: Duration, reason: String },
    /// Failed for good: the record is `failed`; keep the message in the dead letters.
    DeadLetter { reason: String },
}

/// The kinds of queued work, each with its own queue and handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Transcribe,
    EhrPush,
}

impl JobKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Transcribe => crate::app::TRANSCRIBE_QUEUE,
            Self::EhrPush => crate::app::EHR_QUEUE,
        }
    }

    pub async fn handle(
        self,
        state: &crate::app::AppState,
        message: &crate::ports::ReceivedJob,
    ) -> Disposition {
        let disposition = match self {
            Self::Transcribe => handle_transcribe_message(state, message).await,
            Self::EhrPush => handle_ehr_message(state, message).await,
        };
        let outcome = match disposition {
            Disposition::Ack => "ack",
            Disposition::Retry { .. } => "retry",
            Disposition::DeadLetter { .. } => "dead_letter",
        };
        state.metrics.record_job(self.name(), outcome);
        disposition
    }

    /// The queue this kind of job travels on in this process, if it has one.
    pub fn queue(
        self,
        state: &crate::app::AppState,
    ) -> Option<std::sync::Arc<dyn crate::ports::JobQueue>> {
        match self {
            Self::Transcribe => Some(state.transcribe_queue.clone()),
            Self::EhrPush => state.ehr.as_ref().map(|ehr| ehr.queue.clone()),
        }
    }
}
