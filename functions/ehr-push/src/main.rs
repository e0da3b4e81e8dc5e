//! Lambda function `ehr-push`: the EHR routes of the MMT API behind API Gateway (ask for a
//! push, see its status). The deliveries themselves run from the EHR queue.

use mmt_core::{AppState, Config, http, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let config = Config::load().await?;
    telemetry::init(config.log_format);
    let state = AppState::from_config(config).await?;
    lambda_http::run(http::router(&[http::RouteGroup::EhrPush], state)).await
}
