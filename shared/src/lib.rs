//! MMT core: everything the Lambda functions and the local server share, in layers. A module
//! imports only from the layers below it (`tests/layering.rs` checks every `use crate::…`):
//!
//! 1. [`domain`], [`crypto`] — what a transcription is and its rules; sealing primitives.
//! 2. [`ports`], [`auth`] — the traits the use cases talk to; tokens and passwords.
//! 3. [`config`] — typed settings by area, parsed and checked once.
//! 4. [`telemetry`], [`metrics`] — logs, traces, error reports, counters.
//! 5. [`app`] — the use cases, written once against the ports.
//! 6. [`adapters`], [`http`], [`jobs`], [`secrets`] — the edges: storage and services, the
//!    HTTP API, the queue consumers, the secrets generator.
//! 7. [`wiring`] — builds the adapters the configuration names into an [`AppState`].
//! 8. [`entrypoints`] — the Lambda event handlers and the local single-process server.

pub mod adapters;
pub mod app;
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
pub mod wiring;

pub use app::AppState;
pub use config::Config;
pub use wiring::AwsSdkConfig;
