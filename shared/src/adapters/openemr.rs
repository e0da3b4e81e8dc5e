//! [`EhrClient`] for OpenEMR's Standard REST API (7.0.x and 8.x), written against OpenEMR's
//! own source, not its OpenAPI description alone:
//!
//! * Ids: the client gives the patient's uuid and the encounter's uuid or number. MMT checks
//!   them with `GET /api/patient/{puuid}` (`data.pid`) and `GET /api/patient/{puuid}/encounter`,
//!   whose rows name the encounter `eid` and its uuid `euuid` (`EncounterService::search()`
//!   selects `encounter as eid, uuid as euuid`). A patient with no encounters answers 404; an
//!   unknown patient answers 400 with `validationErrors`. OpenEMR's API has no lookup of a
//!   patient by numeric pid, so a numeric patient id cannot be checked and is refused.
//! * Notes: `POST /api/patient/{pid}/encounter/{eid}/soap_note` (numeric ids; each field
//!   `lengthBetween(2, 65535)`, counted in bytes) answers 201 `{"sid","fid"}`. A validation
//!   failure is 400 on 7.0.x but 200 with the error list on 8.x (the controller returns the
//!   messages array and the 8.x kernel sends it with its default status), so a 2xx without a
//!   `sid` is a refusal, never a success.
//! * The note list (`GET` on the same path) is a bare JSON array of `form_soap` rows, not the
//!   `{validationErrors, internalErrors, data}` envelope, and an encounter without notes
//!   answers 404 (`RestControllerHelper::responseHandler` with an empty result).
//! * OAuth2 at `/oauth2/{site}/token` with a user-delegated refresh token: OpenEMR rotates it
//!   on every use, so the new one is stored (compare-and-swap) before the access token is
//!   used, one refresh at a time per process; another process's rotation is picked up from
//!   the store. A revoked or expired refresh token is answered by league/oauth2-server 8.x
//!   (bundled with OpenEMR) with 401 `invalid_request`, by 9.x with 400 `invalid_grant`: both
//!   mark the connection as needing a new login. The password grant is for tests and
//!   development only (refused with `ENV=prod`).
//! * Access tokens are cached until a minute before they expire; a 401 refreshes once and
//!   retries once.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::Instrument;

pub use crate::config::OpenEmrConfig;
use crate::{
    adapters::fhir::{patient_search, patients_in},
    domain::{
        EhrError, EhrLogin, EhrReceipt, EncounterSummary, NoteDelivery, NoteSection, PatientQuery,
        PatientSummary, newest_first,
    },
    ports::{ConnectionState, EhrClient, EhrConnectionStore},
};

/// The name of the connection in the [`EhrConnectionStore`].
pub const CONNECTION: &str = "openemr";

struct CachedToken {
    value: String,
    refresh_at: Instant,
}

pub struct OpenEmrClient {
    http: reqwest::Client,
    config: OpenEmrConfig,
    connections: Arc<dyn EhrConnectionStore>,
    /// Access tokens by connection (the shared login, or a clinician's).
    tokens: tokio::sync::Mutex<std::collections::HashMap<String, CachedToken>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
    refresh_token: Option<String>,
}

