//! A fake OpenEMR that answers as OpenEMR's own source does on the routes MMT uses, for 7.0.x
//! and 8.x where they differ, with faults a test can inject. Each behaviour names the file it
//! comes from (github.com/openemr/openemr unless said otherwise):
//!
//! * `POST /oauth2/{site}/token` (`src/RestControllers/AuthorizationController.php`, which
//!   hands grants to league/oauth2-server 8.x, the version `composer.json` requires):
//!   `refresh_token` grant, rotated on every use; an unknown, revoked or already-used refresh
//!   token answers 401 `{"error":"invalid_request","error_description":"The refresh token is
//!   invalid.","hint":...}` (`OAuthServerException::invalidRefreshToken` in 8.x); an unknown
//!   client 401 `invalid_client`; a wrong password 400 `invalid_grant`
//!   (`OAuthServerException::invalidCredentials`).
//! * Every `/apis/{site}/api/...` and `/apis/{site}/fhir/...` route wants a live bearer token
//!   (401 `access_denied` otherwise, as `ResourceServer::validateAuthenticatedRequest` throws).
//! * `GET /api/patient/{puuid}` (`PatientRestController::getOne`, `PatientService::getOne`):
//!   200 `{"validationErrors":[],"internalErrors":[],"data":{pid, uuid, fname, lname, DOB,
//!   ...}}`; an unknown uuid is a validation failure, 400 with
//!   `{"uuid":{"invalid or nonexisting value":" value <uuid>"}}`.
//! * `GET /api/patient/{puuid}/encounter` (`EncounterRestController::getAll`,
//!   `EncounterService::search()`, which selects `encounter as eid, uuid as euuid` and orders
//!   by `eid DESC`): rows `{eid, euuid, date, reason, pid, puuid, ...}` in the envelope; no
//!   encounters: 404 with the empty envelope; unknown patient: 400 (the `puuid` bind check).
//! * `GET /api/patient/{pid}/encounter/{eid}/soap_note` (`EncounterRestController::
//!   getSoapNotes`, `EncounterService::getSoapNotes`): a bare JSON array of `form_soap` rows
//!   (`id, date, pid, user, groupname, authorized, activity, subjective, objective,
//!   assessment, plan`, absent fields `null`); none: 404 through
//!   `RestControllerHelper::responseHandler` — body `null` on 7.0.x, empty on 8.x (a Symfony
//!   `Response('', 404)`).
//! * `POST` on the same path (`EncounterService::validateSoapNote`: each field optional,
//!   `lengthBetween(2, 65535)` from particle/validator, which counts bytes with `strlen`;
//!   `insertSoapNote` writes `form_soap` then `forms` and never checks that the encounter is
//!   the patient's): 201 `{"sid": <form_soap id>, "fid": <forms id>}`. A validation failure
//!   answers the messages `{"subjective":{"LengthBetween::TOO_LONG":"subjective must be 65535
//!   characters or shorter"}}` with 400 on 7.0.x; on 8.x the controller still returns that
//!   array from `validationHandler`, whose `http_response_code(400)` the 8.x kernel's response
//!   object overrides, so the client sees 200.
//! * FHIR R4 (`src/RestControllers/FHIR/FhirPatientRestController.php`, the FHIR search rules
//!   at hl7.org/fhir/R4/search.html): `GET /fhir/Patient?name=` matches the start of any name
//!   part, case-insensitively; `birthdate=YYYY-MM-DD`; `identifier=` the record number
//!   (`pubpid`); answers a `searchset` Bundle (empty: `total` 0, no `entry`).
//!   `GET /fhir/Encounter?patient=<uuid>` answers Encounters with `period.start` and
//!   `reasonCode[].text`.
//!
//! * `GET /oauth2/{site}/authorize` and the `authorization_code` grant (league/oauth2-server's
//!   `AuthCodeGrant` behind `AuthorizationController`): a clinician signed in to OpenEMR in
//!   the browser (`sign_in_as`) is sent back to `redirect_uri` with `code` and `state`; the
//!   code is exchanged once, with the PKCE `code_verifier` (S256) that matches its challenge
//!   (400 `invalid_grant` otherwise), for that clinician's access and refresh tokens. A note
//!   is written as the user whose token wrote it (`form_soap.user`).
//!
//! Faults apply to the next SOAP-note POSTs, in order: commit then stall, 500, 429 with
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
    extract::{Path, Query, Request, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};

