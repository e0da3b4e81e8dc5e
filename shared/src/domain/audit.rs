//! The audit trail: who did what to which record, when, and how it ended. Never the content:
//! no transcript, prompt, file name or token ever enters an event. Events are append-only and
//! kept apart from the PHI (their own SQLite file or DynamoDB table), so deleting records, by
//! request or by the retention sweep, leaves the trail of what happened to them.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
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
}

impl AuditAction {
    pub const ALL: [AuditAction; 11] = [
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
        }
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
