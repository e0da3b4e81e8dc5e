//! Typed settings, read from the environment once at start-up.
//!
//! Every key is documented in the README's configuration table. A bad value stops start-up
//! with an error that names the key (never the value: some keys hold secrets).

use std::{collections::HashMap, fmt, net::IpAddr, path::PathBuf, str::FromStr, time::Duration};

use secrecy::{ExposeSecret, SecretString};

use crate::domain::EngineKind;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value for {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("{key} is required: {reason}")]
    Missing { key: &'static str, reason: String },
    #[error("unsafe configuration for ENV=prod: {key} {reason}")]
    UnsafeForProduction { key: &'static str, reason: String },
    #[error("cannot read {key} from SSM parameter {parameter}: {reason}")]
    SecretUnavailable {
        key: &'static str,
        parameter: String,
        reason: String,
    },
}

/// Settings that may be given as `<KEY>_SSM_PARAMETER` (the name of an SSM SecureString)
/// instead of a value, so the secret never sits in the function's configuration or in
/// Terraform state.
pub const SECRET_KEYS: &[&str] = &[
    "INTERNAL_JWT_SECRET",
    "INTERNAL_JWT_OLD_SECRETS",
    "INTERNAL_JWT_PRIVATE_KEY_PEM",
    "OPENAI_API_KEY",
    "ENCRYPTION_KEYS",
    "ADMIN_API_KEY",
    "OPENEMR_CLIENT_SECRET",
    "OPENEMR_REFRESH_TOKEN",
    "FHIR_BEARER_TOKEN",
    "SENTRY_DSN",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Dev,
    Test,
    Staging,
    Prod,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dev => "dev",
            Self::Test => "test",
            Self::Staging => "staging",
            Self::Prod => "prod",
        }
    }
}

impl FromStr for Environment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "dev" | "development" | "local" => Ok(Self::Dev),
            "test" => Ok(Self::Test),
            "staging" => Ok(Self::Staging),
            "prod" | "production" => Ok(Self::Prod),
            other => Err(format!("expected dev|test|staging|prod, got {other:?}")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where logs, traces and error reports go. Everything but the log format is off unless set.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    pub environment: Environment,
    /// The deployed Lambda function's name (`AWS_LAMBDA_FUNCTION_NAME`), when in Lambda.
    pub function_name: Option<String>,
    /// `OTEL_SERVICE_NAME`, default `mmt`.
    pub service_name: String,
    pub otlp: Option<OtlpConfig>,
    pub sentry: Option<SentryConfig>,
}

#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: the collector's base URL; spans go to `<endpoint>/v1/traces`.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
}

/// `OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf` (the OTLP default) or `http/json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    HttpProtobuf,
    HttpJson,
}

#[derive(Debug, Clone)]
pub struct SentryConfig {
    /// `SENTRY_DSN`: holds the project's key, so it is kept out of logs like a secret.
    pub dsn: SecretString,
    /// `SENTRY_ENVIRONMENT`, default the `ENV` name.
    pub environment: String,
    /// `SENTRY_TRACES_SAMPLE_RATE`, 0.0–1.0, default 0 (errors only).
    pub traces_sample_rate: f32,
}

/// A user allowed to sign in with `POST /auth/login`: the name and an argon2 PHC hash.
#[derive(Clone)]
pub struct LocalUser {
    pub username: String,
    pub password_hash: String,
}

impl fmt::Debug for LocalUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalUser")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Where audio is kept.
#[derive(Debug, Clone, PartialEq)]
pub enum BlobBackend {
    /// A local directory (`AUDIO_DIR`).
    Disk,
    /// An S3 bucket, encrypted with SSE-KMS when a key is given (SSE-S3 otherwise).
    S3 {
        bucket: String,
        kms_key_id: Option<String>,
        /// Path-style addressing, for emulators (on by default when `AWS_ENDPOINT_URL` is set).
        force_path_style: bool,
    },
}

/// Where transcription records live.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordBackend {
    /// The SQLite file `DATABASE_PATH`.
    Sqlite,
    /// A DynamoDB table (see `adapters::dynamodb` for the key design).
    DynamoDb { table: String },
}

/// Where the audit trail is kept: always apart from the records.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditBackend {
    /// Its own SQLite file, `AUDIT_DATABASE_PATH`.
    Sqlite { path: PathBuf },
    /// Its own DynamoDB table, `AUDIT_TABLE`.
    DynamoDb { table: String },
}

/// Which queue carries jobs.
#[derive(Debug, Clone, PartialEq)]
pub enum QueueBackend {
    /// The durable SQLite queue in `DATABASE_PATH`.
    Sqlite,
    /// Amazon SQS with its dead-letter queue.
    Sqs {
        transcribe_queue_url: String,
        transcribe_dead_letter_url: String,
        /// Long-polling wait of an idle receive.
        wait: Duration,
    },
}

/// The web page the one-process server serves at `/`.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// `SERVE_WEB_PAGE` (default on).
    pub serve_page: bool,
    /// `WEB_API_BASE_URL`: the API the page talks to, when not this server.
    pub api_base_url: Option<String>,
    /// `WEB_PRODUCTION_API_BASE_URL`: offered by "Connect to Production" in demo mode.
    pub production_api_base_url: Option<String>,
}

/// Which EHR notes go to.
#[derive(Debug, Clone)]
pub enum EhrTarget {
    /// OpenEMR's Standard REST API (`EHR_TARGET=openemr`).
    OpenEmr(crate::adapters::openemr::OpenEmrConfig),
    /// Any FHIR R4 server that accepts DocumentReference creates (`EHR_TARGET=fhir`).
    Fhir(crate::adapters::fhir::FhirConfig),
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
}

#[derive(Debug, Clone)]
pub struct CloudEngineConfig {
    pub base_url: String,
    pub api_key: SecretString,
    pub model: String,
    pub request_timeout: Duration,
    pub max_retries: u32,
    pub retry_base_delay: Duration,
}

/// The local Whisper engine (whisper.cpp).
#[derive(Debug, Clone)]
pub struct LocalEngineConfig {
    pub model_path: PathBuf,
    pub threads: usize,
    /// ISO 639-1 code, or `None` to detect (multilingual models) / English (`.en` models).
    pub language: Option<String>,
    /// Vocabulary hints used when an upload gives no prompt.
    pub initial_prompt: Option<String>,
    /// 1 = greedy decoding; more = beam search of this width.
    pub beam_size: usize,
    pub temperature: f32,
    /// Temperature fallback step when decoding fails its quality checks; 0 disables it.
    pub temperature_increment: f32,
    /// Size whisper's audio context to short clips instead of a full 30 s window.
    pub fit_audio_context: bool,
    /// Long recordings are transcribed in pieces of about this length (bounded memory).
    pub chunk: Duration,
    pub use_gpu: bool,
}

/// RS256 signing: the key that signs (absent in a verify-only process), the public key that
/// verifies, and retired public keys still accepted during a rotation.
#[derive(Debug, Clone)]
pub struct RsaJwtConfig {
    pub signing: Option<crate::auth::RsaPrivateKey>,
    pub public: crate::auth::RsaPublicKey,
    pub old_public: Vec<crate::auth::RsaPublicKey>,
}

