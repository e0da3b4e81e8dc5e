//! Implementations of the [`crate::ports`] traits.

#[cfg(feature = "audio")]
pub mod audio;
pub mod disk_blob;
#[cfg(feature = "aws")]
pub mod dynamodb;
#[cfg(feature = "aws")]
pub mod dynamodb_access;
#[cfg(feature = "aws")]
pub mod dynamodb_audit;
#[cfg(feature = "aws")]
pub mod dynamodb_ehr;
#[cfg(feature = "aws")]
mod dynamodb_items;
#[cfg(feature = "aws")]
pub mod dynamodb_vocabulary;
pub mod ecs_task_protection;
pub mod encrypted_blobs;
pub mod encrypted_records;
#[cfg(feature = "aws")]
pub mod eventbridge;
pub mod fhir;
#[cfg(feature = "audio")]
pub mod isolated_decoder;
pub mod openai;
pub mod openai_chat;
pub mod openemr;
#[cfg(feature = "aws")]
pub mod s3;
#[cfg(feature = "whisper")]
pub mod speech_gate;
#[cfg(feature = "whisper")]
pub mod speech_pieces;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "aws")]
pub mod sqs;
pub mod webhook;
#[cfg(feature = "whisper")]
pub mod whisper;
#[cfg(feature = "whisper")]
pub mod whisper_live;

pub use disk_blob::DiskBlobStore;
pub use openai::OpenAiTranscriber;
#[cfg(feature = "sqlite")]
pub use sqlite::{
    Database, SqliteAccessLedger, SqliteAuditLog, SqliteDeliveryStore, SqliteEhrConnectionStore,
    SqliteJobQueue, SqliteRecordStore, SqliteVocabularyStore,
};
