//! The EHR that notes are pushed to (OpenEMR or any FHIR R4 server), and the outbox's limits.

use std::time::Duration;

use secrecy::SecretString;

use super::{
    QueueBackend, RecordBackend,
    source::{ConfigError, Source, require_http_url},
};

/// Which EHR notes go to.
#[derive(Debug, Clone)]
pub enum EhrTarget {
    /// OpenEMR's Standard REST API (`EHR_TARGET=openemr`).
    OpenEmr(OpenEmrConfig),
    /// Any FHIR R4 server that accepts DocumentReference creates (`EHR_TARGET=fhir`).
    Fhir(FhirConfig),
}

impl EhrTarget {
    /// The name a push request and a delivery use.
    pub fn name(&self) -> &'static str {
        match self {
            Self::OpenEmr(_) => "openemr",
            Self::Fhir(_) => "fhir",
        }
    }
}

/// `EHR_TARGET`: where `POST /v1/transcriptions/{id}/ehr` writes notes.
#[derive(Debug, Clone)]
pub struct EhrConfig {
    pub target: EhrTarget,
    /// The SOAP-note section a push writes when the request names none.
    pub default_section: crate::domain::NoteSection,
    /// Attempts per delivery before it fails (and its job is dead-lettered).
    pub max_attempts: u32,
    /// A delivery still not done this long after it was asked for fails.
    pub max_total: Duration,
    /// The SQS queue and dead-letter queue of EHR jobs (`JOB_QUEUE=sqs`).
    pub sqs_queue: Option<(String, String)>,
    /// The DynamoDB table of the outbox and the connection (`RECORD_STORE=dynamodb`).
    pub table: Option<String>,
    /// Patient and encounter look-ups per user per minute (`EHR_LOOKUPS_PER_MINUTE`): a
    /// picker types a few letters at a time; a script walking the directory is stopped.
    pub lookups_per_minute: u32,
    /// `EHR_LOGIN`: whose EHR login pushes a note.
    pub login: EhrLoginMode,
    /// Whether `EHR_LOGIN` was set (production must choose).
    pub login_named: bool,
}

/// Whose EHR login pushes a clinician's note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EhrLoginMode {
    /// `shared`: the deployment's one service login (for EHRs without per-user OAuth2); every
    /// note is written as that user. Production must name it explicitly.
    Shared,
    /// `per-clinician`: each clinician links their own EHR account once; their notes are
    /// written with their own token, under their own name and permissions.
    PerClinician,
}

#[derive(Clone)]
pub struct OpenEmrConfig {
    /// Where OpenEMR answers, e.g. `https://emr.example.org` (no trailing `/apis`).
    pub base_url: String,
    /// The OpenEMR site (`default` on most installs).
    pub site: String,
    pub client_id: String,
    /// For confidential clients.
    pub client_secret: Option<SecretString>,
    pub scopes: String,
    /// The refresh token from the one-time login, used until a rotated one is stored.
    pub initial_refresh_token: Option<SecretString>,
    /// Development and tests only: `(username, password)` for the password grant.
    pub password_login: Option<(String, SecretString)>,
    /// `OPENEMR_REDIRECT_URI`: where OpenEMR sends a clinician back after they sign in to link
    /// their account (the page's address, registered with the client).
    pub redirect_uri: Option<String>,
    pub timeout: Duration,
}

impl std::fmt::Debug for OpenEmrConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenEmrConfig")
            .field("base_url", &self.base_url)
            .field("site", &self.site)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct FhirConfig {
    /// The FHIR base, e.g. `https://fhir.example.org/r4`.
    pub base_url: String,
    /// A bearer token for the server, when it wants one.
    pub bearer_token: Option<SecretString>,
    pub timeout: Duration,
}

impl std::fmt::Debug for FhirConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FhirConfig")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// `EHR_TARGET` and the settings of the EHR it names.
pub(super) fn parse_ehr(
    src: &Source<'_>,
    queue: &QueueBackend,
    records: &RecordBackend,
) -> Result<Option<EhrConfig>, ConfigError> {
    let target = match src.raw("EHR_TARGET").as_deref() {
        None | Some("") | Some("none") => return Ok(None),
        Some("openemr") => EhrTarget::OpenEmr(parse_openemr(src)?),
        Some("fhir") => {
            let base_url = src.raw("FHIR_BASE_URL").ok_or(ConfigError::Missing {
                key: "FHIR_BASE_URL",
                reason: "EHR_TARGET=fhir".into(),
            })?;
            require_http_url("FHIR_BASE_URL", &base_url)?;
            EhrTarget::Fhir(FhirConfig {
                base_url,
                bearer_token: src.secret("FHIR_BEARER_TOKEN"),
                timeout: ehr_timeout(src)?,
            })
        }
        Some(_) => {
            return Err(ConfigError::Invalid {
                key: "EHR_TARGET",
                reason: "expected openemr, fhir or none".into(),
            });
        }
    };
    let sqs_queue = match queue {
        QueueBackend::Sqlite => None,
        QueueBackend::Sqs { .. } => Some((
            src.raw("SQS_EHR_QUEUE_URL").ok_or(ConfigError::Missing {
                key: "SQS_EHR_QUEUE_URL",
                reason: "EHR_TARGET is set and JOB_QUEUE=sqs".into(),
            })?,
            src.raw("SQS_EHR_DLQ_URL").ok_or(ConfigError::Missing {
                key: "SQS_EHR_DLQ_URL",
                reason: "EHR_TARGET is set and JOB_QUEUE=sqs".into(),
            })?,
        )),
    };
    let table = match records {
        RecordBackend::Sqlite => None,
        RecordBackend::DynamoDb { .. } => {
            Some(src.raw("EHR_TABLE").ok_or(ConfigError::Missing {
                key: "EHR_TABLE",
                reason: "EHR_TARGET is set and RECORD_STORE=dynamodb".into(),
            })?)
        }
    };
    let default_section = src
        .raw("EHR_NOTE_SECTION")
        .map(|s| s.parse())
        .transpose()
        .map_err(|reason| ConfigError::Invalid {
            key: "EHR_NOTE_SECTION",
            reason,
        })?
        .unwrap_or(crate::domain::NoteSection::Subjective);
    let config = EhrConfig {
        target,
        default_section,
        max_attempts: src.parse("EHR_MAX_ATTEMPTS", 5u32)?.clamp(1, 20),
        max_total: Duration::from_secs(
            src.parse("EHR_MAX_TOTAL_MINUTES", 60u64)?
                .clamp(1, 7 * 24 * 60)
                * 60,
        ),
        sqs_queue,
        table,
        lookups_per_minute: src.parse("EHR_LOOKUPS_PER_MINUTE", 60u32)?.clamp(1, 600),
        login: parse_login(src)?,
        login_named: src.raw("EHR_LOGIN").is_some(),
    };
    config.check_login()?;
    Ok(Some(config))
}

