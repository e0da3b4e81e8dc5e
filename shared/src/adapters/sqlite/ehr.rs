//! [`EhrConnectionStore`] on SQLite. The refresh token is sealed with the field-encryption
//! key ring when one is configured: it is a credential to the whole EHR.

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Database, to_micros};
use crate::{
    crypto::KeyRing,
    ports::{BoxError, ConnectionState, EhrConnectionStore, StoreError},
};

const FIELD: &str = "refresh_token";

#[derive(Clone)]
pub struct SqliteEhrConnectionStore {
    db: Database,
    keys: Option<Arc<KeyRing>>,
}

impl SqliteEhrConnectionStore {
    pub fn new(db: Database, keys: Option<Arc<KeyRing>>) -> Self {
        Self { db, keys }
    }
}

fn open(keys: &Option<Arc<KeyRing>>, name: &str, stored: &str) -> Result<String, BoxError> {
    match keys {
        Some(keys) => Ok(String::from_utf8(keys.open(name, FIELD, stored)?)?),
        None => Ok(stored.to_owned()),
    }
}

fn seal(keys: &Option<Arc<KeyRing>>, name: &str, token: &str) -> String {
    match keys {
        Some(keys) => keys.seal(name, FIELD, token.as_bytes()),
        None => token.to_owned(),
    }
}

fn unavailable(err: BoxError) -> StoreError {
    match err.downcast::<crate::crypto::CryptoError>() {
        Ok(crypto) => StoreError::Corrupt(format!("EHR refresh token: {crypto}")),
        Err(other) => StoreError::Unavailable(other),
    }
}

#[async_trait]
impl EhrConnectionStore for SqliteEhrConnectionStore {
    async fn load(
        &self,
        connection: &str,
    ) -> Result<Option<(String, ConnectionState)>, StoreError> {
        let (name, keys) = (connection.to_owned(), self.keys.clone());
        self.db
            .call(move |conn| {
                let row: Option<(String, String)> = conn
                    .query_row(
                        "SELECT refresh_token, state FROM ehr_connections WHERE name = ?1",
                        [&name],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .optional()?;
                row.map(|(token, state)| {
                    Ok((open(&keys, &name, &token)?, serde_json::from_str(&state)?))
                })
                .transpose()
            })
            .await
            .map_err(unavailable)
    }

    async fn rotate(
        &self,
        connection: &str,
        expected: Option<&str>,
        new: &str,
    ) -> Result<bool, StoreError> {
        let (name, keys) = (connection.to_owned(), self.keys.clone());
        let (expected, new) = (expected.map(str::to_owned), new.to_owned());
        self.db
            .call(move |conn| {
                // One writer at a time across processes: read, compare and write together.
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let stored: Option<String> = tx
                    .query_row(
                        "SELECT refresh_token FROM ehr_connections WHERE name = ?1",
                        [&name],
                        |row| row.get(0),
                    )
                    .optional()?;
                let current = stored
                    .map(|token| open(&keys, &name, &token))
                    .transpose()?;
                if current != expected {
                    return Ok(false);
                }
                let state = serde_json::to_string(&ConnectionState::Connected)?;
                tx.execute(
                    "INSERT INTO ehr_connections (name, refresh_token, state, updated_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (name) DO UPDATE SET refresh_token = ?2, state = ?3, updated_at = ?4",
                    params![name, seal(&keys, &name, &new), state, to_micros(chrono::Utc::now())],
                )?;
                tx.commit()?;
                Ok(true)
            })
            .await
            .map_err(unavailable)
    }

    async fn set_state(&self, connection: &str, state: &ConnectionState) -> Result<(), StoreError> {
        let name = connection.to_owned();
        let state = serde_json::to_string(state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.db
            .call(move |conn| {
                conn.execute(
                    "UPDATE ehr_connections SET state = ?2, updated_at = ?3 WHERE name = ?1",
                    params![name, state, to_micros(chrono::Utc::now())],
                )?;
                Ok(())
            })
            .await
            .map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use base64::{Engine as _, engine::general_purpose::STANDARD};

    use super::*;

    #[tokio::test]
    async fn rotation_is_compare_and_swap_and_the_token_is_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mmt.db");
        let keys =
            Arc::new(KeyRing::parse(&format!("k1:{}", STANDARD.encode([3u8; 32])), "k1").unwrap());
        let store = SqliteEhrConnectionStore::new(Database::open(&path).unwrap(), Some(keys));
        assert_eq!(store.load("openemr").await.unwrap(), None);
        assert!(store.rotate("openemr", None, "r-first").await.unwrap());
        assert!(!store.rotate("openemr", None, "r-other").await.unwrap());
        assert!(
            !store
                .rotate("openemr", Some("stale"), "r-other")
                .await
                .unwrap()
        );
        assert!(
            store
                .rotate("openemr", Some("r-first"), "r-second")
                .await
                .unwrap()
        );
        let needs = ConnectionState::NeedsLogin {
            reason: "invalid_grant".into(),
        };
        store.set_state("openemr", &needs).await.unwrap();
        assert_eq!(
            store.load("openemr").await.unwrap(),
            Some(("r-second".to_owned(), needs))
        );
        // A new login (rotation from the stored token) reconnects.
        assert!(
            store
                .rotate("openemr", Some("r-second"), "r-third")
                .await
                .unwrap()
        );
        assert_eq!(
            store.load("openemr").await.unwrap().unwrap().1,
            ConnectionState::Connected
        );
        let raw = std::fs::read(&path).unwrap_or_default();
        let wal = std::fs::read(dir.path().join("mmt.db-wal")).unwrap_or_default();
        let all = [raw, wal].concat();
        assert!(!all.windows(7).any(|w| w == b"r-third"), "sealed at rest");
    }
}
