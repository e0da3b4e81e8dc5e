//! The HTTP server: where it listens, what it accepts, the web page it serves.

use std::{net::IpAddr, time::Duration};

use secrecy::SecretString;

use super::{
    Environment,
    source::{ConfigError, Source, require_http_url},
};

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub host: IpAddr,
    pub port: u16,
    /// Serve `/openapi.json` and `/docs`.
    pub docs_enabled: bool,
    /// Requests per caller per minute; 0 = no limit.
    pub rate_limit_per_minute: u32,
    /// `TRUSTED_PROXY_HOPS`: how many proxies in front append to `X-Forwarded-For` (Railway
    /// and most load balancers: 1). The client is the address that many entries from the
    /// right; 0 (the default) trusts no header and takes the connection's peer.
    pub trusted_proxy_hops: usize,
    /// `MASK_PHI`: transcripts are shown and downloaded masked unless a request asks for
    /// `mask=none` (off: unmasked unless it asks for `mask=phi`).
    pub mask_phi: bool,
    /// An upload whose body sends nothing for this long is refused (408).
    pub body_idle_timeout: Duration,
    pub cors_allow_origins: Vec<String>,
    pub max_upload_bytes: u64,
    /// How long a `POST /v1/uploads` URL stays valid.
    pub direct_upload_ttl: Duration,
    pub json_body_limit_bytes: usize,
    /// How long a stopping server gives requests and jobs in hand to finish.
    pub shutdown_grace: Duration,
    pub web: WebConfig,
    /// `METRICS_TOKEN`: when set, `GET /metrics` wants it as a bearer token.
    pub metrics_token: Option<SecretString>,
    /// `HEALTH_DETAILS`: `/health/ready` says more than ok/failing (queue depths, the model,
    /// error texts) to anyone; otherwise to admin tokens only. Off by default in production.
    pub health_details: bool,
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

impl WebConfig {
    /// The page's `connect-src`: its own server and the APIs its configuration names. Only a
    /// demo may point the page at any API (its "Change API" box); a deployed page cannot be
    /// turned against its users by a link naming someone else's.
    /// `others` are further services the page talks to: the identity provider it signs in
    /// with, where it dictates live.
    pub fn connect_sources(&self, demo_mode: bool, others: &[&str]) -> String {
        if demo_mode {
            return "'self' http: https: ws: wss:".into();
        }
        let mut sources = vec!["'self'".to_owned()];
        let configured = [&self.api_base_url, &self.production_api_base_url]
            .into_iter()
            .flatten()
            .map(String::as_str);
        for url in configured.chain(others.iter().copied()) {
            if let Ok(url) = reqwest::Url::parse(url) {
                let origin = url.origin().ascii_serialization();
                if !sources.contains(&origin) {
                    sources.push(origin);
                }
            }
        }
        sources.join(" ")
    }
}

impl HttpConfig {
    pub(super) fn parse(src: &Source, environment: Environment) -> Result<Self, ConfigError> {
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
        Ok(Self {
            host: src.parse("HOST", IpAddr::from([0, 0, 0, 0]))?,
            port: src.parse("PORT", 8080)?,
            // The API's description is for developers: production opts in.
            docs_enabled: src.flag("ENABLE_DOCS", !environment.is_production())?,
            // Off in tests, which poll quickly; on everywhere a person or a client calls.
            trusted_proxy_hops: src.parse("TRUSTED_PROXY_HOPS", 0usize)?.min(8),
            mask_phi: src.flag("MASK_PHI", false)?,
            rate_limit_per_minute: src.parse(
                "RATE_LIMIT_PER_MINUTE",
                if environment == Environment::Test {
                    0
                } else {
                    600
                },
            )?,
            body_idle_timeout: Duration::from_secs(
                src.parse("BODY_IDLE_TIMEOUT_SECS", 30u64)?.max(1),
            ),
            cors_allow_origins,
            max_upload_bytes,
            // Part URLs are asked for again when they lapse: they need not live long.
            direct_upload_ttl: Duration::from_secs(
                src.parse("DIRECT_UPLOAD_TTL_SECS", 900u64)?.clamp(60, 3600),
            ),
            json_body_limit_bytes: src.parse("JSON_BODY_LIMIT_BYTES", 64 * 1024)?,
            shutdown_grace: Duration::from_secs(src.parse("SHUTDOWN_GRACE_SECS", 20u64)?),
            web,
            metrics_token: src.secret("METRICS_TOKEN"),
            health_details: src.flag("HEALTH_DETAILS", !environment.is_production())?,
        })
    }

    pub(super) fn check_for_production(&self) -> Result<(), ConfigError> {
        if self.rate_limit_per_minute == 0 {
            return Err(ConfigError::unsafe_setting(
                "RATE_LIMIT_PER_MINUTE",
                "must not be 0 (no limit)",
            ));
        }
        if self.cors_allow_origins.iter().any(|o| o == "*") {
            return Err(ConfigError::unsafe_setting(
                "CORS_ALLOW_ORIGINS",
                "must not be *",
            ));
        }
        Ok(())
    }
}