/// Which OpenEMR the fake answers as, where the two differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenEmrVersion {
    /// 7.0.x: validation failures are 400; an empty SOAP-note list is 404 with `null`.
    V7,
    /// 8.x: validation failures are 200 with the messages; an empty list is 404, no body.
    V8,
}

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
    /// The SOAP fields the POST carried (absent ones are `NULL` in OpenEMR).
    pub fields: HashMap<String, String>,
    /// The access token it was written with.
    pub written_with: String,
    /// The OpenEMR user that token belongs to (the note's `user`).
    pub author: String,
}

/// A patient in the fake's chart.
#[derive(Debug, Clone)]
pub struct FakePatient {
    pub uuid: String,
    pub pid: u64,
    pub fname: String,
    pub lname: String,
    /// `YYYY-MM-DD`.
    pub dob: String,
    /// The record number clinicians know.
    pub pubpid: String,
    pub encounters: Vec<FakeEncounter>,
}

#[derive(Debug, Clone)]
pub struct FakeEncounter {
    pub uuid: String,
    pub eid: u64,
    /// `YYYY-MM-DD HH:MM:SS`, as `form_encounter.date`.
    pub date: String,
    pub reason: String,
}

/// A pending authorization code: who, for which redirect URI, with which PKCE challenge.
#[derive(Debug)]
struct Code {
    user: String,
    redirect_uri: String,
    challenge: String,
}

/// The user of the deployment's shared login (its refresh token is `refresh_token`).
pub const SERVICE_USER: &str = "mmt-service";

#[derive(Debug)]
struct Inner {
    version: OpenEmrVersion,
    site: String,
    client_id: String,
    refresh_token: Option<String>,
    password: Option<(String, String)>,
    /// Access token → (expiry, user).
    access_tokens: HashMap<String, (Instant, String)>,
    /// Clinicians' refresh tokens → user.
    user_refresh: HashMap<String, String>,
    codes: HashMap<String, Code>,
    /// Who is signed in to OpenEMR in the browser that meets `/authorize`.
    browser_user: Option<String>,
    token_lifetime: Duration,
    patients: Vec<FakePatient>,
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
    let seed = format!(
        "{:?}{}{}",
        Instant::now(),
        std::process::id(),
        rand::random::<u64>()
    );
    hex::encode(sha2::Sha256::digest(seed.as_bytes()))
}

impl FakeOpenEmr {
    /// OpenEMR 7.0.x, site `default`, OAuth client `client_id`, one refresh token issued to it.
    pub async fn start(client_id: &str, refresh_token: &str) -> std::io::Result<Self> {
        Self::start_as(OpenEmrVersion::V7, client_id, refresh_token).await
    }

    pub async fn start_as(
        version: OpenEmrVersion,
        client_id: &str,
        refresh_token: &str,
    ) -> std::io::Result<Self> {
        Self::start_on(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            version,
            client_id,
            refresh_token,
        )
        .await
    }

