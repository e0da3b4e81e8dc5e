//! [`EhrClient`] for OpenEMR's Standard REST API (7.x/8.x).
//!
//! * Notes: `POST /apis/{site}/api/patient/{pid}/encounter/{eid}/soap_note` (numeric ids; each
//!   field 2–65535 characters; 201 `{"sid","fid"}`), listed with `GET` on the same path.
//! * Ids: the client gives the patient's uuid and the encounter's uuid or number; MMT resolves
//!   them with `GET /api/patient/{puuid}` and `GET /api/patient/{puuid}/encounter`, which also
//!   proves the encounter belongs to the patient. OpenEMR's API has no lookup of a patient by
//!   numeric pid, so a numeric patient id cannot be verified and is refused.
//! * OAuth2 at `/oauth2/{site}/token` with a user-delegated refresh token: OpenEMR rotates it
//!   on every use, so the new one is stored (compare-and-swap) before the access token is
//!   used, one refresh at a time per process; another process's rotation is picked up from
//!   the store. `invalid_grant` marks the connection as needing a new login. The password
//!   grant is for tests and development only (refused with `ENV=prod`).
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
    domain::{EhrError, EhrReceipt, NoteDelivery},
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
    token: tokio::sync::Mutex<Option<CachedToken>>,
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
            token: tokio::sync::Mutex::new(None),
        })
    }

    fn api(&self, path: &str) -> String {
        format!(
            "{}/apis/{}/api{path}",
            self.config.base_url.trim_end_matches('/'),
            self.config.site
        )
    }

    async fn state(&self) -> Result<Option<ConnectionState>, EhrError> {
        let stored = self
            .connections
            .load(CONNECTION)
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
    async fn fetch_token(&self) -> Result<TokenAnswer, EhrError> {
        if let Some((username, password)) = &self.config.password_login {
            return self.password_grant(username, password).await;
        }
        // A rotation by another process between our read and our refresh shows up as
        // invalid_grant with a different token in the store: try once more with that one.
        for _ in 0..2 {
            let stored = match self.connections.load(CONNECTION).await {
                Ok(stored) => stored,
                Err(err) => return Err(self.store_error(err)),
            };
            let current = match (&stored, &self.config.initial_refresh_token) {
                (Some((token, _)), _) => token.clone(),
                (None, Some(initial)) => initial.expose_secret().to_owned(),
                (None, None) => {
                    return Err(EhrError::NeedsLogin(
                        "no OpenEMR login is configured (OPENEMR_REFRESH_TOKEN)".into(),
                    ));
                }
            };
            let response = self
                .token_request(vec![
                    ("grant_type", "refresh_token".into()),
                    ("refresh_token", current.clone()),
                ])
                .await?;
            let status = response.status();
            if status.is_success() {
                let answer: TokenAnswer = response.json().await.map_err(|e| transport(&e, true))?;
                return self.keep_rotated(stored.as_ref(), answer).await;
            }
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if body["error"] == "invalid_grant" {
                if self.rotated_elsewhere(&current).await {
                    continue;
                }
                let reason = "OpenEMR refused the refresh token (invalid_grant): an \
                              administrator must sign in to OpenEMR again"
                    .to_owned();
                if stored.is_some() {
                    let state = ConnectionState::NeedsLogin {
                        reason: reason.clone(),
                    };
                    if let Err(err) = self.connections.set_state(CONNECTION, &state).await {
                        tracing::error!(error.cause_chain = %crate::telemetry::error_chain(&err), "could not record the EHR connection state");
                    }
                }
                return Err(EhrError::NeedsLogin(reason));
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
        stored: Option<&(String, ConnectionState)>,
        answer: TokenAnswer,
    ) -> Result<TokenAnswer, EhrError> {
        let Some(next) = &answer.refresh_token else {
            return Ok(answer);
        };
        let expected = stored.map(|(token, _)| token.as_str());
        match self.connections.rotate(CONNECTION, expected, next).await {
            Ok(true) => Ok(answer),
            Ok(false) => {
                let latest = self.connections.load(CONNECTION).await.ok().flatten();
                let latest = latest.as_ref().map(|(t, _)| t.as_str());
                if let Err(err) = self.connections.rotate(CONNECTION, latest, next).await {
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
    async fn rotated_elsewhere(&self, used: &str) -> bool {
        for _ in 0..10 {
            if let Ok(Some((stored, _))) = self.connections.load(CONNECTION).await
                && stored != used
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    /// The cached access token, or a new one (one refresh at a time).
    async fn access_token(&self, renew: bool) -> Result<String, EhrError> {
        let mut cached = self.token.lock().await;
        if !renew
            && let Some(token) = cached.as_ref()
            && token.refresh_at > Instant::now()
        {
            return Ok(token.value.clone());
        }
        let answer = self.fetch_token().await?;
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        *cached = Some(CachedToken {
            value: answer.access_token.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(Duration::from_secs(60)),
        });
        Ok(answer.access_token)
    }

    /// Sends an API request with the access token; a 401 renews it and retries once.
    async fn call(
        &self,
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
                let token = self.access_token(renew).await?;
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

    async fn get_data(&self, path: &str, action: &str) -> Result<Value, EhrError> {
        let url = self.api(path);
        let response = self
            .call(|token| self.http.get(&url).bearer_auth(token), action)
            .await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Err(EhrError::Permanent(format!(
                "OpenEMR does not know that id ({action})"
            )));
        }
        if !status.is_success() {
            return Err(refused(status, response.headers(), action));
        }
        let body: Value = response.json().await.map_err(|e| transport(&e, true))?;
        Ok(body["data"].clone())
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
        let patient = self
            .get_data(
                &format!("/patient/{}", note.patient_ref),
                "look up the patient",
            )
            .await?;
        let pid = number(&patient["pid"])
            .ok_or_else(|| EhrError::Permanent("OpenEMR returned no patient pid".into()))?;
        let encounters = self
            .get_data(
                &format!("/patient/{}/encounter", note.patient_ref),
                "list the patient's encounters",
            )
            .await?;
        let wanted = note.encounter_ref.as_str();
        let encounter = encounters
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| {
                e["uuid"].as_str() == Some(wanted)
                    || number(&e["encounter"]).is_some_and(|n| n.to_string() == wanted)
            })
            .and_then(|e| number(&e["encounter"]))
            .ok_or_else(|| {
                EhrError::Permanent("the encounter does not belong to this patient".into())
            })?;
        Ok((pid, encounter))
    }

    /// The note an earlier attempt wrote, found by its marker.
    async fn find_existing(
        &self,
        pid: u64,
        encounter: u64,
        note: &NoteDelivery,
    ) -> Result<Option<EhrReceipt>, EhrError> {
        let notes = self
            .get_data(
                &format!("/patient/{pid}/encounter/{encounter}/soap_note"),
                "list the encounter's notes",
            )
            .await?;
        Ok(notes
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| {
                n[note.section.as_str()]
                    .as_str()
                    .is_some_and(|text| text.contains(&note.marker))
            })
            .map(|n| EhrReceipt {
                note_id: number(&n["id"]).map_or_else(|| "unknown".into(), |id| id.to_string()),
                form_id: number(&n["form_id"]).map(|id| id.to_string()),
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
        let body = json!({ note.section.as_str(): note.text });
        let response = self
            .call(
                |token| self.http.post(&url).bearer_auth(token).json(&body),
                "write the note",
            )
            .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(refused(status, response.headers(), "write the note"));
        }
        let answer: Value = response.json().await.map_err(|e| transport(&e, true))?;
        let note_id = number(&answer["sid"]).ok_or_else(|| EhrError::Transient {
            reason: "OpenEMR's answer named no note id".into(),
            retry_after: None,
        })?;
        Ok(EhrReceipt {
            note_id: note_id.to_string(),
            form_id: number(&answer["fid"]).map(|id| id.to_string()),
            found_existing: false,
        })
    }

    fn describe(&self) -> String {
        format!(
            "OpenEMR at {} (site {})",
            self.config.base_url, self.config.site
        )
    }

    async fn connection_state(&self) -> Result<Option<ConnectionState>, EhrError> {
        self.state().await
    }
}
