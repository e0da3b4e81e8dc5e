//! The EHR outbox ([`DeliveryStore`]) and connection ([`EhrConnectionStore`]) on SQLite. With
//! field encryption, the refresh token (a credential to the whole EHR) and the patient and
//! encounter ids of each delivery are sealed, bound to their row.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};

use super::{Database, from_micros, to_micros};
use crate::{
    crypto::{KeyRing, open_if_keyed, seal_if_keyed},
    domain::{EhrDelivery, EhrReceipt, OwnerId, TranscriptionId},
    ports::{BoxError, ConnectionState, DeliveryStore, EhrConnectionStore, Resealable, StoreError},
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

fn open(
    keys: &Option<Arc<KeyRing>>,
    row: &str,
    field: &str,
    stored: &str,
) -> Result<String, BoxError> {
    Ok(open_if_keyed(keys.as_deref(), row, field, stored)?)
}

fn seal(keys: &Option<Arc<KeyRing>>, row: &str, field: &str, value: &str) -> String {
    seal_if_keyed(keys.as_deref(), row, field, value)
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
                    Ok((
                        open(&keys, &name, FIELD, &token)?,
                        serde_json::from_str(&state)?,
                    ))
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
                    .map(|token| open(&keys, &name, FIELD, &token))
                    .transpose()?;
                if current != expected {
                    return Ok(false);
                }
                let state = serde_json::to_string(&ConnectionState::Connected)?;
                tx.execute(
                    "INSERT INTO ehr_connections (name, refresh_token, state, updated_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (name) DO UPDATE SET refresh_token = ?2, state = ?3, updated_at = ?4",
                    params![name, seal(&keys, &name, FIELD, &new), state, to_micros(chrono::Utc::now())],
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

    async fn forget(&self, connection: &str) -> Result<bool, StoreError> {
        let name = connection.to_owned();
        self.db
            .call(move |conn| {
                Ok(
                    conn.execute("DELETE FROM ehr_connections WHERE name = ?1", params![name])?
                        == 1,
                )
            })
            .await
            .map_err(unavailable)
    }
}

/// [`DeliveryStore`] on SQLite.
#[derive(Clone)]
pub struct SqliteDeliveryStore {
    db: Database,
    keys: Option<Arc<KeyRing>>,
}

impl SqliteDeliveryStore {
    pub fn new(db: Database, keys: Option<Arc<KeyRing>>) -> Self {
        Self { db, keys }
    }

    async fn transition(
        &self,
        sql: &'static str,
        values: Vec<rusqlite::types::Value>,
    ) -> Result<bool, StoreError> {
        self.db
            .call(move |conn| Ok(conn.execute(sql, rusqlite::params_from_iter(values))? == 1))
            .await
            .map_err(unavailable)
    }
}

const DELIVERY_COLUMNS: &str = "id, transcription_id, owner, target, patient_ref, encounter_ref, \
                                section, status, attempts, receipt, error, created_at, updated_at";

fn read_delivery(keys: &Option<Arc<KeyRing>>, row: &Row<'_>) -> Result<EhrDelivery, BoxError> {
    let id: String = row.get(0)?;
    let receipt: Option<String> = row.get(9)?;
    Ok(EhrDelivery {
        id: id.parse()?,
        transcription_id: row.get::<_, String>(1)?.parse()?,
        owner: OwnerId::parse(&row.get::<_, String>(2)?)?,
        target: row.get(3)?,
        patient_ref: open(keys, &id, "patient_ref", &row.get::<_, String>(4)?)?,
        encounter_ref: open(keys, &id, "encounter_ref", &row.get::<_, String>(5)?)?,
        section: row.get::<_, String>(6)?.parse()?,
        status: row.get::<_, String>(7)?.parse()?,
        attempts: row.get(8)?,
        receipt: receipt
            .map(|r| serde_json::from_str::<EhrReceipt>(&r))
            .transpose()?,
        error: row.get(10)?,
        created_at: from_micros(row.get(11)?)?,
        updated_at: from_micros(row.get(12)?)?,
    })
}

/// Seals `stored` again under the primary key when an older key sealed it.
fn resealed_value(
    keys: &KeyRing,
    row: &str,
    field: &str,
    stored: &str,
) -> Result<Option<String>, BoxError> {
    if KeyRing::key_id_of(stored) == Some(keys.primary_id()) {
        return Ok(None);
    }
    let plain = keys.open(row, field, stored)?;
    Ok(Some(keys.seal(row, field, &plain)))
}

#[async_trait]
impl Resealable for SqliteEhrConnectionStore {
    async fn reseal_all(&self) -> Result<usize, StoreError> {
        let Some(keys) = self.keys.clone() else {
            return Ok(0);
        };
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let rows: Vec<(String, String)> = tx
                    .prepare("SELECT name, refresh_token FROM ehr_connections")?
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                let mut resealed = 0;
                for (name, token) in rows {
                    if let Some(token) = resealed_value(&keys, &name, FIELD, &token)? {
                        tx.execute(
                            "UPDATE ehr_connections SET refresh_token = ?1 WHERE name = ?2",
                            params![token, name],
                        )?;
                        resealed += 1;
                    }
                }
                tx.commit()?;
                Ok(resealed)
            })
            .await
            .map_err(unavailable)
    }
}

