//! The API document's schemas for the types that lower layers own (the domain, the ports, the
//! use cases). Those layers carry no derive the wire alone needs; this module describes them.
//! An enumeration's values come from the domain's own list of its values, and each described
//! struct is checked against what it serialises to, so the document cannot drift from what is
//! sent.

use std::borrow::Cow;

use serde::Serialize;
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{
        RefOr,
        schema::{ObjectBuilder, Schema, Type},
    },
};

use crate::{
    auth::IssuedToken,
    domain::{
        AuditAction, AuditEvent, AuditOutcome, ChainLink, ChainReport, DeliveryStatus, EhrReceipt,
        EngineKind, NoteSection, ResponseFormat, Segment, Status, Task, TokenScore,
    },
    ports::{ConnectionState, QueueStats},
};

/// A string enumeration, named `name`, whose values are `values`.
macro_rules! string_enum {
    ($type:ty, $name:literal, $doc:literal, $values:expr) => {
        impl PartialSchema for $type {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some($doc))
                    .enum_values(Some($values))
                    .into()
            }
        }

        impl ToSchema for $type {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

string_enum!(
    EngineKind,
    "EngineKind",
    "Which engine turns audio into text: an OpenAI-compatible API, or Whisper run by MMT.",
    EngineKind::ALL.map(EngineKind::as_str)
);
string_enum!(
    Task,
    "Task",
    "`transcribe`: text in the language spoken; `translate`: English text (multilingual models only).",
    Task::ALL.map(Task::as_str)
);
string_enum!(
    Status,
    "Status",
    "Where a transcription is in its life. `completed` and `failed` are final.",
    Status::ALL.map(Status::as_str)
);
string_enum!(
    NoteSection,
    "NoteSection",
    "Which part of a SOAP note the transcript goes into.",
    NoteSection::ALL.map(NoteSection::as_str)
);
string_enum!(
    DeliveryStatus,
    "DeliveryStatus",
    "Where an EHR delivery is. `delivered` and `failed` are final.",
    DeliveryStatus::ALL.map(DeliveryStatus::as_str)
);
string_enum!(
    AuditAction,
    "AuditAction",
    "What was done.",
    AuditAction::ALL.map(AuditAction::as_str)
);
string_enum!(
    AuditOutcome,
    "AuditOutcome",
    "How it ended: done, refused, or failed.",
    AuditOutcome::ALL.map(AuditOutcome::as_str)
);
string_enum!(
    ResponseFormat,
    "ResponseFormat",
    "A transcript download format.",
    ResponseFormat::ALL.map(ResponseFormat::extension)
);

/// Describes `$type` with the schema of `$described`, a struct of the same fields kept here.
macro_rules! described_as {
    ($type:ty, $described:ty) => {
        impl PartialSchema for $type {
            fn schema() -> RefOr<Schema> {
                <$described as PartialSchema>::schema()
            }
        }

        impl ToSchema for $type {
            fn name() -> Cow<'static, str> {
                <$described as ToSchema>::name()
            }

            fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
                <$described as ToSchema>::schemas(schemas)
            }
        }
    };
}

/// A stretch of speech, with times in seconds from the start of the audio.
#[derive(Serialize, ToSchema)]
#[schema(as = Segment)]
#[allow(dead_code)]
struct SegmentSchema {
    start: f64,
    end: f64,
    text: String,
    /// The decoded tokens with their times and log-probabilities (local engine only; absent
    /// when the engine does not report them).
    token_scores: Option<Vec<TokenScore>>,
}
described_as!(Segment, SegmentSchema);

/// One decoded token: its text, when it was spoken, and the natural log of the probability
/// the model gave it.
#[derive(Serialize, ToSchema)]
#[schema(as = TokenScore)]
#[allow(dead_code)]
struct TokenScoreSchema {
    text: String,
    start: f64,
    end: f64,
    logprob: f64,
}
described_as!(TokenScore, TokenScoreSchema);

/// What the EHR answered for a note it holds.
#[derive(Serialize, ToSchema)]
#[schema(as = EhrReceipt)]
#[allow(dead_code)]
struct EhrReceiptSchema {
    /// The EHR's id of the note (OpenEMR: the SOAP note's `sid`).
    note_id: String,
    /// The EHR's id of the form or resource holding it (OpenEMR: `fid`), when it gives one.
    form_id: Option<String>,
    /// `true` when a retry found the note an earlier attempt had written.
    found_existing: bool,
}
described_as!(EhrReceipt, EhrReceiptSchema);

/// One entry of the audit trail. Never the content: no transcript, prompt or file name.
#[derive(Serialize, ToSchema)]
#[schema(as = AuditEvent)]
#[allow(dead_code)]
struct AuditEventSchema {
    id: String,
    at: chrono::DateTime<chrono::Utc>,
    action: AuditAction,
    outcome: AuditOutcome,
    /// The subject that acted (`guest:…`, `user:…`, `admin`, `system:retention`, …).
    subject: String,
    record_id: Option<String>,
    correlation_id: Option<String>,
    /// Counts and key ids only, never content (for example "3 records deleted").
    detail: Option<String>,
    /// Its link in its writer's hash chain (absent on events written before chaining).
    chain: Option<ChainLink>,
}
described_as!(AuditEvent, AuditEventSchema);

