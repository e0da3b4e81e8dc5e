//! Transcription records in the SQLite file: conditional status changes, claims, owner listing.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};

use super::{Database, from_micros, to_micros};
use crate::{
    domain::{
        AudioFormat, BlobKey, OwnerId, Status, Transcript, TranscriptionId, TranscriptionRecord,
    },
    ports::{BoxError, Claim, Cursor, Page, PageRequest, RecordStore, StoreError},
};

/// [`RecordStore`] on SQLite.
#[derive(Clone)]
pub struct SqliteRecordStore {
    db: Database,
}

impl SqliteRecordStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

const COLUMNS: &str = "id, owner, status, engine, language, prompt, file_name, audio_format, \
                       audio_key, size_bytes, created_at, updated_at, attempts, transcript, error, progress, task";

fn read_record(row: &Row<'_>) -> Result<TranscriptionRecord, BoxError> {
    let text = |i: usize| -> Result<String, BoxError> { Ok(row.get::<_, String>(i)?) };
    let transcript: Option<String> = row.get(13)?;
    Ok(TranscriptionRecord {
        id: text(0)?.parse()?,
        owner: OwnerId::parse(&text(1)?)?,
        status: text(2)?.parse::<Status>()?,
        engine: text(3)?.parse()?,
        language: row.get(4)?,
        prompt: row.get(5)?,
        file_name: row.get(6)?,
        audio_format: text(7)?.parse()?,
        audio_key: BlobKey::parse(&text(8)?)?,
        size_bytes: row.get::<_, i64>(9)?.try_into()?,
        created_at: from_micros(row.get(10)?)?,
        updated_at: from_micros(row.get(11)?)?,
        attempts: row.get(12)?,
        transcript: transcript
            .map(|json| serde_json::from_str::<Transcript>(&json))
            .transpose()?,
        error: row.get(14)?,
        progress: row.get(15)?,
        task: text(16)?.parse()?,
    })
}

/// Storage failures and unreadable rows are different problems for an operator.
fn classify(err: BoxError) -> StoreError {
    if err.is::<rusqlite::Error>()
        || err.is::<tokio::task::JoinError>()
        || err.is::<std::io::Error>()
    {
        StoreError::Unavailable(err)
    } else {
        StoreError::Corrupt(err.to_string())
    }
}

impl SqliteRecordStore {
    /// A conditional status change: only rows in `from` move, so a stale writer changes nothing.
    async fn transition(
        &self,
        id: &TranscriptionId,
        sql: &'static str,
        values: Vec<rusqlite::types::Value>,
    ) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.db
            .call(move |conn| {
                let mut all = values;
                all.push(id.into());
                Ok(conn.execute(sql, rusqlite::params_from_iter(all))? == 1)
            })
            .await
            .map_err(classify)
    }
}

#[async_trait]
impl RecordStore for SqliteRecordStore {
    async fn insert(&self, r: &TranscriptionRecord) -> Result<(), StoreError> {
        let r = r.clone();
        self.db
            .call(move |conn| {
                let transcript = r.transcript.as_ref().map(serde_json::to_string).transpose()?;
                conn.execute(
                    &format!("INSERT INTO transcriptions ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"),
                    params![
                        r.id.to_string(),
                        r.owner.as_str(),
                        r.status.as_str(),
                        r.engine.as_str(),
                        r.language,
                        r.prompt,
                        r.file_name,
                        r.audio_format.extension(),
                        r.audio_key.as_str(),
                        i64::try_from(r.size_bytes)?,
                        to_micros(r.created_at),
                        to_micros(r.updated_at),
                        r.attempts,
                        transcript,
                        r.error,
                        r.progress,
                        r.task.as_str(),
                    ],
                )?;
                Ok(())
            })
            .await
            .map_err(classify)
    }