#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub backend: QueueBackend,
    pub visibility_timeout: Duration,
    pub max_receive_count: u32,
    pub poll_interval: Duration,
    pub retry_base_delay: Duration,
    pub worker_concurrency: usize,
    /// A consumer silent for longer makes `/health/ready` answer not ready.
    pub worker_stale_after: Duration,
    /// `ECS_AGENT_URI`, which ECS injects into tasks: the worker protects its task from
    /// scale-in while it holds a job.
    pub ecs_agent_uri: Option<String>,
}

impl QueueConfig {
    /// How long a `processing` record may go untouched before its claim counts as abandoned:
    /// beyond a visibility timeout (a dead worker's message comes back), twice, plus the
    /// longest backoff (a retried message waits that long).
    pub fn processing_lease(&self) -> Duration {
        self.visibility_timeout * 2 + crate::domain::MAX_BACKOFF
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub environment: Environment,
    pub demo_mode: bool,
    pub host: IpAddr,
    pub port: u16,
    pub database_path: PathBuf,
    pub audio_dir: PathBuf,
    pub blob_backend: BlobBackend,
    pub record_backend: RecordBackend,
    pub audit_backend: AuditBackend,
    pub allow_guest_auth: bool,
    pub allow_local_login: bool,
    /// The explicit override that lets production run guest or local sign-in (public demos).
    pub allow_demo_auth_in_production: bool,
    /// Serve `/openapi.json` and `/docs`.
    pub docs_enabled: bool,
    /// Requests per caller per minute; 0 = no limit.
    pub rate_limit_per_minute: u32,
    /// An upload whose body sends nothing for this long is refused (408).
    pub body_idle_timeout: Duration,
    /// `ENABLE_FIELD_ENCRYPTION`: the key ring that seals PHI fields at rest.
    pub field_encryption: Option<std::sync::Arc<crate::crypto::KeyRing>>,
    pub local_users: Vec<LocalUser>,
    /// `None` means "generate an ephemeral secret at start-up" (dev and test only).
    pub jwt_secret: Option<SecretString>,
    /// Retired signing secrets whose tokens are still accepted during a rotation.
    pub jwt_old_secrets: Vec<SecretString>,
    /// `USE_RSA_INTERNAL_JWT`: RS256 keys, published at `/.well-known/jwks.json`.
    pub jwt_rsa: Option<RsaJwtConfig>,
    /// `ADMIN_API_KEY`: exchanged at `POST /auth/admin` for an admin-scoped token.
    pub admin_api_key: Option<SecretString>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_token_ttl: Duration,
    pub cloud: Option<CloudEngineConfig>,
    pub ehr: Option<EhrConfig>,
    pub web: WebConfig,
    /// `METRICS_TOKEN`: when set, `GET /metrics` wants it as a bearer token.
    pub metrics_token: Option<SecretString>,
    pub local_engine_enabled: bool,
    /// The local engine runs on a separate worker (the GPU service) that consumes the queue:
    /// this process accepts `engine=local` uploads without loading a model.
    pub local_engine_on_worker: bool,
    pub local: LocalEngineConfig,
    pub default_engine: Option<EngineKind>,
    pub cors_allow_origins: Vec<String>,
    pub retention_days: u32,
    /// With `STORE_PHI=false`: how long a record (and its transcript) is kept for the client
    /// to collect, counted from the upload. Replaces `RETENTION_DAYS`.
    pub phi_delivery_window: Duration,
    pub retention_sweep_interval: Duration,
    pub store_phi: bool,
    pub max_upload_bytes: u64,
    /// How long a `POST /v1/uploads` URL stays valid.
    pub direct_upload_ttl: Duration,
    pub json_body_limit_bytes: usize,
    pub queue: QueueConfig,
    pub shutdown_grace: Duration,
    pub telemetry: TelemetryConfig,
    /// Running as an AWS Lambda function (the runtime sets `AWS_LAMBDA_FUNCTION_NAME`).
    pub in_lambda: bool,
}

/// Reads keys from some source: the process environment, or a map in tests.
type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

struct Source<'a> {
    lookup: Lookup<'a>,
}

impl Source<'_> {
    fn raw(&self, key: &str) -> Option<String> {
        (self.lookup)(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn parse<T: FromStr>(&self, key: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e: T::Err| ConfigError::Invalid {
                key,
                reason: e.to_string(),
            }),
        }
    }

    fn flag(&self, key: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::Invalid {
                    key,
                    reason: "expected true/false (or 1/0)".into(),
                }),
            },
        }
    }

    fn secret(&self, key: &str) -> Option<SecretString> {
        self.raw(key).map(SecretString::from)
    }
}

/// `http://localhost:4318`, `http://127.0.0.1:4318`, `http://[::1]:4318`: a sidecar collector.
fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

