//! The audit trail: who did what to which record, when, and how it ended. Never the content:
//! no transcript, prompt, file name or token ever enters an event. Events are append-only and
//! kept apart from the PHI (their own SQLite file or DynamoDB table), so deleting records, by
//! request or by the retention sweep, leaves the trail of what happened to them.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::TranscriptionId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Create,
    Read,
    Download,
    Delete,
    EhrPush,
    Login,
    /// A sign-out: the token (or every token of the subject) is revoked.
    Logout,
    Sweep,
    KeyRotation,
    AuditQuery,
    /// A user saved or cleared their vocabulary (the detail counts terms, never names them).
    VocabularyChange,
    /// An owner corrected or structured a transcript (the detail names the version only).
    Edit,
    /// A search or read in the EHR's patient directory (the detail counts results only).
    EhrLookup,
    /// A clinician linked or unlinked their own EHR account.
    EhrLink,
}

impl AuditAction {
    pub const ALL: [AuditAction; 14] = [
        Self::Create,
        Self::Read,
        Self::Download,
        Self::Delete,
        Self::EhrPush,
        Self::Login,
        Self::Logout,
        Self::Sweep,
        Self::KeyRotation,
        Self::AuditQuery,
        Self::VocabularyChange,
        Self::Edit,
        Self::EhrLookup,
        Self::EhrLink,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Read => "read",
            Self::Download => "download",
            Self::Delete => "delete",
            Self::EhrPush => "ehr_push",
            Self::Login => "login",
            Self::Logout => "logout",
            Self::Sweep => "sweep",
            Self::KeyRotation => "key_rotation",
            Self::AuditQuery => "audit_query",
            Self::VocabularyChange => "vocabulary_change",
            Self::Edit => "edit",
            Self::EhrLookup => "ehr_lookup",
            Self::EhrLink => "ehr_link",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == raw)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    Success,
    /// Refused: bad credentials, missing scope, or a record the caller may not see.
    Denied,
    Failed,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Denied => "denied",
            Self::Failed => "failed",
        }
    }

    pub const ALL: [AuditOutcome; 3] = [Self::Success, Self::Denied, Self::Failed];

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == raw)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub action: AuditAction,
    pub outcome: AuditOutcome,
    /// The subject that acted (`guest:…`, `user:…`, `admin`, `system:retention`, …).
    pub subject: String,
    pub record_id: Option<TranscriptionId>,
    pub correlation_id: Option<String>,
    /// Counts and key ids only, never content (for example "3 records deleted").
    pub detail: Option<String>,
    /// Its place in its writer's hash chain; `None` for events written before chaining.
    pub chain: Option<ChainLink>,
}

/// One link of a writer's hash chain. Each process writing the trail (a server, a Lambda
/// instance) keeps its own chain — no shared head to contend for — and each event's hash
/// covers its content, its writer, its sequence number and the previous event's hash, so an
/// event changed, removed or inserted afterwards breaks the chain where it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainLink {
    /// A random id per writer, fixed for its lifetime.
    pub writer: String,
    /// 1, 2, 3, … within the writer.
    pub seq: u64,
    /// The hash of the writer's event `seq - 1` (empty for the first).
    pub prev: String,
    /// SHA-256 (hex) of this event's content and the three fields above.
    pub hash: String,
}

impl AuditEvent {
    /// An event happening now; the audit use case adds the current correlation id.
    pub fn now(action: AuditAction, outcome: AuditOutcome, subject: impl Into<String>) -> Self {
        Self {
            id: Uuid::now_v7(),
            // Microseconds: the precision every store keeps.
            at: Utc::now().trunc_subsecs(6),
            action,
            outcome,
            subject: subject.into(),
            record_id: None,
            correlation_id: None,
            detail: None,
            chain: None,
        }
    }

