//! The serverless deployment end to end, with no AWS account: the Lambda handlers fed with the
//! `events/` fixtures, and S3, SQS and DynamoDB played by a real emulator (moto_server),
//! provisioned as `infra/` provisions them.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Context, LambdaEvent};
use mmt_core::{
    entrypoints::lambda::{handle_queue_batch, handle_scheduled_sweep},
    http::RouteGroup,
};
use mmt_testkit::Failure;
use serde_json::Value;

use crate::{
    emulator::{Deployment, Emulator, sqs_event},
    helpers::{TestApp, sha256_hex, spawn_app_on_aws},
    lambda::{fixture, invoke, json},
    resumable::{
        Uploader, assert_transcribed, slice, speech_wav_of_size, upload_size,
        upload_with_a_cut_connection,
    },
};

struct Stack {
    aws: Emulator,
    deployment: Deployment,
    app: TestApp,
}

async fn stack(max_receives: u32, visibility_s: u32, overrides: &[(&str, &str)]) -> Stack {
    let aws = Emulator::start().await;
    let deployment = aws.deployment(max_receives, visibility_s).await;
    let env = deployment.env();
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(overrides);
    let app = spawn_app_on_aws(&all, aws.sdk.clone()).await;
    Stack {
        aws,
        deployment,
        app,
    }
}

impl Stack {
    /// What the Lambda event source mapping does with one poll: receive, invoke the
    /// function, delete the messages it did not report as failed.
    async fn poll_transcribe_function(&self) -> (usize, SqsBatchResponse) {
        let messages = self.aws.receive(&self.deployment.queue_url).await;
        let response = self.deliver(sqs_event(&messages)).await;
        let succeeded: Vec<_> = messages
            .iter()
            .filter(|m| {
                !response
                    .batch_item_failures
                    .iter()
                    .any(|f| Some(f.item_identifier.as_str()) == m.message_id())
            })
            .cloned()
            .collect();
        self.delete(&succeeded).await;
        (messages.len(), response)
    }

