//! Wiring: configuration in, adapters built once into the [`AppState`] every route and worker
//! shares. The only module that names every adapter.

use std::sync::Arc;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use rand::RngCore;
use secrecy::ExposeSecret;

use crate::{
    adapters::{
        DiskBlobStore, OpenAiTranscriber, encrypted_blobs::EncryptedBlobStore,
        encrypted_records::EncryptedRecordStore,
    },
    app::{
        AppState, EHR_QUEUE, EhrServices, Engines, KeyRotation, TRANSCRIBE_QUEUE, WorkerHeartbeats,
        rate_limit::RateLimiter,
    },
    auth::{TokenKeys, TokenService},
    config::{AuditBackend, BlobBackend, Config, QueueBackend, RecordBackend},
    ports::{
        AccessLedger, AuditLog, BlobStore, BoxError, Clock, DeliveryStore, EhrClient,
        EhrConnectionStore, JobQueue, RecordStore, SystemClock, Transcriber, VocabularyStore,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the record database")]
    Database(#[source] BoxError),
    #[error("cannot open the audit log database")]
    AuditLog(#[source] BoxError),
    #[error("cannot use the audio directory")]
    AudioDir(#[source] std::io::Error),
    #[error(
        "BLOB_STORE=s3, JOB_QUEUE=sqs and RECORD_STORE=dynamodb need a build with the `aws` feature"
    )]
    NoAwsSupport,
    #[error("an AWS backend is configured but no AWS SDK configuration was loaded")]
    NoAwsConfig,
    #[error(
        "RECORD_STORE=sqlite and JOB_QUEUE=sqlite need a build with the `sqlite` feature (Lambda zips leave it out)"
    )]
    NoSqliteSupport,
    #[error("cannot build the EHR client")]
    EhrClient(#[source] reqwest::Error),
    #[error("cannot build the cloud transcription client")]
    CloudClient(#[source] reqwest::Error),
    #[error("cannot build the webhook client")]
    WebhookClient(#[source] reqwest::Error),
    #[error(
        "ENABLE_LOCAL_TRANSCRIPTION is on, but this build has no local engine (build with the `whisper` feature)"
    )]
    NoLocalEngine,
    #[cfg(feature = "whisper")]
    #[error(transparent)]
    LocalModel(#[from] crate::adapters::whisper::LoadError),
}

/// The AWS SDK's shared configuration (region, credentials, endpoint), when built with AWS
/// support. Loaded once; every AWS client of the process is made from it.
#[cfg(feature = "aws")]
pub type AwsSdkConfig = aws_config::SdkConfig;
#[cfg(not(feature = "aws"))]
pub type AwsSdkConfig = ();

impl AppState {
    /// Builds the adapters the configuration names. Called once per process (per Lambda cold
    /// start); network clients made here are reused by every request. AWS settings come from
    /// the standard chain (environment, profile, the function's role), honouring
    /// `AWS_ENDPOINT_URL` for emulators.
    pub async fn from_config(config: Config) -> Result<Self, StartupError> {
        #[cfg(feature = "aws")]
        let aws = if config.uses_aws() {
            Some(aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await)
        } else {
            None
        };
        #[cfg(not(feature = "aws"))]
        let aws = None;
        Self::with_aws_config(config, aws).await
    }

    /// As [`AppState::from_config`], with the AWS SDK configuration given (tests point it at
    /// the emulator with fixed credentials).
    pub async fn with_aws_config(
        config: Config,
        aws: Option<AwsSdkConfig>,
    ) -> Result<Self, StartupError> {
        Self::build(config, aws, Arc::new(SystemClock)).await
    }

    /// As [`AppState::with_aws_config`], telling time by `clock` everywhere: records, the
    /// embedded queue's leases and delays, the consumers' heartbeats (tests move time).
    pub async fn build(
        config: Config,
        aws: Option<AwsSdkConfig>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        let db = open_embedded_db(&config)?;
        let backends = Backends {
            config: &config,
            db: db.as_ref(),
            aws: aws.as_ref(),
            clock: &clock,
        };
        let queue = backends.transcribe_queue()?;
        let vocabularies = backends.vocabulary_store()?;
        let access = backends.access_ledger()?;
        let (ehr, ehr_sealed) = backends.ehr_services()?;
        let notifier = backends.notifier()?;
        let (records, blobs, key_rotation) = backends.sealed_stores(&vocabularies, ehr_sealed)?;
        // Every event this process writes is linked into its own hash chain.
        let audit: Arc<dyn AuditLog> = Arc::new(crate::app::audit::ChainedAuditLog::new(
            backends.audit_log()?,
        ));
        let cloud = match &config.engines.cloud {
            Some(cloud) => Some(Arc::new(
                OpenAiTranscriber::new(cloud.clone()).map_err(StartupError::CloudClient)?,
            ) as Arc<dyn Transcriber>),
            None => None,
        };
        let (local, live) = if config.engines.local_engine_enabled {
            load_local_engine(&config)?
        } else {
            (None, None)
        };
        let tokens = token_service(&config);
        Ok(Self {
            records,
            blobs,
            vocabularies,
            access: access.clone(),
            transcribe_queue: queue,
            audit,
            ehr,
            metrics: Arc::default(),
            worker_heartbeats: Arc::new(WorkerHeartbeats::new(clock.clone())),
            engines: Engines { cloud, local },
            live,
            tokens: Arc::new(tokens),
            clock,
            key_rotation,
            scale_in_protection: config.queue.ecs_agent_uri.as_deref().map(|uri| {
                Arc::new(crate::adapters::ecs_task_protection::TaskProtection::new(
                    uri,
                    crate::adapters::ecs_task_protection::DEFAULT_PROTECTION,
                )) as Arc<dyn crate::ports::ScaleInProtection>
            }),
            rate_limiter: (config.http.rate_limit_per_minute > 0).then(|| {
                Arc::new(RateLimiter::new(
                    config.http.rate_limit_per_minute,
                    access.clone(),
                ))
            }),
            drafter: note_drafter(&config)?,
            oidc: oidc_verifier(&config)?,
            notifier,
            ehr_lookups: ehr_lookup_limiter(&config, &access),
            sign_in_guard: Arc::new(crate::app::rate_limit::SignInGuard::new(
                config.auth.limits.max_failed_sign_ins,
                config.auth.limits.lockout_window,
                access.clone(),
            )),
            password_checks: Arc::new(crate::auth::PasswordChecker::new(
                config.auth.limits.password_check_concurrency,
            )),
            config: Arc::new(config),
        })
    }
}

/// The token service the configuration describes: RS256 keys, or the HS256 secret (a random
/// one outside production when none is set).
fn token_service(config: &Config) -> TokenService {
    let old_secrets: Vec<&[u8]> = config
        .auth
        .jwt_old_secrets
        .iter()
        .map(|s| s.expose_secret().as_bytes())
        .collect();
    let ephemeral;
    let keys = match (&config.auth.jwt_rsa, &config.auth.jwt_secret) {
        (Some(rsa), current) => TokenKeys::Rsa {
            signing: rsa.signing.clone(),
            public: rsa.public.clone(),
            old_public: rsa.old_public.clone(),
            // HS256 tokens issued before the switch stay valid until they expire.
            hmac_secrets: current
                .iter()
                .map(|s| s.expose_secret().as_bytes())
                .chain(old_secrets)
                .collect(),
        },
        (None, Some(secret)) => TokenKeys::Hmac {
            secret: secret.expose_secret().as_bytes(),
            old: old_secrets,
        },
        (None, None) => {
            // Only reachable outside production (config refuses it there).
            tracing::warn!(
                "INTERNAL_JWT_SECRET is not set: using a random secret for this process; \
                 tokens will not survive a restart or work across functions"
            );
            let mut bytes = vec![0u8; 48];
            rand::rng().fill_bytes(&mut bytes);
            ephemeral = STANDARD.encode(bytes).into_bytes();
            TokenKeys::Hmac {
                secret: &ephemeral,
                old: old_secrets,
            }
        }
    };
    TokenService::from_keys(
        keys,
        &config.auth.jwt_issuer,
        &config.auth.jwt_audience,
        config.auth.access_token_ttl,
    )
}

#[cfg(feature = "sqlite")]
type EmbeddedDb = crate::adapters::Database;
#[cfg(not(feature = "sqlite"))]
type EmbeddedDb = std::convert::Infallible;

/// The SQLite file, opened only where something lives in it.
fn open_embedded_db(config: &Config) -> Result<Option<EmbeddedDb>, StartupError> {
    if !config.uses_sqlite() {
        return Ok(None);
    }
    #[cfg(feature = "sqlite")]
    return crate::adapters::Database::open(&config.storage.database_path)
        .map(Some)
        .map_err(StartupError::Database);
    #[cfg(not(feature = "sqlite"))]
    Err(StartupError::NoSqliteSupport)
}

/// What the adapters are built from.
struct Backends<'a> {
    config: &'a Config,
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    db: Option<&'a EmbeddedDb>,
    #[cfg_attr(not(feature = "aws"), allow(dead_code))]
    aws: Option<&'a AwsSdkConfig>,
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    clock: &'a Arc<dyn Clock>,
}

impl Backends<'_> {
    #[cfg(feature = "sqlite")]
    fn db(&self) -> EmbeddedDb {
        self.db
            .cloned()
            .expect("the database is opened whenever a backend is sqlite")
    }

    #[cfg(feature = "aws")]
    fn aws(&self) -> Result<&aws_config::SdkConfig, StartupError> {
        self.aws.ok_or(StartupError::NoAwsConfig)
    }

    /// The record and blob stores, sealing what they keep when field encryption is on: every
    /// record's PHI fields, and audio on the local file store (S3 encrypts with SSE-KMS).
    #[allow(clippy::type_complexity)]
    fn sealed_stores(
        &self,
        vocabularies: &Arc<dyn VocabularyStore>,
        ehr_sealed: Vec<Arc<dyn crate::ports::Resealable>>,
    ) -> Result<
        (
            Arc<dyn RecordStore>,
            Arc<dyn BlobStore>,
            Option<Arc<KeyRotation>>,
        ),
        StartupError,
    > {
        let records = self.record_store()?;
        let blobs = self.blob_store()?;
        let Some(keys) = &self.config.storage.field_encryption else {
            return Ok((records, blobs, None));
        };
        let records = Arc::new(EncryptedRecordStore::new(records, keys.clone()));
        let sealed_blobs = matches!(self.config.storage.blob_backend, BlobBackend::Disk)
            .then(|| Arc::new(EncryptedBlobStore::new(blobs.clone(), keys.clone())));
        let rotation = KeyRotation::new(
            records.clone(),
            sealed_blobs
                .clone()
                .map(|sealed| sealed as Arc<dyn crate::ports::BlobResealer>),
            vocabularies.clone(),
            ehr_sealed,
        );
        let blobs = match sealed_blobs {
            Some(sealed) => sealed as Arc<dyn BlobStore>,
            None => blobs,
        };
        Ok((records, blobs, Some(Arc::new(rotation))))
    }

    fn blob_store(&self) -> Result<Arc<dyn BlobStore>, StartupError> {
        match &self.config.storage.blob_backend {
            BlobBackend::Disk => Ok(Arc::new(
                DiskBlobStore::new(&self.config.storage.audio_dir)
                    .map_err(StartupError::AudioDir)?,
            )),
            #[cfg(feature = "aws")]
            BlobBackend::S3 {
                bucket,
                kms_key_id,
                force_path_style,
            } => Ok(Arc::new(crate::adapters::s3::S3BlobStore::new(
                crate::adapters::s3::client(self.aws()?, *force_path_style),
                bucket.clone(),
                kms_key_id.clone(),
            ))),
            #[cfg(not(feature = "aws"))]
            BlobBackend::S3 { .. } => Err(StartupError::NoAwsSupport),
        }
    }

    fn record_store(&self) -> Result<Arc<dyn RecordStore>, StartupError> {
        match &self.config.storage.record_backend {
            #[cfg(feature = "sqlite")]
            RecordBackend::Sqlite => {
                Ok(Arc::new(crate::adapters::SqliteRecordStore::new(self.db())))
            }
            #[cfg(not(feature = "sqlite"))]
            RecordBackend::Sqlite => Err(StartupError::NoSqliteSupport),
            #[cfg(feature = "aws")]
            RecordBackend::DynamoDb { table } => {
                Ok(Arc::new(crate::adapters::dynamodb::DynamoRecordStore::new(
                    aws_sdk_dynamodb::Client::new(self.aws()?),
                    table.clone(),
                    self.config.retention.keep_for(),
                )))
            }
            #[cfg(not(feature = "aws"))]
            RecordBackend::DynamoDb { .. } => Err(StartupError::NoAwsSupport),
        }
    }

    /// Revoked tokens and shared counters, beside the records: every process of the
    /// deployment reads the same ones.
    fn access_ledger(&self) -> Result<Arc<dyn AccessLedger>, StartupError> {
        match &self.config.storage.record_backend {
            #[cfg(feature = "sqlite")]
            RecordBackend::Sqlite => Ok(Arc::new(crate::adapters::SqliteAccessLedger::new(
                crate::adapters::Database::open_access(&self.config.storage.access_database_path)
                    .map_err(StartupError::Database)?,
            ))),
            #[cfg(not(feature = "sqlite"))]
            RecordBackend::Sqlite => Err(StartupError::NoSqliteSupport),
            #[cfg(feature = "aws")]
            RecordBackend::DynamoDb { table } => Ok(Arc::new(
                crate::adapters::dynamodb_access::DynamoAccessLedger::new(
                    aws_sdk_dynamodb::Client::new(self.aws()?),
                    table.clone(),
                ),
            )),
            #[cfg(not(feature = "aws"))]
            RecordBackend::DynamoDb { .. } => Err(StartupError::NoAwsSupport),
        }
    }

    /// Each owner's vocabulary, beside the records, sealed when field encryption is on.
    fn vocabulary_store(&self) -> Result<Arc<dyn VocabularyStore>, StartupError> {
        let keys = self.config.storage.field_encryption.clone();
        match &self.config.storage.record_backend {
            #[cfg(feature = "sqlite")]
            RecordBackend::Sqlite => Ok(Arc::new(crate::adapters::SqliteVocabularyStore::new(
                self.db(),
                keys,
            ))),
            #[cfg(not(feature = "sqlite"))]
            RecordBackend::Sqlite => Err(StartupError::NoSqliteSupport),
            #[cfg(feature = "aws")]
            RecordBackend::DynamoDb { table } => Ok(Arc::new(
                crate::adapters::dynamodb_vocabulary::DynamoVocabularyStore::new(
                    aws_sdk_dynamodb::Client::new(self.aws()?),
                    table.clone(),
                    keys,
                ),
            )),
            #[cfg(not(feature = "aws"))]
            RecordBackend::DynamoDb { .. } => Err(StartupError::NoAwsSupport),
        }
    }

    /// Where notifications go (`WEBHOOK_URL`, `EVENT_BUS_NAME`), if anywhere.
    fn notifier(&self) -> Result<Option<Arc<dyn crate::ports::Notifier>>, StartupError> {
        Ok(match &self.config.notify {
            None => None,
            Some(crate::config::NotifyConfig::Webhook(webhook)) => Some(Arc::new(
                crate::adapters::webhook::WebhookNotifier::new(webhook.clone())
                    .map_err(StartupError::WebhookClient)?,
            )),
            #[cfg(feature = "aws")]
            Some(crate::config::NotifyConfig::EventBridge { bus }) => Some(Arc::new(
                crate::adapters::eventbridge::EventBridgeNotifier::new(
                    aws_sdk_eventbridge::Client::new(self.aws()?),
                    bus.clone(),
                ),
            )),
            #[cfg(not(feature = "aws"))]
            Some(crate::config::NotifyConfig::EventBridge { .. }) => {
                return Err(StartupError::NoAwsSupport);
            }
        })
    }

    /// The EHR services, and the stores among them that seal (for key rotation).
    #[allow(clippy::type_complexity)]
    fn ehr_services(
        &self,
    ) -> Result<(Option<EhrServices>, Vec<Arc<dyn crate::ports::Resealable>>), StartupError> {
        let Some(ehr) = &self.config.ehr else {
            return Ok((None, Vec::new()));
        };
        let keys = self.config.storage.field_encryption.clone();
        let (deliveries, connections, sealed) = self.ehr_stores(ehr, keys)?;
        let client: Arc<dyn EhrClient> = match &ehr.target {
            crate::config::EhrTarget::OpenEmr(openemr) => Arc::new(
                crate::adapters::openemr::OpenEmrClient::new(openemr.clone(), connections.clone())
                    .map_err(StartupError::EhrClient)?,
            ),
            crate::config::EhrTarget::Fhir(fhir) => Arc::new(
                crate::adapters::fhir::FhirClient::new(fhir.clone())
                    .map_err(StartupError::EhrClient)?,
            ),
        };
        // The queue's own redrive and the delivery's attempt limit are the same number.
        let queue = self.queue(EHR_QUEUE, ehr.sqs_queue.as_ref(), ehr.max_attempts)?;
        Ok((
            Some(EhrServices {
                client,
                deliveries,
                queue,
                connections,
            }),
            sealed,
        ))
    }

    /// The outbox and the connection store, where the records live, and the two as stores
    /// that seal.
    #[allow(clippy::type_complexity)]
    fn ehr_stores(
        &self,
        ehr: &crate::config::EhrConfig,
        keys: Option<Arc<crate::crypto::KeyRing>>,
    ) -> Result<
        (
            Arc<dyn DeliveryStore>,
            Arc<dyn EhrConnectionStore>,
            Vec<Arc<dyn crate::ports::Resealable>>,
        ),
        StartupError,
    > {
        match (&self.config.storage.record_backend, &ehr.table) {
            #[cfg(feature = "aws")]
            (RecordBackend::DynamoDb { .. }, Some(table)) => {
                let store = Arc::new(crate::adapters::dynamodb_ehr::DynamoEhrStore::new(
                    aws_sdk_dynamodb::Client::new(self.aws()?),
                    table.clone(),
                    keys,
                ));
                Ok((store.clone(), store.clone(), vec![store]))
            }
            #[cfg(feature = "sqlite")]
            (RecordBackend::Sqlite, _) => {
                let deliveries = Arc::new(crate::adapters::SqliteDeliveryStore::new(
                    self.db(),
                    keys.clone(),
                ));
                let connections = Arc::new(crate::adapters::SqliteEhrConnectionStore::new(
                    self.db(),
                    keys,
                ));
                Ok((
                    deliveries.clone(),
                    connections.clone(),
                    vec![deliveries, connections],
                ))
            }
            _ => {
                let _ = keys;
                Err(StartupError::NoAwsSupport)
            }
        }
    }

    fn audit_log(&self) -> Result<Arc<dyn AuditLog>, StartupError> {
        match &self.config.storage.audit_backend {
            #[cfg(feature = "sqlite")]
            AuditBackend::Sqlite { path } => Ok(Arc::new(crate::adapters::SqliteAuditLog::new(
                crate::adapters::Database::open_audit(path).map_err(StartupError::AuditLog)?,
            ))),
            #[cfg(not(feature = "sqlite"))]
            AuditBackend::Sqlite { .. } => Err(StartupError::NoSqliteSupport),
            #[cfg(feature = "aws")]
            AuditBackend::DynamoDb { table } => Ok(Arc::new(
                crate::adapters::dynamodb_audit::DynamoAuditLog::new(
                    aws_sdk_dynamodb::Client::new(self.aws()?),
                    table.clone(),
                ),
            )),
            #[cfg(not(feature = "aws"))]
            AuditBackend::DynamoDb { .. } => Err(StartupError::NoAwsSupport),
        }
    }

    fn transcribe_queue(&self) -> Result<Arc<dyn JobQueue>, StartupError> {
        let sqs = match &self.config.queue.backend {
            QueueBackend::Sqs {
                transcribe_queue_url,
                transcribe_dead_letter_url,
                ..
            } => Some((
                transcribe_queue_url.clone(),
                transcribe_dead_letter_url.clone(),
            )),
            QueueBackend::Sqlite => None,
        };
        self.queue(
            TRANSCRIBE_QUEUE,
            sqs.as_ref(),
            self.config.queue.max_receive_count,
        )
    }

    /// The named queue: a table of the embedded database, or the SQS queue and dead-letter
    /// queue given.
    #[cfg_attr(not(feature = "aws"), allow(unused_variables))]
    fn queue(
        &self,
        name: &'static str,
        sqs: Option<&(String, String)>,
        max_receives: u32,
    ) -> Result<Arc<dyn JobQueue>, StartupError> {
        let queue = &self.config.queue;
        match &queue.backend {
            #[cfg(not(feature = "sqlite"))]
            QueueBackend::Sqlite => Err(StartupError::NoSqliteSupport),
            #[cfg(feature = "sqlite")]
            QueueBackend::Sqlite => Ok(Arc::new(
                crate::adapters::SqliteJobQueue::new(
                    self.db(),
                    name,
                    queue.visibility_timeout,
                    max_receives,
                )
                .with_clock(self.clock.clone()),
            )),
            #[cfg(feature = "aws")]
            QueueBackend::Sqs { wait, .. } => {
                let (url, dead_letter_url) = sqs.cloned().ok_or(StartupError::NoAwsConfig)?;
                Ok(Arc::new(crate::adapters::sqs::SqsJobQueue::new(
                    aws_sdk_sqs::Client::new(self.aws()?),
                    url,
                    dead_letter_url,
                    queue.visibility_timeout,
                    *wait,
                )))
            }
            #[cfg(not(feature = "aws"))]
            QueueBackend::Sqs { .. } => Err(StartupError::NoAwsSupport),
        }
    }
}

