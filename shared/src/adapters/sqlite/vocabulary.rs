//! [`VocabularyStore`] on SQLite: one row per owner, the terms as JSON, sealed bound to the
//! owner when field encryption is on.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Database, to_micros};
use crate::{
    crypto::{KeyRing, open_if_keyed, seal_if_keyed},
    domain::{OwnerId, Vocabulary},
    ports::{BoxError, StoreError, VocabularyStore},
};

pub(crate) const FIELD: &str = "vocabulary";

#[derive(Clone)]
pub struct SqliteVocabularyStore {
    db: Database,
    keys: Option<Arc<KeyRing>>,
}

impl SqliteVocabularyStore {
    pub fn new(db: Database, keys: Option<Arc<KeyRing>>) -> Self {
        Self { db, keys }
    }
}

fn classify(err: BoxError) -> StoreError {
    if err.is::<rusqlite::Error>() || err.is::<tokio::task::JoinError>() {
        StoreError::Unavailable(err)
    } else {
        StoreError::Corrupt(format!("vocabulary: {err}"))
    }
}

#[async_trait]
impl VocabularyStore for SqliteVocabularyStore {
    async fn get(&self, owner: &OwnerId) -> Result<Option<Vocabulary>, StoreError> {
        let (owner, keys) = (owner.as_str().to_owned(), self.keys.clone());
        self.db
            .call(move |conn| {
                let stored: Option<String> = conn
                    .query_row(
                        "SELECT terms FROM vocabularies WHERE owner = ?1",
                        [&owner],
                        |row| row.get(0),
                    )
                    .optional()?;
                stored
                    .map(|terms| {
                        let json = open_if_keyed(keys.as_deref(), &owner, FIELD, &terms)?;
                        Ok(serde_json::from_str(&json)?)
                    })
                    .transpose()
            })
            .await
            .map_err(classify)
    }

    async fn put(
        &self,
        owner: &OwnerId,
        vocabulary: &Vocabulary,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (owner, keys) = (owner.as_str().to_owned(), self.keys.clone());
        let json = serde_json::to_string(vocabulary).map_err(|e| classify(e.into()))?;
        let empty = vocabulary.is_empty();
        self.db
            .call(move |conn| {
                if empty {
                    conn.execute("DELETE FROM vocabularies WHERE owner = ?1", [&owner])?;
                } else {
                    conn.execute(
                        "INSERT INTO vocabularies (owner, terms, updated_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT (owner) DO UPDATE SET terms = ?2, updated_at = ?3",
                        params![
                            owner,
                            seal_if_keyed(keys.as_deref(), &owner, FIELD, &json),
                            to_micros(now)
                        ],
                    )?;
                }
                Ok(())
            })
            .await
            .map_err(classify)
    }

    async fn reseal_all(&self) -> Result<usize, StoreError> {
        let Some(keys) = self.keys.clone() else {
            return Ok(0);
        };
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let stale: Vec<(String, String)> = tx
                    .prepare("SELECT owner, terms FROM vocabularies")?
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .filter(|(_, terms): &(String, String)| {
                        KeyRing::key_id_of(terms) != Some(keys.primary_id())
                    })
                    .collect();
                for (owner, terms) in &stale {
                    let json = open_if_keyed(Some(&keys), owner, FIELD, terms)?;
                    tx.execute(
                        "UPDATE vocabularies SET terms = ?1 WHERE owner = ?2",
                        params![keys.seal(owner, FIELD, json.as_bytes()), owner],
                    )?;
                }
                tx.commit()?;
                Ok(stale.len())
            })
            .await
            .map_err(classify)
    }
}