    pub async fn start_on(
        addr: SocketAddr,
        version: OpenEmrVersion,
        client_id: &str,
        refresh_token: &str,
    ) -> std::io::Result<Self> {
        let inner = Inner {
            version,
            site: "default".into(),
            client_id: client_id.to_owned(),
            refresh_token: Some(refresh_token.to_owned()),
            password: None,
            access_tokens: HashMap::new(),
            user_refresh: HashMap::new(),
            codes: HashMap::new(),
            browser_user: None,
            token_lifetime: Duration::from_secs(3600),
            patients: Vec::new(),
            notes: Vec::new(),
            faults: VecDeque::new(),
            requests: Vec::new(),
            token_requests: 0,
            next_id: 1,
        };
        let shared = Shared(Arc::new(Mutex::new(inner)));
        let listener = tokio::net::TcpListener::bind(addr).await?;
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

    /// Adds a patient with encounters given as `(uuid, number)`.
    pub fn add_patient(&self, uuid: &str, pid: u64, encounters: &[(&str, u64)]) {
        self.add(FakePatient {
            uuid: uuid.to_owned(),
            pid,
            fname: "Test".into(),
            lname: format!("Patient{pid}"),
            dob: "1970-01-01".into(),
            pubpid: format!("MRN{pid}"),
            encounters: encounters
                .iter()
                .map(|(u, n)| FakeEncounter {
                    uuid: (*u).to_owned(),
                    eid: *n,
                    date: "2026-12-01 09:00:00".into(),
                    reason: "Follow-up".into(),
                })
                .collect(),
        });
    }

    pub fn add(&self, patient: FakePatient) {
        self.shared.0.lock().unwrap().patients.push(patient);
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

    /// Revokes the refresh token: the next refresh is refused.
    pub fn revoke_refresh_token(&self) {
        self.shared.0.lock().unwrap().refresh_token = None;
    }

    /// A clinician signs in to OpenEMR in the browser: `/authorize` answers for them.
    pub fn sign_in_as(&self, user: &str) {
        self.shared.0.lock().unwrap().browser_user = Some(user.to_owned());
    }

    /// An administrator revokes one clinician's grant: their refresh and access tokens die.
    pub fn revoke_user(&self, user: &str) {
        let mut inner = self.shared.0.lock().unwrap();
        inner.user_refresh.retain(|_, u| u != user);
        inner.access_tokens.retain(|_, (_, u)| u != user);
    }

    /// A note already in the chart (written by hand in OpenEMR, not by MMT).
    pub fn add_note(&self, pid: u64, encounter: u64, fields: &[(&str, &str)]) {
        let mut inner = self.shared.0.lock().unwrap();
        let id = inner.next_id;
        inner.next_id += 2;
        inner.notes.push(SoapNote {
            id,
            pid,
            encounter,
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            written_with: String::new(),
            author: "nurse".into(),
        });
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
        .route("/oauth2/{site}/authorize", get(authorize))
        .route("/apis/{site}/api/patient/{puuid}", get(patient))
        .route(
            "/apis/{site}/api/patient/{puuid}/encounter",
            get(encounters),
        )
        .route(
            "/apis/{site}/api/patient/{pid}/encounter/{eid}/soap_note",
            get(list_notes).post(post_note),
        )
        .route("/apis/{site}/fhir/Patient", get(fhir_patients))
        .route("/apis/{site}/fhir/Encounter", get(fhir_encounters))
        // Not OpenEMR: lets a browser test look at the chart as the fake holds it.
        .route("/__fake/notes", get(inspect_notes))
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

/// `RestControllerHelper::handleProcessingResult`'s envelope (8.x adds `links`).
fn envelope(version: OpenEmrVersion, validation: Value, data: Value) -> Value {
    let mut body = json!({"validationErrors": validation, "internalErrors": [], "data": data});
    if version == OpenEmrVersion::V8 {
        body["links"] = json!([]);
    }
    body
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": "access_denied", "error_description": "The resource owner or authorization server denied the request.", "hint": "Access token could not be verified", "message": "The resource owner or authorization server denied the request."})),
    )
        .into_response()
}

/// The access token of a request, if it is live.
fn authorized(shared: &Shared, site: &str, headers: &HeaderMap) -> Option<String> {
    let inner = shared.0.lock().unwrap();
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))?;
    (site == inner.site
        && inner
            .access_tokens
            .get(token)
            .is_some_and(|(expires, _)| *expires > Instant::now()))
    .then(|| token.to_owned())
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    client_id: Option<String>,
    refresh_token: Option<String>,
    username: Option<String>,
    password: Option<String>,
    scope: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

/// The authorization endpoint, for a browser already signed in to OpenEMR.
async fn authorize(
    State(shared): State<Shared>,
    Path(site): Path<String>,
    Query(query): Query<AuthorizeQuery>,
) -> Response {
    let mut inner = shared.0.lock().unwrap();
    let client_ok =
        site == inner.site && query.client_id.as_deref() == Some(inner.client_id.as_str());
    let (Some(redirect_uri), true) = (query.redirect_uri.clone(), client_ok) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
            "",
        );
    };
    if query.response_type.as_deref() != Some("code")
        || query.code_challenge_method.as_deref() != Some("S256")
        || query.code_challenge.is_none()
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The request is missing a required parameter, includes an invalid parameter value, includes a parameter more than once, or is otherwise malformed.",
            "Check the `code_challenge` parameter",
        );
    }
    let Some(user) = inner.browser_user.clone() else {
        return (
            StatusCode::OK,
            axum::response::Html("<form>OpenEMR login</form>"),
        )
            .into_response();
    };
    let code = format!("c{}", token());
    inner.codes.insert(
        code.clone(),
        Code {
            user,
            redirect_uri: redirect_uri.clone(),
            challenge: query.code_challenge.unwrap_or_default(),
        },
    );
    let mut target = format!(
        "{redirect_uri}{}code={code}",
        if redirect_uri.contains('?') { '&' } else { '?' }
    );
    if let Some(state) = query.state {
        target.push_str(&format!("&state={}", urlencode(&state)));
    }
    (StatusCode::FOUND, [(header::LOCATION, target)]).into_response()
}

