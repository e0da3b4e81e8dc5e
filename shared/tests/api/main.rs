//! Black-box tests of the MMT API, its job pipeline, the Lambda handlers and the local binary.

#[cfg(feature = "aws")]
mod audit_contract;
mod auth;
#[cfg(feature = "aws")]
mod aws_pipeline;
#[cfg(feature = "aws")]
mod blob_contract;
mod edits;
#[cfg(feature = "aws")]
mod ehr_aws;
mod ehr_client;
mod ehr_fhir;
mod ehr_link;
mod ehr_lookup;
mod ehr_push;
#[cfg(feature = "aws")]
mod emulator;
mod encryption;
#[cfg(feature = "aws")]
mod events_aws;
mod health;
mod helpers;
mod hostile;
#[cfg(feature = "whisper")]
mod hostile_audio;
mod infra;
mod isolation;
mod lambda;
#[cfg(feature = "whisper")]
mod live;
#[cfg(feature = "whisper")]
mod local_engine;
mod metrics;
mod oidc;
mod openapi;
mod pipeline;
mod process;
#[cfg(feature = "aws")]
mod queue_contract;
#[cfg(feature = "aws")]
mod record_contract;
mod resumable;
mod retention;
mod security;
mod telemetry;
mod transcriptions;
mod upload;
mod vocabulary;
mod webhooks;
