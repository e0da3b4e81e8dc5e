//! [`AuditLog`] in its own SQLite file, append-only by trigger.

use async_trait::async_trait;
use rusqlite::params;

use super::{Database, from_micros, to_micros};
use crate::{
    domain::{AuditAction, AuditEvent, AuditOutcome, AuditQuery, ChainLink},
    ports::{AuditError, AuditLog, BoxError},
};

#[derive(Clone)]
pub struct SqliteAuditLog {
    db: Database,
}

impl SqliteAuditLog {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn read_event(row: &rusqlite::Row<'_>) -> Result<AuditEvent, BoxError> {
    let action: String = row.get(2)?;
    let outcome: String = row.get(3)?;
    Ok(AuditEvent {
        id: row.get::<_, String>(0)?.parse()?,
        at: from_micros(row.get(1)?)?,
        action: AuditAction::parse(&action).ok_or("unknown audit action")?,
        outcome: AuditOutcome::parse(&outcome).ok_or("unknown audit outcome")?,
        subject: row.get(4)?,
        record_id: row
            .get::<_, Option<String>>(5)?
            .map(|id| id.parse())
            .transpose()?,
        correlation_id: row.get(6)?,
        detail: row.get(7)?,
        chain: match row.get::<_, Option<String>>(8)? {
            Some(writer) => Some(ChainLink {
                writer,
                seq: u64::try_from(row.get::<_, i64>(9)?)?,
                prev: row.get(10)?,
                hash: row.get(11)?,
            }),
            None => None,
        },
    })
}

#[async_trait]
impl AuditLog for SqliteAuditLog {
    async fn append(&self, e: &AuditEvent) -> Result<(), AuditError> {
        let e = e.clone();
        self.db
            .call(move |conn| {
                conn.execute(
                    "INSERT INTO audit_events (id, at, action, outcome, subject, record_id,
                         correlation_id, detail, chain_writer, chain_seq, chain_prev, chain_hash)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    params![
                        e.id.to_string(),
                        to_micros(e.at),
                        e.action.as_str(),
                        e.outcome.as_str(),
                        e.subject,
                        e.record_id.map(|id| id.to_string()),
                        e.correlation_id,
                        e.detail,
                        e.chain.as_ref().map(|c| c.writer.clone()),
                        e.chain
                            .as_ref()
                            .map(|c| i64::try_from(c.seq).unwrap_or(i64::MAX)),
                        e.chain.as_ref().map(|c| c.prev.clone()),
                        e.chain.as_ref().map(|c| c.hash.clone()),
                    ],
                )?;
                Ok(())
            })
            .await
            .map_err(AuditError::Unavailable)
    }

    async fn query(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>, AuditError> {
        let q = q.clone();
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, at, action, outcome, subject, record_id, correlation_id, detail,
                            chain_writer, chain_seq, chain_prev, chain_hash
                     FROM audit_events
                     WHERE at >= ?1 AND at < ?2
                       AND (?3 IS NULL OR subject = ?3)
                       AND (?4 IS NULL OR record_id = ?4)
                       AND (?5 IS NULL OR action = ?5)
                     ORDER BY at DESC, seq DESC LIMIT ?6",
                )?;
                let rows = stmt.query_map(
                    params![
                        to_micros(q.since),
                        to_micros(q.until),
                        q.subject,
                        q.record_id.map(|id| id.to_string()),
                        q.action.map(|a| a.as_str()),
                        q.limit,
                    ],
                    |row| Ok(read_event(row)),
                )?;
                let mut out = Vec::new();
                for row in rows {
                    out.push(row??);
                }
                Ok(out)
            })
            .await
            .map_err(AuditError::Unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_log_refuses_updates_and_deletes_even_through_raw_sql() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_audit(&dir.path().join("audit.db")).unwrap();
        let log = SqliteAuditLog::new(db.clone());
        log.append(&AuditEvent::now(
            AuditAction::Login,
            AuditOutcome::Success,
            "user:ana",
        ))
        .await
        .unwrap();
        for sql in [
            "UPDATE audit_events SET subject = 'user:mallory'",
            "DELETE FROM audit_events",
        ] {
            let err = db
                .call(move |conn| Ok(conn.execute(sql, [])?))
                .await
                .unwrap_err();
            assert!(err.to_string().contains("append-only"), "{err}");
        }
    }
}