/// One link of a writer's hash chain: `hash` is SHA-256 over the event's fields, `writer`,
/// `seq` and `prev` (the writer's previous hash), so a change, removal or insertion shows.
#[derive(Serialize, ToSchema)]
#[schema(as = ChainLink)]
#[allow(dead_code)]
struct ChainLinkSchema {
    writer: String,
    seq: u64,
    prev: String,
    hash: String,
}
described_as!(ChainLink, ChainLinkSchema);

/// What checking the trail's hash chains over a window found.
#[derive(Serialize, ToSchema)]
#[schema(as = ChainReport)]
#[allow(dead_code)]
struct ChainReportSchema {
    events: usize,
    /// Events written before chaining began (nothing to check).
    unchained: usize,
    writers: usize,
    /// Each break, in words; empty when the trail is intact.
    problems: Vec<String>,
}
described_as!(ChainReport, ChainReportSchema);

/// The state of the long-lived login to an EHR.
#[derive(Serialize, ToSchema)]
#[schema(as = ConnectionState)]
#[serde(rename_all = "snake_case", tag = "state")]
#[allow(dead_code)]
enum ConnectionStateSchema {
    Connected,
    /// The refresh token was refused: an administrator must sign in again.
    NeedsLogin {
        reason: String,
    },
}
described_as!(ConnectionState, ConnectionStateSchema);

/// Messages in a queue, by state.
#[derive(Serialize, ToSchema)]
#[schema(as = QueueStats)]
#[allow(dead_code)]
struct QueueStatsSchema {
    visible: u64,
    in_flight: u64,
    dead_lettered: u64,
    oldest_age_s: Option<f64>,
}
described_as!(QueueStats, QueueStatsSchema);

/// An access token, as sign-in answers it.
#[derive(Serialize, ToSchema)]
#[schema(as = IssuedToken)]
#[allow(dead_code)]
struct IssuedTokenSchema {
    access_token: String,
    token_type: String,
    expires_in: u64,
    scope: String,
    /// The subject the token speaks for (`guest:<uuid>` or `user:<name>`).
    subject: String,
}
described_as!(IssuedToken, IssuedTokenSchema);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TranscriptionId;

    /// The property names a schema lists.
    fn properties<T: ToSchema>() -> Vec<String> {
        let json = serde_json::to_value(T::schema()).unwrap();
        let mut names: Vec<String> = json["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The field names a value serialises with.
    fn fields(value: impl Serialize) -> Vec<String> {
        let json = serde_json::to_value(value).unwrap();
        let mut names: Vec<String> = json.as_object().unwrap().keys().cloned().collect();
        names.sort();
        names
    }

    #[test]
    fn each_described_struct_lists_the_fields_it_is_sent_with() {
        let mut segment = Segment::new(0.0, 1.0, "hello");
        segment.token_scores.push(TokenScore {
            text: " hello".into(),
            start: 0.0,
            end: 1.0,
            logprob: -0.1,
        });
        assert_eq!(properties::<Segment>(), fields(&segment));
        assert_eq!(properties::<TokenScore>(), fields(&segment.token_scores[0]));
        let receipt = EhrReceipt {
            note_id: "17".into(),
            form_id: None,
            found_existing: false,
        };
        assert_eq!(properties::<EhrReceipt>(), fields(&receipt));
        let event = AuditEvent::now(AuditAction::Read, AuditOutcome::Success, "admin")
            .on(TranscriptionId::new());
        assert_eq!(properties::<AuditEvent>(), fields(&event));
        assert_eq!(properties::<QueueStats>(), fields(QueueStats::default()));
        let token = IssuedToken {
            access_token: "t".into(),
            token_type: "Bearer",
            expires_in: 60,
            scope: "read".into(),
            subject: "guest:x".into(),
        };
        assert_eq!(properties::<IssuedToken>(), fields(&token));
    }

    #[test]
    fn enumerations_list_the_values_that_are_sent() {
        let values = |schema: RefOr<Schema>| serde_json::to_value(schema).unwrap()["enum"].clone();
        for status in Status::ALL {
            let sent = serde_json::to_value(status).unwrap();
            assert!(
                values(Status::schema()).as_array().unwrap().contains(&sent),
                "{sent}"
            );
        }
        for engine in EngineKind::ALL {
            let sent = serde_json::to_value(engine).unwrap();
            assert!(
                values(EngineKind::schema())
                    .as_array()
                    .unwrap()
                    .contains(&sent)
            );
        }
        for task in Task::ALL {
            let sent = serde_json::to_value(task).unwrap();
            assert!(values(Task::schema()).as_array().unwrap().contains(&sent));
        }
        for section in NoteSection::ALL {
            let sent = serde_json::to_value(section).unwrap();
            assert!(
                values(NoteSection::schema())
                    .as_array()
                    .unwrap()
                    .contains(&sent)
            );
        }
        for status in DeliveryStatus::ALL {
            let sent = serde_json::to_value(status).unwrap();
            assert!(
                values(DeliveryStatus::schema())
                    .as_array()
                    .unwrap()
                    .contains(&sent)
            );
        }
        for action in AuditAction::ALL {
            let sent = serde_json::to_value(action).unwrap();
            assert!(
                values(AuditAction::schema())
                    .as_array()
                    .unwrap()
                    .contains(&sent)
            );
        }
        for outcome in AuditOutcome::ALL {
            let sent = serde_json::to_value(outcome).unwrap();
            assert!(
                values(AuditOutcome::schema())
                    .as_array()
                    .unwrap()
                    .contains(&sent)
            );
        }
    }
}
