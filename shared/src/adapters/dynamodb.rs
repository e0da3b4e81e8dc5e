//! [`RecordStore`] on Amazon DynamoDB.
//!
//! Key design (one table, on-demand):
//! * `pk` (S, partition key) = `T#<transcription id>`: lookup by id.
//! * GSI `by_owner`: partition `owner` (S), sort `created_sort` (S) =
//!   `<created_at micros, 20 digits>#<id>`, queried newest first; the cursor is the last item's
//!   (created_at, id), so pages are stable while new records arrive.
//! * `expires_at` (N, epoch seconds): the table's TTL attribute, `created_at + RETENTION_DAYS`,
//!   the second line of defence behind the retention sweep.
//! * Each owner's vocabulary shares the table under `V#<owner>` (see [`super::dynamodb_vocabulary`]).
//!
//! Status changes are conditional writes (e.g. `#status IN (:queued, :processing)`): a stale
//! or redelivered job can never overwrite a final record or move one backwards.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    Client,
    types::{AttributeValue, ReturnValue},
};
use chrono::{DateTime, Utc};

use super::dynamodb_items::{
    Item, micros, n, number, optional_text, s, text, unavailable, written,
};
use crate::{
    domain::{
        AudioFormat, BlobKey, OwnerId, Status, Transcript, TranscriptionId, TranscriptionRecord,
    },
    ports::{BoxError, Claim, Cursor, Page, PageRequest, RecordStore, StoreError},
};

pub const OWNER_INDEX: &str = "by_owner";

/// The statuses a worker may move on from.
const ACTIVE: &[Status] = &[Status::Queued, Status::Processing];

#[derive(Debug, Clone)]
pub struct DynamoRecordStore {
    client: Client,
    table: String,
    retention: Option<chrono::Duration>,
}

fn pk(id: &TranscriptionId) -> AttributeValue {
    AttributeValue::S(format!("T#{id}"))
}

fn created_sort(at: DateTime<Utc>, id: &TranscriptionId) -> String {
    format!("{:020}#{id}", at.timestamp_micros())
}

fn to_item(
    r: &TranscriptionRecord,
    retention: Option<chrono::Duration>,
) -> Result<Item, StoreError> {
    let mut item = Item::new();
    item.insert("pk".into(), pk(&r.id));
    item.insert("id".into(), s(r.id.to_string()));
    item.insert("owner".into(), s(r.owner.as_str()));
    item.insert("created_sort".into(), s(created_sort(r.created_at, &r.id)));
    item.insert("status".into(), s(r.status.as_str()));
    item.insert("engine".into(), s(r.engine.as_str()));
    item.insert("task".into(), s(r.task.as_str()));
    item.insert("audio_format".into(), s(r.audio_format.extension()));
    item.insert("audio_key".into(), s(r.audio_key.as_str()));
    item.insert("size_bytes".into(), n(r.size_bytes));
    item.insert("created_at".into(), n(r.created_at.timestamp_micros()));
    item.insert("updated_at".into(), n(r.updated_at.timestamp_micros()));
    item.insert("attempts".into(), n(r.attempts));
    item.insert("progress".into(), n(r.progress));
    for (name, value) in [
        ("language", &r.language),
        ("prompt", &r.prompt),
        ("file_name", &r.file_name),
        ("error", &r.error),
    ] {
        if let Some(v) = value {
            item.insert(name.into(), s(v.clone()));
        }
    }
    if let Some(t) = &r.transcript {
        item.insert(
            "transcript".into(),
            s(serde_json::to_string(t).map_err(|e| StoreError::Corrupt(e.to_string()))?),
        );
    }
    if let Some(retention) = retention {
        item.insert(
            "expires_at".into(),
            n((r.created_at + retention).timestamp()),
        );
    }
    Ok(item)
}

