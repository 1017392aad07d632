//! The summary each event function returns and logs as one structured line: what it did to
//! which image, or why it did nothing.

use serde::Serialize;

use crate::copy::CopyReport;
use crate::error::Error;
use crate::publish::Publication;
use crate::share::ShareReport;
use crate::target_copies::TargetCopyReport;

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
    /// The reason's short code where it has one (`forged-provenance`, `source-gone`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share: Option<ShareReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<CopyReport>,
    /// Watermarks attached to the image now (`<account>:<name>`, the rules' `watermark`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub watermarks_attached: Vec<String>,
    /// The rules' latest-image parameters this image was published to (or not, and why).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<Publication>,
    /// Copies into target accounts (`copy_into`) started, or why not, per account and Region.
    /// Serialised (the log line, the invocation's result) as the first [`LISTED_TARGET_COPIES`]:
    /// an event may reach thousands of targets, and CloudWatch Logs cuts an event at 256 KB;
    /// [`Summary::target_copy_counts`] counts them all.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "first_listed")]
    pub target_copies: Vec<TargetCopyReport>,
    /// How many target copies, and how many of each status (all of them, listed or not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_copy_counts: Option<TargetCopyCounts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorSummary>,
    /// The image in its rules' consumer accounts' Allowed AMIs: a warning list of those where
    /// it is shared but cannot be seen (never a failure), for the accounts read
    /// (`rate_limits.consumer_reads_per_invocation`); the night judges every account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumers: Option<crate::consumers::EventConsumers>,
    /// What draining the copy line of the event's Region did (on-copy-complete: a copy
    /// ending frees a slot there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<crate::copy::LineReport>,
}

impl Summary {
    pub fn new(function: &'static str, outcome: Outcome) -> Self {
        Self {
            function,
            outcome,
            image_id: None,
            region: None,
            reason: None,
            reason_code: None,
            rules: Vec::new(),
            share: None,
            copies: Vec::new(),
            watermarks_attached: Vec::new(),
            published: Vec::new(),
            target_copies: Vec::new(),
            target_copy_counts: None,
            error: None,
            consumers: None,
            line: None,
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

    /// The copies into target accounts, counted (the list is serialised only in part).
    pub fn with_target_copies(mut self, reports: Vec<TargetCopyReport>) -> Self {
        let mut by_status = std::collections::BTreeMap::new();
        for r in &reports {
            let status = serde_json::to_value(r.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            *by_status.entry(status).or_insert(0) += 1;
        }
        self.target_copy_counts = (!reports.is_empty()).then(|| TargetCopyCounts {
            total: reports.len(),
            listed: reports.len().min(LISTED_TARGET_COPIES),
            by_status,
        });
        self.target_copies = reports;
        self
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

    /// Left alone for `reason`, with its code. An image whose provenance is forged is
    /// `refused` (it counts as undistributed, so the alarm fires) and logged at WARN with who
    /// should look; everything else is `skipped`.
    pub fn not_acted_on(mut self, reason: &crate::plan::SkipReason) -> Self {
        let code = reason.code();
        self.outcome = if matches!(reason, crate::plan::SkipReason::ForgedProvenance(_)) {
            tracing::warn!(
                image_id = self.image_id.as_deref().unwrap_or(""),
                region = self.region.as_deref().unwrap_or(""),
                reason_code = code,
                "forged provenance: {reason}; refused, nothing shared, published or retired. \
                 The account's security team should find who tagged, named or made this image (CloudTrail)"
            );
            Outcome::Refused
        } else {
            Outcome::Skipped
        };
        self.reason = Some(reason.to_string());
        self.reason_code = Some(code);
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

/// At most this many target copies are in an event's summary one by one (all are counted),
/// as the night's report lists at most 50 of each list.
pub const LISTED_TARGET_COPIES: usize = 50;

/// The count of an event's copies into target accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetCopyCounts {
    pub total: usize,
    /// How many of them the summary lists one by one.
    pub listed: usize,
    pub by_status: std::collections::BTreeMap<String, usize>,
}

fn first_listed<S: serde::Serializer>(
    reports: &[TargetCopyReport],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::Serialize;
    reports[..reports.len().min(LISTED_TARGET_COPIES)].serialize(serializer)
}
