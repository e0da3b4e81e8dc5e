//! Lambda function `transcribe`: consumes the transcribe queue (SQS), reporting partial batch
//! failures so one bad message never fails its neighbours.

use lambda_runtime::{LambdaEvent, service_fn};
use mmt_core::{
    AppState, Config, entrypoints::lambda::handle_queue_batch, jobs::JobKind, telemetry,
};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let config = Config::load().await?;
    let _telemetry = telemetry::init(&config.telemetry, "transcribe");
    let state = AppState::from_config(config).await?;
    let state = &state;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
        handle_queue_batch(state, JobKind::Transcribe, event)
    }))
    .await
}
