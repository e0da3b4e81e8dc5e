//! [`EhrClient`] for EHRs that accept FHIR R4 `DocumentReference` creates (OpenEMR does not:
//! use [`super::openemr`] for it).
//!
//! The note is a `DocumentReference` (status `current`, docStatus `final`, LOINC 11506-3
//! "Progress note", subject the Patient, context the Encounter, the text as a base64
//! `text/plain` attachment, each SOAP field under its heading when the note is structured)
//! with two identifiers in MMT's systems: the transcription, and the
//! delivery. It is created with `If-None-Exist: identifier=<delivery system>|<delivery id>`, so
//! a retry after a lost answer finds the resource the first attempt created instead of
//! creating a second one.

use std::time::Duration;

use async_trait::async_trait;
use base64::{Engine as _, engine::general_purpose::STANDARD};
use reqwest::{StatusCode, header};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tracing::Instrument;

pub use crate::config::FhirConfig;
use crate::{
    domain::{
        EhrError, EhrLogin, EhrReceipt, EncounterSummary, MAX_PATIENT_RESULTS, NoteDelivery,
        PatientQuery, PatientSummary, newest_first,
    },
    ports::{ConnectionState, EhrClient},
};

/// The FHIR search parameters for a patient query (hl7.org/fhir/R4/patient.html#search):
/// `name` matches the start of any name part, case-insensitively; a multi-word name searches
/// by its longest word and the rest is checked on the results.
pub(crate) fn patient_search(query: &PatientQuery) -> Vec<(&'static str, String)> {
    match query {
        PatientQuery::Name(words) => {
            let longest = words.iter().max_by_key(|w| w.len()).cloned();
            vec![("name", longest.unwrap_or_default())]
        }
        PatientQuery::BirthDate(date) => vec![("birthdate", date.clone())],
        PatientQuery::RecordNumber(number) => vec![("identifier", number.clone())],
    }
}

/// The resources of a `searchset` Bundle.
fn entries(bundle: &Value) -> impl Iterator<Item = &Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
}

/// The patients of a `Patient` search Bundle that match `query` (at most
/// [`MAX_PATIENT_RESULTS`]).
pub(crate) fn patients_in(bundle: &Value, query: &PatientQuery) -> Vec<PatientSummary> {
    entries(bundle)
        .filter(|r| r["resourceType"] == "Patient")
        .filter_map(|r| {
            let name = r["name"].as_array()?.first()?;
            let family = name["family"].as_str().unwrap_or_default();
            let given: Vec<&str> = name["given"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let mut parts = given.clone();
            parts.push(family);
            if !query.matches_name(&parts) {
                return None;
            }
            Some(PatientSummary {
                id: r["id"].as_str()?.to_owned(),
                name: format!("{family}, {}", given.join(" ")),
                birth_date: r["birthDate"].as_str().map(str::to_owned),
                record_number: r["identifier"]
                    .as_array()
                    .and_then(|ids| ids.first())
                    .and_then(|id| id["value"].as_str())
                    .map(str::to_owned),
            })
        })
        .take(MAX_PATIENT_RESULTS)
        .collect()
}

/// The encounters of an `Encounter` search Bundle, newest first.
pub(crate) fn encounters_in(bundle: &Value) -> Vec<EncounterSummary> {
    let mut found: Vec<EncounterSummary> = entries(bundle)
        .filter(|r| r["resourceType"] == "Encounter")
        .filter_map(|r| {
            Some(EncounterSummary {
                id: r["id"].as_str()?.to_owned(),
                number: None,
                date: r["period"]["start"].as_str().map(str::to_owned),
                reason: r["reasonCode"]
                    .as_array()
                    .and_then(|codes| codes.first())
                    .and_then(|c| {
                        c["text"]
                            .as_str()
                            .or_else(|| c["coding"][0]["display"].as_str())
                    })
                    .map(str::to_owned),
            })
        })
        .collect();
    newest_first(&mut found);
    found
}

/// The identifier system of MMT transcriptions.
pub const TRANSCRIPTION_SYSTEM: &str = "urn:mmt:transcription";
/// The identifier system of MMT deliveries (what conditional creates match on).
pub const DELIVERY_SYSTEM: &str = "urn:mmt:ehr-delivery";

pub struct FhirClient {
    http: reqwest::Client,
    config: FhirConfig,
}

/// The DocumentReference MMT writes for a note.
pub fn document_reference(note: &NoteDelivery, now: chrono::DateTime<chrono::Utc>) -> Value {
    json!({
        "resourceType": "DocumentReference",
        "identifier": [
            {"system": TRANSCRIPTION_SYSTEM, "value": note.transcription_id.to_string()},
            {"system": DELIVERY_SYSTEM, "value": note.delivery_id.to_string()},
        ],
        "status": "current",
        "docStatus": "final",
        "type": {
            "coding": [{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}],
            "text": "Transcribed clinical note"
        },
        "subject": {"reference": format!("Patient/{}", note.patient_ref)},
        "date": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "description": format!(
            "Transcribed note ({})",
            note.fields
                .iter()
                .map(|(field, _)| field.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "content": [{
            "attachment": {
                "contentType": "text/plain; charset=utf-8",
                "language": "en",
                "data": STANDARD.encode(note.as_text().as_bytes()),
                "title": "MMT transcript"
            }
        }],
        "context": {"encounter": [{"reference": format!("Encounter/{}", note.encounter_ref)}]}
    })
}

impl FhirClient {
    /// A FHIR search: the Bundle, or why not.
    async fn search(&self, resource: &str, params: &[(&str, String)]) -> Result<Value, EhrError> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/{resource}", self.config.base_url.trim_end_matches('/')),
            params,
        )
        .map_err(|_| EhrError::Permanent("FHIR_BASE_URL is not a URL".into()))?;
        let mut request = self
            .http
            .get(url)
            .header(header::ACCEPT, "application/fhir+json");
        if let Some(token) = &self.config.bearer_token {
            request = request.bearer_auth(token.expose_secret());
        }
        let span = tracing::info_span!("ehr_call", ehr = "fhir", action = "search");
        let response = request
            .send()
            .instrument(span)
            .await
            .map_err(|_| EhrError::Transient {
                reason: "the connection to the FHIR server failed".into(),
                retry_after: None,
            })?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(EhrError::NeedsLogin(format!(
                "the FHIR server refused MMT's credentials ({})",
                status.as_u16()
            )));
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(EhrError::Transient {
                reason: format!("the FHIR server answered {}", status.as_u16()),
                retry_after: None,
            });
        }
        if !status.is_success() {
            return Err(EhrError::Permanent(format!(
                "the FHIR server refused the search ({})",
                status.as_u16()
            )));
        }
        response.json().await.map_err(|_| EhrError::Transient {
            reason: "the FHIR server's answer was not JSON".into(),
            retry_after: None,
        })
    }

    pub fn new(config: FhirConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self { http, config })
    }
}

