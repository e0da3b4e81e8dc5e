//! A fake OpenEMR that behaves like the real one on the routes MMT uses (OpenEMR 7/8 Standard
//! REST API and its OAuth2 server), with faults a test can inject.
//!
//! Reproduced behaviour:
//! * `POST /oauth2/{site}/token`: `refresh_token` grant (the refresh token is rotated on every
//!   use: the old one answers 400 `invalid_grant` afterwards) and `password` grant; form-encoded.
//! * Every `/apis/{site}/api/...` route wants `Authorization: Bearer <access token>` (401
//!   otherwise, and after the token expires).
//! * `GET /api/patient/{puuid}`, `GET /api/patient/{puuid}/encounter`: uuid lookups with the
//!   numeric `pid` and encounter number, wrapped in `{validationErrors, internalErrors, data}`.
//! * `GET|POST /api/patient/{pid}/encounter/{eid}/soap_note`: numeric ids; each field 2–65535
//!   characters when present (400 with `validationErrors` otherwise); 201 `{"sid","fid"}`.
//!
//! Faults apply to the next SOAP-note POSTs, in order: commit then time out, 500, 429 with
//! `Retry-After`, connection reset before commit.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Form, Json, Router,
    body::Bytes,
    extract::{Path, Request, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};

/// A fault for the next SOAP-note POST.
#[derive(Debug, Clone, PartialEq)]
pub enum EmrFault {
    /// The note is stored, then the answer never comes (the client times out).
    CommitThenStall(Duration),
    /// 500 before anything is stored.
    ServerError,
    /// 429 with `Retry-After` seconds, before anything is stored.
    RateLimited { retry_after_s: u32 },
    /// The connection is closed before anything is stored.
    ConnectionReset,
}

