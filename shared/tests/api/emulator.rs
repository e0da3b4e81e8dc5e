//! The AWS side of the tests: a real emulator (moto_server) and the resources `infra/`
//! creates, provisioned the same way (bucket → queue notification, queue + DLQ with redrive,
//! records table with its owner index and TTL).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use mmt_core::AwsSdkConfig;
use mmt_testkit::MotoServer;

pub struct Emulator {
    /// Kept for its lifetime: the emulator stops when this is dropped.
    moto: MotoServer,
    pub sdk: AwsSdkConfig,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
}

/// A string attribute of a table's key schema.
fn attribute(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .unwrap()
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .unwrap()
}

/// A global secondary index on `hash` + `range`, projecting everything.
fn index(name: &str, hash: &str, range: &str) -> GlobalSecondaryIndex {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(hash, KeyType::Hash))
        .key_schema(key(range, KeyType::Range))
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .unwrap()
}

/// The queues, bucket and table of one deployment.
pub struct Deployment {
    pub bucket: String,
    pub table: String,
    pub audit_table: String,
    pub queue_url: String,
    pub dead_letter_url: String,
}

impl Deployment {
    /// The configuration the functions get from Terraform, pointing at these resources.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("BLOB_STORE", "s3".into()),
            ("S3_BUCKET", self.bucket.clone()),
            ("S3_FORCE_PATH_STYLE", "true".into()),
            ("RECORD_STORE", "dynamodb".into()),
            ("DYNAMODB_TABLE", self.table.clone()),
            ("AUDIT_TABLE", self.audit_table.clone()),
            ("JOB_QUEUE", "sqs".into()),
            ("SQS_TRANSCRIBE_QUEUE_URL", self.queue_url.clone()),
            ("SQS_TRANSCRIBE_DLQ_URL", self.dead_letter_url.clone()),
            ("SQS_WAIT_SECS", "0".into()),
        ]
    }
}

impl Emulator {
    pub async fn start() -> Self {
        let moto = MotoServer::start()
            .await
            .expect("moto_server (make setup installs it)");
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
                aws_sdk_s3::config::Credentials::new("test", "test", None, None, "moto"),
            ))
            .endpoint_url(moto.endpoint())
            .build();
        Self {
            s3: mmt_core::adapters::s3::client(&sdk, true),
            sqs: aws_sdk_sqs::Client::new(&sdk),
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
            sdk,
            moto,
        }
    }

    /// The value for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> &str {
        self.moto.endpoint()
    }

    /// Moves SQS's clock: visibility timeouts and delays run out without a wait.
    pub fn advance_sqs_clock(&self, by: std::time::Duration) {
        self.moto.advance_sqs_clock(by);
    }

    pub async fn bucket(&self, name: &str) {
        self.s3
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .expect("create bucket");
    }

    /// A queue with a dead-letter queue and the redrive policy Terraform gives it.
    pub async fn queue_pair(
        &self,
        name: &str,
        max_receives: u32,
        visibility_s: u32,
    ) -> (String, String) {
        let dlq = self
            .sqs
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .send()
            .await
            .unwrap();
        let dlq_url = dlq.queue_url().unwrap().to_owned();
        let dlq_arn = self.queue_arn(&dlq_url).await;
        let queue = self
            .sqs
            .create_queue()
            .queue_name(name)
            .attributes(
                QueueAttributeName::RedrivePolicy,
                format!(
                    r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receives}"}}"#
                ),
            )
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility_s.to_string(),
            )
            .send()
            .await
            .unwrap();
        (queue.queue_url().unwrap().to_owned(), dlq_url)
    }

    pub async fn queue_arn(&self, url: &str) -> String {
        self.sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes()
            .unwrap()[&QueueAttributeName::QueueArn]
            .clone()
    }

    /// The records table: `pk`, the owner index, TTL on `expires_at`.
    pub async fn records_table(&self, name: &str) {
        self.dynamodb
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("pk"))
            .attribute_definitions(attribute("owner"))
            .attribute_definitions(attribute("created_sort"))
            .key_schema(key("pk", KeyType::Hash))
            .global_secondary_indexes(index(
                mmt_core::adapters::dynamodb::OWNER_INDEX,
                "owner",
                "created_sort",
            ))
            .send()
            .await
            .unwrap();
        self.dynamodb
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name("expires_at")
                    .enabled(true)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }

    /// The audit table, keyed as `infra/modules/storage` declares it.
    pub async fn audit_table(&self, name: &str) {
        self.dynamodb
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("day"))
            .attribute_definitions(attribute("sk"))
            .key_schema(key("day", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .send()
            .await
            .unwrap();
    }

    /// The EHR outbox table, keyed as `infra/modules/storage` declares it.
    pub async fn ehr_table(&self, name: &str) {
        self.dynamodb
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("pk"))
            .attribute_definitions(attribute("transcription_id"))
            .attribute_definitions(attribute("created_sort"))
            .key_schema(key("pk", KeyType::Hash))
            .global_secondary_indexes(index(
                mmt_core::adapters::dynamodb_ehr::TRANSCRIPTION_INDEX,
                "transcription_id",
                "created_sort",
            ))
            .send()
            .await
            .unwrap();
    }

    /// Everything one deployment needs: bucket, tables, the transcribe queue and its dead
    /// letters.
    pub async fn deployment(&self, max_receives: u32, visibility_s: u32) -> Deployment {
        let deployment = Deployment {
            bucket: "mmt-audio".into(),
            table: "mmt-records".into(),
            audit_table: "mmt-audit".into(),
            queue_url: String::new(),
            dead_letter_url: String::new(),
        };
        self.bucket(&deployment.bucket).await;
        self.records_table(&deployment.table).await;
        self.audit_table(&deployment.audit_table).await;
        let (queue_url, dead_letter_url) = self
            .queue_pair("mmt-transcribe", max_receives, visibility_s)
            .await;
        Deployment {
            queue_url,
            dead_letter_url,
            ..deployment
        }
    }

    /// Receives what is visible on `url`, as the Lambda event source mapping would.
    pub async fn receive(&self, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
        self.sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap()
            .messages()
            .to_vec()
    }

    pub async fn object_keys(&self, bucket: &str) -> Vec<String> {
        self.s3
            .list_objects_v2()
            .bucket(bucket)
            .send()
            .await
            .unwrap()
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }
}

/// Messages as the SQS event source hands them to a function: the `sqs-transcribe.json`
/// fixture's shape, with the real ids, receipts, bodies and attributes.
pub fn sqs_event(
    messages: &[aws_sdk_sqs::types::Message],
) -> aws_lambda_events::event::sqs::SqsEvent {
    use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
    let mut event = SqsEvent::default();
    for m in messages {
        let mut message = SqsMessage::default();
        message.message_id = m.message_id().map(str::to_owned);
        message.receipt_handle = m.receipt_handle().map(str::to_owned);
        message.body = m.body().map(str::to_owned);
        message.attributes = m
            .attributes()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                    .collect::<HashMap<_, _>>()
            })
            .unwrap_or_default();
        message.message_attributes = m
            .message_attributes()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| {
                        let mut attribute = SqsMessageAttribute::default();
                        attribute.string_value = v.string_value().map(str::to_owned);
                        attribute.data_type = Some(v.data_type().to_owned());
                        (k.clone(), attribute)
                    })
                    .collect()
            })
            .unwrap_or_default();
        message.event_source = Some("aws:sqs".into());
        event.records.push(message);
    }
    event
}