    async fn get(&self, id: &TranscriptionId) -> Result<Option<TranscriptionRecord>, StoreError> {
        let id = id.to_string();
        self.db
            .call(move |conn| {
                let row = conn
                    .query_row(
                        &format!("SELECT {COLUMNS} FROM transcriptions WHERE id = ?1"),
                        [id],
                        |row| Ok(read_record(row)),
                    )
                    .optional()?;
                row.transpose()
            })
            .await
            .map_err(classify)
    }

    async fn list_by_owner(
        &self,
        owner: &OwnerId,
        page: &PageRequest,
    ) -> Result<Page<TranscriptionRecord>, StoreError> {
        let owner = owner.as_str().to_owned();
        let limit = page.limit.clamp(1, 100);
        let after = page.after.clone();
        self.db
            .call(move |conn| {
                // Fetch one extra row to learn whether another page follows.
                let (at, id) = match &after {
                    Some(c) => (to_micros(c.created_at), c.id.to_string()),
                    None => (i64::MAX, String::new()),
                };
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM transcriptions
                     WHERE owner = ?1 AND (created_at < ?2 OR (created_at = ?2 AND id < ?3) OR ?4)
                     ORDER BY created_at DESC, id DESC LIMIT ?5"
                ))?;
                let rows = stmt.query_map(
                    params![owner, at, id, after.is_none(), i64::from(limit) + 1],
                    |row| Ok(read_record(row)),
                )?;
                let mut items = Vec::new();
                for row in rows {
                    items.push(row??);
                }
                let next = if items.len() > limit as usize {
                    items.truncate(limit as usize);
                    items.last().map(|r| Cursor {
                        created_at: r.created_at,
                        id: r.id,
                    })
                } else {
                    None
                };
                Ok(Page { items, next })
            })
            .await
            .map_err(classify)
    }

    async fn confirm_upload(
        &self,
        id: &TranscriptionId,
        format: AudioFormat,
        size_bytes: u64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.transition(
            id,
            "UPDATE transcriptions SET status = 'queued', audio_format = ?1, size_bytes = ?2, updated_at = ?3
             WHERE id = ?4 AND status = 'awaiting_upload'",
            vec![
                format.extension().to_owned().into(),
                i64::try_from(size_bytes).unwrap_or(i64::MAX).into(),
                to_micros(now).into(),
            ],
        )
        .await
    }

    async fn claim(&self, id: &TranscriptionId, claim: &Claim) -> Result<bool, StoreError> {
        self.transition(
            id,
            "UPDATE transcriptions SET status = 'processing', attempts = attempts + 1, updated_at = ?1,
                    claimed_by = ?2
             WHERE id = ?4 AND (status = 'queued'
                   OR (status = 'processing' AND (claimed_by IS ?2 OR updated_at < ?3)))",
            vec![
                to_micros(claim.now).into(),
                claim.by.clone().into(),
                to_micros(claim.stale_before).into(),
            ],
        )
        .await
    }

    async fn complete(
        &self,
        id: &TranscriptionId,
        transcript: &Transcript,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let json =
            serde_json::to_string(transcript).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.transition(
            id,
            "UPDATE transcriptions SET status = 'completed', transcript = ?1, error = NULL, progress = 100,
                    language = COALESCE(language, ?2), updated_at = ?3
             WHERE id = ?4 AND status IN ('queued', 'processing')",
            vec![
                json.into(),
                transcript.language.clone().into(),
                to_micros(now).into(),
            ],
        )
        .await
    }

    async fn fail(
        &self,
        id: &TranscriptionId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.transition(
            id,
            "UPDATE transcriptions SET status = 'failed', error = ?1, updated_at = ?2
             WHERE id = ?3 AND status IN ('awaiting_upload', 'queued', 'processing')",
            vec![reason.to_owned().into(), to_micros(now).into()],
        )
        .await
    }

    async fn set_progress(
        &self,
        id: &TranscriptionId,
        percent: u8,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.transition(
            id,
            "UPDATE transcriptions SET progress = ?1, updated_at = ?2 WHERE id = ?3 AND status = 'processing'",
            vec![i64::from(percent.min(100)).into(), to_micros(now).into()],
        )
        .await
        .map(|_| ())
    }

    async fn fail_stale(
        &self,
        stale_before: DateTime<Utc>,
        reason: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<TranscriptionId>, StoreError> {
        let reason = reason.to_owned();
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "UPDATE transcriptions SET status = 'failed', error = ?1, updated_at = ?2
                     WHERE id IN (SELECT id FROM transcriptions
                                  WHERE status = 'processing' AND updated_at < ?3
                                  ORDER BY updated_at LIMIT ?4)
                     RETURNING id",
                )?;
                let rows = stmt.query_map(
                    params![reason, to_micros(now), to_micros(stale_before), limit],
                    |row| row.get::<_, String>(0),
                )?;
                let mut out = Vec::new();
                for row in rows {
                    out.push(row?.parse()?);
                }
                Ok(out)
            })
            .await
            .map_err(classify)
    }

    async fn delete(&self, id: &TranscriptionId) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.db
            .call(move |conn| {
                Ok(conn.execute("DELETE FROM transcriptions WHERE id = ?1", [id])? == 1)
            })
            .await
            .map_err(classify)
    }

    async fn created_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(TranscriptionId, BlobKey)>, StoreError> {
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, audio_key FROM transcriptions WHERE created_at < ?1 ORDER BY created_at LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![to_micros(cutoff), limit], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                })?;
                let mut out = Vec::new();
                for row in rows {
                    let (id, key) = row?;
                    out.push((id.parse()?, BlobKey::parse(&key)?));
                }
                Ok(out)
            })
            .await
            .map_err(classify)
    }

    async fn scan(
        &self,
        after: Option<&TranscriptionId>,
        limit: u32,
    ) -> Result<Vec<TranscriptionRecord>, StoreError> {
        let after = after.map(|id| id.to_string()).unwrap_or_default();
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM transcriptions WHERE id > ?1 ORDER BY id LIMIT ?2"
                ))?;
                let rows = stmt.query_map(params![after, limit], |row| Ok(read_record(row)))?;
                let mut out = Vec::new();
                for row in rows {
                    out.push(row??);
                }
                Ok(out)
            })
            .await
            .map_err(classify)
    }

    async fn rewrite_phi(&self, r: &TranscriptionRecord) -> Result<bool, StoreError> {
        let transcript = r
            .transcript
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.transition(
            &r.id,
            "UPDATE transcriptions SET prompt = ?1, file_name = ?2, transcript = ?3
             WHERE updated_at = ?4 AND id = ?5",
            vec![
                r.prompt.clone().into(),
                r.file_name.clone().into(),
                transcript.into(),
                to_micros(r.updated_at).into(),
            ],
        )
        .await
    }

    async fn revise(
        &self,
        r: &TranscriptionRecord,
        read_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let transcript = r
            .transcript
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.transition(
            &r.id,
            "UPDATE transcriptions SET transcript = ?1, updated_at = ?2
             WHERE status = 'completed' AND updated_at = ?3 AND id = ?4",
            vec![
                transcript.into(),
                to_micros(r.updated_at).into(),
                to_micros(read_at).into(),
            ],
        )
        .await
    }

    async fn purge_residue(&self) -> Result<(), StoreError> {
        // With secure_delete on, the database file holds no old values; the write-ahead log
        // still has the old page images until it is checkpointed and truncated.
        self.db
            .call(|conn| {
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
                Ok(())
            })
            .await
            .map_err(classify)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db
            .call(|conn| {
                Ok(conn.query_row(
                    "SELECT count(*) FROM transcriptions LIMIT 1",
                    [],
                    |_| Ok(()),
                )?)
            })
            .await
            .map_err(classify)
    }
}