/// Classifies a failed exchange; never carries a body (it may echo patient data).
fn transport(err: &reqwest::Error, sent: bool) -> EhrError {
    let what = if err.is_timeout() {
        if sent {
            "OpenEMR did not answer in time (the note may have been written)"
        } else {
            "OpenEMR did not answer in time"
        }
    } else if err.is_connect() {
        "could not connect to OpenEMR"
    } else {
        "the connection to OpenEMR failed"
    };
    EhrError::Transient {
        reason: what.into(),
        retry_after: None,
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// An answer that is not a success, by status alone.
fn refused(status: StatusCode, headers: &reqwest::header::HeaderMap, action: &str) -> EhrError {
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        EhrError::Transient {
            reason: format!("OpenEMR answered {} to {action}", status.as_u16()),
            retry_after: retry_after(headers),
        }
    } else {
        EhrError::Permanent(format!("OpenEMR refused to {action} ({})", status.as_u16()))
    }
}

/// A numeric id as OpenEMR writes them (a number or a string of digits).
fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Whether a token answer says the refresh token is no good: league/oauth2-server 8.x (what
/// OpenEMR 7.0.x and 8.x ship) answers `OAuthServerException::invalidRefreshToken` with 401
/// `invalid_request`; 9.x with 400 `invalid_grant`. A 401 `invalid_client` is a different
/// fault: MMT's own client credentials.
fn refresh_token_refused(status: StatusCode, body: &Value) -> bool {
    matches!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
            | (StatusCode::UNAUTHORIZED, Some("invalid_request"))
    )
}

/// The rows of a list answer: a bare array (the SOAP-note list) or the standard envelope's
/// `data` (the encounter list).
fn rows(body: Value) -> Vec<Value> {
    match body {
        Value::Array(rows) => rows,
        Value::Object(mut envelope) => match envelope.remove("data") {
            Some(Value::Array(rows)) => rows,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// The field names of a validation answer (never their values: they may echo the note).
fn invalid_fields(body: &Value) -> String {
    let errors = body.get("validationErrors").unwrap_or(body);
    match errors {
        Value::Object(fields) if !fields.is_empty() => {
            fields.keys().cloned().collect::<Vec<_>>().join(", ")
        }
        _ => "unknown fields".into(),
    }
}

fn looks_like_uuid(raw: &str) -> bool {
    uuid::Uuid::parse_str(raw).is_ok()
}

impl OpenEmrClient {
    pub fn new(
        config: OpenEmrConfig,
        connections: Arc<dyn EhrConnectionStore>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            http,
            config,
            connections,
            tokens: tokio::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    fn api(&self, path: &str) -> String {
        format!(
            "{}/apis/{}/api{path}",
            self.config.base_url.trim_end_matches('/'),
            self.config.site
        )
    }

    /// OpenEMR's FHIR R4 endpoint (same OAuth2 token, `api:fhir` and `user/Patient.read`).
    fn fhir(&self, resource: &str) -> String {
        format!(
            "{}/apis/{}/fhir/{resource}",
            self.config.base_url.trim_end_matches('/'),
            self.config.site
        )
    }

    async fn state(&self, login: &EhrLogin) -> Result<Option<ConnectionState>, EhrError> {
        let stored = self
            .connections
            .load(&login.connection(CONNECTION))
            .await
            .map_err(|e| EhrError::Transient {
                reason: format!("EHR connection store: {e}"),
                retry_after: None,
            })?;
        Ok(stored.map(|(_, state)| state))
    }

    async fn token_request(
        &self,
        form: Vec<(&str, String)>,
    ) -> Result<reqwest::Response, EhrError> {
        let url = format!(
            "{}/oauth2/{}/token",
            self.config.base_url.trim_end_matches('/'),
            self.config.site
        );
        let mut form = form;
        form.push(("client_id", self.config.client_id.clone()));
        if let Some(secret) = &self.config.client_secret {
            form.push(("client_secret", secret.expose_secret().to_owned()));
        }
        let span = tracing::info_span!("ehr_call", ehr = "openemr", action = "token");
        self.http
            .post(url)
            .form(&form)
            .send()
            .instrument(span)
            .await
            .map_err(|e| transport(&e, false))
    }

    fn store_error(&self, err: crate::ports::StoreError) -> EhrError {
        EhrError::Transient {
            reason: format!("EHR connection store: {err}"),
            retry_after: None,
        }
    }

    /// A fresh access token: from the refresh token (rotated and stored first), or from the
    /// password grant in development.
    async fn fetch_token(&self, login: &EhrLogin) -> Result<TokenAnswer, EhrError> {
        let shared = *login == EhrLogin::Shared;
        if shared && let Some((username, password)) = &self.config.password_login {
            return self.password_grant(username, password).await;
        }
        let connection = login.connection(CONNECTION);
        // A rotation by another process between our read and our refresh shows up as
        // invalid_grant with a different token in the store: try once more with that one.
        for _ in 0..2 {
            let stored = match self.connections.load(&connection).await {
                Ok(stored) => stored,
                Err(err) => return Err(self.store_error(err)),
            };
            let current = self.current_refresh(shared, stored.as_ref())?;
            let response = self
                .token_request(vec![
                    ("grant_type", "refresh_token".into()),
                    ("refresh_token", current.clone()),
                ])
                .await?;
            let status = response.status();
            if status.is_success() {
                let answer: TokenAnswer = response.json().await.map_err(|e| transport(&e, true))?;
                return self
                    .keep_rotated(&connection, stored.as_ref(), answer)
                    .await;
            }
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if refresh_token_refused(status, &body) {
                if self.rotated_elsewhere(&connection, &current).await {
                    continue;
                }
                return Err(self
                    .login_refused(&connection, shared, stored.is_some())
                    .await);
            }
            return Err(match status {
                StatusCode::UNAUTHORIZED => EhrError::NeedsLogin(
                    "OpenEMR refused MMT's client credentials (invalid_client)".into(),
                ),
                other => refused(other, &reqwest::header::HeaderMap::new(), "issue a token"),
            });
        }
        Err(EhrError::Transient {
            reason: "the OpenEMR refresh token kept changing; will retry".into(),
            retry_after: None,
        })
    }

    /// The refresh token to use: the stored one, else (shared login only) the configured one.
    fn current_refresh(
        &self,
        shared: bool,
        stored: Option<&(String, ConnectionState)>,
    ) -> Result<String, EhrError> {
        let initial = self
            .config
            .initial_refresh_token
            .as_ref()
            .filter(|_| shared);
        match (stored, initial) {
            (Some((token, _)), _) => Ok(token.clone()),
            (None, Some(initial)) => Ok(initial.expose_secret().to_owned()),
            (None, None) if shared => Err(EhrError::NeedsLogin(
                "no OpenEMR login is configured (OPENEMR_REFRESH_TOKEN)".into(),
            )),
            (None, None) => Err(EhrError::NeedsLogin(
                "link your OpenEMR account first: your notes are written with your own login"
                    .into(),
            )),
        }
    }

    /// A refused refresh token: the login needs renewing, recorded on that login alone.
    async fn login_refused(&self, connection: &str, shared: bool, stored: bool) -> EhrError {
        let reason = if shared {
            "OpenEMR refused the refresh token (revoked or expired): an administrator must sign \
             in to OpenEMR again"
        } else {
            "OpenEMR refused your linked login (revoked or expired): link your OpenEMR account \
             again"
        }
        .to_owned();
        if stored {
            let state = ConnectionState::NeedsLogin {
                reason: reason.clone(),
            };
            if let Err(err) = self.connections.set_state(connection, &state).await {
                tracing::error!(error.cause_chain = %crate::telemetry::error_chain(&err), "could not record the EHR connection state");
            }
        }
        EhrError::NeedsLogin(reason)
    }

    /// Development and tests only: the password grant.
    async fn password_grant(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<TokenAnswer, EhrError> {
        let response = self
            .token_request(vec![
                ("grant_type", "password".into()),
                ("username", username.to_owned()),
                ("password", password.expose_secret().to_owned()),
                ("scope", self.config.scopes.clone()),
                ("user_role", "users".into()),
            ])
            .await?;
        if !response.status().is_success() {
            return Err(EhrError::NeedsLogin(format!(
                "OpenEMR refused the password login ({})",
                response.status().as_u16()
            )));
        }
        response.json().await.map_err(|e| transport(&e, true))
    }

    /// Stores the refresh token a refresh rotated to. Another process may have stored another
    /// meanwhile; ours is the newest OpenEMR issued, so it must win, or the next refresh fails.
    async fn keep_rotated(
        &self,
        connection: &str,
        stored: Option<&(String, ConnectionState)>,
        answer: TokenAnswer,
    ) -> Result<TokenAnswer, EhrError> {
        let Some(next) = &answer.refresh_token else {
            return Ok(answer);
        };
        let expected = stored.map(|(token, _)| token.as_str());
        match self.connections.rotate(connection, expected, next).await {
            Ok(true) => Ok(answer),
            Ok(false) => {
                let latest = self.connections.load(connection).await.ok().flatten();
                let latest = latest.as_ref().map(|(t, _)| t.as_str());
                if let Err(err) = self.connections.rotate(connection, latest, next).await {
                    return Err(self.store_error(err));
                }
                Ok(answer)
            }
            Err(err) => Err(self.store_error(err)),
        }
    }

    /// Whether another process rotated the refresh token away from `used`: OpenEMR answers
    /// `invalid_grant` the moment it rotates, a little before the winner has stored the new
    /// token, so this waits up to two seconds for it to appear.
    async fn rotated_elsewhere(&self, connection: &str, used: &str) -> bool {
        for _ in 0..10 {
            if let Ok(Some((stored, _))) = self.connections.load(connection).await
                && stored != used
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    /// The cached access token, or a new one (one refresh at a time).
    async fn access_token(&self, login: &EhrLogin, renew: bool) -> Result<String, EhrError> {
        let connection = login.connection(CONNECTION);
        let mut cached = self.tokens.lock().await;
        if !renew
            && let Some(token) = cached.get(&connection)
            && token.refresh_at > Instant::now()
        {
            return Ok(token.value.clone());
        }
        let answer = self.fetch_token(login).await?;
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        cached.insert(
            connection,
            CachedToken {
                value: answer.access_token.clone(),
                refresh_at: Instant::now() + lifetime.saturating_sub(Duration::from_secs(60)),
            },
        );
        Ok(answer.access_token)
    }

    /// Sends an API request with the access token; a 401 renews it and retries once.
    async fn call(
        &self,
        login: &EhrLogin,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
        action: &str,
    ) -> Result<reqwest::Response, EhrError> {
        let span = tracing::info_span!(
            "ehr_call",
            ehr = "openemr",
            action,
            status = tracing::field::Empty
        );
        async {
            let mut renew = false;
            for _ in 0..2 {
                let token = self.access_token(login, renew).await?;
                let response = build(&token)
                    .send()
                    .await
                    .map_err(|e| transport(&e, true))?;
                tracing::Span::current().record("status", response.status().as_u16());
                if response.status() != StatusCode::UNAUTHORIZED {
                    return Ok(response);
                }
                renew = true;
            }
            Err(EhrError::NeedsLogin(format!(
                "OpenEMR refused a fresh access token to {action} (401)"
            )))
        }
        .instrument(span)
        .await
    }

    /// A GET answer's status and JSON body (`Null` when it has none, as OpenEMR's 404s may).
    async fn get_json(
        &self,
        login: &EhrLogin,
        path: &str,
        action: &str,
    ) -> Result<(StatusCode, Value), EhrError> {
        let url = self.api(path);
        let response = self
            .call(
                login,
                |token| self.http.get(&url).bearer_auth(token),
                action,
            )
            .await?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(refused(status, response.headers(), action));
        }
        let body = response.bytes().await.map_err(|e| transport(&e, true))?;
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// `(pid, encounter number)` for the ids the client gave, checked against each other.
    async fn resolve(&self, note: &NoteDelivery) -> Result<(u64, u64), EhrError> {
        if !looks_like_uuid(&note.patient_ref) {
            return Err(EhrError::Permanent(
                "patient_id must be the patient's OpenEMR uuid: OpenEMR's API cannot look a \
                 patient up by numeric id, so MMT could not check the encounter belongs to them"
                    .into(),
            ));
        }
        let (status, patient) = self
            .get_json(
                &note.login,
                &format!("/patient/{}", note.patient_ref),
                "look up the patient",
            )
            .await?;
        let pid = match status {
            s if s.is_success() => number(&patient["data"]["pid"]),
            StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND => None,
            other => return Err(refused(other, &Default::default(), "look up the patient")),
        }
        .ok_or_else(|| EhrError::Permanent("OpenEMR does not know this patient".into()))?;
        let (status, encounters) = self
            .get_json(
                &note.login,
                &format!("/patient/{}/encounter", note.patient_ref),
                "list the patient's encounters",
            )
            .await?;
        if !status.is_success() && status != StatusCode::NOT_FOUND {
            return Err(refused(
                status,
                &Default::default(),
                "list the patient's encounters",
            ));
        }
        let wanted = note.encounter_ref.as_str();
        let encounter = rows(encounters)
            .iter()
            .find(|e| {
                e["euuid"].as_str() == Some(wanted)
                    || number(&e["eid"]).is_some_and(|n| n.to_string() == wanted)
            })
            .and_then(|e| number(&e["eid"]))
            .ok_or_else(|| {
                EhrError::Permanent("the encounter does not belong to this patient".into())
            })?;
        Ok((pid, encounter))
    }

    /// The note an earlier attempt wrote, found by its marker in any of its fields.
    async fn find_existing(
        &self,
        pid: u64,
        encounter: u64,
        note: &NoteDelivery,
    ) -> Result<Option<EhrReceipt>, EhrError> {
        let (status, notes) = self
            .get_json(
                &note.login,
                &format!("/patient/{pid}/encounter/{encounter}/soap_note"),
                "list the encounter's notes",
            )
            .await?;
        if status == StatusCode::NOT_FOUND {
            // OpenEMR's answer for an encounter without notes.
            return Ok(None);
        }
        if !status.is_success() {
            return Err(refused(
                status,
                &Default::default(),
                "list the encounter's notes",
            ));
        }
        Ok(rows(notes)
            .iter()
            .find(|n| {
                NoteSection::ALL.iter().any(|field| {
                    n[field.as_str()]
                        .as_str()
                        .is_some_and(|text| text.contains(&note.marker))
                })
            })
            .map(|n| EhrReceipt {
                note_id: number(&n["id"]).map_or_else(|| "unknown".into(), |id| id.to_string()),
                form_id: None,
                found_existing: true,
            }))
    }
}

#[async_trait]
impl EhrClient for OpenEmrClient {
    async fn deliver(&self, note: &NoteDelivery) -> Result<EhrReceipt, EhrError> {
        let (pid, encounter) = self.resolve(note).await?;
        if note.check_existing
            && let Some(receipt) = self.find_existing(pid, encounter, note).await?
        {
            return Ok(receipt);
        }
        let url = self.api(&format!("/patient/{pid}/encounter/{encounter}/soap_note"));
        let body: serde_json::Map<String, Value> = note
            .fields
            .iter()
            .map(|(field, text)| (field.as_str().to_owned(), json!(text)))
            .collect();
        let response = self
            .call(
                &note.login,
                |token| self.http.post(&url).bearer_auth(token).json(&body),
                "write the note",
            )
            .await?;
        let status = response.status();
        if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            return Err(EhrError::Permanent(format!(
                "OpenEMR refused the note ({}): invalid {}",
                status.as_u16(),
                invalid_fields(&answer)
            )));
        }
        if !status.is_success() {
            return Err(refused(status, response.headers(), "write the note"));
        }
        let answer: Value = response.json().await.map_err(|e| transport(&e, true))?;
        let Some(note_id) = number(&answer["sid"]) else {
            // OpenEMR 8 answers a validation failure with 200 and the error list.
            return Err(EhrError::Permanent(format!(
                "OpenEMR refused the note: invalid {}",
                invalid_fields(&answer)
            )));
        };
        Ok(EhrReceipt {
            note_id: note_id.to_string(),
            form_id: number(&answer["fid"]).map(|id| id.to_string()),
            found_existing: false,
        })
    }

    /// Through OpenEMR's FHIR API: its standard `GET /api/patient` matches whole fields, and
    /// a picker needs "begins with" on any name part, which FHIR's `name` search defines.
    async fn find_patients(
        &self,
        query: &PatientQuery,
        login: &EhrLogin,
    ) -> Result<Vec<PatientSummary>, EhrError> {
        let url = reqwest::Url::parse_with_params(&self.fhir("Patient"), patient_search(query))
            .map_err(|_| EhrError::Permanent("OPENEMR_BASE_URL is not a URL".into()))?;
        let response = self
            .call(
                login,
                |token| self.http.get(url.clone()).bearer_auth(token),
                "search patients",
            )
            .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(refused(status, response.headers(), "search patients"));
        }
        let bundle: Value = response.json().await.map_err(|e| transport(&e, true))?;
        Ok(patients_in(&bundle, query))
    }

    /// Through the standard API, whose rows carry the encounter number (`eid`) the push
    /// resolves, its uuid (`euuid`), date and reason.
    async fn encounters(
        &self,
        patient_ref: &str,
        login: &EhrLogin,
    ) -> Result<Vec<EncounterSummary>, EhrError> {
        if !looks_like_uuid(patient_ref) {
            return Err(EhrError::Permanent(
                "a patient id is an OpenEMR uuid".into(),
            ));
        }
        let (status, body) = self
            .get_json(
                login,
                &format!("/patient/{patient_ref}/encounter"),
                "list the patient's encounters",
            )
            .await?;
        match status {
            s if s.is_success() || s == StatusCode::NOT_FOUND => {}
            StatusCode::BAD_REQUEST => {
                return Err(EhrError::Permanent(
                    "OpenEMR does not know this patient".into(),
                ));
            }
            other => {
                return Err(refused(
                    other,
                    &Default::default(),
                    "list the patient's encounters",
                ));
            }
        }
        let mut found: Vec<EncounterSummary> = rows(body)
            .iter()
            .filter_map(|e| {
                Some(EncounterSummary {
                    id: e["euuid"].as_str()?.to_owned(),
                    number: number(&e["eid"]).map(|n| n.to_string()),
                    date: e["date"].as_str().map(str::to_owned),
                    reason: e["reason"].as_str().map(str::to_owned),
                })
            })
            .collect();
        newest_first(&mut found);
        Ok(found)
    }

    fn describe(&self) -> String {
        format!(
            "OpenEMR at {} (site {})",
            self.config.base_url, self.config.site
        )
    }

    async fn connection_state(
        &self,
        login: &EhrLogin,
    ) -> Result<Option<ConnectionState>, EhrError> {
        self.state(login).await
    }

    fn link_url(&self, state: &str, challenge: &str) -> Result<String, EhrError> {
        let redirect = self
            .config
            .redirect_uri
            .as_deref()
            .ok_or_else(|| EhrError::Permanent("linking needs OPENEMR_REDIRECT_URI".into()))?;
        let url = reqwest::Url::parse_with_params(
            &format!(
                "{}/oauth2/{}/authorize",
                self.config.base_url.trim_end_matches('/'),
                self.config.site
            ),
            [
                ("response_type", "code"),
                ("client_id", self.config.client_id.as_str()),
                ("redirect_uri", redirect),
                ("scope", self.config.scopes.as_str()),
                ("state", state),
                ("code_challenge", challenge),
                ("code_challenge_method", "S256"),
            ],
        )
        .map_err(|_| EhrError::Permanent("OPENEMR_BASE_URL is not a URL".into()))?;
        Ok(url.into())
    }

    async fn complete_link(
        &self,
        login: &EhrLogin,
        code: &str,
        verifier: &str,
    ) -> Result<(), EhrError> {
        let redirect = self
            .config
            .redirect_uri
            .clone()
            .ok_or_else(|| EhrError::Permanent("linking needs OPENEMR_REDIRECT_URI".into()))?;
        let response = self
            .token_request(vec![
                ("grant_type", "authorization_code".into()),
                ("code", code.to_owned()),
                ("redirect_uri", redirect),
                ("code_verifier", verifier.to_owned()),
            ])
            .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(
                if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                    refused(status, &Default::default(), "link the account")
                } else {
                    EhrError::Permanent(format!(
                        "OpenEMR did not accept the sign-in ({}): start the link again",
                        status.as_u16()
                    ))
                },
            );
        }
        let answer: TokenAnswer = response.json().await.map_err(|e| transport(&e, true))?;
        let refresh = answer.refresh_token.clone().ok_or_else(|| {
            EhrError::Permanent(
                "OpenEMR gave no refresh token: the client needs the offline_access scope".into(),
            )
        })?;
        let connection = login.connection(CONNECTION);
        // A new link replaces an old one (and a needs-login state) outright.
        let _ = self.connections.forget(&connection).await;
        self.connections
            .rotate(&connection, None, &refresh)
            .await
            .map_err(|e| self.store_error(e))?;
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        self.tokens.lock().await.insert(
            connection,
            CachedToken {
                value: answer.access_token,
                refresh_at: Instant::now() + lifetime.saturating_sub(Duration::from_secs(60)),
            },
        );
        Ok(())
    }

    async fn unlink(&self, login: &EhrLogin) -> Result<bool, EhrError> {
        let connection = login.connection(CONNECTION);
        self.tokens.lock().await.remove(&connection);
        self.connections
            .forget(&connection)
            .await
            .map_err(|e| self.store_error(e))
    }
}
