//! The EHR outbox ([`DeliveryStore`]) and connection ([`EhrConnectionStore`]) on one DynamoDB
//! table of their own (`EHR_TABLE`).
//!
//! Key design:
//! * `pk` (S) = `D#<delivery id>` for a delivery, `C#<connection>` for a connection's login.
//! * GSI `by_transcription`: `transcription_id` (S) + `created_sort` (S, `<micros>#<id>`), for
//!   a transcription's deliveries oldest first.
//!
//! Status changes are conditional on `pending`; the refresh token rotates by a conditional
//! write on the sealed value that was read, so two functions refreshing at once cannot both
//! store theirs. With field encryption the patient and encounter ids and the refresh token are
//! sealed, bound to their item.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::{Client, types::AttributeValue};
use chrono::{DateTime, Utc};

use super::dynamodb_items::{Item, micros, n, number, s, text, unavailable, written};
use crate::{
    crypto::{KeyRing, open_if_keyed, seal_if_keyed},
    domain::{EhrDelivery, EhrReceipt, OwnerId, TranscriptionId},
    ports::{BoxError, ConnectionState, DeliveryStore, EhrConnectionStore, StoreError},
};

pub const TRANSCRIPTION_INDEX: &str = "by_transcription";
const TOKEN_FIELD: &str = "refresh_token";

#[derive(Clone)]
pub struct DynamoEhrStore {
    client: Client,
    table: String,
    keys: Option<Arc<KeyRing>>,
}

impl DynamoEhrStore {
    pub fn new(client: Client, table: impl Into<String>, keys: Option<Arc<KeyRing>>) -> Self {
        Self {
            client,
            table: table.into(),
            keys,
        }
    }

    fn keys(&self) -> Option<&KeyRing> {
        self.keys.as_deref()
    }

    /// An update that applies only to a pending delivery.
    async fn transition(
        &self,
        id: &uuid::Uuid,
        set: &str,
        values: Vec<(&str, AttributeValue)>,
        with_error: bool,
    ) -> Result<bool, StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", delivery_pk(id))
            .update_expression(set)
            .condition_expression("attribute_exists(pk) AND #status = :pending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s("pending"));
        if with_error {
            update = update.expression_attribute_names("#error", "error");
        }
        for (name, value) in values {
            update = update.expression_attribute_values(name, value);
        }
        written(update.send().await)
    }
}

fn delivery_pk(id: &uuid::Uuid) -> AttributeValue {
    s(format!("D#{id}"))
}

fn connection_pk(name: &str) -> AttributeValue {
    s(format!("C#{name}"))
}

impl DynamoEhrStore {
    fn item_of(&self, d: &EhrDelivery) -> Result<Item, StoreError> {
        let id = d.id.to_string();
        let mut item = Item::from([
            ("pk".to_owned(), delivery_pk(&d.id)),
            ("id".to_owned(), s(id.clone())),
            (
                "transcription_id".to_owned(),
                s(d.transcription_id.to_string()),
            ),
            (
                "created_sort".to_owned(),
                s(format!("{:020}#{id}", d.created_at.timestamp_micros())),
            ),
            ("owner".to_owned(), s(d.owner.as_str())),
            ("target".to_owned(), s(d.target.clone())),
            (
                "patient_ref".to_owned(),
                s(seal_if_keyed(
                    self.keys(),
                    &id,
                    "patient_ref",
                    &d.patient_ref,
                )),
            ),
            (
                "encounter_ref".to_owned(),
                s(seal_if_keyed(
                    self.keys(),
                    &id,
                    "encounter_ref",
                    &d.encounter_ref,
                )),
            ),
            ("section".to_owned(), s(d.section.as_str())),
            ("status".to_owned(), s(d.status.as_str())),
            ("attempts".to_owned(), n(d.attempts)),
            ("created_at".to_owned(), n(d.created_at.timestamp_micros())),
            ("updated_at".to_owned(), n(d.updated_at.timestamp_micros())),
        ]);
        if let Some(receipt) = &d.receipt {
            let json =
                serde_json::to_string(receipt).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            item.insert("receipt".into(), s(json));
        }
        if let Some(error) = &d.error {
            item.insert("error".into(), s(error.clone()));
        }
        Ok(item)
    }