fn urlencode(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// PKCE S256: base64url(SHA-256(verifier)) without padding.
fn s256(verifier: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(verifier.as_bytes());
    let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in digest.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(table[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// league/oauth2-server's error body (`OAuthServerException::generateHttpResponse`).
fn oauth_error(status: StatusCode, error: &str, description: &str, hint: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description, "hint": hint, "message": description})),
    )
        .into_response()
}

async fn token_endpoint(
    State(shared): State<Shared>,
    Path(site): Path<String>,
    Form(form): Form<TokenForm>,
) -> Response {
    let mut inner = shared.0.lock().unwrap();
    inner.token_requests += 1;
    if site != inner.site || form.client_id.as_deref() != Some(inner.client_id.as_str()) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
            "",
        );
    }
    let user = match form.grant_type.as_str() {
        "refresh_token" => {
            let given = form.refresh_token.clone().unwrap_or_default();
            if form.refresh_token.is_some() && form.refresh_token == inner.refresh_token {
                SERVICE_USER.to_owned()
            } else if let Some(user) = inner.user_refresh.remove(&given) {
                user
            } else {
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_request",
                    "The refresh token is invalid.",
                    "Token has been revoked",
                );
            }
        }
        "authorization_code" => {
            let code = form.code.as_deref().and_then(|c| inner.codes.remove(c));
            let Some(code) = code else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The provided authorization grant (e.g., authorization code, resource owner credentials) or refresh token is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client.",
                    "Authorization code has been revoked",
                );
            };
            let verifier_ok = form
                .code_verifier
                .as_deref()
                .is_some_and(|v| s256(v) == code.challenge);
            if form.redirect_uri.as_deref() != Some(code.redirect_uri.as_str()) || !verifier_ok {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The provided authorization grant (e.g., authorization code, resource owner credentials) or refresh token is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client.",
                    "Failed to verify `code_verifier`.",
                );
            }
            code.user
        }
        "password" => {
            let given = form.username.clone().zip(form.password.clone());
            if given.is_none() || given != inner.password || form.scope.is_none() {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The user credentials were incorrect.",
                    "",
                );
            }
            SERVICE_USER.to_owned()
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "The authorization grant type is not supported by the authorization server.",
                "Check that all required parameters have been provided",
            );
        }
    };
    let access = token();
    let refresh = format!("r{}", token());
    let lifetime = inner.token_lifetime;
    inner
        .access_tokens
        .insert(access.clone(), (Instant::now() + lifetime, user.clone()));
    // Rotation: the refresh token just used is dead from now on.
    if user == SERVICE_USER {
        inner.refresh_token = Some(refresh.clone());
    } else {
        inner.user_refresh.insert(refresh.clone(), user);
    }
    Json(json!({
        "token_type": "Bearer",
        "expires_in": lifetime.as_secs(),
        "access_token": access,
        "refresh_token": refresh,
        "scope": form.scope.unwrap_or_default(),
    }))
    .into_response()
}

fn unknown_uuid(version: OpenEmrVersion, field: &str, uuid: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(envelope(
            version,
            json!({field: {"invalid or nonexisting value": format!(" value {uuid}")}}),
            json!([]),
        )),
    )
        .into_response()
}

