//! `openai-contract-server`: a local stand-in for OpenAI's transcription endpoint, for the
//! demo walk-through and manual testing while no cloud key is at hand.
//!
//! Environment: `PORT` (default 8090), `OPENAI_API_KEY` (the key it accepts, default
//! `sk-local-demo`), `MOCK_TRANSCRIPT` (fixed text; by default it describes the audio received),
//! `MOCK_LATENCY_MS` (delay before each answer).

use std::{net::SocketAddr, time::Duration};

use mmt_testkit::OpenAiContractServer;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_target(false).init();
    let port: u16 = std::env::var("PORT")
        .ok()
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(8090);
    let key = std::env::var("OPENAI_API_KEY").unwrap_or_else(|_| "sk-local-demo".into());
    let server =
        OpenAiContractServer::start_on(SocketAddr::from(([127, 0, 0, 1], port)), &key).await?;
    if let Ok(text) = std::env::var("MOCK_TRANSCRIPT") {
        server.set_transcript(text);
    }
    if let Some(ms) = std::env::var("MOCK_LATENCY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        server.set_latency(Duration::from_millis(ms));
    }
    tracing::info!(base_url = %server.base_url(), "OpenAI contract server listening");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
