//! [`VocabularyStore`] on the records table (`DYNAMODB_TABLE`), beside the records.
//!
//! Key design: `pk` (S) = `V#<owner>`; `terms` (S) the terms as JSON, sealed bound to the owner
//! when field encryption is on; `updated_at` (N, micros). The item has no `owner` or
//! `created_sort`, so the owner index never lists it, and no `expires_at`: a vocabulary is a
//! setting, not a recording. Record scans read `T#` items only.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::{Client, types::AttributeValue};
use chrono::{DateTime, Utc};

use super::dynamodb_items::{Item, n, optional_text, s, unavailable};
use crate::{
    crypto::{KeyRing, open_if_keyed, seal_if_keyed},
    domain::{OwnerId, Vocabulary},
    ports::{StoreError, VocabularyStore},
};

const FIELD: &str = "vocabulary";
const PREFIX: &str = "V#";

#[derive(Clone)]
pub struct DynamoVocabularyStore {
    client: Client,
    table: String,
    keys: Option<Arc<KeyRing>>,
}

impl DynamoVocabularyStore {
    pub fn new(client: Client, table: impl Into<String>, keys: Option<Arc<KeyRing>>) -> Self {
        Self {
            client,
            table: table.into(),
            keys,
        }
    }
}

fn pk(owner: &str) -> AttributeValue {
    s(format!("{PREFIX}{owner}"))
}

fn corrupt(err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("vocabulary: {err}"))
}

#[async_trait]
impl VocabularyStore for DynamoVocabularyStore {
    async fn get(&self, owner: &OwnerId) -> Result<Option<Vocabulary>, StoreError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", pk(owner.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(terms) = item.item().and_then(|i| optional_text(i, "terms")) else {
            return Ok(None);
        };
        let json =
            open_if_keyed(self.keys.as_deref(), owner.as_str(), FIELD, &terms).map_err(corrupt)?;
        serde_json::from_str(&json).map(Some).map_err(corrupt)
    }

    async fn put(
        &self,
        owner: &OwnerId,
        vocabulary: &Vocabulary,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if vocabulary.is_empty() {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", pk(owner.as_str()))
                .send()
                .await
                .map_err(unavailable)?;
            return Ok(());
        }
        let json = serde_json::to_string(vocabulary).map_err(corrupt)?;
        let mut item = Item::new();
        item.insert("pk".into(), pk(owner.as_str()));
        item.insert(
            "terms".into(),
            s(seal_if_keyed(
                self.keys.as_deref(),
                owner.as_str(),
                FIELD,
                &json,
            )),
        );
        item.insert("updated_at".into(), n(now.timestamp_micros()));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn reseal_all(&self) -> Result<usize, StoreError> {
        let Some(keys) = self.keys.as_deref() else {
            return Ok(0);
        };
        let mut resealed = 0;
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(pk, :vocabulary)")
                .expression_attribute_values(":vocabulary", s(PREFIX))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            for item in page.items() {
                let (Some(key), Some(terms)) =
                    (optional_text(item, "pk"), optional_text(item, "terms"))
                else {
                    continue;
                };
                if KeyRing::key_id_of(&terms) == Some(keys.primary_id()) {
                    continue;
                }
                let owner = key.trim_start_matches(PREFIX);
                let json = open_if_keyed(Some(keys), owner, FIELD, &terms).map_err(corrupt)?;
                // Only if unchanged since read: a save meanwhile sealed it under the primary.
                let written = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", s(key.clone()))
                    .update_expression("SET terms = :sealed")
                    .condition_expression("terms = :read")
                    .expression_attribute_values(
                        ":sealed",
                        s(keys.seal(owner, FIELD, json.as_bytes())),
                    )
                    .expression_attribute_values(":read", s(terms))
                    .send()
                    .await;
                match written {
                    Ok(_) => resealed += 1,
                    Err(err)
                        if err
                            .as_service_error()
                            .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                    Err(err) => return Err(unavailable(err)),
                }
            }
            match page.last_evaluated_key() {
                Some(key) => start = Some(key.clone()),
                None => return Ok(resealed),
            }
        }
    }
}
