//! Where settings come from: a lookup (the process environment, or a map in tests), the
//! error that names a bad key (never its value), the small parsers every section shares, and
//! secrets given as SSM parameters.

use std::{collections::HashMap, fmt, str::FromStr};

use secrecy::SecretString;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value for {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("{key} is required: {reason}")]
    Missing { key: &'static str, reason: String },
    #[error("unsafe configuration for ENV=prod or staging: {key} {reason}")]
    UnsafeForProduction { key: &'static str, reason: String },
    #[error("cannot read {key} from SSM parameter {parameter}: {reason}")]
    SecretUnavailable {
        key: &'static str,
        parameter: String,
        reason: String,
    },
}

impl ConfigError {
    pub(super) fn unsafe_setting(key: &'static str, reason: &str) -> Self {
        Self::UnsafeForProduction {
            key,
            reason: reason.to_owned(),
        }
    }
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
    "WEBHOOK_SECRET",
    "SENTRY_DSN",
];

/// Reads keys from some source: the process environment, or a map in tests.
pub(super) type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

pub(super) struct Source<'a> {
    pub(super) lookup: Lookup<'a>,
}

impl Source<'_> {
    pub(super) fn raw(&self, key: &str) -> Option<String> {
        (self.lookup)(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    pub(super) fn parse<T: FromStr>(&self, key: &'static str, default: T) -> Result<T, ConfigError>
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

    pub(super) fn flag(&self, key: &'static str, default: bool) -> Result<bool, ConfigError> {
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

    pub(super) fn secret(&self, key: &str) -> Option<SecretString> {
        self.raw(key).map(SecretString::from)
    }
}

/// `http://localhost:4318`, `http://127.0.0.1:4318`, `http://[::1]:4318`: a sidecar collector.
pub(super) fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

/// Production talks to remote services over TLS only; a plain `http://` URL is accepted for a
/// service running beside MMT (loopback).
pub(super) fn require_tls_unless_loopback(key: &'static str, url: &str) -> Result<(), ConfigError> {
    if url.starts_with("https://") || is_loopback_url(url) {
        Ok(())
    } else {
        Err(ConfigError::unsafe_setting(
            key,
            "must be https unless the service runs beside MMT (localhost)",
        ))
    }
}

pub(super) fn require_http_url(key: &'static str, url: &str) -> Result<(), ConfigError> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key,
            reason: "must be an http(s) URL".into(),
        })
    }
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
            .map_err(|e| unavailable(crate::ports::error_chain(&e.into_service_error())))?;
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
