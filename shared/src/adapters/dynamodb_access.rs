//! [`AccessLedger`] on the records table (`DYNAMODB_TABLE`), beside the records, so every
//! Lambda instance and worker sees the same revocations and counters.
//!
//! Key design: `pk` (S) = `A#token#<jti>` (a revoked token), `A#owner#<owner>` with `before`
//! (N, micros: the owner's tokens issued earlier are revoked), `A#count#<key>` with `count`
//! (N, added to atomically while `window_ends` (N, micros) is ahead, else started again at
//! one by a conditional put). Each carries `expires_at` (N, epoch seconds), the table's TTL
//! attribute, so DynamoDB removes it after it stops mattering; reads check it too, as TTL
//! deletion runs late. The items have no `owner` or `created_sort`, so the owner index never
//! lists them, and record scans read `T#` items only.

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    Client,
    types::{AttributeValue, KeysAndAttributes, ReturnValue},
};
use chrono::{DateTime, Utc};

use super::dynamodb_items::{Item, micros, n, number, s, unavailable};
use crate::{
    domain::OwnerId,
    ports::{AccessLedger, Counted, StoreError},
};

/// How long an owner's "signed out everywhere" is kept: longer than any token lives.
const OWNER_REVOCATION_DAYS: i64 = 30;

#[derive(Clone)]
pub struct DynamoAccessLedger {
    client: Client,
    table: String,
}

impl DynamoAccessLedger {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn token_key(token_id: &str) -> AttributeValue {
    s(format!("A#token#{token_id}"))
}

fn owner_key(owner: &OwnerId) -> AttributeValue {
    s(format!("A#owner#{owner}"))
}

fn counter_key(key: &str) -> AttributeValue {
    s(format!("A#count#{key}"))
}

fn corrupt(err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("access ledger: {err}"))
}

/// Whether an item read is still in force at `now` (TTL deletion may not have run yet).
fn in_force(item: &Item, now: DateTime<Utc>) -> bool {
    number(item, "expires_at").is_ok_and(|at| at >= now.timestamp())
}

#[async_trait]
impl AccessLedger for DynamoAccessLedger {
    async fn revoke_token(&self, token_id: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", token_key(token_id))
            .item("expires_at", n(until.timestamp()))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn revoke_owner(&self, owner: &OwnerId, before: DateTime<Utc>) -> Result<(), StoreError> {
        let keep_until = before + chrono::Duration::days(OWNER_REVOCATION_DAYS);
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", owner_key(owner))
            // Never moves backwards: a later sign-out wins over an earlier one arriving late.
            .update_expression("SET #before = :before, expires_at = :expires")
            .condition_expression("attribute_not_exists(#before) OR #before < :before")
            .expression_attribute_names("#before", "before")
            .expression_attribute_values(":before", n(before.timestamp_micros()))
            .expression_attribute_values(":expires", n(keep_until.timestamp()))
            .send()
            .await
            .map(|_| ())
            .or_else(|err| {
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception())
                {
                    Ok(())
                } else {
                    Err(unavailable(err))
                }
            })
    }

    async fn is_revoked(
        &self,
        token_id: &str,
        owner: &OwnerId,
        issued_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let keys = KeysAndAttributes::builder()
            .keys(Item::from([("pk".to_owned(), token_key(token_id))]))
            .keys(Item::from([("pk".to_owned(), owner_key(owner))]))
            .consistent_read(true)
            .build()
            .map_err(corrupt)?;
        let answer = self
            .client
            .batch_get_item()
            .request_items(&self.table, keys)
            .send()
            .await
            .map_err(unavailable)?;
        if answer
            .unprocessed_keys()
            .is_some_and(|unprocessed| !unprocessed.is_empty())
        {
            // Throttled: not knowing is not "not revoked".
            return Err(StoreError::Unavailable(
                "the revocation list could not be read in full".into(),
            ));
        }
        let now = Utc::now();
        let items = answer
            .responses()
            .and_then(|r| r.get(&self.table))
            .cloned()
            .unwrap_or_default();
        for item in items.iter().filter(|item| in_force(item, now)) {
            let pk = item.get("pk").and_then(|v| v.as_s().ok());
            if pk.is_some_and(|pk| pk.starts_with("A#token#")) {
                return Ok(true);
            }
            let before = number(item, "before").map_err(corrupt)?;
            if issued_at.timestamp_micros() < before {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn increment(
        &self,
        key: &str,
        now: DateTime<Utc>,
        window: std::time::Duration,
    ) -> Result<Counted, StoreError> {
        // Stored in microseconds: what is returned is what a later read will say.
        let ends = now + chrono::Duration::from_std(window).unwrap_or_default();
        let ends = DateTime::from_timestamp_micros(ends.timestamp_micros()).unwrap_or(ends);
        // Two writers may race to open a new window: the loser counts in the winner's.
        for _ in 0..3 {
            let counted = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", counter_key(key))
                .update_expression("ADD #count :one")
                .condition_expression("window_ends > :now")
                .expression_attribute_names("#count", "count")
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":now", n(now.timestamp_micros()))
                .return_values(ReturnValue::AllNew)
                .send()
                .await;
            match counted {
                Ok(answer) => {
                    return counted_from(&answer.attributes().cloned().unwrap_or_default());
                }
                Err(err) if !condition_failed(&err) => return Err(unavailable(err)),
                Err(_) => {}
            }
            // No counter, or its window has ended: start one.
            let started = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("pk", counter_key(key))
                .item("count", n(1))
                .item("window_ends", n(ends.timestamp_micros()))
                .item("expires_at", n(ends.timestamp() + 1))
                .condition_expression("attribute_not_exists(pk) OR window_ends <= :now")
                .expression_attribute_values(":now", n(now.timestamp_micros()))
                .send()
                .await;
            match started {
                Ok(_) => {
                    return Ok(Counted {
                        count: 1,
                        window_ends: ends,
                    });
                }
                Err(err) if !condition_failed(&err) => return Err(unavailable(err)),
                Err(_) => {}
            }
        }
        Err(StoreError::Unavailable(
            "the counter kept changing under this write".into(),
        ))
    }

    async fn count(&self, key: &str, now: DateTime<Utc>) -> Result<Option<Counted>, StoreError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", counter_key(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(item) = answer.item() else {
            return Ok(None);
        };
        let counted = counted_from(item)?;
        Ok((counted.window_ends > now).then_some(counted))
    }
}

fn counted_from(item: &Item) -> Result<Counted, StoreError> {
    Ok(Counted {
        count: u64::try_from(number(item, "count").map_err(corrupt)?).unwrap_or_default(),
        window_ends: micros(item, "window_ends").map_err(corrupt)?,
    })
}

/// Whether a conditional write failed its condition (rather than the call failing).
fn condition_failed<E, R>(err: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: super::dynamodb_items::ConditionFailed,
{
    err.as_service_error().is_some_and(|e| e.condition_failed())
}