    /// The hash this event has as event `seq` of `writer` after `prev`: SHA-256 over a JSON
    /// array of every field in a fixed order (unambiguous, whatever the fields contain).
    pub fn chain_hash(&self, writer: &str, seq: u64, prev: &str) -> String {
        let content = serde_json::json!([
            self.id.to_string(),
            self.at.timestamp_micros(),
            self.action.as_str(),
            self.outcome.as_str(),
            self.subject,
            self.record_id.map(|id| id.to_string()),
            self.correlation_id,
            self.detail,
            writer,
            seq,
            prev,
        ]);
        hex::encode(Sha256::digest(content.to_string().as_bytes()))
    }

    /// Links this event into a chain after `prev` (the previous link of the same writer).
    pub fn link(mut self, writer: &str, previous: Option<&ChainLink>) -> Self {
        let (seq, prev) = previous.map_or((1, String::new()), |p| (p.seq + 1, p.hash.clone()));
        let hash = self.chain_hash(writer, seq, &prev);
        self.chain = Some(ChainLink {
            writer: writer.to_owned(),
            seq,
            prev,
            hash,
        });
        self
    }

    pub fn on(mut self, record: TranscriptionId) -> Self {
        self.record_id = Some(record);
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// What an admin asks of the trail: events in `[since, until)`, newest first.
#[derive(Debug, Clone)]
pub struct AuditQuery {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub subject: Option<String>,
    pub record_id: Option<TranscriptionId>,
    pub action: Option<AuditAction>,
    pub limit: u32,
}

impl AuditQuery {
    pub fn matches(&self, event: &AuditEvent) -> bool {
        event.at >= self.since
            && event.at < self.until
            && self.subject.as_ref().is_none_or(|s| *s == event.subject)
            && self.record_id.is_none_or(|r| Some(r) == event.record_id)
            && self.action.is_none_or(|a| a == event.action)
    }
}

/// What checking the hash chains of a set of events found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChainReport {
    pub events: usize,
    /// Events written before chaining began (nothing to check).
    pub unchained: usize,
    pub writers: usize,
    /// Each break, in words: an event whose content no longer matches its hash, a link that
    /// does not follow its predecessor, or events missing between two that are present.
    pub problems: Vec<String>,
}

impl ChainReport {
    pub fn intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks every chain among `events` (any order). A window of the trail starts and ends
/// mid-chain: only what lies between its first and last event of each writer is checked.
pub fn verify_chains(events: &[AuditEvent]) -> ChainReport {
    let mut report = ChainReport {
        events: events.len(),
        ..ChainReport::default()
    };
    let mut by_writer: std::collections::BTreeMap<&str, Vec<(&AuditEvent, &ChainLink)>> =
        std::collections::BTreeMap::new();
    for event in events {
        match &event.chain {
            Some(link) => by_writer
                .entry(&link.writer)
                .or_default()
                .push((event, link)),
            None => report.unchained += 1,
        }
    }
    report.writers = by_writer.len();
    for (writer, mut chain) in by_writer {
        chain.sort_by_key(|(_, link)| link.seq);
        for (event, link) in &chain {
            if event.chain_hash(writer, link.seq, &link.prev) != link.hash {
                report.problems.push(format!(
                    "event {} (writer {writer}, #{}) does not match its hash: changed after it \
                     was written",
                    event.id, link.seq
                ));
            }
        }
        for pair in chain.windows(2) {
            let ((_, before), (after_event, after)) = (pair[0], pair[1]);
            if after.seq == before.seq {
                report.problems.push(format!(
                    "writer {writer} has two events #{}: one was added",
                    after.seq
                ));
            } else if after.seq > before.seq + 1 {
                report.problems.push(format!(
                    "writer {writer}: events #{}–#{} are missing",
                    before.seq + 1,
                    after.seq - 1
                ));
            } else if after.prev != before.hash {
                report.problems.push(format!(
                    "event {} (writer {writer}, #{}) does not follow #{}",
                    after_event.id, after.seq, before.seq
                ));
            }
        }
    }
    report
}