/// Patient look-ups per user, counted in the shared ledger, where an EHR is configured.
fn ehr_lookup_limiter(config: &Config, access: &Arc<dyn AccessLedger>) -> Option<Arc<RateLimiter>> {
    config.ehr.as_ref().map(|ehr| {
        Arc::new(RateLimiter::for_scope(
            "ehr-lookup",
            ehr.lookups_per_minute,
            access.clone(),
        ))
    })
}

/// The verifier of the clinic's identity providers' tokens, where any is configured.
fn oidc_verifier(
    config: &Config,
) -> Result<Option<Arc<crate::auth::oidc::OidcVerifier>>, StartupError> {
    if config.oidc_issuers.is_empty() {
        return Ok(None);
    }
    Ok(Some(Arc::new(
        crate::auth::oidc::OidcVerifier::new(&config.oidc_issuers)
            .map_err(StartupError::WebhookClient)?,
    )))
}

/// The chat model that drafts note sections, where the cloud engine names one.
fn note_drafter(
    config: &Config,
) -> Result<Option<Arc<dyn crate::ports::NoteDrafter>>, StartupError> {
    let Some(cloud) = &config.engines.cloud else {
        return Ok(None);
    };
    Ok(
        crate::adapters::openai_chat::OpenAiNoteDrafter::new(cloud.clone())
            .map_err(StartupError::CloudClient)?
            .map(|d| Arc::new(d) as Arc<dyn crate::ports::NoteDrafter>),
    )
}

/// The local engine, and live dictation on the same model where it is on.
type LocalEngines = (
    Option<Arc<dyn Transcriber>>,
    Option<Arc<crate::app::live::LiveDictation>>,
);

#[cfg(feature = "whisper")]
fn load_local_engine(config: &Config) -> Result<LocalEngines, StartupError> {
    let engine = Arc::new(crate::adapters::whisper::WhisperTranscriber::load(
        &config.engines.local,
    )?);
    tracing::info!(engine = %engine.describe(), threads = config.engines.local.threads, "local engine loaded");
    let live = config.live.enabled.then(|| {
        Arc::new(crate::app::live::LiveDictation::new(
            engine.clone(),
            config.live.clone(),
        ))
    });
    Ok((Some(engine), live))
}

#[cfg(not(feature = "whisper"))]
fn load_local_engine(_config: &Config) -> Result<LocalEngines, StartupError> {
    Err(StartupError::NoLocalEngine)
}
