//! Lambda event handlers. The function binaries build [`AppState`] once per cold start and
//! hand these to `lambda_runtime::run`; HTTP functions hand [`crate::http::router`] to
//! `lambda_http::run` instead.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Error, LambdaEvent};

use crate::{
    app::AppState,
    app::RetentionReport,
    domain::JobId,
    jobs::{Disposition, JobKind},
    ports::ReceivedJob,
    telemetry::{self, trace::origin_from_attributes},
};

fn received_job(message: &SqsMessage) -> ReceivedJob {
    ReceivedJob {
        message_id: JobId::from_raw(message.message_id.clone().unwrap_or_default()),
        receipt: message.receipt_handle.clone().unwrap_or_default(),
        receive_count: message
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1),
        body: message.body.clone().unwrap_or_default(),
        origin: origin_from_attributes(|name| {
            message
                .message_attributes
                .get(name)
                .and_then(|a| a.string_value.as_deref())
        }),
    }
}

/// Handles a batch from `kind`'s queue. Messages run concurrently and fail alone: only the
/// ids that should be delivered again are returned in `batchItemFailures`, each after its
/// retry delay has been set as its visibility.
pub async fn handle_queue_batch(
    state: &AppState,
    kind: JobKind,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let queue = kind
        .queue(state)
        .ok_or_else(|| format!("this function has no {} queue configured", kind.name()))?;
    let queue = &queue;
    let outcomes = futures::future::join_all(event.payload.records.iter().map(|message| async move {
        let job = received_job(message);
        let retry = match kind.handle(state, &job).await {
            Disposition::Ack => false,
            Disposition::Retry { delay, .. } => {
                // Returned as a batch item failure alone, the message would wait out the whole
                // visibility timeout: the backoff (or the EHR's Retry-After) decides instead.
                if let Err(err) = queue.retry_later(&job, delay).await {
                    tracing::warn!(message_id = %job.message_id, error.cause_chain = %crate::telemetry::error_chain(&err), "could not set the retry delay; the visibility timeout applies");
                }
                true
            }
            Disposition::DeadLetter { reason } => match queue.dead_letter(&job, &reason).await {
                Ok(()) => false,
                Err(err) => {
                    tracing::error!(message_id = %job.message_id, error.cause_chain = %crate::telemetry::error_chain(&err), "could not dead-letter; leaving it to redrive");
                    true
                }
            },
        };
        retry.then(|| job.message_id.to_string())
    }))
    .await;
    let failed = outcomes.iter().filter(|o| o.is_some()).count();
    crate::metrics::emit_emf(crate::metrics::emf_line(
        &[("Queue", kind.name().to_owned())],
        &[
            ("Jobs", "Count", outcomes.len() as f64),
            ("JobsReturned", "Count", failed as f64),
        ],
    ));
    telemetry::flush().await;
    let mut response = SqsBatchResponse::default();
    for id in outcomes.into_iter().flatten() {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    Ok(response)
}

/// One function, two event sources (`ehr-push`): a batch from `kind`'s queue, told apart by
/// its `Records` list, or an API Gateway request for `router`.
pub async fn handle_queue_batch_or_request(
    state: &AppState,
    router: &axum::Router,
    kind: JobKind,
    event: LambdaEvent<serde_json::Value>,
) -> Result<serde_json::Value, Error> {
    use lambda_http::{Adapter, Service, request::LambdaRequest};
    let LambdaEvent { payload, context } = event;
    if payload.get("Records").is_some() {
        let batch = serde_json::from_value(payload)?;
        let answer = handle_queue_batch(state, kind, LambdaEvent::new(batch, context)).await?;
        return Ok(serde_json::to_value(answer)?);
    }
    let request: LambdaRequest = serde_json::from_value(payload)?;
    let mut adapter = Adapter::from(router.clone());
    let answer = adapter.call(LambdaEvent::new(request, context)).await?;
    Ok(serde_json::to_value(answer)?)
}

/// The scheduled retention sweep. Accepts an EventBridge rule event or an EventBridge
/// Scheduler payload alike: the payload's content does not change what a sweep does.
pub async fn handle_scheduled_sweep(
    state: &AppState,
    _event: LambdaEvent<serde_json::Value>,
) -> Result<RetentionReport, Error> {
    let report = state.retention().sweep().await;
    telemetry::flush().await;
    Ok(report?)
}
