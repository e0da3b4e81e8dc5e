//! [`AccessLedger`] on SQLite: the file every process of a deployment opens, so a revoked
//! token or a counted request is seen by all of them. Expired rows are dropped as new ones
//! are written. (Its contract test, shared with DynamoDB, is in `tests/api/record_contract.rs`.)

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Database, from_micros, to_micros};
use crate::{
    domain::OwnerId,
    ports::{AccessLedger, Counted, StoreError},
};

#[derive(Clone)]
pub struct SqliteAccessLedger {
    db: Database,
}

impl SqliteAccessLedger {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn unavailable(err: crate::ports::BoxError) -> StoreError {
    StoreError::Unavailable(err)
}

#[async_trait]
impl AccessLedger for SqliteAccessLedger {
    async fn revoke_token(&self, token_id: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        let (token_id, until) = (token_id.to_owned(), to_micros(until));
        let now = to_micros(Utc::now());
        self.db
            .call(move |conn| {
                conn.execute("DELETE FROM revoked_tokens WHERE expires_at < ?1", [now])?;
                conn.execute(
                    "INSERT INTO revoked_tokens (token_id, expires_at) VALUES (?1, ?2)
                     ON CONFLICT(token_id) DO UPDATE SET expires_at = max(expires_at, ?2)",
                    params![token_id, until],
                )?;
                Ok(())
            })
            .await
            .map_err(unavailable)
    }

    async fn revoke_owner(&self, owner: &OwnerId, before: DateTime<Utc>) -> Result<(), StoreError> {
        let (owner, before) = (owner.as_str().to_owned(), to_micros(before));
        self.db
            .call(move |conn| {
                conn.execute(
                    "INSERT INTO revoked_owners (owner, before) VALUES (?1, ?2)
                     ON CONFLICT(owner) DO UPDATE SET before = max(before, ?2)",
                    params![owner, before],
                )?;
                Ok(())
            })
            .await
            .map_err(unavailable)
    }

    async fn is_revoked(
        &self,
        token_id: &str,
        owner: &OwnerId,
        issued_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (token_id, owner) = (token_id.to_owned(), owner.as_str().to_owned());
        let issued_at = to_micros(issued_at);
        self.db
            .call(move |conn| {
                let token: Option<i64> = conn
                    .query_row(
                        "SELECT 1 FROM revoked_tokens WHERE token_id = ?1",
                        [&token_id],
                        |row| row.get(0),
                    )
                    .optional()?;
                let before: Option<i64> = conn
                    .query_row(
                        "SELECT before FROM revoked_owners WHERE owner = ?1",
                        [&owner],
                        |row| row.get(0),
                    )
                    .optional()?;
                Ok(token.is_some() || before.is_some_and(|before| issued_at < before))
            })
            .await
            .map_err(unavailable)
    }

    async fn increment(
        &self,
        key: &str,
        now: DateTime<Utc>,
        window: std::time::Duration,
    ) -> Result<Counted, StoreError> {
        let key = key.to_owned();
        let now_micros = to_micros(now);
        let ends = to_micros(now + chrono::Duration::from_std(window).unwrap_or_default());
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                // A counter whose window has ended starts again at one.
                let (count, window_ends): (i64, i64) = tx.query_row(
                    "INSERT INTO access_counters (key, count, expires_at) VALUES (?1, 1, ?2)
                     ON CONFLICT(key) DO UPDATE SET
                         count = CASE WHEN expires_at <= ?3 THEN 1 ELSE count + 1 END,
                         expires_at = CASE WHEN expires_at <= ?3 THEN ?2 ELSE expires_at END
                     RETURNING count, expires_at",
                    params![key, ends, now_micros],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )?;
                // A new window: a good moment to drop the counters whose windows are over.
                if count == 1 {
                    tx.execute(
                        "DELETE FROM access_counters WHERE expires_at <= ?1",
                        [now_micros],
                    )?;
                }
                tx.commit()?;
                Ok(Counted {
                    count: u64::try_from(count).unwrap_or_default(),
                    window_ends: from_micros(window_ends)?,
                })
            })
            .await
            .map_err(unavailable)
    }

    async fn count(&self, key: &str, now: DateTime<Utc>) -> Result<Option<Counted>, StoreError> {
        let (key, now) = (key.to_owned(), to_micros(now));
        self.db
            .call(move |conn| {
                let row: Option<(i64, i64)> = conn
                    .query_row(
                        "SELECT count, expires_at FROM access_counters
                         WHERE key = ?1 AND expires_at > ?2",
                        params![key, now],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .optional()?;
                row.map(|(count, ends)| {
                    Ok(Counted {
                        count: u64::try_from(count).unwrap_or_default(),
                        window_ends: from_micros(ends)?,
                    })
                })
                .transpose()
            })
            .await
            .map_err(unavailable)
    }
}