    fn read_item(&self, item: &Item) -> Result<EhrDelivery, BoxError> {
        let id = text(item, "id")?;
        let optional = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        Ok(EhrDelivery {
            id: id.parse()?,
            transcription_id: text(item, "transcription_id")?.parse()?,
            owner: OwnerId::parse(&text(item, "owner")?)?,
            target: text(item, "target")?,
            patient_ref: open_if_keyed(
                self.keys(),
                &id,
                "patient_ref",
                &text(item, "patient_ref")?,
            )?,
            encounter_ref: open_if_keyed(
                self.keys(),
                &id,
                "encounter_ref",
                &text(item, "encounter_ref")?,
            )?,
            section: text(item, "section")?.parse()?,
            status: text(item, "status")?.parse()?,
            attempts: number(item, "attempts")?.try_into()?,
            receipt: optional("receipt")
                .map(|r| serde_json::from_str::<EhrReceipt>(&r))
                .transpose()?,
            error: optional("error"),
            created_at: micros(item, "created_at")?,
            updated_at: micros(item, "updated_at")?,
        })
    }
}

#[async_trait]
impl DeliveryStore for DynamoEhrStore {
    async fn insert(&self, delivery: &EhrDelivery) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.item_of(delivery)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get(&self, id: &uuid::Uuid) -> Result<Option<EhrDelivery>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", delivery_pk(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        out.item()
            .map(|item| self.read_item(item))
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    async fn for_transcription(
        &self,
        transcription: &TranscriptionId,
    ) -> Result<Vec<EhrDelivery>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(TRANSCRIPTION_INDEX)
                .key_condition_expression("transcription_id = :t")
                .expression_attribute_values(":t", s(transcription.to_string()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            for item in page.items() {
                out.push(
                    self.read_item(item)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                );
            }
            match page.last_evaluated_key() {
                Some(key) => start = Some(key.clone()),
                None => break,
            }
        }
        // The index is eventually consistent: re-read each for its current status.
        let mut current = Vec::with_capacity(out.len());
        for delivery in out {
            if let Some(fresh) = self.get(&delivery.id).await? {
                current.push(fresh);
            }
        }
        current.sort_by_key(|d| (d.created_at, d.id));
        Ok(current)
    }

    async fn record_attempt(
        &self,
        id: &uuid::Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.transition(
            id,
            "SET attempts = attempts + :one, updated_at = :now",
            vec![(":one", n(1)), (":now", n(now.timestamp_micros()))],
            false,
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
            id,
            "SET #status = :delivered, receipt = :receipt, updated_at = :now REMOVE #error",
            vec![
                (":delivered", s("delivered")),
                (":receipt", s(receipt)),
                (":now", n(now.timestamp_micros())),
            ],
            true,
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
            id,
            "SET #status = :failed, #error = :reason, updated_at = :now",
            vec![
                (":failed", s("failed")),
                (":reason", s(reason)),
                (":now", n(now.timestamp_micros())),
            ],
            true,
        )
        .await
    }

