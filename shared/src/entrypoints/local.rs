//! The one-process server: every route, the transcribe workers and the retention timer.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    app::AppState,
    http::{full_router, worker_router},
    jobs::{run_job_consumers, run_retention_timer},
};

/// A bound, not yet running server. Tests bind port 0 and read [`Application::port`].
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    pub async fn bind(state: AppState) -> std::io::Result<Self> {
        let addr = SocketAddr::new(state.config.http.host, state.config.http.port);
        let listener = TcpListener::bind(addr).await?;
        Ok(Self { listener, state })
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default()
    }

    /// Serves until `shutdown` is cancelled, then drains: in-flight requests and jobs get
    /// `SHUTDOWN_GRACE_SECS` to finish; unfinished jobs have their leases released.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let state = self.state;
        let grace = state.config.http.shutdown_grace;
        let workers = tokio::spawn(run_job_consumers(state.clone(), shutdown.clone()));
        let retention = tokio::spawn(run_retention_timer(state.clone(), shutdown.clone()));
        let live = tokio::spawn(close_live_dictations(state.clone(), shutdown.clone()));
        tracing::info!(port = self.listener.local_addr()?.port(), "MMT listening");

        let server = axum::serve(
            self.listener,
            full_router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let served = tokio::select! {
            served = server => served,
            // Slow clients must not hold shutdown hostage.
            _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!("requests still open after the grace period; closing them");
                Ok(())
            }
        };
        let _ = workers.await;
        let _ = retention.await;
        let _ = live.await;
        tracing::info!("MMT stopped");
        served
    }
}

/// A transcription worker without the API: consumes the transcribe queue (the GPU worker's
/// mode) and answers only the health routes on its port, for the orchestrator's checks.
pub async fn run_worker_until_stopped(
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let addr = SocketAddr::new(state.config.http.host, state.config.http.port);
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(
        port = listener.local_addr()?.port(),
        "MMT worker running (health routes and live dictation)"
    );
    let workers = tokio::spawn(run_job_consumers(state.clone(), shutdown.clone()));
    let live = tokio::spawn(close_live_dictations(state.clone(), shutdown.clone()));
    let health = axum::serve(
        listener,
        worker_router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let served = health.await;
    let _ = workers.await;
    let _ = live.await;
    tracing::info!("MMT worker stopped");
    served
}

/// On shutdown, live dictations save what was said and close (1012) within the grace period:
/// their connections are upgraded, so the server's own drain does not wait for them.
async fn close_live_dictations(state: AppState, shutdown: CancellationToken) {
    shutdown.cancelled().await;
    if let Some(live) = &state.live {
        live.close_all(state.config.http.shutdown_grace).await;
    }
}

/// A token cancelled on SIGTERM or Ctrl-C.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => tracing::info!("interrupt received; shutting down"),
            _ = terminate => tracing::info!("SIGTERM received; shutting down"),
        }
        trigger.cancel();
    });
    token
}