fn from_item(item: &Item) -> Result<TranscriptionRecord, BoxError> {
    let text = |name: &str| text(item, name);
    let optional = |name: &str| optional_text(item, name);
    let number = |name: &str| number(item, name);
    let micros = |name: &str| micros(item, name);
    Ok(TranscriptionRecord {
        id: text("id")?.parse()?,
        owner: OwnerId::parse(&text("owner")?)?,
        status: text("status")?.parse()?,
        engine: text("engine")?.parse()?,
        // Records written before translation existed carry no task: they were transcriptions.
        task: optional("task")
            .map(|task| task.parse())
            .transpose()?
            .unwrap_or_default(),
        language: optional("language"),
        prompt: optional("prompt"),
        file_name: optional("file_name"),
        audio_format: text("audio_format")?.parse()?,
        audio_key: BlobKey::parse(&text("audio_key")?)?,
        size_bytes: number("size_bytes")?.try_into()?,
        created_at: micros("created_at")?,
        updated_at: micros("updated_at")?,
        attempts: number("attempts")?.try_into()?,
        progress: number("progress")?.try_into()?,
        transcript: optional("transcript")
            .map(|json| serde_json::from_str::<Transcript>(&json))
            .transpose()?,
        error: optional("error"),
    })
}

impl DynamoRecordStore {
    pub fn new(
        client: Client,
        table: impl Into<String>,
        retention: Option<chrono::Duration>,
    ) -> Self {
        Self {
            client,
            table: table.into(),
            retention,
        }
    }

    /// An update that applies only while the record's status is one of `from`.
    async fn transition(
        &self,
        id: &TranscriptionId,
        from: &[Status],
        set: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<bool, StoreError> {
        let placeholders: Vec<String> = (0..from.len()).map(|i| format!(":from{i}")).collect();
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk(id))
            .update_expression(set)
            .condition_expression(format!(
                "attribute_exists(pk) AND #status IN ({})",
                placeholders.join(", ")
            ))
            .expression_attribute_names("#status", "status");
        for (placeholder, status) in placeholders.iter().zip(from) {
            update = update.expression_attribute_values(placeholder, s(status.as_str()));
        }
        for (placeholder, name) in names {
            update = update.expression_attribute_names(*placeholder, *name);
        }
        for (name, value) in values {
            update = update.expression_attribute_values(name, value);
        }
        written(update.send().await)
    }
}

