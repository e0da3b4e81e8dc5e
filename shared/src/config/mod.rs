//! Typed settings, read from the environment once at start-up, one section per area. Each
//! section parses its keys and checks itself for production next to its type; adapters take
//! their section, never the whole [`Config`].
//!
//! Every key is documented in the README's configuration table. A bad value stops start-up
//! with an error that names the key (never the value: some keys hold secrets).

mod auth;
mod ehr;
mod engines;
mod http;
mod limits;
mod live;
mod notify;
mod oidc;
#[cfg(test)]
mod production_tests;
mod queue;
mod retention;
mod source;
mod storage;
mod telemetry;
#[cfg(test)]
mod tests;

use std::{collections::HashMap, str::FromStr};

pub use auth::{AuthConfig, LocalUser, RsaJwtConfig};
pub use ehr::{EhrConfig, EhrLoginMode, EhrTarget, FhirConfig, OpenEmrConfig};
pub use engines::{
    AudioDecoder, CloudEngineConfig, EnginesConfig, LocalEngineConfig, VoiceDetection,
};
pub use http::{HttpConfig, WebConfig};
pub use live::LiveConfig;
pub use notify::{NotifyConfig, WebhookConfig};
pub use oidc::{OidcIssuer, WebSignIn};
pub use queue::{QueueBackend, QueueConfig};
pub use retention::RetentionConfig;
pub use source::{ConfigError, SECRET_KEYS, resolve_secret_parameters};
pub use storage::{AuditBackend, BlobBackend, RecordBackend, StorageConfig};
pub use telemetry::{LogFormat, OtlpConfig, OtlpProtocol, SentryConfig, TelemetryConfig};

use source::Source;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Dev,
    Test,
    Staging,
    Prod,
}

impl Environment {
    /// Production and staging: the environments held to production's rules.
    pub fn is_production(self) -> bool {
        matches!(self, Self::Prod | Self::Staging)
    }

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

#[derive(Debug, Clone)]
pub struct Config {
    pub environment: Environment,
    pub demo_mode: bool,
    /// Running as an AWS Lambda function (the runtime sets `AWS_LAMBDA_FUNCTION_NAME`).
    pub in_lambda: bool,
    /// `SERVES_PHI` (default on): off for a process that never reads or writes a record or a
    /// recording (the health, demo-status, docs and auth functions), which then needs no
    /// field keys — and, in the Terraform deployment, is given none and no access to records.
    pub serves_phi: bool,
    pub http: HttpConfig,
    pub auth: AuthConfig,
    pub storage: StorageConfig,
    pub queue: QueueConfig,
    pub engines: EnginesConfig,
    /// Live dictation on the local engine.
    pub live: LiveConfig,
    /// `Some` when `EHR_TARGET` is set.
    pub ehr: Option<EhrConfig>,
    /// `Some` when `WEBHOOK_URL` or `EVENT_BUS_NAME` is set.
    pub notify: Option<NotifyConfig>,
    /// The clinic's identity providers whose access tokens are accepted (`OIDC_ISSUERS`).
    pub oidc_issuers: Vec<OidcIssuer>,
    /// The web page's sign-in through one of them (`WEB_OIDC_ISSUER`).
    pub web_sign_in: Option<WebSignIn>,
    pub retention: RetentionConfig,
    pub telemetry: TelemetryConfig,
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
        let storage = StorageConfig::parse(&src)?;
        let queue = QueueConfig::parse(&src)?;
        let engines = EnginesConfig::parse(&src)?;
        let config = Config {
            environment,
            demo_mode: src.flag("DEMO_MODE", environment == Environment::Dev)?,
            in_lambda: src.raw("AWS_LAMBDA_FUNCTION_NAME").is_some(),
            serves_phi: src.flag("SERVES_PHI", true)?,
            http: HttpConfig::parse(&src, environment)?,
            auth: AuthConfig::parse(&src, environment.is_production())?,
            ehr: ehr::parse_ehr(&src, &queue.backend, &storage.record_backend)?,
            notify: NotifyConfig::parse(&src)?,
            oidc_issuers: Vec::new(),
            web_sign_in: None,
            live: LiveConfig::parse(&src, engines.local_engine_enabled)?,
            engines,
            retention: RetentionConfig::parse(&src)?,
            telemetry: TelemetryConfig::parse(&src, environment)?,
            storage,
            queue,
        };
        let mut config = config;
        config.oidc_issuers = oidc::parse_issuers(&src, environment.is_production())?;
        config.web_sign_in = oidc::parse_web_sign_in(&src, &config.oidc_issuers)?;
        config.refuse_unsafe_production()?;
        Ok(config)
    }

    /// Production must not run on demo conveniences: each section checks its own settings,
    /// and the settings that only make sense together are checked here. Staging is held to
    /// the same rules: it is where production's configuration is proven, often on real data.
    fn refuse_unsafe_production(&self) -> Result<(), ConfigError> {
        if !self.environment.is_production() {
            return Ok(());
        }
        self.auth.check_for_production()?;
        if self.demo_mode {
            return Err(ConfigError::unsafe_setting("DEMO_MODE", "must be off"));
        }
        self.auth.check_demo_sign_in()?;
        self.http.check_for_production()?;
        self.engines.check_for_production()?;
        self.live.check_for_production()?;
        self.storage.check_for_production()?;
        if let Some(ehr) = &self.ehr {
            ehr.check_for_production()?;
        }
        if let Some(notify) = &self.notify {
            notify.check_for_production()?;
        }
        self.telemetry.check_for_production()?;
        // STORE_PHI=false keeps the prompt and file name out, but the transcript is PHI too.
        if self.serves_phi && self.storage.field_encryption.is_none() {
            return Err(ConfigError::unsafe_setting(
                "ENABLE_FIELD_ENCRYPTION",
                "must be on: transcripts are PHI whatever STORE_PHI says",
            ));
        }
        if self.in_lambda {
            self.storage.check_for_lambda()?;
            self.queue.check_for_lambda()?;
        }
        Ok(())
    }

    /// Whether any adapter lives on AWS (and the SDK configuration must be loaded).
    pub fn uses_aws(&self) -> bool {
        matches!(self.storage.blob_backend, BlobBackend::S3 { .. })
            || matches!(self.storage.record_backend, RecordBackend::DynamoDb { .. })
            || matches!(self.queue.backend, QueueBackend::Sqs { .. })
            || matches!(self.notify, Some(NotifyConfig::EventBridge { .. }))
    }

    /// Whether any adapter lives in the SQLite file.
    pub fn uses_sqlite(&self) -> bool {
        matches!(self.storage.record_backend, RecordBackend::Sqlite)
            || matches!(self.queue.backend, QueueBackend::Sqlite)
    }
}