fn telemetry_config(
    src: &Source,
    environment: Environment,
) -> Result<TelemetryConfig, ConfigError> {
    let log_format = match src.raw("LOG_FORMAT").as_deref() {
        None if environment == Environment::Dev => LogFormat::Text,
        None => LogFormat::Json,
        Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(_) => {
            return Err(ConfigError::Invalid {
                key: "LOG_FORMAT",
                reason: "expected text or json".into(),
            });
        }
    };
    let otlp = match src.raw("OTEL_EXPORTER_OTLP_ENDPOINT") {
        None => None,
        Some(endpoint) => {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(ConfigError::Invalid {
                    key: "OTEL_EXPORTER_OTLP_ENDPOINT",
                    reason: "expected an http(s) URL".into(),
                });
            }
            let protocol = match src.raw("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
                None | Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
                Some("http/json") => OtlpProtocol::HttpJson,
                Some(_) => {
                    return Err(ConfigError::Invalid {
                        key: "OTEL_EXPORTER_OTLP_PROTOCOL",
                        reason: "expected http/protobuf or http/json (gRPC is not built in)".into(),
                    });
                }
            };
            Some(OtlpConfig {
                endpoint: endpoint.trim_end_matches('/').to_owned(),
                protocol,
            })
        }
    };
    let sentry = match src.secret("SENTRY_DSN") {
        None => None,
        Some(dsn) => {
            if dsn.expose_secret().parse::<sentry::types::Dsn>().is_err() {
                // The DSN holds the project key: the reason never repeats it.
                return Err(ConfigError::Invalid {
                    key: "SENTRY_DSN",
                    reason: "not a Sentry DSN (https://<key>@<host>/<project>)".into(),
                });
            }
            let traces_sample_rate: f32 = src.parse("SENTRY_TRACES_SAMPLE_RATE", 0.0)?;
            if !(0.0..=1.0).contains(&traces_sample_rate) {
                return Err(ConfigError::Invalid {
                    key: "SENTRY_TRACES_SAMPLE_RATE",
                    reason: "expected a number from 0 to 1".into(),
                });
            }
            Some(SentryConfig {
                dsn,
                environment: src
                    .raw("SENTRY_ENVIRONMENT")
                    .unwrap_or_else(|| environment.as_str().to_owned()),
                traces_sample_rate,
            })
        }
    };
    Ok(TelemetryConfig {
        log_format,
        environment,
        function_name: src.raw("AWS_LAMBDA_FUNCTION_NAME"),
        service_name: src.raw("OTEL_SERVICE_NAME").unwrap_or_else(|| "mmt".into()),
        otlp,
        sentry,
    })
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the process environment, fetching the secrets given as `<KEY>_SSM_PARAMETER`.
    /// What every binary calls at start-up (once per Lambda cold start).
    pub async fn load() -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let env = resolve_secret_parameters(env, None).await?;
        Self::from_map(&env)
    }

    /// Reads from a map: tests describe a configuration exactly as the environment would.
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Self::from_lookup(|k| map.get(k).cloned())
    }

    pub fn from_lookup<'a>(
        lookup: impl Fn(&str) -> Option<String> + 'a,
    ) -> Result<Self, ConfigError> {
        let src = Source {
            lookup: Box::new(lookup),
        };
        let environment: Environment = src.parse("ENV", Environment::Dev)?;
        let is_prod = environment == Environment::Prod;

        let data_dir: PathBuf = src.parse("DATA_DIR", PathBuf::from("./data"))?;
        let database_path = src.parse("DATABASE_PATH", data_dir.join("mmt.db"))?;
        let audio_dir = src.parse("AUDIO_DIR", data_dir.join("audio"))?;

        let blob_backend = match src.raw("BLOB_STORE").as_deref() {
            None | Some("disk") => BlobBackend::Disk,
            Some("s3") => BlobBackend::S3 {
                bucket: src.raw("S3_BUCKET").ok_or(ConfigError::Missing {
                    key: "S3_BUCKET",
                    reason: "BLOB_STORE=s3".into(),
                })?,
                kms_key_id: src.raw("S3_KMS_KEY_ID"),
                force_path_style: src
                    .flag("S3_FORCE_PATH_STYLE", src.raw("AWS_ENDPOINT_URL").is_some())?,
            },
            Some(_) => {
                return Err(ConfigError::Invalid {
                    key: "BLOB_STORE",
                    reason: "expected disk or s3".into(),
                });
            }
        };

        let record_backend = match src.raw("RECORD_STORE").as_deref() {
            None | Some("sqlite") => RecordBackend::Sqlite,
            Some("dynamodb") => RecordBackend::DynamoDb {
                table: src.raw("DYNAMODB_TABLE").ok_or(ConfigError::Missing {
                    key: "DYNAMODB_TABLE",
                    reason: "RECORD_STORE=dynamodb".into(),
                })?,
            },
            Some(_) => {
                return Err(ConfigError::Invalid {
                    key: "RECORD_STORE",
                    reason: "expected sqlite or dynamodb".into(),
                });
            }
        };

        // The trail lives where the records live, in a store of its own.
        let audit_backend = match record_backend {
            RecordBackend::Sqlite => AuditBackend::Sqlite {
                path: src.parse("AUDIT_DATABASE_PATH", data_dir.join("audit.db"))?,
            },
            RecordBackend::DynamoDb { .. } => AuditBackend::DynamoDb {
                table: src.raw("AUDIT_TABLE").ok_or(ConfigError::Missing {
                    key: "AUDIT_TABLE",
                    reason: "RECORD_STORE=dynamodb".into(),
                })?,
            },
        };

        let queue_backend = match src.raw("JOB_QUEUE").as_deref() {
            None | Some("sqlite") => QueueBackend::Sqlite,
            Some("sqs") => QueueBackend::Sqs {
                transcribe_queue_url: src.raw("SQS_TRANSCRIBE_QUEUE_URL").ok_or(
                    ConfigError::Missing {
                        key: "SQS_TRANSCRIBE_QUEUE_URL",
                        reason: "JOB_QUEUE=sqs".into(),
                    },
                )?,
                transcribe_dead_letter_url: src.raw("SQS_TRANSCRIBE_DLQ_URL").ok_or(
                    ConfigError::Missing {
                        key: "SQS_TRANSCRIBE_DLQ_URL",
                        reason: "JOB_QUEUE=sqs".into(),
                    },
                )?,
                wait: Duration::from_secs(src.parse("SQS_WAIT_SECS", 10u64)?.min(20)),
            },
            Some(_) => {
                return Err(ConfigError::Invalid {
                    key: "JOB_QUEUE",
                    reason: "expected sqlite or sqs".into(),
                });
            }
        };

        let ehr = parse_ehr(&src, &queue_backend, &record_backend)?;
        let web = WebConfig {
            serve_page: src.flag("SERVE_WEB_PAGE", true)?,
            api_base_url: src.raw("WEB_API_BASE_URL"),
            production_api_base_url: src.raw("WEB_PRODUCTION_API_BASE_URL"),
        };
        for (key, value) in [
            ("WEB_API_BASE_URL", &web.api_base_url),
            ("WEB_PRODUCTION_API_BASE_URL", &web.production_api_base_url),
        ] {
            if let Some(url) = value {
                require_http_url(key, url)?;
            }
        }

        let local_users = match src.raw("LOCAL_LOGIN_USERS") {
            None => Vec::new(),
            Some(v) => parse_local_users(&v)?,
        };

        let jwt_secret = src.secret("INTERNAL_JWT_SECRET");
        if jwt_secret
            .as_ref()
            .is_some_and(|s| s.expose_secret().len() < 32)
        {
            return Err(ConfigError::Invalid {
                key: "INTERNAL_JWT_SECRET",
                reason: "must be at least 32 bytes (generate one with `openssl rand -base64 48`)"
                    .into(),
            });
        }

        let jwt_old_secrets: Vec<SecretString> = src
            .raw("INTERNAL_JWT_OLD_SECRETS")
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| SecretString::from(s.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        if jwt_old_secrets.iter().any(|s| s.expose_secret().len() < 32) {
            return Err(ConfigError::Invalid {
                key: "INTERNAL_JWT_OLD_SECRETS",
                reason: "each secret must be at least 32 bytes".into(),
            });
        }

        let jwt_rsa = if src.flag("USE_RSA_INTERNAL_JWT", false)? {
            Some(parse_rsa_jwt(&src)?)
        } else {
            None
        };
        let admin_api_key = src.secret("ADMIN_API_KEY");
        if admin_api_key
            .as_ref()
            .is_some_and(|k| k.expose_secret().len() < 32)
        {
            return Err(ConfigError::Invalid {
                key: "ADMIN_API_KEY",
                reason: "must be at least 32 bytes (generate one with `mmt secrets`)".into(),
            });
        }

        let field_encryption = if src.flag("ENABLE_FIELD_ENCRYPTION", false)? {
            let keys = src.secret("ENCRYPTION_KEYS").ok_or(ConfigError::Missing {
                key: "ENCRYPTION_KEYS",
                reason:
                    "ENABLE_FIELD_ENCRYPTION is on (generate keys with `openssl rand -base64 32`)"
                        .into(),
            })?;
            let primary = src
                .raw("PRIMARY_ENCRYPTION_KEY_ID")
                .ok_or(ConfigError::Missing {
                    key: "PRIMARY_ENCRYPTION_KEY_ID",
                    reason: "ENABLE_FIELD_ENCRYPTION is on".into(),
                })?;
            let ring =
                crate::crypto::KeyRing::parse(keys.expose_secret(), &primary).map_err(|e| {
                    ConfigError::Invalid {
                        key: "ENCRYPTION_KEYS",
                        reason: e.to_string(),
                    }
                })?;
            Some(std::sync::Arc::new(ring))
        } else {
            None
        };

        let cloud_enabled = src.flag("ENABLE_CLOUD_TRANSCRIPTION", false)?;
        let cloud = if cloud_enabled {
            let api_key = src.secret("OPENAI_API_KEY").ok_or(ConfigError::Missing {
                key: "OPENAI_API_KEY",
                reason: "ENABLE_CLOUD_TRANSCRIPTION is on".into(),
            })?;
            let base_url = src
                .raw("OPENAI_BASE_URL")
                .unwrap_or_else(|| "https://api.openai.com/v1".into());
            let parsed = reqwest::Url::parse(&base_url).map_err(|e| ConfigError::Invalid {
                key: "OPENAI_BASE_URL",
                reason: e.to_string(),
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(ConfigError::Invalid {
                    key: "OPENAI_BASE_URL",
                    reason: "must be an http(s) URL".into(),
                });
            }
            Some(CloudEngineConfig {
                base_url: base_url.trim_end_matches('/').to_owned(),
                api_key,
                model: src
                    .raw("CLOUD_TRANSCRIPTION_MODEL")
                    .unwrap_or_else(|| "whisper-1".into()),
                request_timeout: Duration::from_secs(src.parse("OPENAI_TIMEOUT_SECS", 120u64)?),
                max_retries: src.parse("OPENAI_MAX_RETRIES", 3u32)?,
                retry_base_delay: Duration::from_millis(src.parse("OPENAI_RETRY_BASE_MS", 500u64)?),
            })
        } else {
            None
        };
        let local_engine_enabled = src.flag("ENABLE_LOCAL_TRANSCRIPTION", false)?;
        let local_engine_on_worker = src.flag("LOCAL_ENGINE_ON_WORKER", false)?;
        let local_available = local_engine_enabled || local_engine_on_worker;
        let models_dir: PathBuf = src.parse("MODELS_DIR", PathBuf::from("./models"))?;
        let default_threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(8);
        let local = LocalEngineConfig {
            model_path: src.parse("WHISPER_MODEL_PATH", models_dir.join("ggml-tiny.en.bin"))?,
            threads: src.parse("WHISPER_THREADS", default_threads)?.max(1),
            language: match src.raw("WHISPER_LANGUAGE").as_deref() {
                None | Some("auto") => None,
                Some(raw) => Some(crate::domain::parse_language(raw).map_err(|reason| {
                    ConfigError::Invalid {
                        key: "WHISPER_LANGUAGE",
                        reason,
                    }
                })?),
            },
            initial_prompt: src.raw("WHISPER_INITIAL_PROMPT"),
            beam_size: src.parse("WHISPER_BEAM_SIZE", 1usize)?.clamp(1, 16),
            temperature: src.parse("WHISPER_TEMPERATURE", 0.0f32)?,
            temperature_increment: src.parse("WHISPER_TEMPERATURE_INCREMENT", 0.2f32)?,
            fit_audio_context: src.flag("WHISPER_FIT_AUDIO_CONTEXT", true)?,
            chunk: Duration::from_secs(src.parse("WHISPER_CHUNK_SECS", 300u64)?.clamp(30, 3600)),
            use_gpu: src.flag("WHISPER_USE_GPU", true)?,
        };
        let default_engine = match src.raw("DEFAULT_ENGINE") {
            Some(v) => Some(v.parse::<EngineKind>().map_err(|e| ConfigError::Invalid {
                key: "DEFAULT_ENGINE",
                reason: e,
            })?),
            // Local first: audio that never leaves the box is the safer default for PHI.
            None if local_available => Some(EngineKind::Local),
            None if cloud.is_some() => Some(EngineKind::Cloud),
            None => None,
        };
        match default_engine {
            Some(EngineKind::Cloud) if cloud.is_none() => {
                return Err(ConfigError::Invalid {
                    key: "DEFAULT_ENGINE",
                    reason: "cloud is not enabled (ENABLE_CLOUD_TRANSCRIPTION)".into(),
                });
            }
            Some(EngineKind::Local) if !local_available => {
                return Err(ConfigError::Invalid {
                    key: "DEFAULT_ENGINE",
                    reason: "local is not enabled (ENABLE_LOCAL_TRANSCRIPTION or LOCAL_ENGINE_ON_WORKER)"
                        .into(),
                });
            }
            _ => {}
        }

        let cors_allow_origins: Vec<String> = src
            .raw("CORS_ALLOW_ORIGINS")
            .map(|v| {
                v.split(',')
                    .map(|o| o.trim().trim_end_matches('/').to_owned())
                    .filter(|o| !o.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        for origin in &cors_allow_origins {
            if origin != "*" && http::HeaderValue::from_str(origin).is_err() {
                return Err(ConfigError::Invalid {
                    key: "CORS_ALLOW_ORIGINS",
                    reason: "each origin must be a valid header value".into(),
                });
            }
        }

        let max_upload_bytes: u64 = src.parse("MAX_UPLOAD_BYTES", 100 * 1024 * 1024)?;
        if max_upload_bytes == 0 {
            return Err(ConfigError::Invalid {
                key: "MAX_UPLOAD_BYTES",
                reason: "must be greater than zero".into(),
            });
        }
        let max_receive_count: u32 = src.parse("MAX_RECEIVE_COUNT", 3)?;
        if max_receive_count == 0 {
            return Err(ConfigError::Invalid {
                key: "MAX_RECEIVE_COUNT",
                reason: "must be at least 1".into(),
            });
        }
        let visibility_secs: f64 = src.parse("QUEUE_VISIBILITY_TIMEOUT_SECS", 300.0)?;
        if !(visibility_secs.is_finite() && visibility_secs >= 0.5) {
            return Err(ConfigError::Invalid {
                key: "QUEUE_VISIBILITY_TIMEOUT_SECS",
                reason: "must be at least 0.5 seconds".into(),
            });
        }
        let worker_concurrency: usize = src.parse("WORKER_CONCURRENCY", 1)?;
        if worker_concurrency == 0 {
            return Err(ConfigError::Invalid {
                key: "WORKER_CONCURRENCY",
                reason: "must be at least 1".into(),
            });
        }

        let config = Config {
            environment,
            demo_mode: src.flag("DEMO_MODE", environment == Environment::Dev)?,
            host: src.parse("HOST", IpAddr::from([0, 0, 0, 0]))?,
            port: src.parse("PORT", 8080)?,
            database_path,
            audio_dir,
            audit_backend,
            blob_backend,
            record_backend,
            allow_guest_auth: src.flag("ALLOW_GUEST_AUTH", !is_prod)?,
            allow_local_login: src.flag("ALLOW_LOCAL_LOGIN", false)?,
            allow_demo_auth_in_production: src.flag("ALLOW_DEMO_AUTH_IN_PRODUCTION", false)?,
            docs_enabled: src.flag("ENABLE_DOCS", true)?,
            field_encryption,
            body_idle_timeout: Duration::from_secs(
                src.parse("BODY_IDLE_TIMEOUT_SECS", 30u64)?.max(1),
            ),
            // Off in tests, which poll quickly; on everywhere a person or a client calls.
            rate_limit_per_minute: src.parse(
                "RATE_LIMIT_PER_MINUTE",
                if environment == Environment::Test {
                    0
                } else {
                    600
                },
            )?,
            local_users,
            jwt_secret,
            jwt_old_secrets,
            jwt_rsa,
            admin_api_key,
            jwt_issuer: src.raw("JWT_ISSUER").unwrap_or_else(|| "mmt".into()),
            jwt_audience: src.raw("JWT_AUDIENCE").unwrap_or_else(|| "mmt-api".into()),
            access_token_ttl: Duration::from_secs(src.parse("ACCESS_TOKEN_TTL_SECS", 3600u64)?),
            cloud,
            ehr,
            web,
            metrics_token: src.secret("METRICS_TOKEN"),
            local_engine_enabled,
            local_engine_on_worker,
            local,
            default_engine,
            cors_allow_origins,
            retention_days: src.parse("RETENTION_DAYS", 30)?,
            phi_delivery_window: Duration::from_secs(
                src.parse("PHI_DELIVERY_WINDOW_MINUTES", 60u64)?
                    .clamp(1, 7 * 24 * 60)
                    * 60,
            ),
            retention_sweep_interval: Duration::from_secs(
                src.parse("RETENTION_SWEEP_INTERVAL_SECS", 3600u64)?.max(1),
            ),
            store_phi: src.flag("STORE_PHI", true)?,
            max_upload_bytes,
            direct_upload_ttl: Duration::from_secs(
                src.parse("DIRECT_UPLOAD_TTL_SECS", 900u64)?
                    .clamp(60, 7 * 24 * 3600),
            ),
            json_body_limit_bytes: src.parse("JSON_BODY_LIMIT_BYTES", 64 * 1024)?,
            queue: QueueConfig {
                backend: queue_backend,
                visibility_timeout: Duration::from_secs_f64(visibility_secs),
                max_receive_count,
                poll_interval: Duration::from_millis(src.parse("QUEUE_POLL_INTERVAL_MS", 500u64)?),
                retry_base_delay: Duration::from_millis(
                    src.parse("JOB_RETRY_BASE_DELAY_MS", 2000u64)?,
                ),
                worker_concurrency,
                worker_stale_after: Duration::from_secs(
                    src.parse("WORKER_STALE_AFTER_SECS", 60u64)?.max(1),
                ),
                ecs_agent_uri: src.raw("ECS_AGENT_URI"),
            },
            shutdown_grace: Duration::from_secs(src.parse("SHUTDOWN_GRACE_SECS", 20u64)?),
            in_lambda: src.raw("AWS_LAMBDA_FUNCTION_NAME").is_some(),
            telemetry: telemetry_config(&src, environment)?,
        };
        config.refuse_unsafe_production()?;
        Ok(config)
    }

    /// Production must not run on demo conveniences. (Issue 5 widens this list.)
    fn refuse_unsafe_production(&self) -> Result<(), ConfigError> {
        if self.environment != Environment::Prod {
            return Ok(());
        }
        let unsafe_setting = |key, reason: &str| {
            Err(ConfigError::UnsafeForProduction {
                key,
                reason: reason.to_owned(),
            })
        };
        match &self.jwt_rsa {
            None if self.jwt_secret.is_none() => {
                return unsafe_setting(
                    "INTERNAL_JWT_SECRET",
                    "must be set (or USE_RSA_INTERNAL_JWT=1 with RSA keys)",
                );
            }
            // Only the process that issues tokens needs the private key; the others verify.
            Some(rsa)
                if rsa.signing.is_none()
                    && (self.allow_guest_auth
                        || self.allow_local_login
                        || self.admin_api_key.is_some()) =>
            {
                return unsafe_setting(
                    "INTERNAL_JWT_PRIVATE_KEY_PEM",
                    "must be set where tokens are issued (sign-in is enabled)",
                );
            }
            _ => {}
        }
        if self.demo_mode {
            return unsafe_setting("DEMO_MODE", "must be off");
        }
        // Anyone can become a guest, and local users live in configuration: both are demo
        // conveniences a production deployment must opt into by name.
        if !self.allow_demo_auth_in_production {
            if self.allow_guest_auth {
                return unsafe_setting(
                    "ALLOW_GUEST_AUTH",
                    "must be off (or set ALLOW_DEMO_AUTH_IN_PRODUCTION=true for a public demo)",
                );
            }
            if self.allow_local_login {
                return unsafe_setting(
                    "ALLOW_LOCAL_LOGIN",
                    "must be off (or set ALLOW_DEMO_AUTH_IN_PRODUCTION=true)",
                );
            }
        }
        if self.cors_allow_origins.iter().any(|o| o == "*") {
            return unsafe_setting("CORS_ALLOW_ORIGINS", "must not be *");
        }
        if self
            .ehr
            .as_ref()
            .is_some_and(|ehr| {
                matches!(&ehr.target, EhrTarget::OpenEmr(openemr) if openemr.password_login.is_some())
            })
        {
            return unsafe_setting(
                "OPENEMR_USERNAME",
                "the password grant is for testing; use the refresh token of a one-time login",
            );
        }
        // Error reports and traces carry no PHI, but they do carry the shape of the service.
        if let Some(sentry) = &self.telemetry.sentry
            && !sentry.dsn.expose_secret().starts_with("https://")
        {
            return unsafe_setting("SENTRY_DSN", "must use https");
        }
        if let Some(otlp) = &self.telemetry.otlp
            && !otlp.endpoint.starts_with("https://")
            && !is_loopback_url(&otlp.endpoint)
        {
            return unsafe_setting(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "must use https unless the collector runs beside MMT (localhost)",
            );
        }
        if self.store_phi && self.field_encryption.is_none() {
            return unsafe_setting(
                "ENABLE_FIELD_ENCRYPTION",
                "must be on while STORE_PHI=true (or set STORE_PHI=false)",
            );
        }
        // A function's disk is ephemeral and private to one instance: records, jobs and audio
        // kept there would be lost, and invisible to the other functions.
        if self.in_lambda {
            if matches!(self.blob_backend, BlobBackend::Disk) {
                return unsafe_setting("BLOB_STORE", "must be s3 in a Lambda function");
            }
            if matches!(self.record_backend, RecordBackend::Sqlite) {
                return unsafe_setting("RECORD_STORE", "must be dynamodb in a Lambda function");
            }
            if matches!(self.queue.backend, QueueBackend::Sqlite) {
                return unsafe_setting("JOB_QUEUE", "must be sqs in a Lambda function");
            }
        }
        Ok(())
    }

    pub fn engine_enabled(&self, engine: EngineKind) -> bool {
        match engine {
            EngineKind::Cloud => self.cloud.is_some(),
            EngineKind::Local => self.local_engine_enabled || self.local_engine_on_worker,
        }
    }

    /// Whether any adapter lives on AWS (and the SDK configuration must be loaded).
    pub fn uses_aws(&self) -> bool {
        matches!(self.blob_backend, BlobBackend::S3 { .. })
            || matches!(self.record_backend, RecordBackend::DynamoDb { .. })
            || matches!(self.queue.backend, QueueBackend::Sqs { .. })
    }

    /// Whether any adapter lives in the SQLite file.
    pub fn uses_sqlite(&self) -> bool {
        matches!(self.record_backend, RecordBackend::Sqlite)
            || matches!(self.queue.backend, QueueBackend::Sqlite)
    }

    /// How often the local sweep runs: `RETENTION_SWEEP_INTERVAL_SECS`, and with
    /// `STORE_PHI=false` often enough that nothing outlives its delivery window by much.
    pub fn retention_sweep_every(&self) -> Duration {
        if self.store_phi {
            return self.retention_sweep_interval;
        }
        let quarter = (self.phi_delivery_window / 4).max(Duration::from_secs(30));
        self.retention_sweep_interval.min(quarter)
    }

    pub fn retention(&self) -> Option<chrono::Duration> {
        if !self.store_phi {
            return chrono::Duration::from_std(self.phi_delivery_window).ok();
        }
        (self.retention_days > 0).then(|| chrono::Duration::days(i64::from(self.retention_days)))
    }
}

/// `EHR_TARGET` and the settings of the EHR it names.
fn parse_ehr(
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
            EhrTarget::Fhir(crate::adapters::fhir::FhirConfig {
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
    Ok(Some(EhrConfig {
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
    }))
}

fn require_http_url(key: &'static str, url: &str) -> Result<(), ConfigError> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key,
            reason: "must be an http(s) URL".into(),
        })
    }
}

fn ehr_timeout(src: &Source<'_>) -> Result<Duration, ConfigError> {
    Ok(Duration::from_secs(
        src.parse("EHR_TIMEOUT_SECS", 20u64)?.clamp(1, 300),
    ))
}

/// The OpenEMR connection: where it is, the OAuth client, and the login.
fn parse_openemr(src: &Source<'_>) -> Result<crate::adapters::openemr::OpenEmrConfig, ConfigError> {
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
    Ok(crate::adapters::openemr::OpenEmrConfig {
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
        timeout: ehr_timeout(src)?,
    })
}

/// `USE_RSA_INTERNAL_JWT=1`: the private key (PKCS#8 PEM) signs; the public key is derived
/// from it, or given alone (`INTERNAL_JWT_PUBLIC_KEY_PEM`) in a process that only verifies.
fn parse_rsa_jwt(src: &Source<'_>) -> Result<RsaJwtConfig, ConfigError> {
    use crate::auth::{RsaPrivateKey, RsaPublicKey};
    let invalid = |key: &'static str| {
        move |e: crate::auth::KeyError| ConfigError::Invalid {
            key,
            reason: e.to_string(),
        }
    };
    let signing = src
        .secret("INTERNAL_JWT_PRIVATE_KEY_PEM")
        .map(|pem| RsaPrivateKey::from_pem(pem.expose_secret()))
        .transpose()
        .map_err(invalid("INTERNAL_JWT_PRIVATE_KEY_PEM"))?;
    let given_public = src
        .raw("INTERNAL_JWT_PUBLIC_KEY_PEM")
        .map(|pem| RsaPublicKey::from_pem(&pem))
        .transpose()
        .map_err(invalid("INTERNAL_JWT_PUBLIC_KEY_PEM"))?;
    let public = match (&signing, given_public) {
        (Some(private), Some(public)) if *private.public_key() != public => {
            return Err(ConfigError::Invalid {
                key: "INTERNAL_JWT_PUBLIC_KEY_PEM",
                reason: crate::auth::KeyError::Mismatch.to_string(),
            });
        }
        (Some(private), _) => private.public_key().clone(),
        (None, Some(public)) => public,
        (None, None) => {
            return Err(ConfigError::Missing {
                key: "INTERNAL_JWT_PRIVATE_KEY_PEM",
                reason: "USE_RSA_INTERNAL_JWT is on (generate keys with `mmt secrets --rsa`)"
                    .into(),
            });
        }
    };
    let old_public = src
        .raw("INTERNAL_JWT_OLD_PUBLIC_KEYS_PEM")
        .map(|raw| {
            raw.split("||")
                .map(str::trim)
                .filter(|pem| !pem.is_empty())
                .map(RsaPublicKey::from_pem)
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(invalid("INTERNAL_JWT_OLD_PUBLIC_KEYS_PEM"))?
        .unwrap_or_default();
    Ok(RsaJwtConfig {
        signing,
        public,
        old_public,
    })
}

/// The `(KEY, parameter name)` pairs to fetch: keys given by parameter and not by value.
fn secret_parameters(env: &HashMap<String, String>) -> Vec<(&'static str, String)> {
    SECRET_KEYS
        .iter()
        .filter(|key| env.get(**key).is_none_or(|v| v.trim().is_empty()))
        .filter_map(|key| {
            env.get(&format!("{key}_SSM_PARAMETER"))
                .map(|name| name.trim().to_owned())
                .filter(|name| !name.is_empty())
                .map(|name| (*key, name))
        })
        .collect()
}

/// Fills in the secrets given as `<KEY>_SSM_PARAMETER` from SSM Parameter Store (decrypted).
/// `sdk`: the AWS configuration to use; `None` loads the standard chain, only if needed.
#[cfg(feature = "aws")]
pub async fn resolve_secret_parameters(
    mut env: HashMap<String, String>,
    sdk: Option<&aws_config::SdkConfig>,
) -> Result<HashMap<String, String>, ConfigError> {
    let wanted = secret_parameters(&env);
    if wanted.is_empty() {
        return Ok(env);
    }
    let loaded;
    let sdk = match sdk {
        Some(sdk) => sdk,
        None => {
            loaded = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            &loaded
        }
    };
    let client = aws_sdk_ssm::Client::new(sdk);
    for (key, parameter) in wanted {
        let unavailable = |reason: String| ConfigError::SecretUnavailable {
            key,
            parameter: parameter.clone(),
            reason,
        };
        let out = client
            .get_parameter()
            .name(&parameter)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| unavailable(crate::telemetry::error_chain(&e.into_service_error())))?;
        let value = out
            .parameter()
            .and_then(|p| p.value())
            .ok_or_else(|| unavailable("the parameter has no value".into()))?;
        env.insert(key.to_owned(), value.to_owned());
    }
    Ok(env)
}

#[cfg(not(feature = "aws"))]
pub async fn resolve_secret_parameters(
    env: HashMap<String, String>,
    _sdk: Option<&()>,
) -> Result<HashMap<String, String>, ConfigError> {
    match secret_parameters(&env).into_iter().next() {
        None => Ok(env),
        Some((key, parameter)) => Err(ConfigError::SecretUnavailable {
            key,
            parameter,
            reason: "this build has no AWS support (the `aws` feature)".into(),
        }),
    }
}

fn parse_local_users(raw: &str) -> Result<Vec<LocalUser>, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        key: "LOCAL_LOGIN_USERS",
        reason: reason.to_owned(),
    };
    raw.split(';')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (username, hash) = entry
                .split_once(':')
                .ok_or_else(|| invalid("expected name:argon2-hash entries separated by ';'"))?;
            if username.is_empty()
                || !username
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
            {
                return Err(invalid("user names may hold letters, digits and . _ - @"));
            }
            argon2::PasswordHash::new(hash).map_err(|_| {
                invalid("password hashes must be argon2 PHC strings (see `mmt hash-password`)")
            })?;
            Ok(LocalUser {
                username: username.to_owned(),
                password_hash: hash.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_map(&map)
    }

    #[test]
    fn defaults_are_a_working_demo() {
        let c = config(&[]).unwrap();
        assert_eq!(c.environment, Environment::Dev);
        assert!(c.demo_mode && c.allow_guest_auth);
        assert_eq!(c.port, 8080);
        assert_eq!(c.retention_days, 30);
        assert!(c.cloud.is_none());
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = config(&[("PORT", "eighty")]).unwrap_err().to_string();
        assert!(err.contains("PORT"), "{err}");
        let err = config(&[("ALLOW_GUEST_AUTH", "maybe")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ALLOW_GUEST_AUTH"), "{err}");
        let err = config(&[("ENABLE_CLOUD_TRANSCRIPTION", "1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("OPENAI_API_KEY"), "{err}");
    }

    #[test]
    fn field_encryption_needs_a_valid_key_ring_and_never_echoes_it() {
        let err = config(&[("ENABLE_FIELD_ENCRYPTION", "1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ENCRYPTION_KEYS"), "{err}");
        let bad = "k1:c2hvcnQ=";
        let err = config(&[
            ("ENABLE_FIELD_ENCRYPTION", "1"),
            ("ENCRYPTION_KEYS", bad),
            ("PRIMARY_ENCRYPTION_KEY_ID", "k1"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("ENCRYPTION_KEYS") && !err.contains("c2hvcnQ"),
            "{err}"
        );
        let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        let ok = config(&[
            ("ENABLE_FIELD_ENCRYPTION", "1"),
            ("ENCRYPTION_KEYS", &format!("k1:{key}")),
            ("PRIMARY_ENCRYPTION_KEY_ID", "k1"),
        ])
        .unwrap();
        assert_eq!(ok.field_encryption.as_ref().unwrap().primary_id(), "k1");
        assert!(
            !format!("{ok:?}").contains(key),
            "Debug never shows key material"
        );
    }

    #[test]
    fn short_old_jwt_secrets_are_refused_without_echoing_them() {
        let long = "l".repeat(40);
        let err = config(&[("INTERNAL_JWT_OLD_SECRETS", &format!("{long},tooshort"))])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("INTERNAL_JWT_OLD_SECRETS") && !err.contains("tooshort"),
            "{err}"
        );
        let ok = config(&[("INTERNAL_JWT_OLD_SECRETS", &format!("{long}, {long}"))]).unwrap();
        assert_eq!(ok.jwt_old_secrets.len(), 2);
    }

    #[test]
    fn short_jwt_secret_is_refused_without_echoing_it() {
        let err = config(&[("INTERNAL_JWT_SECRET", "hunter2")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("INTERNAL_JWT_SECRET"));
        assert!(!err.contains("hunter2"));
    }

    #[test]
    fn production_refuses_demo_defaults() {
        let err = config(&[("ENV", "prod")]).unwrap_err().to_string();
        assert!(err.contains("INTERNAL_JWT_SECRET"), "{err}");
        let secret = "x".repeat(40);
        let err = config(&[
            ("ENV", "prod"),
            ("INTERNAL_JWT_SECRET", &secret),
            ("DEMO_MODE", "1"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("DEMO_MODE"), "{err}");
        let ok = config(&[
            ("ENV", "prod"),
            ("INTERNAL_JWT_SECRET", &secret),
            ("STORE_PHI", "false"),
        ])
        .unwrap();
        assert!(
            !ok.allow_guest_auth,
            "guests are off by default in production"
        );
        for login in ["ALLOW_GUEST_AUTH", "ALLOW_LOCAL_LOGIN"] {
            let err = config(&[
                ("ENV", "prod"),
                ("INTERNAL_JWT_SECRET", &secret),
                (login, "true"),
            ])
            .unwrap_err()
            .to_string();
            assert!(err.contains(login), "{err}");
            assert!(
                config(&[
                    ("ENV", "prod"),
                    ("INTERNAL_JWT_SECRET", &secret),
                    ("STORE_PHI", "false"),
                    (login, "true"),
                    ("ALLOW_DEMO_AUTH_IN_PRODUCTION", "true"),
                ])
                .is_ok(),
                "{login} with the explicit override"
            );
        }
    }

    /// Each production refusal, from a configuration that passes, one unsafe setting at a time.
    #[test]
    fn production_refuses_each_unsafe_setting_by_name() {
        let secret = "p".repeat(40);
        use base64::Engine as _;
        let keys = format!(
            "k1:{}",
            base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        );
        let safe = vec![
            ("ENV", "prod"),
            ("INTERNAL_JWT_SECRET", secret.as_str()),
            ("ENABLE_FIELD_ENCRYPTION", "1"),
            ("ENCRYPTION_KEYS", keys.as_str()),
            ("PRIMARY_ENCRYPTION_KEY_ID", "k1"),
        ];
        assert!(config(&safe).is_ok());
        let refused = |change: &[(&'static str, &'static str)], removed: &[&str], key: &str| {
            let mut pairs: Vec<(&str, &str)> = safe
                .iter()
                .copied()
                .filter(|(k, _)| !removed.contains(k))
                .collect();
            pairs.extend_from_slice(change);
            let err = config(&pairs).unwrap_err().to_string();
            assert!(err.contains(key), "expected a refusal naming {key}: {err}");
            assert!(!err.contains(&secret), "{err}");
        };
        refused(&[], &["INTERNAL_JWT_SECRET"], "INTERNAL_JWT_SECRET");
        refused(
            &[("INTERNAL_JWT_SECRET", "short")],
            &["INTERNAL_JWT_SECRET"],
            "INTERNAL_JWT_SECRET",
        );
        refused(
            &[("USE_RSA_INTERNAL_JWT", "1")],
            &[],
            "INTERNAL_JWT_PRIVATE_KEY_PEM",
        );
        refused(&[("ALLOW_GUEST_AUTH", "true")], &[], "ALLOW_GUEST_AUTH");
        refused(&[("ALLOW_LOCAL_LOGIN", "true")], &[], "ALLOW_LOCAL_LOGIN");
        refused(&[("CORS_ALLOW_ORIGINS", "*")], &[], "CORS_ALLOW_ORIGINS");
        refused(&[("DEMO_MODE", "true")], &[], "DEMO_MODE");
        refused(&[], &["ENABLE_FIELD_ENCRYPTION"], "ENABLE_FIELD_ENCRYPTION");
        refused(&[("ADMIN_API_KEY", "too-short")], &[], "ADMIN_API_KEY");
        refused(
            &[("SENTRY_DSN", "http://public@sentry.example.com/1")],
            &[],
            "SENTRY_DSN",
        );
        refused(
            &[(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://collector.example.com:4318",
            )],
            &[],
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        );
        for sidecar in [
            "http://localhost:4318",
            "http://127.0.0.1:4318/",
            "https://otlp.example.com",
        ] {
            let mut pairs = safe.clone();
            pairs.push(("OTEL_EXPORTER_OTLP_ENDPOINT", sidecar));
            assert!(config(&pairs).is_ok(), "{sidecar}");
        }
        // Without stored PHI, encryption at rest is not required.
        let mut no_phi: Vec<(&str, &str)> = safe[..2].to_vec();
        no_phi.push(("STORE_PHI", "false"));
        assert!(config(&no_phi).is_ok());
    }

    #[test]
    fn telemetry_settings_are_checked_and_the_dsn_never_repeated() {
        let c = config(&[]).unwrap();
        assert!(c.telemetry.otlp.is_none() && c.telemetry.sentry.is_none());
        assert_eq!(c.telemetry.service_name, "mmt");
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("SENTRY_DSN", "https://abc123@o1.ingest.sentry.io/42"),
            ("SENTRY_TRACES_SAMPLE_RATE", "0.25"),
        ])
        .unwrap();
        let otlp = c.telemetry.otlp.unwrap();
        assert_eq!(otlp.endpoint, "http://127.0.0.1:4318");
        assert_eq!(otlp.protocol, OtlpProtocol::HttpJson);
        let sentry = c.telemetry.sentry.unwrap();
        assert_eq!(sentry.traces_sample_rate, 0.25);
        assert_eq!(sentry.environment, "dev");
        for (key, value) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("SENTRY_DSN", "abc123-not-a-dsn"),
            ("SENTRY_TRACES_SAMPLE_RATE", "2"),
        ] {
            let mut pairs = vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318"),
                ("SENTRY_DSN", "https://abc123@o1.ingest.sentry.io/42"),
            ];
            pairs.retain(|(k, _)| *k != key);
            pairs.push((key, value));
            let err = config(&pairs).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
            assert!(!err.contains("abc123"), "{err}");
        }
    }

    #[test]
    fn rsa_keys_are_checked_and_a_public_key_alone_only_verifies() {
        let (private, public) = crate::auth::generate_rsa_pems().unwrap();
        let (_, other_public) = crate::auth::generate_rsa_pems().unwrap();
        let one_line = private.replace('\n', "\\n");
        let c = config(&[
            ("USE_RSA_INTERNAL_JWT", "1"),
            ("INTERNAL_JWT_PRIVATE_KEY_PEM", &one_line),
            (
                "INTERNAL_JWT_OLD_PUBLIC_KEYS_PEM",
                &format!("{other_public}||"),
            ),
        ])
        .unwrap();
        let rsa = c.jwt_rsa.unwrap();
        assert_eq!(rsa.old_public.len(), 1);
        assert_eq!(rsa.signing.unwrap().public_key(), &rsa.public);

        let err = config(&[
            ("USE_RSA_INTERNAL_JWT", "1"),
            ("INTERNAL_JWT_PRIVATE_KEY_PEM", &private),
            ("INTERNAL_JWT_PUBLIC_KEY_PEM", &other_public),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("INTERNAL_JWT_PUBLIC_KEY_PEM") && err.contains("does not match"),
            "{err}"
        );
        let err = config(&[
            ("USE_RSA_INTERNAL_JWT", "1"),
            (
                "INTERNAL_JWT_PRIVATE_KEY_PEM",
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
            ),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("INTERNAL_JWT_PRIVATE_KEY_PEM") && !err.contains("AAAA"),
            "{err}"
        );

        // A verifying function holds the public key only; production accepts that when it
        // issues no tokens, and refuses it where sign-in is on.
        let verify_only = [
            ("ENV", "prod"),
            ("STORE_PHI", "false"),
            ("USE_RSA_INTERNAL_JWT", "1"),
            ("INTERNAL_JWT_PUBLIC_KEY_PEM", public.as_str()),
        ];
        assert!(
            config(&verify_only)
                .unwrap()
                .jwt_rsa
                .unwrap()
                .signing
                .is_none()
        );
        let mut signing_in = verify_only.to_vec();
        signing_in.extend([
            ("ALLOW_LOCAL_LOGIN", "true"),
            ("ALLOW_DEMO_AUTH_IN_PRODUCTION", "true"),
        ]);
        let err = config(&signing_in).unwrap_err().to_string();
        assert!(err.contains("INTERNAL_JWT_PRIVATE_KEY_PEM"), "{err}");
    }

    #[test]
    fn without_stored_phi_records_live_for_the_delivery_window() {
        let c = config(&[
            ("STORE_PHI", "false"),
            ("PHI_DELIVERY_WINDOW_MINUTES", "20"),
        ])
        .unwrap();
        assert_eq!(c.retention(), Some(chrono::Duration::minutes(20)));
        assert_eq!(c.retention_sweep_every(), Duration::from_secs(300));
        let kept = config(&[("RETENTION_DAYS", "7")]).unwrap();
        assert_eq!(kept.retention(), Some(chrono::Duration::days(7)));
    }

    #[test]
    fn default_engine_must_be_enabled() {
        let err = config(&[("DEFAULT_ENGINE", "cloud")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("DEFAULT_ENGINE"));
        let c = config(&[
            ("ENABLE_CLOUD_TRANSCRIPTION", "true"),
            ("OPENAI_API_KEY", "sk-test"),
        ])
        .unwrap();
        assert_eq!(c.default_engine, Some(EngineKind::Cloud));
    }

    #[test]
    fn production_lambda_functions_refuse_embedded_stores() {
        let secret = "s".repeat(40);
        let lambda = [
            ("ENV", "prod"),
            ("INTERNAL_JWT_SECRET", secret.as_str()),
            ("STORE_PHI", "false"),
            ("AWS_LAMBDA_FUNCTION_NAME", "mmt-prod-upload"),
        ];
        let err = config(&lambda).unwrap_err().to_string();
        assert!(err.contains("BLOB_STORE"), "{err}");
        let mut aws = lambda.to_vec();
        aws.extend([
            ("BLOB_STORE", "s3"),
            ("S3_BUCKET", "b"),
            ("RECORD_STORE", "dynamodb"),
            ("DYNAMODB_TABLE", "t"),
        ]);
        let err = config(&aws).unwrap_err().to_string();
        assert!(
            err.contains("AUDIT_TABLE"),
            "the audit trail needs its own table: {err}"
        );
        aws.push(("AUDIT_TABLE", "audit"));
        let err = config(&aws).unwrap_err().to_string();
        assert!(err.contains("JOB_QUEUE"), "{err}");
        aws.extend([
            ("JOB_QUEUE", "sqs"),
            ("SQS_TRANSCRIBE_QUEUE_URL", "https://sqs/q"),
            ("SQS_TRANSCRIBE_DLQ_URL", "https://sqs/dlq"),
        ]);
        assert!(config(&aws).unwrap().in_lambda);
        // Outside production (cargo lambda watch, the smoke tests) embedded stores are fine.
        assert!(config(&[("AWS_LAMBDA_FUNCTION_NAME", "upload")]).is_ok());
    }

    #[test]
    fn the_local_engine_can_live_on_a_worker() {
        let c = config(&[
            ("ENABLE_CLOUD_TRANSCRIPTION", "true"),
            ("OPENAI_API_KEY", "sk-test"),
            ("LOCAL_ENGINE_ON_WORKER", "true"),
            ("DEFAULT_ENGINE", "local"),
        ])
        .unwrap();
        assert!(c.engine_enabled(EngineKind::Local));
        assert!(
            !c.local_engine_enabled,
            "no model is loaded in this process"
        );
        let err = config(&[("DEFAULT_ENGINE", "local")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("LOCAL_ENGINE_ON_WORKER"), "{err}");
    }

    #[test]
    fn local_users_need_argon2_hashes() {
        let err = config(&[("LOCAL_LOGIN_USERS", "alice:plaintext")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("LOCAL_LOGIN_USERS") && !err.contains("plaintext"),
            "{err}"
        );
        let hash = crate::auth::hash_password("correct horse").unwrap();
        let c = config(&[("LOCAL_LOGIN_USERS", &format!("alice:{hash}; bob:{hash}"))]).unwrap();
        assert_eq!(c.local_users.len(), 2);
        assert_eq!(c.local_users[1].username, "bob");
    }
}