/// `EHR_LOGIN`: `shared` (the default outside production) or `per-clinician`.
fn parse_login(src: &Source<'_>) -> Result<EhrLoginMode, ConfigError> {
    match src.raw("EHR_LOGIN").as_deref() {
        None | Some("shared") => Ok(EhrLoginMode::Shared),
        Some("per-clinician") => Ok(EhrLoginMode::PerClinician),
        Some(other) => Err(ConfigError::Invalid {
            key: "EHR_LOGIN",
            reason: format!("expected per-clinician or shared, got {other:?}"),
        }),
    }
}

impl EhrConfig {
    /// Linking clinicians' accounts needs OpenEMR and the page's address to come back to.
    fn check_login(&self) -> Result<(), ConfigError> {
        if self.login == EhrLoginMode::PerClinician
            && !matches!(&self.target, EhrTarget::OpenEmr(o) if o.redirect_uri.is_some())
        {
            return Err(ConfigError::Missing {
                key: "OPENEMR_REDIRECT_URI",
                reason: "EHR_LOGIN=per-clinician links clinicians' OpenEMR accounts".into(),
            });
        }
        Ok(())
    }
}

fn ehr_timeout(src: &Source<'_>) -> Result<Duration, ConfigError> {
    Ok(Duration::from_secs(
        src.parse("EHR_TIMEOUT_SECS", 20u64)?.clamp(1, 300),
    ))
}

/// The OpenEMR connection: where it is, the OAuth client, and the login.
fn parse_openemr(src: &Source<'_>) -> Result<OpenEmrConfig, ConfigError> {
    let required = |key: &'static str| {
        src.raw(key).ok_or(ConfigError::Missing {
            key,
            reason: "EHR_TARGET=openemr".into(),
        })
    };
    let base_url = required("OPENEMR_BASE_URL")?;
    require_http_url("OPENEMR_BASE_URL", &base_url)?;
    let password_login = match (src.raw("OPENEMR_USERNAME"), src.secret("OPENEMR_PASSWORD")) {
        (Some(user), Some(password)) => Some((user, password)),
        (None, None) => None,
        _ => {
            return Err(ConfigError::Invalid {
                key: "OPENEMR_USERNAME",
                reason: "OPENEMR_USERNAME and OPENEMR_PASSWORD go together".into(),
            });
        }
    };
    Ok(OpenEmrConfig {
        base_url,
        site: src.raw("OPENEMR_SITE").unwrap_or_else(|| "default".into()),
        client_id: required("OPENEMR_CLIENT_ID")?,
        client_secret: src.secret("OPENEMR_CLIENT_SECRET"),
        scopes: src.raw("OPENEMR_SCOPES").unwrap_or_else(|| {
            "openid offline_access api:oemr user/patient.read user/encounter.read \
             user/soap_note.read user/soap_note.write"
                .into()
        }),
        initial_refresh_token: src.secret("OPENEMR_REFRESH_TOKEN"),
        password_login,
        redirect_uri: src.raw("OPENEMR_REDIRECT_URI"),
        timeout: ehr_timeout(src)?,
    })
}

impl EhrConfig {
    pub(super) fn check_for_production(&self) -> Result<(), ConfigError> {
        match &self.target {
            EhrTarget::OpenEmr(openemr) => {
                super::source::require_tls_unless_loopback("OPENEMR_BASE_URL", &openemr.base_url)?
            }
            EhrTarget::Fhir(fhir) => {
                super::source::require_tls_unless_loopback("FHIR_BASE_URL", &fhir.base_url)?
            }
        }
        if !self.login_named {
            return Err(ConfigError::unsafe_setting(
                "EHR_LOGIN",
                "must be named in production: per-clinician (each clinician's own EHR login), \
                 or shared (one service login writes every note)",
            ));
        }
        if matches!(&self.target, EhrTarget::OpenEmr(openemr) if openemr.password_login.is_some()) {
            return Err(ConfigError::unsafe_setting(
                "OPENEMR_USERNAME",
                "the password grant is for testing; use the refresh token of a one-time login",
            ));
        }
        Ok(())
    }
}
