//! Identifiers parsed at the edge: the domain never takes a raw string id.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {0}")]
pub struct InvalidId(pub &'static str);

/// A transcription's id: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TranscriptionId(Uuid);

impl TranscriptionId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for TranscriptionId {
    fn default() -> Self {
        Self::new()
    }
}

impl FromStr for TranscriptionId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| InvalidId("transcription id"))
    }
}

impl fmt::Display for TranscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// The subject that owns a record: `guest:<uuid>` or `user:<name>`, taken from a verified token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OwnerId(String);

impl OwnerId {
    pub fn parse(raw: &str) -> Result<Self, InvalidId> {
        let ok = !raw.is_empty()
            && raw.len() <= 128
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ":._-@".contains(c));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidId("subject"))
        }
    }

    pub fn new_guest() -> Self {
        Self(format!("guest:{}", Uuid::new_v4()))
    }

    pub fn for_user(username: &str) -> Result<Self, InvalidId> {
        Self::parse(&format!("user:{username}"))
    }

    pub fn is_guest(&self) -> bool {
        self.0.starts_with("guest:")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A queued job's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    pub fn new() -> Self {
        Self(Uuid::now_v7().to_string())
    }

    pub fn from_raw(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a recording's audio lives in the blob store: `audio/<uuid>`. Made from the id, never
/// from user input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobKey(String);

const AUDIO_PREFIX: &str = "audio/";
/// Beside the object: `audio/<uuid>.parts/00001`.
pub const PARTS_SUFFIX: &str = ".parts";

impl BlobKey {
    pub fn for_transcription(id: &TranscriptionId) -> Self {
        Self(format!("{AUDIO_PREFIX}{id}"))
    }

    /// Accepts only keys this crate makes: `audio/<uuid>`. Guards adapters against traversal.
    pub fn parse(raw: &str) -> Result<Self, InvalidId> {
        match raw.strip_prefix(AUDIO_PREFIX) {
            Some(rest) if rest.parse::<TranscriptionId>().is_ok() => Ok(Self(raw.to_owned())),
            _ => Err(InvalidId("blob key")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where part `number` of a resumable upload of this object waits until it is complete.
    pub fn part(&self, number: u32) -> Self {
        Self(format!("{}{PARTS_SUFFIX}/{number:05}", self.0))
    }
}

impl fmt::Display for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        let id = TranscriptionId::new();
        assert_eq!(id.to_string().parse::<TranscriptionId>().unwrap(), id);
        assert!("../etc/passwd".parse::<TranscriptionId>().is_err());
        assert!(BlobKey::parse("audio/../../etc/passwd").is_err());
        assert_eq!(
            BlobKey::parse(BlobKey::for_transcription(&id).as_str()).unwrap(),
            BlobKey::for_transcription(&id)
        );
        assert!(BlobKey::parse(&format!("uploads/{id}")).is_err());
        assert!(BlobKey::parse(&format!("other/{id}")).is_err());
    }

    #[test]
    fn owner_ids_are_restricted() {
        assert!(OwnerId::parse("guest:0d7c").is_ok());
        assert!(OwnerId::parse("").is_err());
        assert!(OwnerId::parse("user:a b").is_err());
        assert!(OwnerId::new_guest().is_guest());
        assert!(!OwnerId::for_user("alice").unwrap().is_guest());
    }

    #[test]
    fn ids_sort_by_creation_even_within_a_millisecond() {
        let ids: Vec<TranscriptionId> = (0..1000).map(|_| TranscriptionId::new()).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    }
}
