//! Why a piece of work did not finish, as a type. Every variant keeps its cause as
//! `source()`, so the single log line of a failed job carries the chain down to the root
//! cause; and one function, [`JobError::is_transient`], says which failures are worth
//! another attempt (the README's table).

use std::time::Duration;

use crate::{
    domain::{EhrError, EngineKind},
    ports::{BlobError, EngineError, NotifyError, StoreError},
    telemetry,
};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("unreadable job body")]
    Unreadable,
    #[error("a {found} job on the {queue} queue")]
    WrongQueue {
        found: &'static str,
        queue: &'static str,
    },
    #[error("could not read or write the transcription record")]
    Records(#[source] StoreError),
    #[error("could not read or write the EHR delivery")]
    Deliveries(#[source] StoreError),
    #[error("could not read or write the audio")]
    Audio(#[source] BlobError),
    #[error("the {0} engine is not available")]
    NoEngine(EngineKind),
    /// The engine's reason is what the record's owner reads.
    #[error(transparent)]
    Engine(EngineError),
    #[error(transparent)]
    Ehr(EhrError),
    #[error("EHR push is not configured on this deployment")]
    EhrNotConfigured,
    #[error("gave up: the delivery window passed")]
    DeliveryWindowPassed,
    #[error("the transcription is no longer available")]
    TranscriptGone,
    #[error("could not send the notification")]
    Notify(#[source] NotifyError),
}

impl JobError {
    /// Worth another attempt: a store or service that may answer next time. Corrupt data, a
    /// missing engine, audio the engine refuses and an EHR that refuses the note fail the
    /// same way again.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Records(err) | Self::Deliveries(err) => {
                matches!(err, StoreError::Unavailable(_))
            }
            Self::Audio(err) => err.is_transient(),
            Self::Engine(err) => matches!(err, EngineError::Transient(_)),
            Self::Ehr(err) => matches!(err, EhrError::Transient { .. }),
            Self::Notify(err) => matches!(err, NotifyError::Transient { .. }),
            Self::Unreadable
            | Self::WrongQueue { .. }
            | Self::NoEngine(_)
            | Self::EhrNotConfigured
            | Self::DeliveryWindowPassed
            | Self::TranscriptGone => false,
        }
    }

    /// What the other side asked us to wait (an EHR's `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Ehr(EhrError::Transient { retry_after, .. })
            | Self::Notify(NotifyError::Transient { retry_after, .. }) => *retry_after,
            _ => None,
        }
    }

    /// The whole chain, as logged and as kept in a failed record or dead letter.
    pub fn reason(&self) -> String {
        telemetry::error_chain(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_reaches_the_root_cause() {
        let root = std::io::Error::other("disk I/O error on page 7");
        let err = JobError::Records(StoreError::Unavailable(Box::new(root)));
        assert_eq!(
            err.reason(),
            "could not read or write the transcription record: record store unavailable: disk I/O error on page 7"
        );
        assert!(err.is_transient());
        assert!(!JobError::Records(StoreError::Corrupt("bad json".into())).is_transient());
    }
}
