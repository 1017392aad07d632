//! The frame of both event functions: parse the event, run the function's service, turn its
//! result into the invocation's result (permanent failures a logged `failed` summary,
//! transient ones an error so Lambda retries), and write one EMF record of the outcome.

use crate::error::Error;
use crate::report::{Outcome, Summary};

/// Run a handler's work and turn its result into the invocation's result: permanent failures
/// become a `failed` summary (logged, not retried); transient ones are returned as errors so
/// Lambda retries the event.
pub fn finish(
    function: &'static str,
    result: Result<Summary, Error>,
    region: Option<&str>,
    image_id: Option<&str>,
) -> Result<Summary, Error> {
    match result {
        Ok(s) => {
            s.log();
            Ok(s)
        }
        Err(e) if e.is_transient() => {
            tracing::warn!(
                error_type = %e.error_type(),
                error = %e,
                image_id = image_id.unwrap_or(""),
                region = region.unwrap_or(""),
                "transient failure; returning the error so Lambda retries the event"
            );
            Err(e)
        }
        Err(e) => {
            let mut s = Summary::failed(function, &e);
            s.region = region.map(str::to_string);
            s.image_id = image_id.map(str::to_string);
            s.log();
            Ok(s)
        }
    }
}

/// The common frame of the two event functions: parse the event (other events are a logged
/// no-op, malformed ones a reported failure), run `process` on an AMI state change, and
/// [`finish`] with the image's Region and id.
async fn parse_and_process<F, Fut>(
    function: &'static str,
    payload: serde_json::Value,
    process: F,
) -> Result<Summary, Error>
where
    F: FnOnce(crate::event::AmiStateChange) -> Fut,
    Fut: std::future::Future<Output = Result<Summary, Error>>,
{
    use crate::event::Incoming;
    let change = match crate::event::parse(payload) {
        Ok(Incoming::AmiStateChange(c)) => c,
        Ok(Incoming::Other {
            source,
            detail_type,
        }) => {
            let s = Summary::new(function, Outcome::Ignored).because(format!(
                "not an AMI state change ({source} / {detail_type})"
            ));
            return finish(function, Ok(s), None, None);
        }
        Err(e) => return finish(function, Err(e), None, None),
    };
    let (region, image_id) = (change.region.clone(), change.image_id.clone());
    let result = process(change).await;
    finish(function, result, Some(&region), Some(&image_id))
}

/// The common frame of the two event functions ([`parse_and_process`]), and one EMF record of the invocation's outcome and duration
/// ([`crate::metrics::event_record`]) written to the log.
pub async fn on_ami_event<F, Fut>(
    function: &'static str,
    payload: serde_json::Value,
    process: F,
) -> Result<Summary, Error>
where
    F: FnOnce(crate::event::AmiStateChange) -> Fut,
    Fut: std::future::Future<Output = Result<Summary, Error>>,
{
    let started = std::time::Instant::now();
    let result = parse_and_process(function, payload, process).await;
    crate::metrics::emit(&crate::metrics::event_record(
        &crate::metrics::function_name(function),
        result.as_ref().ok(),
        started.elapsed(),
        chrono::Utc::now(),
    ));
    result
}
