//! Background work: transcription jobs and the retention sweep. Each entry point (local worker
//! pool, SQS-triggered Lambda, scheduled Lambda) calls into these same functions.

mod ehr_push;
mod key_rotation;
mod messages;
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
