//! Route handlers, one module per route group.

pub mod admin;
pub mod auth;
pub mod demo;
pub mod docs;
pub mod edits;
pub mod ehr;
pub mod health;
#[cfg(feature = "whisper")]
pub mod live;
pub mod metrics;
pub mod openai_compat;
pub mod resumable_upload;
pub mod transcriptions;
pub mod upload;
mod views;
pub mod vocabulary;
pub mod web;

pub use views::{
    NoteView, SectionView, TranscriptionList, TranscriptionSummary, TranscriptionView,
};
