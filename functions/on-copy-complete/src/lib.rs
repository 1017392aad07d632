//! on-copy-complete: one of our copies became `available` (or `failed`) in its destination
//! Region. Share it there exactly like its source, with this Region's keys. The work is
//! [`amishare::distribute::copy_complete`]; this crate is the Lambda's handler.

use amishare::deps::Deps;
use amishare::distribute::line::drain_and_report;
use amishare::distribute::queue::line_timer;
use amishare::distribute::{copy_complete, on_ami_event, on_invocation, Response};
use amishare::ports::Aws;
use amishare::publish::Publishing;
use amishare::report::Summary;
use amishare::share::KeyState;
use amishare::Error;
use serde_json::Value;
use std::sync::Arc;

pub use amishare::distribute::copy_complete::FUNCTION;

/// Handle one event. Permanent failures are reported in the summary (and not retried);
/// transient ones are returned as errors so the event is retried.
pub async fn handle<P: Aws + Publishing>(deps: &Deps<P>, payload: Value) -> Result<Summary, Error> {
    deps.begin_invocation();
    let keys = Arc::new(KeyState::default());
    on_ami_event(FUNCTION, payload, |change| async move {
        copy_complete(deps, &change, &keys).await
    })
    .await
}

/// Handle one invocation: an SQS batch of events (the deployed path, behind the queue that
/// bounds concurrency), answered with the records to deliver again; one event; or the copy
/// line's timer (a scheduled event: drain the Region's line).
pub async fn handle_invocation<P: Aws + Publishing>(
    deps: &Deps<P>,
    payload: Value,
) -> Result<Response, Error> {
    if let Some(region) = line_timer(&payload) {
        let report = drain_and_report(deps, &region).await?;
        return Ok(Response::Line(report));
    }
    // One invocation, one view of the keys: the events of a batch read a key's grants once.
    deps.begin_invocation();
    let keys = Arc::new(KeyState::default());
    let keys = &keys;
    on_invocation(FUNCTION, payload, |change| async move {
        copy_complete(deps, &change, keys).await
    })
    .await
}
