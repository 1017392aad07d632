//! on-image-available: an image became `available`; share it as the policy says, in its own
//! Region, and start its copies to other Regions. The work is
//! [`amishare::distribute::image_available`]; this crate is the Lambda's handler.

use amishare::deps::Deps;
use amishare::distribute::follow::{as_follow_batch, on_follow_batch};
use amishare::distribute::{image_available, on_ami_event, on_invocation, Response};
use amishare::ports::Aws;
use amishare::publish::Publishing;
use amishare::report::Summary;
use amishare::share::KeyState;
use amishare::target_copies::TargetAccounts;
use amishare::Error;
use serde_json::Value;
use std::sync::Arc;

pub use amishare::distribute::available::FUNCTION;

/// Handle one event. Permanent failures are reported in the summary (and not retried);
/// transient ones are returned as errors so the event is retried.
pub async fn handle<P: Aws + Publishing + TargetAccounts>(
    deps: &Deps<P>,
    payload: Value,
) -> Result<Summary, Error> {
    deps.begin_invocation();
    let keys = Arc::new(KeyState::default());
    on_ami_event(FUNCTION, payload, |change| async move {
        image_available(deps, &change, &keys).await
    })
    .await
}

/// Handle one invocation: an SQS batch of events (the deployed path, behind the queue that
/// bounds concurrency), answered with the records to deliver again; a batch of the target
/// line (copies into target accounts to start and follow); or one event.
pub async fn handle_invocation<P: Aws + Publishing + TargetAccounts>(
    deps: &Deps<P>,
    payload: Value,
) -> Result<Response, Error> {
    if let Some(batch) = as_follow_batch(&payload)? {
        return Ok(Response::Batch(on_follow_batch(deps, batch).await.0));
    }
    // One invocation, one view of the keys: the events of a batch read a key's grants once.
    deps.begin_invocation();
    let keys = Arc::new(KeyState::default());
    let keys = &keys;
    on_invocation(FUNCTION, payload, |change| async move {
        image_available(deps, &change, keys).await
    })
    .await
}
