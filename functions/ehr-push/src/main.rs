//! Lambda function `ehr-push`: the EHR routes of the MMT API behind API Gateway (ask for a
//! push, see its status), and the consumer of the EHR queue that performs the pushes.

use lambda_runtime::{LambdaEvent, service_fn};
use mmt_core::{
    AppState, Config, entrypoints::lambda::handle_queue_batch_or_request, http, jobs::JobKind,
    telemetry,
};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let config = Config::load().await?;
    let _telemetry = telemetry::init(&config.telemetry, "ehr-push");
    let state = AppState::from_config(config).await?;
    let router = http::router(&[http::RouteGroup::EhrPush], state.clone());
    let (state, router) = (&state, &router);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
        handle_queue_batch_or_request(state, router, JobKind::EhrPush, event)
    }))
    .await
}
