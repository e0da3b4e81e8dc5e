//! ECS task scale-in protection for the GPU worker: while a job is in hand, the task tells the
//! ECS container agent not to stop it on scale-in or deployment, and releases that once no job
//! is left. Contract (AWS, "Amazon ECS task scale-in protection endpoint"): the agent injects
//! `ECS_AGENT_URI`; `PUT $ECS_AGENT_URI/task-protection/v1/state` with
//! `{"ProtectionEnabled": bool, "ExpiresInMinutes": 1..=2880}` answers
//! `{"protection": {"ProtectionEnabled", "ExpirationDate", "TaskArn"}}`, or `{"failure": {...}}`
//! / `{"error": {"Code", "Message", ...}}`. The task role needs `ecs:UpdateTaskProtection`.
//!
//! A failure to set protection never fails a job: it is logged, and the job runs unprotected
//! (the queue's lease still brings it back if the task is stopped).

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::ports::ScaleInProtection;
use tokio::sync::Mutex;

/// Protection lasts this long per request, renewed while jobs keep coming; released explicitly
/// when the last job ends.
pub const DEFAULT_PROTECTION: Duration = Duration::from_secs(240 * 60);

pub struct TaskProtection {
    state_url: String,
    http: reqwest::Client,
    expires_in: Duration,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    jobs: usize,
    protected_since: Option<Instant>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProtectionError {
    #[error("the ECS agent could not be reached")]
    Unreachable(#[source] reqwest::Error),
    #[error("the ECS agent refused task protection: {0}")]
    Refused(String),
}

#[derive(Deserialize)]
struct AgentAnswer {
    protection: Option<serde_json::Value>,
    failure: Option<AgentProblem>,
    error: Option<AgentProblem>,
}

#[derive(Deserialize)]
struct AgentProblem {
    #[serde(alias = "Reason")]
    #[serde(alias = "Code")]
    reason: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
}

impl TaskProtection {
    /// `agent_uri` is `ECS_AGENT_URI` as the agent injects it.
    pub fn new(agent_uri: &str, expires_in: Duration) -> Self {
        Self {
            state_url: format!(
                "{}/task-protection/v1/state",
                agent_uri.trim_end_matches('/')
            ),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("a plain HTTP client builds"),
            expires_in,
            held: Mutex::default(),
        }
    }

    async fn set(&self, enabled: bool) -> Result<(), ProtectionError> {
        let mut body = serde_json::json!({ "ProtectionEnabled": enabled });
        if enabled {
            let minutes = (self.expires_in.as_secs() / 60).clamp(1, 2880);
            body["ExpiresInMinutes"] = minutes.into();
        }
        let response = self
            .http
            .put(&self.state_url)
            .json(&body)
            .send()
            .await
            .map_err(ProtectionError::Unreachable)?;
        let status = response.status();
        let answer: Option<AgentAnswer> = response.json().await.ok();
        match answer {
            Some(AgentAnswer {
                protection: Some(_),
                ..
            }) if status.is_success() => Ok(()),
            Some(AgentAnswer { failure, error, .. }) => {
                let problem = failure.or(error);
                Err(ProtectionError::Refused(format!(
                    "{status}: {}",
                    problem
                        .map(|p| [p.reason, p.message]
                            .into_iter()
                            .flatten()
                            .collect::<Vec<_>>()
                            .join(": "))
                        .unwrap_or_default()
                )))
            }
            None => Err(ProtectionError::Refused(status.to_string())),
        }
    }
}

#[async_trait::async_trait]
impl ScaleInProtection for TaskProtection {
    /// A job starts: protect the task (the first job, or a renewal past half the expiry).
    async fn job_started(&self) {
        let mut held = self.held.lock().await;
        held.jobs += 1;
        let stale = held
            .protected_since
            .is_none_or(|since| since.elapsed() > self.expires_in / 2);
        if stale {
            match self.set(true).await {
                Ok(()) => held.protected_since = Some(Instant::now()),
                Err(err) => {
                    tracing::warn!(error.cause_chain = %crate::telemetry::error_chain(&err), "could not protect the task from scale-in")
                }
            }
        }
    }

    /// A job ended (whatever its outcome): the last one releases the protection.
    async fn job_ended(&self) {
        let mut held = self.held.lock().await;
        held.jobs = held.jobs.saturating_sub(1);
        if held.jobs == 0 && held.protected_since.is_some() {
            match self.set(false).await {
                Ok(()) => held.protected_since = None,
                Err(err) => {
                    tracing::warn!(error.cause_chain = %crate::telemetry::error_chain(&err), "could not release the task's scale-in protection")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex as StdMutex};

    use axum::{Json, Router, extract::State, http::StatusCode, routing::put};
    use serde_json::{Value, json};

    use super::*;

    type Seen = Arc<StdMutex<Vec<Value>>>;

    /// The container agent's endpoint as AWS documents it; `refuse` answers its error shape.
    async fn agent(refuse: bool) -> (String, Seen) {
        let seen: Seen = Arc::default();
        let app = Router::new()
            .route(
                "/v1/agent/task-protection/v1/state",
                put(
                    move |State(seen): State<Seen>, Json(body): Json<Value>| async move {
                        seen.lock().unwrap().push(body.clone());
                        if refuse {
                            return (
                                StatusCode::BAD_REQUEST,
                                Json(json!({"error": {"Arn": "arn:aws:ecs:eu-west-1:123456789012:task/c/t", "Code": "AccessDeniedException", "Message": "not authorized to perform ecs:UpdateTaskProtection"}})),
                            );
                        }
                        (
                            StatusCode::OK,
                            Json(json!({"protection": {"ExpirationDate": "2026-12-01T13:00:00Z", "ProtectionEnabled": body["ProtectionEnabled"], "TaskArn": "arn:aws:ecs:eu-west-1:123456789012:task/c/t"}})),
                        )
                    },
                ),
            )
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{address}/v1/agent"), seen)
    }

    #[tokio::test]
    async fn protects_while_any_job_runs_and_releases_after_the_last() {
        let (uri, seen) = agent(false).await;
        let protection = TaskProtection::new(&uri, DEFAULT_PROTECTION);
        protection.job_started().await;
        protection.job_started().await;
        protection.job_ended().await;
        assert_eq!(
            *seen.lock().unwrap(),
            vec![json!({"ProtectionEnabled": true, "ExpiresInMinutes": 240})],
            "one request protects both jobs; the first job's end keeps the protection"
        );
        protection.job_ended().await;
        assert_eq!(
            seen.lock().unwrap().last(),
            Some(&json!({"ProtectionEnabled": false})),
            "the last job's end releases the task"
        );
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn an_agent_refusal_is_reported_not_fatal_and_retried_on_the_next_job() {
        let (uri, seen) = agent(true).await;
        let protection = TaskProtection::new(&uri, DEFAULT_PROTECTION);
        let refused = protection.set(true).await.unwrap_err().to_string();
        assert!(refused.contains("AccessDeniedException"), "{refused}");
        protection.job_started().await;
        protection.job_ended().await;
        // Never protected, so nothing to release; the next job asks again.
        protection.job_started().await;
        assert_eq!(seen.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn an_agent_that_is_not_there_does_not_hold_a_job() {
        let protection = TaskProtection::new("http://127.0.0.1:9", DEFAULT_PROTECTION);
        protection.job_started().await;
        protection.job_ended().await;
        assert!(matches!(
            protection.set(true).await,
            Err(ProtectionError::Unreachable(_))
        ));
    }
}
