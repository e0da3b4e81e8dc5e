//! Background work: transcription jobs and the retention sweep. Each entry point (local worker
//! pool, SQS-triggered Lambda, scheduled Lambda) calls into these same functions.

mod ehr_push;
pub mod heartbeat;
mod key_rotation;
mod retention;
mod transcribe;
#[cfg(feature = "local")]
mod worker;

pub use ehr_push::handle_ehr_message;
pub use key_rotation::{KeyRotation, RotationError, RotationReport};
pub use retention::{RetentionReport, sweep_retention};
pub use transcribe::{Disposition, handle_transcribe_message};
#[cfg(feature = "local")]
pub use worker::{run_ehr_once, run_once, run_retention_timer, run_transcribe_workers};

/// The kinds of queued work, each with its own queue and handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Transcribe,
    EhrPush,
}

impl JobKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Transcribe => "transcribe",
            Self::EhrPush => "ehr",
        }
    }

    pub async fn handle(
        self,
        state: &crate::AppState,
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
        state: &crate::AppState,
    ) -> Option<std::sync::Arc<dyn crate::ports::JobQueue>> {
        match self {
            Self::Transcribe => Some(state.transcribe_queue.clone()),
            Self::EhrPush => state.ehr.as_ref().map(|ehr| ehr.queue.clone()),
        }
    }
}
