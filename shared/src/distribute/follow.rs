//! The target line's batches, on on-image-available: each record is one copy into a target
//! account to start or follow ([`crate::target_copies::follow`]). A copy not finished yet is
//! sent back to the line with a delay (a new message: its receive count starts again, so a
//! long copy never reaches the failure queue); a transient error reports the record in
//! `batchItemFailures` (delivered again, and after `maxReceiveCount` moved to the failure
//! queue). One log line per record and one per batch.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use futures::stream::{self, StreamExt};
use serde_json::Value;

use super::queue::as_batch;
use crate::deps::Deps;
use crate::error::Error;
use crate::ports::Aws;
use crate::target_copies::{
    FollowMessage, Followed, TargetAccounts, TargetCopier, FOLLOW_DELAY_SECONDS,
};

/// The target line's batch, when the payload is one (its records carry `{"follow": …}`).
pub fn as_follow_batch(payload: &Value) -> Result<Option<SqsEvent>, Error> {
    let Some(batch) = as_batch(payload)? else {
        return Ok(None);
    };
    let follows = batch.records.first().is_some_and(|r| {
        r.body
            .as_deref()
            .and_then(|b| serde_json::from_str::<Value>(b).ok())
            .is_some_and(|v| v.get("follow").is_some())
    });
    Ok(follows.then_some(batch))
}

/// What a batch of the target line came to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FollowCounts {
    pub finished: usize,
    pub again: usize,
    pub dropped: usize,
    pub retried: usize,
}

/// Run every record of the target line's `batch`, concurrently (bounded by the target
/// accounts' concurrency).
pub async fn on_follow_batch<P: Aws + TargetAccounts>(
    deps: &Deps<P>,
    batch: SqsEvent,
) -> (SqsBatchResponse, FollowCounts) {
    let copier = TargetCopier::new(deps);
    let copier = &copier;
    let results: Vec<(Option<String>, &'static str)> = stream::iter(batch.records)
        .map(|record| async move {
            let id = record.message_id.unwrap_or_default();
            let Some(msg) = record
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str::<FollowMessage>(b).ok())
            else {
                tracing::error!(message_id = %id, body = ?record.body, "a target line message that is not a follow; dropped");
                return (None, "dropped");
            };
            let f = msg.follow;
            let step = match copier.follow(&f).await {
                Ok(Followed::Again(report, next)) => {
                    tracing::info!(account = %f.account, region = %f.region, rule = %f.rule, status = ?report.status, copy = ?report.image_id, "target copy followed; looked at again in {FOLLOW_DELAY_SECONDS} s");
                    copier
                        .send_follows(&[next], FOLLOW_DELAY_SECONDS)
                        .await
                        .map(|()| "again")
                }
                Ok(Followed::Done(report)) => {
                    tracing::info!(account = %f.account, region = %f.region, rule = %f.rule, status = ?report.status, copy = ?report.image_id, parameter = ?report.parameter, detail = ?report.detail, "target copy followed to its end");
                    Ok("finished")
                }
                Ok(Followed::Dropped(why)) => {
                    tracing::warn!(account = %f.account, region = %f.region, rule = %f.rule, "target copy no longer followed: {why}");
                    Ok("dropped")
                }
                Err(e) => Err(e),
            };
            match step {
                Ok(kind) => (None, kind),
                Err(e) if e.is_transient() && !id.is_empty() => {
                    tracing::warn!(account = %f.account, region = %f.region, error = %e, "target copy not followed now; SQS delivers it again");
                    (Some(id), "retried")
                }
                Err(e) => {
                    tracing::error!(account = %f.account, region = %f.region, error = %e, "target copy not followed; the nightly sweeper follows it");
                    (None, "dropped")
                }
            }
        })
        .buffer_unordered(deps.settings.target_concurrency.max(1))
        .collect()
        .await;
    let mut counts = FollowCounts::default();
    let mut response = SqsBatchResponse::default();
    for (retry, kind) in results {
        match kind {
            "finished" => counts.finished += 1,
            "again" => counts.again += 1,
            "retried" => counts.retried += 1,
            _ => counts.dropped += 1,
        }
        if let Some(id) = retry {
            response.add_failure(id);
        }
    }
    tracing::info!(
        finished = counts.finished,
        again = counts.again,
        dropped = counts.dropped,
        retried = counts.retried,
        "target line batch done"
    );
    (response, counts)
}