#[async_trait]
impl EhrClient for FhirClient {
    async fn deliver(&self, note: &NoteDelivery) -> Result<EhrReceipt, EhrError> {
        let url = format!(
            "{}/DocumentReference",
            self.config.base_url.trim_end_matches('/')
        );
        let mut request = self
            .http
            .post(url)
            .header(header::CONTENT_TYPE, "application/fhir+json")
            .header(header::ACCEPT, "application/fhir+json")
            .header(
                "If-None-Exist",
                format!("identifier={DELIVERY_SYSTEM}|{}", note.delivery_id),
            )
            .body(document_reference(note, chrono::Utc::now()).to_string());
        if let Some(token) = &self.config.bearer_token {
            request = request.bearer_auth(token.expose_secret());
        }
        let span = tracing::info_span!(
            "ehr_call",
            ehr = "fhir",
            action = "create DocumentReference"
        );
        let response = request
            .send()
            .instrument(span)
            .await
            .map_err(|e| EhrError::Transient {
                reason: if e.is_timeout() {
                    "the FHIR server did not answer in time (the document may have been created)"
                        .into()
                } else {
                    "the connection to the FHIR server failed".into()
                },
                retry_after: None,
            })?;
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(EhrError::Transient {
                reason: format!("the FHIR server answered {}", status.as_u16()),
                retry_after: response
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .map(Duration::from_secs),
            });
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(EhrError::NeedsLogin(format!(
                "the FHIR server refused MMT's credentials ({})",
                status.as_u16()
            )));
        }
        if !(status == StatusCode::CREATED || status == StatusCode::OK) {
            return Err(EhrError::Permanent(format!(
                "the FHIR server refused the DocumentReference ({})",
                status.as_u16()
            )));
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        // The id: from the resource returned, else from `Location: .../DocumentReference/<id>/...`.
        let id = body["id"].as_str().map(str::to_owned).or_else(|| {
            location.as_deref().and_then(|l| {
                let mut parts = l.split('/').skip_while(|p| *p != "DocumentReference");
                parts.nth(1).map(str::to_owned)
            })
        });
        Ok(EhrReceipt {
            note_id: id.unwrap_or_else(|| "unknown".into()),
            form_id: None,
            // 200 to a conditional create: the resource already existed.
            found_existing: status == StatusCode::OK,
        })
    }

    async fn find_patients(
        &self,
        query: &PatientQuery,
        _login: &EhrLogin,
    ) -> Result<Vec<PatientSummary>, EhrError> {
        let bundle = self.search("Patient", &patient_search(query)).await?;
        Ok(patients_in(&bundle, query))
    }

    async fn encounters(
        &self,
        patient_ref: &str,
        _login: &EhrLogin,
    ) -> Result<Vec<EncounterSummary>, EhrError> {
        let params = [
            ("patient", patient_ref.to_owned()),
            ("_sort", "-date".to_owned()),
        ];
        Ok(encounters_in(&self.search("Encounter", &params).await?))
    }

    fn describe(&self) -> String {
        format!("FHIR R4 server at {}", self.config.base_url)
    }

    async fn connection_state(
        &self,
        _login: &EhrLogin,
    ) -> Result<Option<ConnectionState>, EhrError> {
        Ok(None)
    }
}