async fn patient(
    State(shared): State<Shared>,
    Path((site, puuid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if authorized(&shared, &site, &headers).is_none() {
        return unauthorized();
    }
    let inner = shared.0.lock().unwrap();
    match inner.patients.iter().find(|p| p.uuid == puuid) {
        Some(p) => Json(envelope(
            inner.version,
            json!([]),
            json!({
                "id": p.pid.to_string(), "pid": p.pid.to_string(), "uuid": p.uuid,
                "pubpid": p.pubpid, "fname": p.fname, "mname": "", "lname": p.lname,
                "DOB": p.dob, "sex": "Female",
            }),
        ))
        .into_response(),
        None => unknown_uuid(inner.version, "uuid", &puuid),
    }
}

async fn encounters(
    State(shared): State<Shared>,
    Path((site, puuid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if authorized(&shared, &site, &headers).is_none() {
        return unauthorized();
    }
    let inner = shared.0.lock().unwrap();
    let Some(p) = inner.patients.iter().find(|p| p.uuid == puuid) else {
        return unknown_uuid(inner.version, "uuid", &puuid);
    };
    let mut list: Vec<&FakeEncounter> = p.encounters.iter().collect();
    list.sort_by_key(|e| std::cmp::Reverse(e.eid));
    let rows: Vec<Value> = list
        .iter()
        .map(|e| {
            json!({
                "eid": e.eid.to_string(), "euuid": e.uuid, "date": e.date, "reason": e.reason,
                "onset_date": null, "sensitivity": "normal", "pc_catid": "5",
                "pc_catname": "Office Visit", "pid": p.pid.to_string(), "puuid": p.uuid,
                "class_code": "AMB",
            })
        })
        .collect();
    let status = if rows.is_empty() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    (
        status,
        Json(envelope(inner.version, json!([]), json!(rows))),
    )
        .into_response()
}

fn numeric(raw: &str) -> u64 {
    // MySQL casts a non-numeric string bound to an integer column to 0.
    raw.parse().unwrap_or(0)
}

async fn list_notes(
    State(shared): State<Shared>,
    Path((site, pid, eid)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if authorized(&shared, &site, &headers).is_none() {
        return unauthorized();
    }
    let (pid, eid) = (numeric(&pid), numeric(&eid));
    let inner = shared.0.lock().unwrap();
    let rows: Vec<Value> = inner
        .notes
        .iter()
        .filter(|n| n.pid == pid && n.encounter == eid)
        .map(|n| {
            let mut row = json!({
                "id": n.id.to_string(), "date": "2026-12-06 10:00:00", "pid": n.pid.to_string(),
                "user": n.author, "groupname": "Default", "authorized": "1", "activity": "1",
            });
            for field in ["subjective", "objective", "assessment", "plan"] {
                row[field] = n.fields.get(field).map_or(Value::Null, |v| json!(v));
            }
            row
        })
        .collect();
    if rows.is_empty() {
        return match inner.version {
            OpenEmrVersion::V7 => (StatusCode::NOT_FOUND, Json(Value::Null)).into_response(),
            OpenEmrVersion::V8 => StatusCode::NOT_FOUND.into_response(),
        };
    }
    Json(Value::Array(rows)).into_response()
}

/// `validateSoapNote`: each present field 2–65535 bytes; the messages particle/validator gives.
fn soap_note_errors(fields: &serde_json::Map<String, Value>) -> serde_json::Map<String, Value> {
    let mut errors = serde_json::Map::new();
    for name in ["subjective", "objective", "assessment", "plan"] {
        let Some(value) = fields.get(name) else {
            continue;
        };
        let length = value.as_str().map_or(0, str::len);
        if length < 2 {
            errors.insert(
                name.into(),
                json!({"LengthBetween::TOO_SHORT": format!("{name} must be 2 characters or longer")}),
            );
        } else if length > 65535 {
            errors.insert(
                name.into(),
                json!({"LengthBetween::TOO_LONG": format!("{name} must be 65535 characters or shorter")}),
            );
        }
    }
    errors
}

async fn post_note(
    State(shared): State<Shared>,
    Path((site, pid, eid)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(access) = authorized(&shared, &site, &headers) else {
        return unauthorized();
    };
    // The route decodes with `(array) json_decode(...)`: anything but an object is no fields.
    let fields = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(fields)) => fields,
        _ => serde_json::Map::new(),
    };
    let errors = soap_note_errors(&fields);
    let version = shared.0.lock().unwrap().version;
    if !errors.is_empty() {
        let status = match version {
            OpenEmrVersion::V7 => StatusCode::BAD_REQUEST,
            OpenEmrVersion::V8 => StatusCode::OK,
        };
        return (status, Json(Value::Object(errors))).into_response();
    }
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
    let stored: HashMap<String, String> = ["subjective", "objective", "assessment", "plan"]
        .into_iter()
        .filter_map(|name| Some((name.to_owned(), fields.get(name)?.as_str()?.to_owned())))
        .collect();
    let (sid, fid) = {
        let mut inner = shared.0.lock().unwrap();
        let sid = inner.next_id;
        inner.next_id += 2;
        let author = inner
            .access_tokens
            .get(&access)
            .map_or_else(String::new, |(_, user)| user.clone());
        inner.notes.push(SoapNote {
            id: sid,
            pid: numeric(&pid),
            encounter: numeric(&eid),
            fields: stored,
            written_with: access,
            author,
        });
        (sid, sid + 1)
    };
    if let Some(EmrFault::CommitThenStall(stall)) = fault {
        tokio::time::sleep(stall).await;
    }
    (StatusCode::CREATED, Json(json!({"sid": sid, "fid": fid}))).into_response()
}

async fn inspect_notes(State(shared): State<Shared>) -> Json<Value> {
    let inner = shared.0.lock().unwrap();
    Json(json!(
        inner
            .notes
            .iter()
            .map(
                |n| json!({"id": n.id, "pid": n.pid, "encounter": n.encounter, "fields": n.fields, "author": n.author})
            )
            .collect::<Vec<_>>()
    ))
}

fn bundle(entries: Vec<Value>) -> Response {
    let mut body = json!({
        "resourceType": "Bundle", "type": "searchset", "total": entries.len(),
        "link": [{"relation": "self", "url": "Patient"}],
    });
    if !entries.is_empty() {
        body["entry"] = json!(
            entries
                .into_iter()
                .map(|resource| json!({"fullUrl": format!("{}/{}", resource["resourceType"].as_str().unwrap_or(""), resource["id"].as_str().unwrap_or("")), "resource": resource}))
                .collect::<Vec<_>>()
        );
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/fhir+json")],
        Json(body),
    )
        .into_response()
}

/// FHIR string search: the start of any name part, ignoring case.
fn name_matches(p: &FakePatient, query: &str) -> bool {
    let query = query.to_lowercase();
    [&p.fname, &p.lname]
        .iter()
        .flat_map(|n| n.split_whitespace())
        .any(|part| part.to_lowercase().starts_with(&query))
}

async fn fhir_patients(
    State(shared): State<Shared>,
    Path(site): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if authorized(&shared, &site, &headers).is_none() {
        return unauthorized();
    }
    let inner = shared.0.lock().unwrap();
    let found: Vec<Value> = inner
        .patients
        .iter()
        .filter(|p| query.get("name").is_none_or(|q| name_matches(p, q)))
        .filter(|p| query.get("birthdate").is_none_or(|d| *d == p.dob))
        .filter(|p| {
            query.get("identifier").is_none_or(|i| {
                i.rsplit('|').next() == Some(p.pubpid.as_str())
            })
        })
        .map(|p| {
            json!({
                "resourceType": "Patient", "id": p.uuid,
                "identifier": [{"use": "official", "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PT"}]}, "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "value": p.pubpid}],
                "name": [{"use": "official", "family": p.lname, "given": [p.fname]}],
                "gender": "female", "birthDate": p.dob,
            })
        })
        .collect();
    bundle(found)
}

async fn fhir_encounters(
    State(shared): State<Shared>,
    Path(site): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if authorized(&shared, &site, &headers).is_none() {
        return unauthorized();
    }
    let inner = shared.0.lock().unwrap();
    let wanted = query
        .get("patient")
        .map(|p| p.trim_start_matches("Patient/").to_owned());
    let found: Vec<Value> = inner
        .patients
        .iter()
        .filter(|p| wanted.as_deref().is_none_or(|w| w == p.uuid))
        .flat_map(|p| {
            p.encounters.iter().map(move |e| {
                json!({
                    "resourceType": "Encounter", "id": e.uuid, "status": "finished",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                    "subject": {"reference": format!("Patient/{}", p.uuid)},
                    "period": {"start": e.date.replace(' ', "T")},
                    "reasonCode": [{"text": e.reason}],
                })
            })
        })
        .collect();
    bundle(found)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            super::s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