#[async_trait]
impl Resealable for SqliteDeliveryStore {
    async fn reseal_all(&self) -> Result<usize, StoreError> {
        let Some(keys) = self.keys.clone() else {
            return Ok(0);
        };
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let rows: Vec<(String, String, String)> = tx
                    .prepare("SELECT id, patient_ref, encounter_ref FROM ehr_deliveries")?
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                    .collect::<Result<_, _>>()?;
                let mut resealed = 0;
                for (id, patient, encounter) in rows {
                    let patient_new = resealed_value(&keys, &id, "patient_ref", &patient)?;
                    let encounter_new = resealed_value(&keys, &id, "encounter_ref", &encounter)?;
                    if patient_new.is_none() && encounter_new.is_none() {
                        continue;
                    }
                    tx.execute(
                        "UPDATE ehr_deliveries SET patient_ref = ?1, encounter_ref = ?2 WHERE id = ?3",
                        params![
                            patient_new.unwrap_or(patient),
                            encounter_new.unwrap_or(encounter),
                            id
                        ],
                    )?;
                    resealed += 1;
                }
                tx.commit()?;
                Ok(resealed)
            })
            .await
            .map_err(unavailable)
    }
}

#[async_trait]
impl DeliveryStore for SqliteDeliveryStore {
    async fn insert(&self, d: &EhrDelivery) -> Result<(), StoreError> {
        let (d, keys) = (d.clone(), self.keys.clone());
        self.db
            .call(move |conn| {
                let id = d.id.to_string();
                conn.execute(
                    &format!("INSERT INTO ehr_deliveries ({DELIVERY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
                    params![
                        id,
                        d.transcription_id.to_string(),
                        d.owner.as_str(),
                        d.target,
                        seal(&keys, &id, "patient_ref", &d.patient_ref),
                        seal(&keys, &id, "encounter_ref", &d.encounter_ref),
                        d.section.as_str(),
                        d.status.as_str(),
                        d.attempts,
                        d.receipt.as_ref().map(serde_json::to_string).transpose()?,
                        d.error,
                        to_micros(d.created_at),
                        to_micros(d.updated_at),
                    ],
                )?;
                Ok(())
            })
            .await
            .map_err(unavailable)
    }

    async fn get(&self, id: &uuid::Uuid) -> Result<Option<EhrDelivery>, StoreError> {
        let (id, keys) = (id.to_string(), self.keys.clone());
        self.db
            .call(move |conn| {
                conn.query_row(
                    &format!("SELECT {DELIVERY_COLUMNS} FROM ehr_deliveries WHERE id = ?1"),
                    [id],
                    |row| Ok(read_delivery(&keys, row)),
                )
                .optional()?
                .transpose()
            })
            .await
            .map_err(unavailable)
    }

    async fn for_transcription(
        &self,
        transcription: &TranscriptionId,
    ) -> Result<Vec<EhrDelivery>, StoreError> {
        let (tid, keys) = (transcription.to_string(), self.keys.clone());
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {DELIVERY_COLUMNS} FROM ehr_deliveries WHERE transcription_id = ?1 ORDER BY created_at, id"
                ))?;
                let rows = stmt.query_map([tid], |row| Ok(read_delivery(&keys, row)))?;
                let mut out = Vec::new();
                for row in rows {
                    out.push(row??);
                }
                Ok(out)
            })
            .await
            .map_err(unavailable)
    }

    async fn record_attempt(
        &self,
        id: &uuid::Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.transition(
            "UPDATE ehr_deliveries SET attempts = attempts + 1, updated_at = ?1
             WHERE id = ?2 AND status = 'pending'",
            vec![to_micros(now).into(), id.to_string().into()],
        )
        .await
    }

    async fn mark_delivered(
        &self,
        id: &uuid::Uuid,
        receipt: &EhrReceipt,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let receipt =
            serde_json::to_string(receipt).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.transition(
            "UPDATE ehr_deliveries SET status = 'delivered', receipt = ?1, error = NULL, updated_at = ?2
             WHERE id = ?3 AND status = 'pending'",
            vec![receipt.into(), to_micros(now).into(), id.to_string().into()],
        )
        .await
    }

    async fn mark_failed(
        &self,
        id: &uuid::Uuid,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.transition(
            "UPDATE ehr_deliveries SET status = 'failed', error = ?1, updated_at = ?2
             WHERE id = ?3 AND status = 'pending'",
            vec![
                reason.to_owned().into(),
                to_micros(now).into(),
                id.to_string().into(),
            ],
        )
        .await
    }

    async fn delete_for_transcription(
        &self,
        transcription: &TranscriptionId,
    ) -> Result<(), StoreError> {
        let tid = transcription.to_string();
        self.db
            .call(move |conn| {
                conn.execute(
                    "DELETE FROM ehr_deliveries WHERE transcription_id = ?1",
                    [tid],
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
