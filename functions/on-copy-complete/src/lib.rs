//! on-copy-complete: one of our copies became `available` (or `failed`) in its destination
//! Region. Share it there exactly like its source, with this Region's keys. The work is
//! [`amishare::distribute::copy_complete`]; this crate is the Lambda's handler.

use amishare::deps::Deps;
use amishare::distribute::{copy_complete, on_ami_event};
use amishare::ports::Aws;
use amishare::publish::Publishing;
use amishare::report::Summary;
use amishare::Error;
use serde_json::Value;

pub use amishare::distribute::copy_complete::FUNCTION;

/// Handle one event. Permanent failures are reported in the summary (and not retried);
/// transient ones are returned as errors so Lambda retries the event.
pub async fn handle<P: Aws + Publishing>(deps: &Deps<P>, payload: Value) -> Result<Summary, Error> {
    on_ami_event(FUNCTION, payload, |change| async move {
        copy_complete(deps, &change).await
    })
    .await
}
