//! MMT core: everything the Lambda functions and the local server share.
//!
//! * [`domain`] — transcription records, ids, transcript formats; names no vendor.
//! * [`ports`] — the small traits the domain talks to (records, blobs, jobs, engines, clock).
//! * [`adapters`] — SQLite, disk and OpenAI-compatible implementations of those traits.
//! * [`http`] — the axum router (grouped per Lambda function), errors, correlation ids.
//! * [`crypto`] — field encryption (AES-256-GCM, key ring, record/field binding).
//! * [`jobs`] — the transcribe worker and the retention sweep.
//! * [`entrypoints`] — the Lambda event handlers and the local single-process server.

pub mod adapters;
pub mod app;
pub mod audit;
pub mod auth;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod entrypoints;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod ports;
pub mod secrets;
pub mod telemetry;

pub use app::{AppState, AwsSdkConfig};
pub use config::Config;
