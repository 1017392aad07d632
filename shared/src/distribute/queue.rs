//! The burst path: EventBridge puts each `EC2 AMI State Change` on the function's SQS queue,
//! and Lambda's event source mapping invokes the function with a batch of them, never more
//! than the queue's maximum concurrency at once (template.yaml, `EventConcurrency`). A patch
//! day's 200 images then wait in the queue instead of throttling each other.
//!
//! Each record is one event, run through the same frame as a direct event
//! ([`super::on_ami_event`]: its own summary line and EMF record). A transient failure (throttled
//! past the SDK's retries, a timeout) reports the record in `batchItemFailures`, so SQS delivers
//! it again after the visibility timeout and, after the queue's `maxReceiveCount`, moves it to
//! the function's failure queue; a permanent one is a logged `failed` summary, not retried. The
//! records of a batch run concurrently, paced by the process's rate limits.
//!
//! A direct invocation (`cargo lambda invoke`, the demo, a forwarded event) is still one event.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use futures::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::Value;

use super::frame::on_ami_event;
use crate::error::Error;
use crate::event::AmiStateChange;
use crate::report::Summary;

/// What an invocation returns: one event's summary, or a batch's failed records.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Response {
    Event(Box<Summary>),
    Batch(SqsBatchResponse),
    /// The copy line's timer: what draining the Region's line did.
    Line(crate::copy::LineReport),
}

/// The Region whose copy line to drain, when the payload is the line's timer: an EventBridge
/// `Scheduled Event` (its `region`), or `{"drain_copy_line": "<region>"}` (a hand-run drain).
pub fn line_timer(payload: &Value) -> Option<String> {
    if let Some(r) = payload.get("drain_copy_line").and_then(Value::as_str) {
        return Some(r.to_string());
    }
    let scheduled = payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
        && payload.get("source").and_then(Value::as_str) == Some("aws.events");
    scheduled
        .then(|| {
            payload
                .get("region")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .flatten()
}

/// The records of an SQS batch, when the payload is one (`Records` of `aws:sqs` messages);
/// `Ok(None)` when it is not (one event). A payload that is an SQS batch but does not
/// deserialise is an error: the invocation fails, so SQS delivers the records again (and the
/// redrive policy keeps them in the failure queue), instead of acknowledging them as one
/// malformed event and losing them.
pub fn as_batch(payload: &Value) -> Result<Option<SqsEvent>, Error> {
    let Some(records) = payload.get("Records").and_then(Value::as_array) else {
        return Ok(None);
    };
    let from_sqs = records
        .iter()
        .all(|r| r.get("eventSource").and_then(Value::as_str) == Some("aws:sqs"));
    if records.is_empty() || !from_sqs {
        return Ok(None);
    }
    serde_json::from_value(payload.clone()).map(Some).map_err(|e| {
        Error::Transient(crate::error::AwsError::new(
            "sqs",
            "ReceiveMessage",
            "MalformedBatch",
            format!(
                "an SQS batch of {} records that does not deserialise ({e}): the invocation fails so \
                 that SQS delivers them again and, after maxReceiveCount, moves them to the failure queue",
                records.len()
            ),
            "batch",
        ))
    })
}

/// Run every record of `batch` through the frame, concurrently; the records to deliver again
/// are those whose event failed transiently.
pub async fn on_queue_batch<F, Fut>(
    function: &'static str,
    batch: SqsEvent,
    process: F,
) -> SqsBatchResponse
where
    F: Fn(AmiStateChange) -> Fut,
    Fut: std::future::Future<Output = Result<Summary, Error>>,
{
    let total = batch.records.len();
    let process = &process;
    let retry: Vec<String> = stream::iter(batch.records)
        .map(|record| async move {
            let id = record.message_id.unwrap_or_default();
            // A body that is not JSON is a malformed event: the frame reports it, once.
            let body = record
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str(b).ok())
                .unwrap_or(Value::Null);
            match on_ami_event(function, body, process).await {
                Ok(_) => None,
                Err(_) if id.is_empty() => None, // cannot be named: SQS redelivers it anyway
                Err(_) => Some(id),
            }
        })
        .buffer_unordered(total.max(1))
        .filter_map(|r| async move { r })
        .collect()
        .await;
    tracing::info!(
        function,
        records = total,
        to_retry = retry.len(),
        "batch done"
    );
    let mut response = SqsBatchResponse::default();
    for id in retry {
        response.add_failure(id);
    }
    response
}

/// One invocation of an event function: an SQS batch (the deployed path) or one event.
pub async fn on_invocation<F, Fut>(
    function: &'static str,
    payload: Value,
    process: F,
) -> Result<Response, Error>
where
    F: Fn(AmiStateChange) -> Fut,
    Fut: std::future::Future<Output = Result<Summary, Error>>,
{
    let batch =
        as_batch(&payload).inspect_err(|e| tracing::error!(error = %e, "malformed batch"))?;
    match batch {
        Some(batch) => Ok(Response::Batch(
            on_queue_batch(function, batch, process).await,
        )),
        None => on_ami_event(function, payload, process)
            .await
            .map(|s| Response::Event(Box::new(s))),
    }
}
