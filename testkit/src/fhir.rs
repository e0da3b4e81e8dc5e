//! A fake FHIR R4 server for `DocumentReference` creates: conditional create on
//! `If-None-Exist: identifier=<system>|<value>` (201 with `Location` when new, 200 with the
//! existing resource when a match exists, 412 when several match), and one injectable fault:
//! create, then answer too late.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};

#[derive(Default)]
struct Inner {
    resources: Vec<Value>,
    stall_next: Option<Duration>,
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Inner>>);

pub struct FakeFhirServer {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl FakeFhirServer {
    pub async fn start() -> std::io::Result<Self> {
        let shared = Shared::default();
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/fhir/DocumentReference", post(create))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// The value for `FHIR_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}/fhir", self.addr)
    }

    /// The next create is stored, then answered only after `stall`.
    pub fn stall_next_create(&self, stall: Duration) {
        self.shared.0.lock().unwrap().stall_next = Some(stall);
    }

    pub fn resources(&self) -> Vec<Value> {
        self.shared.0.lock().unwrap().resources.clone()
    }
}

impl Drop for FakeFhirServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn has_identifier(resource: &Value, system: &str, value: &str) -> bool {
    resource["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|i| i["system"] == system && i["value"] == value)
}

async fn create(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(mut resource) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"resourceType": "OperationOutcome"})),
        )
            .into_response();
    };
    if resource["resourceType"] != "DocumentReference" {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"resourceType": "OperationOutcome"})),
        )
            .into_response();
    }
    let condition = headers
        .get("if-none-exist")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("identifier="))
        .and_then(|v| v.split_once('|'))
        .map(|(s, v)| (s.to_owned(), v.to_owned()));
    let (stall, answer) = {
        let mut inner = shared.0.lock().unwrap();
        if let Some((system, value)) = &condition {
            let matches: Vec<&Value> = inner
                .resources
                .iter()
                .filter(|r| has_identifier(r, system, value))
                .collect();
            match matches.as_slice() {
                [] => {}
                [existing] => return (StatusCode::OK, Json((*existing).clone())).into_response(),
                _ => {
                    return (
                        StatusCode::PRECONDITION_FAILED,
                        Json(json!({"resourceType": "OperationOutcome"})),
                    )
                        .into_response();
                }
            }
        }
        let id = format!("doc-{}", inner.resources.len() + 1);
        resource["id"] = json!(id);
        resource["meta"] = json!({"versionId": "1"});
        inner.resources.push(resource.clone());
        (inner.stall_next.take(), (id, resource))
    };
    if let Some(stall) = stall {
        tokio::time::sleep(stall).await;
    }
    let (id, resource) = answer;
    (
        StatusCode::CREATED,
        [(
            header::LOCATION,
            format!("DocumentReference/{id}/_history/1"),
        )],
        Json(resource),
    )
        .into_response()
}
