//! Lambda function `retention-sweep`: run on a schedule (EventBridge rule or Scheduler),
//! deletes audio and records past RETENTION_DAYS and returns the counts.

use lambda_runtime::{LambdaEvent, service_fn};
use mmt_core::{AppState, Config, entrypoints::lambda::handle_scheduled_sweep, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let config = Config::load().await?;
    let _telemetry = telemetry::init(&config.telemetry, "retention-sweep");
    let state = AppState::from_config(config).await?;
    let state = &state;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
        handle_scheduled_sweep(state, event)
    }))
    .await
}
