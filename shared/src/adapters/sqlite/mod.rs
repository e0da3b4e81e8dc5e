//! Embedded storage: one SQLite file holds the records and the durable job queue.

mod access;
mod audit;
mod ehr;
mod queue;
mod records;
mod vocabulary;

pub use access::SqliteAccessLedger;
pub use audit::SqliteAuditLog;
pub use ehr::{SqliteDeliveryStore, SqliteEhrConnectionStore};
pub use queue::SqliteJobQueue;
pub use records::SqliteRecordStore;
pub use vocabulary::SqliteVocabularyStore;

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use rusqlite::Connection;

use crate::ports::BoxError;

/// Schema steps, applied in order and recorded in `PRAGMA user_version`.
const MIGRATIONS: &[&str] = &[
    // 1: records, the queue and its dead letters.
    r#"
    CREATE TABLE transcriptions (
        id           TEXT PRIMARY KEY,
        owner        TEXT NOT NULL,
        status       TEXT NOT NULL,
        engine       TEXT NOT NULL,
        language     TEXT,
        prompt       TEXT,
        file_name    TEXT,
        audio_format TEXT NOT NULL,
        audio_key    TEXT NOT NULL,
        size_bytes   INTEGER NOT NULL,
        created_at   INTEGER NOT NULL,
        updated_at   INTEGER NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        transcript   TEXT,
        error        TEXT
    );
    CREATE INDEX transcriptions_by_owner ON transcriptions (owner, created_at DESC, id DESC);
    CREATE INDEX transcriptions_by_age ON transcriptions (created_at);

    CREATE TABLE jobs (
        id             TEXT PRIMARY KEY,
        queue          TEXT NOT NULL,
        body           TEXT NOT NULL,
        correlation_id TEXT,
        dedupe_key     TEXT,
        enqueued_at    INTEGER NOT NULL,
        visible_at     INTEGER NOT NULL,
        receive_count  INTEGER NOT NULL DEFAULT 0,
        lease_token    TEXT
    );
    CREATE INDEX jobs_ready ON jobs (queue, visible_at, enqueued_at);
    CREATE UNIQUE INDEX jobs_dedupe ON jobs (queue, dedupe_key) WHERE dedupe_key IS NOT NULL;

    CREATE TABLE dead_letter_jobs (
        id               TEXT PRIMARY KEY,
        queue            TEXT NOT NULL,
        body             TEXT NOT NULL,
        correlation_id   TEXT,
        receive_count    INTEGER NOT NULL,
        enqueued_at      INTEGER NOT NULL,
        dead_lettered_at INTEGER NOT NULL,
        reason           TEXT NOT NULL
    );
    "#,
    // 2: engine progress, for progress bars.
    "ALTER TABLE transcriptions ADD COLUMN progress INTEGER NOT NULL DEFAULT 0;",
    // 3: EHR connections (the rotating refresh token, sealed when field encryption is on).
    r#"
    CREATE TABLE ehr_connections (
        name          TEXT PRIMARY KEY,
        refresh_token TEXT NOT NULL,
        state         TEXT NOT NULL,
        updated_at    INTEGER NOT NULL
    );
    "#,
    // 4: the EHR outbox.
    r#"
    CREATE TABLE ehr_deliveries (
        id               TEXT PRIMARY KEY,
        transcription_id TEXT NOT NULL,
        owner            TEXT NOT NULL,
        target           TEXT NOT NULL,
        patient_ref      TEXT NOT NULL,
        encounter_ref    TEXT NOT NULL,
        section          TEXT NOT NULL,
        status           TEXT NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        receipt          TEXT,
        error            TEXT,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL
    );
    CREATE INDEX ehr_deliveries_by_transcription ON ehr_deliveries (transcription_id, created_at);
    "#,
    // 5: the W3C trace context travels with a job, as the correlation id does.
    r#"
    ALTER TABLE jobs ADD COLUMN traceparent TEXT;
    ALTER TABLE dead_letter_jobs ADD COLUMN traceparent TEXT;
    "#,
    // 6: the queue delivers at least once, as SQS does (no collapsing by key); duplicate work
    //    is refused by the record's claim, which names the message holding it.
    r#"
    DROP INDEX jobs_dedupe;
    ALTER TABLE transcriptions ADD COLUMN claimed_by TEXT;
    CREATE INDEX transcriptions_in_flight ON transcriptions (status, updated_at);
    "#,
    // 7: translation into English, next to transcription.
    "ALTER TABLE transcriptions ADD COLUMN task TEXT NOT NULL DEFAULT 'transcribe';",
    // 8: each owner's medical vocabulary (sealed when field encryption is on).
    r#"
    CREATE TABLE vocabularies (
        owner      TEXT PRIMARY KEY,
        terms      TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    "#,
];

/// A shared connection to the SQLite file. Calls run on the blocking pool, one at a time:
/// SQLite has a single writer anyway, and this keeps the adapter free of lock-retry logic.
#[derive(Clone)]
pub struct Database {
    conn: Arc<Mutex<Connection>>,
}

/// Revoked tokens, owners signed out everywhere, and the counters every process shares: their
/// own file, written on every request, so it neither contends with the records' connection
/// nor pays their fsync per commit (see [`Database::open_access`]).
const ACCESS_MIGRATIONS: &[&str] = &[r#"
    CREATE TABLE revoked_tokens (
        token_id   TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
    );
    CREATE TABLE revoked_owners (
        owner  TEXT PRIMARY KEY,
        before INTEGER NOT NULL
    );
    CREATE TABLE access_counters (
        key        TEXT PRIMARY KEY,
        count      INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX access_counters_by_expiry ON access_counters (expires_at);
"#];

/// The audit trail's own file: kept apart from the PHI, and append-only by trigger.
const AUDIT_MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE audit_events (
        seq            INTEGER PRIMARY KEY AUTOINCREMENT,
        id             TEXT NOT NULL UNIQUE,
        at             INTEGER NOT NULL,
        action         TEXT NOT NULL,
        outcome        TEXT NOT NULL,
        subject        TEXT NOT NULL,
        record_id      TEXT,
        correlation_id TEXT,
        detail         TEXT
    );
    CREATE INDEX audit_by_time ON audit_events (at);
    CREATE INDEX audit_by_record ON audit_events (record_id, at);
    CREATE INDEX audit_by_subject ON audit_events (subject, at);
    CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#,
    // 2: each event's link in its writer's hash chain (tamper evidence).
    r#"
    ALTER TABLE audit_events ADD COLUMN chain_writer TEXT;
    ALTER TABLE audit_events ADD COLUMN chain_seq INTEGER;
    ALTER TABLE audit_events ADD COLUMN chain_prev TEXT;
    ALTER TABLE audit_events ADD COLUMN chain_hash TEXT;
"#,
];

impl Database {
    /// The records and job queue database.
    pub fn open(path: &Path) -> Result<Self, BoxError> {
        Self::open_with(path, MIGRATIONS, "FULL")
    }

    /// The audit trail's database.
    pub fn open_audit(path: &Path) -> Result<Self, BoxError> {
        Self::open_with(path, AUDIT_MIGRATIONS, "FULL")
    }

    /// The access ledger's database. Written on every request (rate-limit counters), so its
    /// commits are not synced one by one (`synchronous=NORMAL`, which in WAL mode survives a
    /// crash of the process but may lose the last commits to a power loss: a few counts, or a
    /// sign-out made in the last moment before it).
    pub fn open_access(path: &Path) -> Result<Self, BoxError> {
        Self::open_with(path, ACCESS_MIGRATIONS, "NORMAL")
    }

    fn open_with(path: &Path, migrations: &[&str], synchronous: &str) -> Result<Self, BoxError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        // WAL lets readers run beside the writer; FULL makes every commit survive power loss,
        // which matters more for records and the audit trail than write throughput.
        // Switching a new file to WAL takes an exclusive lock, and SQLite answers "busy" to
        // a second opener at once rather than through the busy timeout: retry a while.
        let mut tries = 0;
        while let Err(err) = conn.pragma_update(None, "journal_mode", "WAL") {
            tries += 1;
            let busy = matches!(
                err.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            );
            if !busy || tries >= 100 {
                return Err(err.into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        conn.pragma_update(None, "synchronous", synchronous)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Deleted and rewritten values are overwritten with zeros, not left in free pages:
        // a swept record, or a field sealed again under a new key, leaves nothing behind.
        conn.pragma_update(None, "secure_delete", "ON")?;
        migrate(&mut conn, migrations)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T, BoxError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, BoxError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| "sqlite connection lock poisoned")?;
            f(&mut guard)
        })
        .await?
    }
}

fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<(), BoxError> {
    // One writer at a time, and the version read inside the lock: processes that open a new
    // file at the same moment (two servers on one volume) apply each migration once.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current: usize = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if current > migrations.len() {
        return Err(format!(
            "database schema version {current} is newer than this build understands ({})",
            migrations.len()
        )
        .into());
    }
    for (index, sql) in migrations.iter().enumerate().skip(current) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index + 1)?;
    }
    tx.commit()?;
    Ok(())
}

/// Microseconds since the epoch: the one time representation in the database.
pub(crate) fn to_micros(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_micros(micros: i64) -> Result<chrono::DateTime<chrono::Utc>, BoxError> {
    chrono::DateTime::from_timestamp_micros(micros).ok_or_else(|| "timestamp out of range".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_idempotent_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/mmt.db");
        drop(Database::open(&path).unwrap());
        let db = Database::open(&path).unwrap();
        let conn = db.conn.lock().unwrap();
        let version: usize = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len());
    }

    /// Two servers on one volume start together: each opens the new file, neither fails on
    /// a table the other just created.
    #[test]
    fn processes_opening_a_new_file_together_migrate_it_once() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..5 {
            let path = dir.path().join(format!("together-{round}.db"));
            let openers: Vec<_> = (0..4)
                .map(|_| {
                    let path = path.clone();
                    std::thread::spawn(move || {
                        Database::open(&path).map(drop).map_err(|e| e.to_string())
                    })
                })
                .collect();
            for opener in openers {
                opener.join().unwrap().unwrap();
            }
        }
    }
}
