//! Where logs, traces and error reports go.

use secrecy::{ExposeSecret, SecretString};

use super::{
    Environment,
    source::{ConfigError, Source, is_loopback_url},
};

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

impl TelemetryConfig {
    pub(super) fn parse(src: &Source, environment: Environment) -> Result<Self, ConfigError> {
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
        let otlp = parse_otlp(src)?;
        let sentry = parse_sentry(src, environment)?;
        Ok(TelemetryConfig {
            log_format,
            environment,
            function_name: src.raw("AWS_LAMBDA_FUNCTION_NAME"),
            service_name: src.raw("OTEL_SERVICE_NAME").unwrap_or_else(|| "mmt".into()),
            otlp,
            sentry,
        })
    }
}

impl TelemetryConfig {
    /// Error reports and traces carry no PHI, but they do carry the shape of the service.
    pub(super) fn check_for_production(&self) -> Result<(), ConfigError> {
        if let Some(sentry) = &self.sentry
            && !sentry.dsn.expose_secret().starts_with("https://")
        {
            return Err(ConfigError::unsafe_setting("SENTRY_DSN", "must use https"));
        }
        if let Some(otlp) = &self.otlp
            && !otlp.endpoint.starts_with("https://")
            && !is_loopback_url(&otlp.endpoint)
        {
            return Err(ConfigError::unsafe_setting(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "must use https unless the collector runs beside MMT (localhost)",
            ));
        }
        Ok(())
    }
}

fn parse_otlp(src: &Source) -> Result<Option<OtlpConfig>, ConfigError> {
    Ok(match src.raw("OTEL_EXPORTER_OTLP_ENDPOINT") {
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
    })
}

fn parse_sentry(
    src: &Source,
    environment: Environment,
) -> Result<Option<SentryConfig>, ConfigError> {
    Ok(match src.secret("SENTRY_DSN") {
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
    })
}

#[cfg(test)]
mod tests {
    use super::{super::tests::config, OtlpProtocol};

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
}