    async fn delete(&self, messages: &[aws_sdk_sqs::types::Message]) {
        for m in messages {
            // The function may have removed it already (a dead letter); as on AWS, a second
            // delete is harmless.
            let _ = self
                .aws
                .sqs
                .delete_message()
                .queue_url(&self.deployment.queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await;
        }
    }

    async fn deliver(&self, event: SqsEvent) -> SqsBatchResponse {
        handle_queue_batch(
            &self.app.state,
            mmt_core::jobs::JobKind::Transcribe,
            LambdaEvent::new(event, Context::default()),
        )
        .await
        .unwrap()
    }

    async fn record(&self, token: &str, id: &str) -> Value {
        let (status, body) = self
            .app
            .get_json(token, &format!("/v1/transcriptions/{id}"))
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn dead_letters(&self) -> Vec<String> {
        self.aws
            .receive(&self.deployment.dead_letter_url)
            .await
            .iter()
            .filter_map(|m| m.body().map(str::to_owned))
            .collect()
    }

    async fn guest_token(&self) -> String {
        let (status, _, body) = invoke(
            &self.app,
            RouteGroup::Auth,
            &fixture("apigw-auth-guest.json"),
        )
        .await;
        assert_eq!(status, 201);
        json(&body)["access_token"].as_str().unwrap().to_owned()
    }

    /// `POST /v1/uploads` through the upload function, the one part to its presigned S3 URL,
    /// then completed: the transcription is queued.
    async fn resumable_upload(&self, token: &str, audio: Vec<u8>) -> String {
        let event = fixture("apigw-create-upload.json")
            .replace("__TOKEN__", token)
            .replace("8044", &audio.len().to_string());
        let (status, headers, body) = invoke(&self.app, RouteGroup::Upload, &event).await;
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
        let plan = json(&body);
        let id = plan["id"].as_str().unwrap().to_owned();
        assert_eq!(plan["status"], "awaiting_upload");
        assert_eq!(headers["location"], format!("/v1/uploads/{id}").as_str());
        let uploader = Uploader {
            app: &self.app,
            token: token.to_owned(),
        };
        uploader.send_all(&plan, &bytes::Bytes::from(audio)).await;
        let (status, accepted) = uploader.complete(&id).await;
        assert_eq!(status, 202, "{accepted}");
        id
    }

    /// Waits for `n` messages to reach the transcribe queue.
    async fn wait_for_messages(&self, n: usize) {
        for _ in 0..50 {
            let stats = self
                .aws
                .sqs
                .get_queue_attributes()
                .queue_url(&self.deployment.queue_url)
                .attribute_names(
                    aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages,
                )
                .send()
                .await
                .unwrap();
            let visible: usize = stats.attributes().unwrap()
                [&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages]
                .parse()
                .unwrap();
            if visible >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{n} message(s) never reached the transcribe queue");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_runs_through_the_lambda_handlers_on_the_emulator() {
    let s = stack(3, 30, &[]).await;
    let token = s.guest_token().await;
    let with_token = |name: &str| fixture(name).replace("__TOKEN__", &token);

    // The upload function streams the file to S3, writes the record to DynamoDB and the job
    // to SQS, with the request's correlation id as a message attribute.
    let (status, _, body) =
        invoke(&s.app, RouteGroup::Upload, &with_token("apigw-upload.json")).await;
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let id = json(&body)["id"].as_str().unwrap().to_owned();
    assert_eq!(
        s.aws.object_keys(&s.deployment.bucket).await,
        vec![format!("audio/{id}")]
    );
    let messages = s.aws.receive(&s.deployment.queue_url).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].message_attributes().unwrap()["correlation_id"].string_value(),
        Some("fixture-v1-transcriptions")
    );

    // The transcribe function gets it as the event source mapping delivers it.
    let response = s.deliver(sqs_event(&messages)).await;
    assert!(response.batch_item_failures.is_empty());
    let with_id = |name: &str| with_token(name).replace("__ID__", &id);
    let (status, _, body) = invoke(
        &s.app,
        RouteGroup::Transcriptions,
        &with_id("apigw-get.json"),
    )
    .await;
    assert_eq!(status, 200);
    let record = json(&body);
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["attempts"], 1);
    let (status, _, body) = invoke(
        &s.app,
        RouteGroup::Transcriptions,
        &with_id("apigw-transcript.json"),
    )
    .await;
    assert_eq!(status, 200);
    let srt = String::from_utf8(body).unwrap();
    assert!(srt.starts_with("1\n00:00:00,000 --> "), "{srt}");

    // A stale redelivery of the same message (SQS is at-least-once) changes nothing.
    let response = s.deliver(sqs_event(&messages)).await;
    assert!(response.batch_item_failures.is_empty());
    let again = s.record(&token, &id).await;
    assert_eq!(again["attempts"], 1, "no second attempt was made");
    assert_eq!(again["updated_at"], record["updated_at"]);
    assert_eq!(s.app.openai.requests().len(), 1, "the engine ran once");

    // The list and delete functions on DynamoDB and S3.
    let (status, _, body) = invoke(
        &s.app,
        RouteGroup::Transcriptions,
        &with_token("apigw-list.json"),
    )
    .await;
    assert_eq!(
        (status, json(&body)["items"][0]["id"].as_str()),
        (200, Some(id.as_str()))
    );
    let (status, _, _) = invoke(
        &s.app,
        RouteGroup::Transcriptions,
        &with_id("apigw-delete.json"),
    )
    .await;
    assert_eq!(status, 204);
    assert!(s.aws.object_keys(&s.deployment.bucket).await.is_empty());
    let (status, _, _) = invoke(
        &s.app,
        RouteGroup::Transcriptions,
        &with_id("apigw-get.json"),
    )
    .await;
    assert_eq!(status, 404);

    // The retention function on the same stores, from both schedule payloads.
    for name in ["eventbridge-retention.json", "scheduler-retention.json"] {
        let payload: Value = serde_json::from_str(&fixture(name)).unwrap();
        let report =
            handle_scheduled_sweep(&s.app.state, LambdaEvent::new(payload, Context::default()))
                .await
                .unwrap();
        assert_eq!(report.deleted_records, 0, "{name}: nothing is old enough");
    }
}

#[cfg(feature = "whisper")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_in_presigned_s3_parts_survives_a_cut_connection_and_is_transcribed() {
    let _whisper = crate::local_engine::WHISPER.lock().await;
    let model = crate::local_engine::model_path();
    let s = stack(
        3,
        30,
        &[
            ("ENABLE_LOCAL_TRANSCRIPTION", "true"),
            ("DEFAULT_ENGINE", "local"),
            ("WHISPER_MODEL_PATH", model.as_str()),
            ("WHISPER_THREADS", "2"),
            ("MAX_UPLOAD_BYTES", "2000000000"),
        ],
    )
    .await;
    let uploader = Uploader {
        token: s.guest_token().await,
        app: &s.app,
    };
    let (audio, repetitions) = speech_wav_of_size(upload_size());
    let audio = bytes::Bytes::from(audio);

