//! The summary each event function returns and logs as one structured line: what it did to
//! which image, or why it did nothing.

use serde::Serialize;

use crate::converge::ShareReport;
use crate::error::Error;
use crate::publish::Publication;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Sharing (and copies, if any) brought up to the policy.
    Shared,
    /// A same-Region re-encrypted copy was started (the source uses `aws/ebs`); it is shared
    /// when it becomes available.
    ReencryptStarted,
    /// A copy of ours failed; recorded for the nightly retry.
    CopyFailed,
    /// The image is not ours to act on (see `reason`).
    Skipped,
    /// The event is not one this function acts on (see `reason`).
    Ignored,
    /// A permanent failure (see `error`); nothing more will happen until something changes.
    Failed,
    /// What the policy asks for cannot be done as it stands (see `reason` or `error`: it names
    /// the fix); whatever could be shared was.
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorSummary {
    pub error_type: String,
    pub message: String,
}

/// A copy started (or found already there) in another Region, or a same-Region re-encryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyReport {
    pub region: String,
    /// The copy's image id, when one was started or found.
    pub image_id: Option<String>,
    /// `started`, `exists`, `deferred` (ResourceLimitExceeded: the nightly run starts it),
    /// `same-region` (the Region of the source: nothing to copy), `refused`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub function: &'static str,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share: Option<ShareReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<CopyReport>,
    /// The rules' latest-image parameters this image was published to (or not, and why).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<Publication>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorSummary>,
}

impl Summary {
    pub fn new(function: &'static str, outcome: Outcome) -> Self {
        Self {
            function,
            outcome,
            image_id: None,
            region: None,
            reason: None,
            rules: Vec::new(),
            share: None,
            copies: Vec::new(),
            published: Vec::new(),
            error: None,
        }
    }

    /// Add what publishing did. A transient failure is returned (Lambda retries the event;
    /// the redelivery finds the sharing done and publishes); a permanent one makes the outcome
    /// `failed` / `refused`, with the error naming the fix, keeping what was shared.
    pub fn with_publications(
        mut self,
        result: Result<Vec<Publication>, Error>,
    ) -> Result<Summary, Error> {
        match result {
            Ok(p) => {
                self.published = p;
                Ok(self)
            }
            Err(e) if e.is_transient() => Err(e),
            Err(e) => {
                let failed = Summary::failed(self.function, &e);
                self.outcome = failed.outcome;
                self.error = failed.error;
                Ok(self)
            }
        }
    }

    pub fn about(mut self, region: &str, image_id: &str) -> Self {
        self.region = Some(region.to_string());
        self.image_id = Some(image_id.to_string());
        self
    }

    pub fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// A permanent failure, reported instead of retried (`refused` when the policy asks for
    /// what cannot be done).
    pub fn failed(function: &'static str, error: &Error) -> Self {
        let outcome = match error {
            Error::Refused { .. } => Outcome::Refused,
            _ => Outcome::Failed,
        };
        let mut s = Self::new(function, outcome);
        s.error = Some(ErrorSummary {
            error_type: error.error_type(),
            message: error.to_string(),
        });
        s
    }

    /// A failure of the work on an image under `rules`: a transient one is returned (Lambda
    /// retries the event); a permanent one becomes the `failed` / `refused` summary, naming the
    /// image and the rules (the metric record and the log line carry them).
    pub fn failed_under(
        function: &'static str,
        error: Error,
        rules: &[String],
        region: &str,
        image_id: &str,
    ) -> Result<Summary, Error> {
        if error.is_transient() {
            return Err(error);
        }
        let mut s = Summary::failed(function, &error).about(region, image_id);
        s.rules = rules.to_vec();
        Ok(s)
    }

    /// Log the one summary line of the invocation.
    pub fn log(&self) {
        let json = serde_json::to_string(self).unwrap_or_default();
        match self.outcome {
            Outcome::Failed | Outcome::Refused | Outcome::CopyFailed => tracing::error!(
                outcome = ?self.outcome,
                image_id = self.image_id.as_deref().unwrap_or(""),
                region = self.region.as_deref().unwrap_or(""),
                summary = %json,
                "invocation summary"
            ),
            _ => tracing::info!(
                outcome = ?self.outcome,
                image_id = self.image_id.as_deref().unwrap_or(""),
                region = self.region.as_deref().unwrap_or(""),
                summary = %json,
                "invocation summary"
            ),
        }
    }
}

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