    async fn delete_for_transcription(
        &self,
        transcription: &TranscriptionId,
    ) -> Result<(), StoreError> {
        for delivery in self.for_transcription(transcription).await? {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", delivery_pk(&delivery.id))
                .send()
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }
}

#[async_trait]
impl EhrConnectionStore for DynamoEhrStore {
    async fn load(
        &self,
        connection: &str,
    ) -> Result<Option<(String, ConnectionState)>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", connection_pk(connection))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        let read = || -> Result<(String, ConnectionState), BoxError> {
            let token = open_if_keyed(
                self.keys(),
                connection,
                TOKEN_FIELD,
                &text(item, TOKEN_FIELD)?,
            )?;
            Ok((token, serde_json::from_str(&text(item, "state")?)?))
        };
        read()
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("EHR refresh token: {e}")))
    }

    async fn rotate(
        &self,
        connection: &str,
        expected: Option<&str>,
        new: &str,
    ) -> Result<bool, StoreError> {
        // The stored (sealed) value that holds `expected`: the write is conditional on it.
        let stored = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", connection_pk(connection))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?
            .item()
            .and_then(|item| item.get(TOKEN_FIELD))
            .and_then(|v| v.as_s().ok())
            .cloned();
        let current = stored
            .as_deref()
            .map(|sealed| open_if_keyed(self.keys(), connection, TOKEN_FIELD, sealed))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("EHR refresh token: {e}")))?;
        if current.as_deref() != expected {
            return Ok(false);
        }
        let state = serde_json::to_string(&ConnectionState::Connected)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", connection_pk(connection))
            .item(
                TOKEN_FIELD,
                s(seal_if_keyed(self.keys(), connection, TOKEN_FIELD, new)),
            )
            .item("state", s(state))
            .item("updated_at", n(Utc::now().timestamp_micros()));
        put = match stored {
            Some(sealed) => put
                .condition_expression("refresh_token = :seen")
                .expression_attribute_values(":seen", s(sealed)),
            None => put.condition_expression("attribute_not_exists(pk)"),
        };
        written(put.send().await)
    }

    async fn set_state(&self, connection: &str, state: &ConnectionState) -> Result<(), StoreError> {
        let state = serde_json::to_string(state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", connection_pk(connection))
            .update_expression("SET #state = :state, updated_at = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":state", s(state))
            .expression_attribute_values(":now", n(Utc::now().timestamp_micros()));
        written(update.send().await).map(|_| ())
    }

    async fn forget(&self, connection: &str) -> Result<bool, StoreError> {
        let delete = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", connection_pk(connection))
            .condition_expression("attribute_exists(pk)");
        written(delete.send().await)
    }
}

/// Key rotation: every delivery's patient and encounter ids and the connection's refresh token
/// that an older key sealed, sealed again under the primary key. Each write is conditional on
/// the value read, so a refresh racing the rotation is not overwritten (its value is already
/// sealed under the primary key).
#[async_trait]
impl crate::ports::Resealable for DynamoEhrStore {
    async fn reseal_all(&self) -> Result<usize, StoreError> {
        let Some(keys) = self.keys() else {
            return Ok(0);
        };
        let mut resealed = 0;
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            for item in page.items() {
                if self.reseal_item(keys, item).await? {
                    resealed += 1;
                }
            }
            match page.last_evaluated_key() {
                Some(key) => start = Some(key.clone()),
                None => break,
            }
        }
        Ok(resealed)
    }
}

impl DynamoEhrStore {
    /// Seals one item's sealed attributes again when an older key sealed them.
    async fn reseal_item(&self, keys: &KeyRing, item: &Item) -> Result<bool, StoreError> {
        let corrupt = |e: crate::crypto::CryptoError| StoreError::Corrupt(format!("EHR: {e}"));
        let pk = text(item, "pk").map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let (row, fields): (String, &[&str]) = match pk.split_once('#') {
            Some(("D", _)) => (
                text(item, "id").map_err(|e| StoreError::Corrupt(e.to_string()))?,
                &["patient_ref", "encounter_ref"],
            ),
            Some(("C", name)) => (name.to_owned(), &[TOKEN_FIELD]),
            _ => return Ok(false),
        };
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk.clone()));
        let mut changes = Vec::new();
        for (index, field) in fields.iter().enumerate() {
            let stored = text(item, field).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if KeyRing::key_id_of(&stored) == Some(keys.primary_id()) {
                continue;
            }
            let plain = keys.open(&row, field, &stored).map_err(corrupt)?;
            update = update
                .expression_attribute_names(format!("#f{index}"), *field)
                .expression_attribute_values(
                    format!(":new{index}"),
                    s(keys.seal(&row, field, &plain)),
                )
                .expression_attribute_values(format!(":old{index}"), s(stored));
            changes.push(index);
        }
        if changes.is_empty() {
            return Ok(false);
        }
        let set: Vec<String> = changes.iter().map(|i| format!("#f{i} = :new{i}")).collect();
        let unchanged: Vec<String> = changes.iter().map(|i| format!("#f{i} = :old{i}")).collect();
        let written = update
            .update_expression(format!("SET {}", set.join(", ")))
            .condition_expression(unchanged.join(" AND "))
            .send()
            .await;
        match written {
            Ok(_) => Ok(true),
            // Changed since it was read: whoever changed it sealed it under the primary key.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(err) => Err(unavailable(err)),
        }
    }
}