    // Each part URL is S3's, presigned for UploadPart with its exact length signed in.
    let probe = uploader.create(1000).await;
    let (_, urls) = uploader
        .part_urls(probe["id"].as_str().unwrap(), None)
        .await;
    let url = urls["parts"][0]["url"].as_str().unwrap();
    assert!(url.starts_with(s.aws.endpoint()), "{url}");
    assert!(
        url.contains("partNumber=1") && url.contains("uploadId="),
        "{url}"
    );
    let signed = url.split("X-Amz-SignedHeaders=").nth(1).unwrap();
    let signed = signed.split('&').next().unwrap();
    assert!(signed.split("%3B").any(|h| h == "content-length"), "{url}");

    let id = upload_with_a_cut_connection(&uploader, &audio).await;
    assert_eq!(
        s.aws.object_keys(&s.deployment.bucket).await,
        vec![format!("audio/{id}")],
        "one object; no part left as an object of its own"
    );
    let pending = s
        .aws
        .s3
        .list_multipart_uploads()
        .bucket(&s.deployment.bucket)
        .prefix(format!("audio/{id}"))
        .send()
        .await
        .unwrap();
    assert!(
        pending.uploads().is_empty(),
        "the multipart upload was completed"
    );
    // Completing twice (the second after a lost answer) queued twice; the second message finds
    // the record final and does nothing. One message per invocation here: moto applies
    // conditional writes without a lock, so two claims racing in one batch could both pass on
    // the emulator, where DynamoDB lets one win (the claim itself is in the record contract).
    let messages = s.aws.receive(&s.deployment.queue_url).await;
    assert!((1..=2).contains(&messages.len()), "{}", messages.len());
    for message in &messages {
        let response = s.deliver(sqs_event(std::slice::from_ref(message))).await;
        assert!(response.batch_item_failures.is_empty());
    }
    s.delete(&messages).await;
    let record = s.record(&uploader.token, &id).await;
    assert_eq!(record["attempts"], 1, "transcribed once: {record}");
    assert_transcribed(&record, &audio, repetitions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_unfinished_upload_aborts_its_s3_multipart_upload() {
    let s = stack(3, 30, &[]).await;
    let uploader = Uploader {
        token: s.guest_token().await,
        app: &s.app,
    };
    let audio = bytes::Bytes::from(mmt_testkit::tone_wav(300.0, 48_000));
    let plan = uploader.create(audio.len()).await;
    let id = plan["id"].as_str().unwrap();
    let (_, urls) = uploader.part_urls(id, Some(&[1])).await;
    let target = &urls["parts"][0];
    let response = uploader
        .send(target, slice(&audio, &plan, target), None)
        .await
        .unwrap();
    assert!(response.status().is_success());
    let pending = |s: &Stack| {
        let s3 = s.aws.s3.clone();
        let bucket = s.deployment.bucket.clone();
        async move {
            s3.list_multipart_uploads()
                .bucket(bucket)
                .send()
                .await
                .unwrap()
                .uploads()
                .len()
        }
    };
    assert_eq!(pending(&s).await, 1);
    let deleted = s
        .app
        .delete(&uploader.token, &format!("/v1/transcriptions/{id}"))
        .await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(pending(&s).await, 0, "the parts went with the record");
    assert!(s.aws.object_keys(&s.deployment.bucket).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_to_s3_that_is_not_audio_is_refused_when_completed_and_removed() {
    let s = stack(3, 30, &[]).await;
    let token = s.guest_token().await;
    let uploader = Uploader {
        token: token.clone(),
        app: &s.app,
    };
    let document = bytes::Bytes::from_static(b"%PDF-1.7 not a recording at all");
    let plan = uploader.create(document.len()).await;
    let id = plan["id"].as_str().unwrap();
    uploader.send_all(&plan, &document).await;
    let (status, body) = uploader.complete(id).await;
    assert_eq!(status, 415, "{body}");
    let record = s.record(&token, id).await;
    assert_eq!(record["status"], "failed");
    assert!(s.aws.object_keys(&s.deployment.bucket).await.is_empty());
    assert!(s.app.openai.requests().is_empty());
    assert!(
        s.aws.receive(&s.deployment.queue_url).await.is_empty(),
        "nothing queued"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_tickets_are_checked_before_any_url_is_issued() {
    let s = stack(3, 30, &[("MAX_UPLOAD_BYTES", "1000000")]).await;
    let token = s.guest_token().await;
    for (body, want) in [
        (
            r#"{"filename":"a.wav","content_type":"audio/wav","size":2000000}"#,
            413,
        ),
        (
            r#"{"filename":"a.pdf","content_type":"application/pdf","size":100}"#,
            415,
        ),
        (
            r#"{"filename":"a.wav","content_type":"audio/wav","size":0}"#,
            400,
        ),
        (
            r#"{"filename":"a.wav","content_type":"audio/wav","size":10,"engine":"local"}"#,
            400,
        ),
        (r#"{"filename":"a.wav","content_type":"audio/wav"}"#, 400),
    ] {
        let response = s
            .app
            .client
            .post(s.app.url("/v1/uploads"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), want, "{body}");
    }
    let unauthenticated = s
        .app
        .client
        .post(s.app.url("/v1/uploads"))
        .json(&serde_json::json!({"filename":"a.wav","content_type":"audio/wav","size":10}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let (_, list) = s.app.get_json(&token, "/v1/transcriptions").await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        0,
        "no record was made"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_message_comes_back_after_its_backoff_not_the_visibility_timeout() {
    // Visibility 10 minutes, backoff 0 (JOB_RETRY_BASE_DELAY_MS=0 in tests): the retried
    // message must be receivable again at once.
    let s = stack(3, 600, &[("OPENAI_MAX_RETRIES", "0")]).await;
    let token = s.guest_token().await;
    let audio = mmt_testkit::tone_wav(2.0, 16_000);
    s.app
        .openai
        .fail_file(sha256_hex(&audio), Failure::ServerError(503));
    let id = s.resumable_upload(&token, audio).await;
    let (received, response) = s.poll_transcribe_function().await;
    assert_eq!((received, response.batch_item_failures.len()), (1, 1));
    let again = s.aws.receive(&s.deployment.queue_url).await;
    assert_eq!(
        again.len(),
        1,
        "the retried message is visible after its backoff"
    );
    assert_eq!(s.record(&token, &id).await["attempts"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_message_is_dead_lettered_after_max_receives_while_its_batch_succeeds() {
    // Visibility 1 s, passed on the emulator's clock between polls; three receives at most.
    let s = stack(
        3,
        1,
        &[("OPENAI_MAX_RETRIES", "0"), ("MAX_RECEIVE_COUNT", "3")],
    )
    .await;
    let token = s.guest_token().await;
    let poisoned = mmt_testkit::tone_wav(2.0, 16_000);
    s.app
        .openai
        .fail_file(sha256_hex(&poisoned), Failure::ServerError(503));
    let bad = s.resumable_upload(&token, poisoned).await;
    let mut good = Vec::new();
    for _ in 0..3 {
        good.push(s.app.upload_wav(&token).await);
    }
    s.wait_for_messages(4).await;

    let mut polls = 0;
    let mut reported = Vec::new();
    loop {
        let (received, response) = s.poll_transcribe_function().await;
        reported.extend(
            response
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.clone()),
        );
        polls += 1;
        let bad_record = s.record(&token, &bad).await;
        if received == 0 && bad_record["status"] == "failed" {
            break;
        }
        assert!(
            polls < 30,
            "the poisoned message never settled: {bad_record}"
        );
        s.aws.advance_sqs_clock(Duration::from_millis(1100));
    }

    for id in &good {
        assert_eq!(s.record(&token, id).await["status"], "completed");
    }
    let bad_record = s.record(&token, &bad).await;
    assert_eq!(bad_record["attempts"], 3, "{bad_record}");
    assert!(
        bad_record["error"]
            .as_str()
            .unwrap()
            .contains("gave up after 3 attempts"),
        "{bad_record}"
    );
    assert_eq!(
        reported.len(),
        2,
        "reported alone, on its first two receives"
    );
    let dead = s.dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].contains(&bad),
        "the DLQ holds the upload's notification"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_given_as_ssm_parameters_are_read_at_start_up() {
    use mmt_core::config::{ConfigError, resolve_secret_parameters};
    use secrecy::ExposeSecret;

    let aws = Emulator::start().await;
    let ssm = aws_sdk_ssm::Client::new(&aws.sdk);
    let secret = "a-jwt-secret-that-lives-only-in-parameter-store-0123456789";
    ssm.put_parameter()
        .name("/mmt-test/jwt-secret")
        .value(secret)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let env: std::collections::HashMap<String, String> = [
        ("ENV", "prod"),
        ("ENABLE_FIELD_ENCRYPTION", "1"),
        (
            "ENCRYPTION_KEYS",
            "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ),
        ("PRIMARY_ENCRYPTION_KEY_ID", "k1"),
        ("INTERNAL_JWT_SECRET_SSM_PARAMETER", "/mmt-test/jwt-secret"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();

    // Without the parameter resolved, production refuses to start.
    assert!(mmt_core::Config::from_map(&env).is_err());
    let resolved = resolve_secret_parameters(env.clone(), Some(&aws.sdk))
        .await
        .unwrap();
    let config = mmt_core::Config::from_map(&resolved).unwrap();
    assert_eq!(config.auth.jwt_secret.unwrap().expose_secret(), secret);

    // A missing parameter stops start-up with its name, and no value anywhere.
    let mut missing = env;
    missing.insert(
        "INTERNAL_JWT_SECRET_SSM_PARAMETER".into(),
        "/mmt-test/not-there".into(),
    );
    let err = resolve_secret_parameters(missing, Some(&aws.sdk))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ConfigError::SecretUnavailable {
            key: "INTERNAL_JWT_SECRET",
            ..
        }
    ));
    assert!(err.to_string().contains("/mmt-test/not-there"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_whose_store_keeps_failing_ends_failed_after_the_last_receive() {
    let mut s = stack(3, 600, &[]).await;
    // The function's record store (the HTTP routes keep the healthy one to read it back).
    crate::pipeline::fail_every_completion(&mut s.app.state);
    let token = s.guest_token().await;
    let id = s
        .resumable_upload(&token, mmt_testkit::tone_wav(2.0, 16_000))
        .await;
    let mut reported = Vec::new();
    for _ in 0..3 {
        let (received, response) = s.poll_transcribe_function().await;
        assert_eq!(
            received, 1,
            "the retry is back after its backoff (0 in tests)"
        );
        reported.push(response.batch_item_failures.len());
    }
    assert_eq!(reported, vec![1, 1, 0], "retried twice, then settled");
    crate::pipeline::assert_failed_by_the_store(&s.record(&token, &id).await, 3);
    assert_eq!(s.dead_letters().await.len(), 1, "the message is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_message_is_refused_by_the_records_claim_on_sqs() {
    let s = stack(3, 600, &[]).await;
    crate::pipeline::a_duplicate_message_does_no_work(&s.app).await;
}
