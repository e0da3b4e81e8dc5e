//! Implementations of the [`crate::ports`] traits.

pub mod disk_blob;
pub mod openai;
pub mod sqlite;

pub use disk_blob::DiskBlobStore;
pub use openai::OpenAiTranscriber;
pub use sqlite::{Database, SqliteJobQueue, SqliteRecordStore};