/// A request as it reached the fake (for checking against OpenEMR's OpenAPI description).
#[derive(Debug, Clone, serde::Serialize)]
pub struct EmrRequest {
    pub method: String,
    /// Without `/apis/{site}` (the spec's server URL carries it).
    pub path: String,
    pub query: Option<String>,
    pub content_type: Option<String>,
    pub body: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct SoapNote {
    pub id: u64,
    pub pid: u64,
    pub encounter: u64,
    pub fields: HashMap<String, String>,
}

#[derive(Debug)]
struct Patient {
    uuid: String,
    pid: u64,
    /// (uuid, encounter number)
    encounters: Vec<(String, u64)>,
}

#[derive(Debug)]
struct Inner {
    site: String,
    client_id: String,
    refresh_token: Option<String>,
    password: Option<(String, String)>,
    access_tokens: HashMap<String, Instant>,
    token_lifetime: Duration,
    patients: Vec<Patient>,
    notes: Vec<SoapNote>,
    faults: VecDeque<EmrFault>,
    requests: Vec<EmrRequest>,
    token_requests: usize,
    next_id: u64,
}

#[derive(Clone)]
struct Shared(Arc<Mutex<Inner>>);

/// A running fake OpenEMR on 127.0.0.1; stops when dropped.
pub struct FakeOpenEmr {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

fn token() -> String {
    use sha2::Digest;
    let seed = format!("{:?}{}", Instant::now(), std::process::id());
    hex::encode(sha2::Sha256::digest(seed.as_bytes()))
}

impl FakeOpenEmr {
    /// Site `default`, OAuth client `client_id`, one refresh token issued to it.
    pub async fn start(client_id: &str, refresh_token: &str) -> std::io::Result<Self> {
        let inner = Inner {
            site: "default".into(),
            client_id: client_id.to_owned(),
            refresh_token: Some(refresh_token.to_owned()),
            password: None,
            access_tokens: HashMap::new(),
            token_lifetime: Duration::from_secs(3600),
            patients: Vec::new(),
            notes: Vec::new(),
            faults: VecDeque::new(),
            requests: Vec::new(),
            token_requests: 0,
            next_id: 1,
        };
        let shared = Shared(Arc::new(Mutex::new(inner)));
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let app = router(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// The value for `OPENEMR_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a patient with encounters; returns nothing (ids are the caller's).
    pub fn add_patient(&self, uuid: &str, pid: u64, encounters: &[(&str, u64)]) {
        self.shared.0.lock().unwrap().patients.push(Patient {
            uuid: uuid.to_owned(),
            pid,
            encounters: encounters
                .iter()
                .map(|(u, n)| ((*u).to_owned(), *n))
                .collect(),
        });
    }

    pub fn allow_password_grant(&self, username: &str, password: &str) {
        self.shared.0.lock().unwrap().password = Some((username.to_owned(), password.to_owned()));
    }

    pub fn fail_next_posts(&self, faults: impl IntoIterator<Item = EmrFault>) {
        self.shared.0.lock().unwrap().faults.extend(faults);
    }

    /// Every access token issued so far stops working (as after expiry).
    pub fn expire_access_tokens(&self) {
        self.shared.0.lock().unwrap().access_tokens.clear();
    }

    /// The refresh token OpenEMR currently honours (`None` once revoked).
    pub fn current_refresh_token(&self) -> Option<String> {
        self.shared.0.lock().unwrap().refresh_token.clone()
    }

    /// Revokes the refresh token: the next refresh answers `invalid_grant`.
    pub fn revoke_refresh_token(&self) {
        self.shared.0.lock().unwrap().refresh_token = None;
    }

    pub fn notes(&self) -> Vec<SoapNote> {
        self.shared.0.lock().unwrap().notes.clone()
    }

    pub fn requests(&self) -> Vec<EmrRequest> {
        self.shared.0.lock().unwrap().requests.clone()
    }

    pub fn token_requests(&self) -> usize {
        self.shared.0.lock().unwrap().token_requests
    }
}

impl Drop for FakeOpenEmr {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/oauth2/{site}/token", post(token_endpoint))
        .route("/apis/{site}/api/patient/{puuid}", get(patient))
        .route(
            "/apis/{site}/api/patient/{puuid}/encounter",
            get(encounters),
        )
        .route(
            "/apis/{site}/api/patient/{pid}/encounter/{eid}/soap_note",
            get(list_notes).post(post_note),
        )
        .layer(axum::middleware::from_fn_with_state(shared.clone(), record))
        .with_state(shared)
}

/// Records what reached an API route (the token endpoint is not part of the REST spec).
async fn record(
    State(shared): State<Shared>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    if let Some(rest) = path.strip_prefix("/apis/") {
        let api_path = rest.split_once('/').map_or("", |(_, p)| p);
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        shared.0.lock().unwrap().requests.push(EmrRequest {
            method: parts.method.to_string(),
            path: format!("/{api_path}"),
            query: parts.uri.query().map(str::to_owned),
            content_type,
            body: serde_json::from_slice(&bytes).ok(),
        });
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

fn standard(data: Value) -> Json<Value> {
    Json(json!({"validationErrors": [], "internalErrors": [], "data": data}))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": "access_denied", "error_description": "The resource owner or authorization server denied the request."})),
    )
        .into_response()
}

fn authorized(shared: &Shared, site: &str, headers: &HeaderMap) -> bool {
    let inner = shared.0.lock().unwrap();
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    site == inner.site
        && inner
            .access_tokens
            .get(token)
            .is_some_and(|expires| *expires > Instant::now())
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    client_id: Option<String>,
    refresh_token: Option<String>,
    username: Option<String>,
    password: Option<String>,
    scope: Option<String>,
}

async fn token_endpoint(
    State(shared): State<Shared>,
    Path(site): Path<String>,
    Form(form): Form<TokenForm>,
) -> Response {
    let mut inner = shared.0.lock().unwrap();
    inner.token_requests += 1;
    let invalid_grant = |description: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": description})),
        )
            .into_response()
    };
    if site != inner.site || form.client_id.as_deref() != Some(inner.client_id.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client", "error_description": "Client authentication failed"})),
        )
            .into_response();
    }
    match form.grant_type.as_str() {
        "refresh_token" => {
            if form.refresh_token.is_none() || form.refresh_token != inner.refresh_token {
                return invalid_grant("The refresh token is invalid.");
            }
        }
        "password" => {
            let given = form.username.clone().zip(form.password.clone());
            if given.is_none() || given != inner.password || form.scope.is_none() {
                return invalid_grant("The user credentials were incorrect.");
            }
        }
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "unsupported_grant_type"})),
            )
                .into_response();
        }
    }
    let access = token();
    let refresh = format!("r{}", token());
    let lifetime = inner.token_lifetime;
    inner
        .access_tokens
        .insert(access.clone(), Instant::now() + lifetime);
    // Rotation: the refresh token just used is dead from now on.
    inner.refresh_token = Some(refresh.clone());
    Json(json!({
        "token_type": "Bearer",
        "expires_in": lifetime.as_secs(),
        "access_token": access,
        "refresh_token": refresh,
        "scope": form.scope.unwrap_or_default(),
    }))
    .into_response()
}

