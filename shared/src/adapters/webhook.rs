//! [`Notifier`] as a signed webhook: `POST` the JSON body to `WEBHOOK_URL` with
//! `MMT-Webhook-Id` (the notification's id, the same on every retry), `MMT-Webhook-Timestamp`
//! (Unix seconds) and `MMT-Webhook-Signature` (`v1=` hex HMAC-SHA256 of `"{timestamp}.{body}"`
//! under `WEBHOOK_SECRET`). Any 2xx is accepted; 429, 5xx and network faults are retried by
//! the job queue with its backoff; another 4xx fails the notification.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{StatusCode, header};
use secrecy::ExposeSecret;

use crate::{
    config::WebhookConfig,
    domain::webhook_signature,
    ports::{Notifier, NotifyError},
};

pub const ID_HEADER: &str = "mmt-webhook-id";
pub const TIMESTAMP_HEADER: &str = "mmt-webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "mmt-webhook-signature";

pub struct WebhookNotifier {
    http: reqwest::Client,
    config: WebhookConfig,
}

impl WebhookNotifier {
    pub fn new(config: WebhookConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            // A receiver's redirect is not followed: the signature was made for its URL.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { http, config })
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    async fn send(&self, id: &str, body: &[u8]) -> Result<(), NotifyError> {
        let timestamp = chrono::Utc::now().timestamp();
        let signature = webhook_signature(
            self.config.secret.expose_secret().as_bytes(),
            timestamp,
            body,
        );
        let span = tracing::info_span!("webhook", notification_id = id);
        let response = tracing::Instrument::instrument(
            self.http
                .post(&self.config.url)
                .header(header::CONTENT_TYPE, "application/json")
                .header(ID_HEADER, id)
                .header(TIMESTAMP_HEADER, timestamp.to_string())
                .header(SIGNATURE_HEADER, signature)
                .body(body.to_vec())
                .send(),
            span,
        )
        .await
        .map_err(|e| NotifyError::Transient {
            reason: if e.is_timeout() {
                "the webhook receiver did not answer in time".into()
            } else {
                "could not reach the webhook receiver".into()
            },
            retry_after: None,
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(NotifyError::Transient {
                reason: format!("the webhook receiver answered {}", status.as_u16()),
                retry_after: response
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok())
                    .map(Duration::from_secs),
            });
        }
        Err(NotifyError::Permanent(format!(
            "the webhook receiver refused the notification ({})",
            status.as_u16()
        )))
    }
}
