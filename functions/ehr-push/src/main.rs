//! Lambda function `ehr-push`: the EHR routes of the MMT API behind API Gateway (ask for a
//! push, see its status), and the consumer of the EHR queue that performs the pushes. One
//! function, two event sources: an SQS batch has `Records`, anything else is an HTTP request.

use lambda_http::{Adapter, Service, request::LambdaRequest};
use lambda_runtime::{LambdaEvent, service_fn};
use mmt_core::{AppState, Config, entrypoints::lambda::handle_ehr_sqs_event, http, telemetry};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let config = Config::load().await?;
    let _telemetry = telemetry::init(&config.telemetry, "ehr-push");
    let state = AppState::from_config(config).await?;
    let router = http::router(&[http::RouteGroup::EhrPush], state.clone());
    let state = &state;
    let router = &router;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let LambdaEvent { payload, context } = event;
        if payload.get("Records").is_some() {
            let batch = serde_json::from_value(payload)?;
            let answer = handle_ehr_sqs_event(state, LambdaEvent::new(batch, context)).await?;
            return Ok::<Value, lambda_runtime::Error>(serde_json::to_value(answer)?);
        }
        let request: LambdaRequest = serde_json::from_value(payload)?;
        let mut adapter = Adapter::from(router.clone());
        let answer = adapter.call(LambdaEvent::new(request, context)).await?;
        Ok(serde_json::to_value(answer)?)
    }))
    .await
}
