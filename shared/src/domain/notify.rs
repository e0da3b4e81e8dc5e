//! Notifications to an EHR-side integration, so it does not have to poll: what happened, to
//! which record, and how the message is signed. Names no transport (a signed webhook, or an
//! event bus on AWS).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::TranscriptionId;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "transcription.completed")]
    TranscriptionCompleted,
    #[serde(rename = "transcription.failed")]
    TranscriptionFailed,
    #[serde(rename = "ehr_delivery.delivered")]
    DeliveryDelivered,
    #[serde(rename = "ehr_delivery.failed")]
    DeliveryFailed,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TranscriptionCompleted => "transcription.completed",
            Self::TranscriptionFailed => "transcription.failed",
            Self::DeliveryDelivered => "ehr_delivery.delivered",
            Self::DeliveryFailed => "ehr_delivery.failed",
        }
    }
}

/// One notification: ids and status only. Its id stays the same across retries, so a
/// receiver drops a repeat it has already handled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub id: uuid::Uuid,
    pub kind: EventKind,
    pub at: DateTime<Utc>,
    pub transcription_id: TranscriptionId,
    pub delivery_id: Option<uuid::Uuid>,
}

impl Notification {
    pub fn new(kind: EventKind, transcription_id: TranscriptionId, at: DateTime<Utc>) -> Self {
        Self {
            id: uuid::Uuid::now_v7(),
            kind,
            at,
            transcription_id,
            delivery_id: None,
        }
    }

    pub fn for_delivery(mut self, delivery_id: uuid::Uuid) -> Self {
        self.delivery_id = Some(delivery_id);
        self
    }

    /// The JSON body a receiver gets. `text` only where the deployment allows PHI in
    /// notifications (`WEBHOOK_INCLUDE_TEXT`).
    pub fn body(&self, text: Option<&str>) -> serde_json::Value {
        let mut data = serde_json::json!({
            "transcription_id": self.transcription_id.to_string(),
            "status": match self.kind {
                EventKind::TranscriptionCompleted => "completed",
                EventKind::TranscriptionFailed | EventKind::DeliveryFailed => "failed",
                EventKind::DeliveryDelivered => "delivered",
            },
        });
        if let Some(delivery) = self.delivery_id {
            data["delivery_id"] = delivery.to_string().into();
        }
        if let Some(text) = text {
            data["text"] = text.into();
        }
        serde_json::json!({
            "id": self.id.to_string(),
            "type": self.kind.as_str(),
            "created_at": self.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": data,
        })
    }
}

/// The signature of a notification: `v1=` and the hex HMAC-SHA256, under the shared secret,
/// of `"{timestamp}.{body}"` (the Unix seconds sent in `MMT-Webhook-Timestamp`, a dot, the
/// exact body bytes). Signing the timestamp lets a receiver refuse old messages replayed.
pub fn webhook_signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut context = hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("v1={}", hex::encode(context.sign().as_ref()))
}

/// How long a receiver should accept a signed timestamp (documented in the README).
pub const WEBHOOK_REPLAY_WINDOW_SECS: i64 = 300;

/// A receiver's check, as the README describes it: the signature matches (in constant time)
/// and the timestamp is within [`WEBHOOK_REPLAY_WINDOW_SECS`] of `now`.
pub fn verify_webhook(
    secret: &[u8],
    timestamp: i64,
    body: &[u8],
    signature: &str,
    now: i64,
) -> bool {
    use aws_lc_rs::hmac;
    if (now - timestamp).abs() > WEBHOOK_REPLAY_WINDOW_SECS {
        return false;
    }
    let Some(given) = signature
        .strip_prefix("v1=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut message = timestamp.to_string().into_bytes();
    message.push(b'.');
    message.extend_from_slice(body);
    hmac::verify(&key, &message, &given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_binds_the_secret_the_timestamp_and_the_body() {
        let body = br#"{"id":"x"}"#;
        let signature = webhook_signature(b"secret-1", 1_700_000_000, body);
        // The same construction computed independently (Python's hmac module).
        assert_eq!(
            signature,
            "v1=622b25505c2403cd3d7ce54d0fc2a38670c47bb74763f0a218230fdda377dba1"
        );
        assert!(verify_webhook(
            b"secret-1",
            1_700_000_000,
            body,
            &signature,
            1_700_000_100
        ));
        assert!(!verify_webhook(
            b"secret-2",
            1_700_000_000,
            body,
            &signature,
            1_700_000_100
        ));
        assert!(!verify_webhook(
            b"secret-1",
            1_700_000_001,
            body,
            &signature,
            1_700_000_100
        ));
        assert!(!verify_webhook(
            b"secret-1",
            1_700_000_000,
            b"{}",
            &signature,
            1_700_000_100
        ));
        assert!(
            !verify_webhook(b"secret-1", 1_700_000_000, body, &signature, 1_700_000_400),
            "outside the replay window"
        );
    }

    #[test]
    fn the_body_names_ids_and_status_and_text_only_when_allowed() {
        let id = TranscriptionId::new();
        let n = Notification::new(EventKind::TranscriptionCompleted, id, Utc::now());
        let body = n.body(None);
        assert_eq!(body["type"], "transcription.completed");
        assert_eq!(body["data"]["transcription_id"], id.to_string());
        assert_eq!(body["data"]["status"], "completed");
        assert!(body["data"].get("text").is_none());
        assert_eq!(
            n.body(Some("Patient is well."))["data"]["text"],
            "Patient is well."
        );
    }
}
