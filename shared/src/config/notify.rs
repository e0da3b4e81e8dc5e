//! Notifications to an EHR-side integration: a signed webhook (`WEBHOOK_URL`), or events on
//! an Amazon EventBridge bus (`EVENT_BUS_NAME`).

use secrecy::{ExposeSecret, SecretString};

use super::{
    ConfigError,
    source::{Source, require_http_url},
};

/// The shortest shared secret a webhook is signed with.
pub const MIN_WEBHOOK_SECRET_BYTES: usize = 32;

/// Where notifications go.
#[derive(Debug, Clone)]
pub enum NotifyConfig {
    Webhook(WebhookConfig),
    /// `EVENT_BUS_NAME`: `PutEvents` on this bus.
    EventBridge {
        bus: String,
    },
}

impl NotifyConfig {
    /// `None` when neither is set; both at once is refused (one place to listen).
    pub(super) fn parse(src: &Source<'_>) -> Result<Option<Self>, ConfigError> {
        let webhook = WebhookConfig::parse(src)?;
        match (webhook, src.raw("EVENT_BUS_NAME")) {
            (Some(_), Some(_)) => Err(ConfigError::Invalid {
                key: "EVENT_BUS_NAME",
                reason: "set WEBHOOK_URL or EVENT_BUS_NAME, not both".into(),
            }),
            (Some(webhook), None) => Ok(Some(Self::Webhook(webhook))),
            (None, Some(bus)) => Ok(Some(Self::EventBridge { bus })),
            (None, None) => Ok(None),
        }
    }

    /// Whether a notification may carry the transcript (`WEBHOOK_INCLUDE_TEXT`; never on a
    /// bus, whose rules may forward events anywhere).
    pub fn include_text(&self) -> bool {
        matches!(self, Self::Webhook(w) if w.include_text)
    }

    pub(super) fn check_for_production(&self) -> Result<(), ConfigError> {
        match self {
            Self::Webhook(webhook) => webhook.check_for_production(),
            Self::EventBridge { .. } => Ok(()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Where notifications are POSTed.
    pub url: String,
    /// The HMAC-SHA256 key the receiver verifies with (`WEBHOOK_SECRET`).
    pub secret: SecretString,
    /// `WEBHOOK_INCLUDE_TEXT`: put the transcript in `transcription.completed` (off: ids and
    /// status only, no PHI leaves through notifications).
    pub include_text: bool,
}

impl WebhookConfig {
    /// `None` without `WEBHOOK_URL`.
    fn parse(src: &Source<'_>) -> Result<Option<Self>, ConfigError> {
        let Some(url) = src.raw("WEBHOOK_URL") else {
            return Ok(None);
        };
        require_http_url("WEBHOOK_URL", &url)?;
        let secret = src.secret("WEBHOOK_SECRET").ok_or(ConfigError::Missing {
            key: "WEBHOOK_SECRET",
            reason: "WEBHOOK_URL is set: notifications are signed".into(),
        })?;
        if secret.expose_secret().len() < MIN_WEBHOOK_SECRET_BYTES {
            return Err(ConfigError::Invalid {
                key: "WEBHOOK_SECRET",
                reason: format!("must be at least {MIN_WEBHOOK_SECRET_BYTES} bytes"),
            });
        }
        Ok(Some(Self {
            url,
            secret,
            include_text: src.flag("WEBHOOK_INCLUDE_TEXT", false)?,
        }))
    }

    /// Production sends notifications over TLS only.
    fn check_for_production(&self) -> Result<(), ConfigError> {
        if !self.url.starts_with("https://") {
            return Err(ConfigError::unsafe_setting(
                "WEBHOOK_URL",
                "must be https:// in production",
            ));
        }
        Ok(())
    }
}
