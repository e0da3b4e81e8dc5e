//! [`AuditLog`] on its own DynamoDB table, apart from the records.
//!
//! Key design: `day` (S, partition key) = `YYYY-MM-DD` of the event, `sk` (S, sort key) =
//! `<at micros, 20 digits>#<event id>`. An admin query reads the days of its window newest
//! first. Appends are conditional on a new key, and the functions' IAM policies grant
//! `PutItem` alone on this table: nothing that runs the product can change or delete an event.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Days, Utc};

use super::dynamodb_items::{Item, micros, n, number, optional_text, s, text};
use crate::{
    domain::{AuditAction, AuditEvent, AuditOutcome, AuditQuery, ChainLink},
    ports::{AuditError, AuditLog, BoxError},
};

#[derive(Debug, Clone)]
pub struct DynamoAuditLog {
    client: Client,
    table: String,
}

impl DynamoAuditLog {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn day(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

fn sort_key(at: DateTime<Utc>, suffix: &str) -> String {
    format!("{:020}#{suffix}", at.timestamp_micros().max(0))
}

fn to_item(e: &AuditEvent) -> Item {
    let mut item = Item::from([
        ("day".to_owned(), s(day(e.at))),
        ("sk".to_owned(), s(sort_key(e.at, &e.id.to_string()))),
        ("id".to_owned(), s(e.id.to_string())),
        ("at".to_owned(), n(e.at.timestamp_micros())),
        ("action".to_owned(), s(e.action.as_str())),
        ("outcome".to_owned(), s(e.outcome.as_str())),
        ("subject".to_owned(), s(e.subject.clone())),
    ]);
    for (name, value) in [
        ("record_id", e.record_id.map(|id| id.to_string())),
        ("correlation_id", e.correlation_id.clone()),
        ("detail", e.detail.clone()),
    ] {
        if let Some(v) = value {
            item.insert(name.to_owned(), s(v));
        }
    }
    if let Some(link) = &e.chain {
        item.insert("chain_writer".to_owned(), s(link.writer.clone()));
        item.insert("chain_seq".to_owned(), n(link.seq));
        // The first link has no predecessor: no attribute rather than an empty string.
        if !link.prev.is_empty() {
            item.insert("chain_prev".to_owned(), s(link.prev.clone()));
        }
        item.insert("chain_hash".to_owned(), s(link.hash.clone()));
    }
    item
}

fn from_item(item: &Item) -> Result<AuditEvent, BoxError> {
    let text = |name: &str| text(item, name);
    let optional = |name: &str| optional_text(item, name);
    Ok(AuditEvent {
        id: text("id")?.parse()?,
        at: micros(item, "at")?,
        action: AuditAction::parse(&text("action")?).ok_or("unknown audit action")?,
        outcome: AuditOutcome::parse(&text("outcome")?).ok_or("unknown audit outcome")?,
        subject: text("subject")?,
        record_id: optional("record_id").map(|id| id.parse()).transpose()?,
        correlation_id: optional("correlation_id"),
        detail: optional("detail"),
        chain: match optional("chain_writer") {
            Some(writer) => Some(ChainLink {
                writer,
                seq: u64::try_from(number(item, "chain_seq")?)?,
                prev: optional("chain_prev").unwrap_or_default(),
                hash: text("chain_hash")?,
            }),
            None => None,
        },
    })
}

#[async_trait]
impl AuditLog for DynamoAuditLog {
    async fn append(&self, event: &AuditEvent) -> Result<(), AuditError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(event)))
            .condition_expression("attribute_not_exists(sk)")
            .send()
            .await
            .map_err(|e| AuditError::Unavailable(Box::new(e.into_service_error())))?;
        Ok(())
    }

    async fn query(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>, AuditError> {
        let mut out = Vec::new();
        let mut date = q.until.date_naive();
        let first = q.since.date_naive();
        while date >= first && out.len() < q.limit as usize {
            let mut start = None;
            loop {
                let page = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("#day = :day AND sk BETWEEN :lo AND :hi")
                    .expression_attribute_names("#day", "day")
                    .expression_attribute_values(":day", s(date.format("%Y-%m-%d").to_string()))
                    .expression_attribute_values(":lo", s(sort_key(q.since, "")))
                    .expression_attribute_values(":hi", s(sort_key(q.until, "")))
                    .scan_index_forward(false)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(|e| AuditError::Unavailable(Box::new(e.into_service_error())))?;
                for item in page.items() {
                    let event = from_item(item).map_err(|e| AuditError::Corrupt(e.to_string()))?;
                    if q.matches(&event) && out.len() < q.limit as usize {
                        out.push(event);
                    }
                }
                match page.last_evaluated_key() {
                    Some(key) if out.len() < q.limit as usize => start = Some(key.clone()),
                    _ => break,
                }
            }
            match date.checked_sub_days(Days::new(1)) {
                Some(previous) => date = previous,
                None => break,
            }
        }
        Ok(out)
    }
}
