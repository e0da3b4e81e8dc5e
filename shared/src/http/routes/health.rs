//! `GET /health/live` and `GET /health/ready`: liveness, and each dependency checked.

use std::{collections::BTreeMap, future::Future, time::Instant};

use axum::{Json, extract::State, http::StatusCode};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{app::AppState, auth::Scope, http::extract::Caller};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(live))
        .routes(routes!(ready))
}

#[derive(Serialize, ToSchema)]
pub struct Liveness {
    /// Always `live` while the process answers.
    status: &'static str,
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, body = Liveness)))]
async fn live() -> Json<Liveness> {
    Json(Liveness { status: "live" })
}

#[derive(Serialize, ToSchema)]
pub struct DependencyCheck {
    ok: bool,
    latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    status: &'static str,
    /// Names of the checks that failed.
    failing: Vec<String>,
    /// One entry per dependency: `store`, `blob_store`, `queue`, `engine`, and `workers` where
    /// this process runs queue consumers (their heartbeats).
    checks: BTreeMap<String, DependencyCheck>,
}

async fn timed<F, E>(check: F) -> DependencyCheck
where
    F: Future<Output = Result<Option<String>, E>>,
    E: std::fmt::Display,
{
    let started = Instant::now();
    let outcome = check.await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    match outcome {
        Ok(detail) => DependencyCheck {
            ok: true,
            latency_ms,
            detail,
        },
        Err(err) => DependencyCheck {
            ok: false,
            latency_ms,
            detail: Some(err.to_string()),
        },
    }
}

/// Readiness: every dependency answers, and an engine is configured. The details (queue
/// depths, the model, error texts) go to admin tokens, or to anyone with `HEALTH_DETAILS`
/// (the default outside production).
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "A dependency is failing; `failing` names it", body = Readiness)
    )
)]
async fn ready(
    State(state): State<AppState>,
    caller: Option<Caller>,
) -> (StatusCode, Json<Readiness>) {
    let details = state.config.http.health_details
        || caller.is_some_and(|Caller(principal)| principal.has(Scope::Admin));
    let (store, blob_store, queue) = tokio::join!(
        timed(async { state.records.ping().await.map(|()| None) }),
        timed(async { state.blobs.ping().await.map(|()| None) }),
        timed(async {
            state.transcribe_queue.stats().await.map(|s| {
                Some(format!(
                    "{} waiting, {} in flight, {} dead-lettered",
                    s.visible, s.in_flight, s.dead_lettered
                ))
            })
        }),
    );
    let engine = timed(async {
        let default = state
            .config
            .engines
            .default_engine
            .ok_or("no transcription engine is enabled")?;
        let engine = state
            .engines
            .get(default)
            .ok_or("the default engine is not available")?;
        Ok::<_, &str>(Some(format!("{default}: {}", engine.describe())))
    })
    .await;

    let mut checks = BTreeMap::from([
        ("store".to_owned(), store),
        ("blob_store".to_owned(), blob_store),
        ("queue".to_owned(), queue),
        ("engine".to_owned(), engine),
    ]);
    if let Some(workers) = workers_check(&state) {
        checks.insert("workers".to_owned(), workers);
    }
    if !details {
        checks.values_mut().for_each(|check| check.detail = None);
    }
    let failing: Vec<String> = checks
        .iter()
        .filter(|(_, c)| !c.ok)
        .map(|(n, _)| n.clone())
        .collect();
    let status = if failing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let label = if failing.is_empty() {
        "ready"
    } else {
        "not_ready"
    };
    (
        status,
        Json(Readiness {
            status: label,
            failing,
            checks,
        }),
    )
}

/// The in-process consumers, when this process runs any.
fn workers_check(state: &AppState) -> Option<DependencyCheck> {
    let workers = state
        .worker_heartbeats
        .health(state.config.queue.worker_stale_after)?;
    let detail = if workers.stuck.is_empty() {
        format!(
            "{} consumers, last heard from at most {:.1} s ago",
            workers.workers, workers.oldest_beat_s
        )
    } else {
        format!(
            "not heard from within {} s: {}",
            state.config.queue.worker_stale_after.as_secs(),
            workers.stuck.join(", ")
        )
    };
    Some(DependencyCheck {
        ok: workers.stuck.is_empty(),
        latency_ms: 0.0,
        detail: Some(detail),
    })
}