async fn patient(
    State(shared): State<Shared>,
    Path((site, puuid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&shared, &site, &headers) {
        return unauthorized();
    }
    let inner = shared.0.lock().unwrap();
    match inner.patients.iter().find(|p| p.uuid == puuid) {
        Some(p) => standard(json!({"uuid": p.uuid, "pid": p.pid.to_string()})).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"validationErrors": [], "internalErrors": [], "data": []})),
        )
            .into_response(),
    }
}

async fn encounters(
    State(shared): State<Shared>,
    Path((site, puuid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&shared, &site, &headers) {
        return unauthorized();
    }
    let inner = shared.0.lock().unwrap();
    let list: Vec<Value> = inner
        .patients
        .iter()
        .filter(|p| p.uuid == puuid)
        .flat_map(|p| {
            p.encounters.iter().map(move |(uuid, number)| {
                json!({"uuid": uuid, "encounter": number.to_string(), "pid": p.pid.to_string()})
            })
        })
        .collect();
    standard(json!(list)).into_response()
}

fn numeric(raw: &str) -> Option<u64> {
    raw.parse().ok()
}

async fn list_notes(
    State(shared): State<Shared>,
    Path((site, pid, eid)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&shared, &site, &headers) {
        return unauthorized();
    }
    let (Some(pid), Some(eid)) = (numeric(&pid), numeric(&eid)) else {
        return standard(json!([])).into_response();
    };
    let inner = shared.0.lock().unwrap();
    let notes: Vec<Value> = inner
        .notes
        .iter()
        .filter(|n| n.pid == pid && n.encounter == eid)
        .map(|n| {
            let mut note = json!({"id": n.id.to_string(), "pid": n.pid.to_string()});
            for (k, v) in &n.fields {
                note[k] = json!(v);
            }
            note
        })
        .collect();
    standard(json!(notes)).into_response()
}

async fn post_note(
    State(shared): State<Shared>,
    Path((site, pid, eid)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&shared, &site, &headers) {
        return unauthorized();
    }
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"validationErrors": {"body": "not JSON"}})),
        )
            .into_response();
    };
    let mut errors = serde_json::Map::new();
    let mut stored = HashMap::new();
    for name in ["subjective", "objective", "assessment", "plan"] {
        if let Some(value) = fields.get(name) {
            let text = value.as_str().unwrap_or_default();
            let length = text.chars().count();
            if !(2..=65535).contains(&length) {
                errors.insert(
                    name.into(),
                    json!({"Length::TOO_SHORT": "must be between 2 and 65535 characters"}),
                );
            } else {
                stored.insert(name.to_owned(), text.to_owned());
            }
        }
    }
    if !errors.is_empty() || stored.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"validationErrors": errors, "internalErrors": [], "data": []})),
        )
            .into_response();
    }
    let (Some(pid), Some(eid)) = (numeric(&pid), numeric(&eid)) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"validationErrors": {"pid": "numeric"}})),
        )
            .into_response();
    };
    let fault = shared.0.lock().unwrap().faults.pop_front();
    match fault {
        Some(EmrFault::ServerError) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response();
        }
        Some(EmrFault::RateLimited { retry_after_s }) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, retry_after_s.to_string())],
                "Too Many Requests",
            )
                .into_response();
        }
        Some(EmrFault::ConnectionReset) => {
            // Dropping the answer mid-way: hyper closes the connection without a response.
            panic!("connection reset (injected)");
        }
        _ => {}
    }
    let (sid, fid) = {
        let mut inner = shared.0.lock().unwrap();
        let sid = inner.next_id;
        inner.next_id += 2;
        inner.notes.push(SoapNote {
            id: sid,
            pid,
            encounter: eid,
            fields: stored,
        });
        (sid, sid + 1)
    };
    if let Some(EmrFault::CommitThenStall(stall)) = fault {
        tokio::time::sleep(stall).await;
    }
    (StatusCode::CREATED, Json(json!({"sid": sid, "fid": fid}))).into_response()
}
