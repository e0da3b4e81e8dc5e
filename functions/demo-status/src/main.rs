//! Lambda function `demo-status`: the DemoStatus routes of the MMT API behind API Gateway.

use mmt_core::{AppState, Config, http, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let config = Config::load().await?;
    let _telemetry = telemetry::init(&config.telemetry, "demo-status");
    let state = AppState::from_config(config).await?;
    lambda_http::run(http::router(&[http::RouteGroup::DemoStatus], state)).await
}