#[async_trait]
impl RecordStore for DynamoRecordStore {
    async fn insert(&self, record: &TranscriptionRecord) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(record, self.retention)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get(&self, id: &TranscriptionId) -> Result<Option<TranscriptionRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", pk(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        out.item()
            .map(from_item)
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    async fn list_by_owner(
        &self,
        owner: &OwnerId,
        page: &PageRequest,
    ) -> Result<Page<TranscriptionRecord>, StoreError> {
        let limit = page.limit.clamp(1, 100) as usize;
        let mut items = Vec::new();
        let mut start: Option<Item> = page.after.as_ref().map(|c| {
            Item::from([
                ("pk".to_owned(), pk(&c.id)),
                ("owner".to_owned(), s(owner.as_str())),
                (
                    "created_sort".to_owned(),
                    s(created_sort(c.created_at, &c.id)),
                ),
            ])
        });
        // One more than asked, to learn whether another page follows.
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(OWNER_INDEX)
                .key_condition_expression("#owner = :owner")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_values(":owner", s(owner.as_str()))
                .scan_index_forward(false)
                .limit((limit + 1 - items.len()) as i32)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            for item in out.items() {
                items.push(from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))?);
            }
            match out.last_evaluated_key() {
                Some(key) if items.len() <= limit => start = Some(key.clone()),
                _ => break,
            }
        }
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|r| Cursor {
                created_at: r.created_at,
                id: r.id,
            })
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn confirm_upload(
        &self,
        id: &TranscriptionId,
        format: AudioFormat,
        size_bytes: u64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.transition(
            id,
            &[Status::AwaitingUpload],
            "SET #status = :queued_to, audio_format = :format, size_bytes = :size, updated_at = :now",
            &[],
            vec![
                (":queued_to", s("queued")),
                (":format", s(format.extension())),
                (":size", n(size_bytes)),
                (":now", n(now.timestamp_micros())),
            ],
        )
        .await
    }

    async fn claim(&self, id: &TranscriptionId, claim: &Claim) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk(id))
            .update_expression(
                "SET #status = :processing, attempts = attempts + :one, updated_at = :now, claimed_by = :by",
            )
            .condition_expression(
                "attribute_exists(pk) AND (#status = :queued OR (#status = :processing \
                 AND (claimed_by = :by OR updated_at < :stale)))",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":queued", s("queued"))
            .expression_attribute_values(":processing", s("processing"))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(claim.now.timestamp_micros()))
            .expression_attribute_values(":by", s(claim.by.clone()))
            .expression_attribute_values(":stale", n(claim.stale_before.timestamp_micros()))
            .send()
            .await;
        written(result)
    }

    async fn complete(
        &self,
        id: &TranscriptionId,
        transcript: &Transcript,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let json =
            serde_json::to_string(transcript).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut set = "SET #status = :completed, transcript = :transcript, progress = :hundred, updated_at = :now".to_owned();
        let mut names = Vec::new();
        let mut values = vec![
            (":completed", s("completed")),
            (":transcript", s(json)),
            (":hundred", n(100)),
            (":now", n(now.timestamp_micros())),
        ];
        if let Some(language) = &transcript.language {
            // The language the owner asked for wins over the detected one.
            set.push_str(", #language = if_not_exists(#language, :language)");
            names.push(("#language", "language"));
            values.push((":language", s(language.clone())));
        }
        self.transition(id, ACTIVE, &set, &names, values).await
    }

    async fn fail(
        &self,
        id: &TranscriptionId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.transition(
            id,
            &[Status::AwaitingUpload, Status::Queued, Status::Processing],
            "SET #status = :failed, #error = :reason, updated_at = :now",
            &[("#error", "error")],
            vec![
                (":failed", s("failed")),
                (":reason", s(reason)),
                (":now", n(now.timestamp_micros())),
            ],
        )
        .await
    }

    async fn set_progress(
        &self,
        id: &TranscriptionId,
        percent: u8,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk(id))
            .update_expression("SET progress = :p, updated_at = :now")
            .condition_expression("#status = :processing")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":processing", s("processing"))
            .expression_attribute_values(":p", n(percent.min(100)))
            .expression_attribute_values(":now", n(now.timestamp_micros()))
            .send()
            .await;
        // A record no longer processing keeps its final state; progress is moot.
        written(result).map(|_| ())
    }

    async fn fail_stale(
        &self,
        stale_before: DateTime<Utc>,
        reason: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<TranscriptionId>, StoreError> {
        // Run by the daily sweep: a filtered scan, as `created_before` does.
        let mut stale = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("#status = :processing AND updated_at < :stale")
                .expression_attribute_names("#status", "status")
                .expression_attribute_names("#id", "id")
                .expression_attribute_values(":processing", s("processing"))
                .expression_attribute_values(":stale", n(stale_before.timestamp_micros()))
                .projection_expression("#id")
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            for item in page.items() {
                if let Some(id) = item.get("id").and_then(|v| v.as_s().ok()) {
                    stale.push(
                        id.parse::<TranscriptionId>()
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    );
                }
            }
            match page.last_evaluated_key() {
                Some(key) if stale.len() < limit as usize => start = Some(key.clone()),
                _ => break,
            }
        }
        let mut failed = Vec::new();
        for id in stale.into_iter().take(limit as usize) {
            // Conditional again: a worker that renewed its claim since the scan keeps it.
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", pk(&id))
                .update_expression("SET #status = :failed, #error = :reason, updated_at = :now")
                .condition_expression("#status = :processing AND updated_at < :stale")
                .expression_attribute_names("#status", "status")
                .expression_attribute_names("#error", "error")
                .expression_attribute_values(":failed", s("failed"))
                .expression_attribute_values(":processing", s("processing"))
                .expression_attribute_values(":reason", s(reason))
                .expression_attribute_values(":now", n(now.timestamp_micros()))
                .expression_attribute_values(":stale", n(stale_before.timestamp_micros()))
                .send()
                .await;
            if written(result)? {
                failed.push(id);
            }
        }
        Ok(failed)
    }

    async fn delete(&self, id: &TranscriptionId) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", pk(id))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.attributes().is_some_and(|a| !a.is_empty()))
    }

    async fn created_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(TranscriptionId, BlobKey)>, StoreError> {
        // The sweep runs daily: a filtered scan is acceptable; TTL removes stragglers anyway.
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("created_at < :cutoff")
                .expression_attribute_values(":cutoff", n(cutoff.timestamp_micros()))
                .projection_expression("#id, audio_key, created_at")
                .expression_attribute_names("#id", "id")
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            for item in page.items() {
                let id = item.get("id").and_then(|v| v.as_s().ok());
                let key = item.get("audio_key").and_then(|v| v.as_s().ok());
                let created = item
                    .get("created_at")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<i64>().ok());
                if let (Some(id), Some(key), Some(created)) = (id, key, created) {
                    let id = id.parse().map_err(|e: crate::domain::InvalidId| {
                        StoreError::Corrupt(e.to_string())
                    })?;
                    let key =
                        BlobKey::parse(key).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    out.push((created, id, key));
                }
            }
            match page.last_evaluated_key() {
                Some(key) => start = Some(key.clone()),
                None => break,
            }
        }
        out.sort_by_key(|(created, _, _)| *created);
        Ok(out
            .into_iter()
            .take(limit as usize)
            .map(|(_, id, key)| (id, key))
            .collect())
    }

    async fn scan(
        &self,
        after: Option<&TranscriptionId>,
        limit: u32,
    ) -> Result<Vec<TranscriptionRecord>, StoreError> {
        let mut out = Vec::new();
        let mut start = after.map(|id| HashMap::from([("pk".to_owned(), pk(id))]));
        // A page may come back short (1 MB cap): keep going until `limit` or the end.
        while out.len() < limit as usize {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                // The table also holds each owner's vocabulary (`V#`): records only.
                .filter_expression("begins_with(pk, :record)")
                .expression_attribute_values(":record", s("T#"))
                .limit(i32::try_from(limit as usize - out.len()).unwrap_or(i32::MAX))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            for item in page.items() {
                out.push(from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))?);
            }
            match page.last_evaluated_key() {
                Some(key) => start = Some(key.clone()),
                None => break,
            }
        }
        Ok(out)
    }

    async fn revise(
        &self,
        r: &TranscriptionRecord,
        read_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // An edit always carries a transcript; a record without one is not completed.
        let Some(transcript) = &r.transcript else {
            return Ok(false);
        };
        let json =
            serde_json::to_string(transcript).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk(&r.id))
            .update_expression("SET transcript = :transcript, updated_at = :now")
            .condition_expression(
                "attribute_exists(pk) AND #status = :completed AND updated_at = :read_at",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":transcript", s(json))
            .expression_attribute_values(":now", n(r.updated_at.timestamp_micros()))
            .expression_attribute_values(":completed", s("completed"))
            .expression_attribute_values(":read_at", n(read_at.timestamp_micros()));
        written(update.send().await)
    }

    async fn rewrite_phi(&self, r: &TranscriptionRecord) -> Result<bool, StoreError> {
        let mut set = Vec::new();
        let mut remove = Vec::new();
        let mut values = vec![(":read_at", n(r.updated_at.timestamp_micros()))];
        let transcript = r
            .transcript
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        for (name, placeholder, value) in [
            ("prompt", ":prompt", r.prompt.clone()),
            ("file_name", ":file_name", r.file_name.clone()),
            ("transcript", ":transcript", transcript),
        ] {
            match value {
                Some(v) => {
                    set.push(format!("{name} = {placeholder}"));
                    values.push((placeholder, s(v)));
                }
                None => remove.push(name),
            }
        }
        let mut expression = String::new();
        if !set.is_empty() {
            expression.push_str(&format!("SET {}", set.join(", ")));
        }
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk(&r.id))
            .update_expression(expression.trim())
            .condition_expression("attribute_exists(pk) AND updated_at = :read_at");
        for (placeholder, value) in values {
            update = update.expression_attribute_values(placeholder, value);
        }
        written(update.send().await)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
