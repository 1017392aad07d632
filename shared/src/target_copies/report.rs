//! What became of one copy into a target account.

use serde::Serialize;

/// The state of one (rule, target account, Region) after an event or a night.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetStatus {
    /// `CopyImage` ran in the target account (or returned the copy a redelivery had started).
    Started,
    /// The copy exists and is not available yet.
    Pending,
    /// The copy is available, deprecated like its source, published when asked, its older
    /// copies tagged superseded.
    Finished,
    /// Not started yet: past the copies one event starts, or too many copies in flight in
    /// the target account (`ResourceLimitExceeded`). It waits in the target line, which
    /// starts it within minutes and follows it until it is finished.
    Waiting,
    /// An AWS error in the target account (a role that cannot be assumed, a key it lacks):
    /// `detail` names the account, the code and the fix; the next night tries again.
    Failed,
    /// The copy cannot be made as the policy stands (the target's default EBS key is
    /// `aws/ebs`): `detail` names the fix.
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetCopyReport {
    pub rule: String,
    pub account: String,
    pub region: String,
    pub status: TargetStatus,
    /// The target's copy, when one was started or found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// The AWS error code of a `failed` copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Older copies tagged `ami-share:superseded-by` by this run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub superseded: Vec<String>,
    /// What became of the target's parameter: `published v<n>`, `current`, `newer-kept …`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// The rule's watermark (`<publisher>:<name>`) its source carries and this copy lacks:
    /// consumers admitting the images by watermark cannot see it. The product cannot attach
    /// it (the copy is the target's: its key would be the target's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watermark_missing: Option<String>,
}

impl TargetCopyReport {
    pub fn new(rule: &str, account: &str, region: &str, status: TargetStatus) -> Self {
        Self {
            rule: rule.to_string(),
            account: account.to_string(),
            region: region.to_string(),
            status,
            image_id: None,
            error_code: None,
            detail: None,
            superseded: Vec::new(),
            parameter: None,
            watermark_missing: None,
        }
    }

    /// Whether this target is still without its copy for a reason someone must look at.
    pub fn is_failure(&self) -> bool {
        matches!(self.status, TargetStatus::Failed | TargetStatus::Refused)
    }
}

/// Most problem targets listed by name in a night's report (the counts hold them all).
const LISTED: usize = 50;

/// A night's copies into target accounts, counted (a rule over 5,000 accounts is 5,000
/// targets per Region: the report lists only the first problems by name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TargetNight {
    /// Rules with `copy_into` whose newest image in the Region was followed into its targets.
    pub rules: usize,
    pub targets: usize,
    pub finished: usize,
    pub started: usize,
    pub pending: usize,
    pub waiting: usize,
    pub failed: usize,
    /// Older copies tagged `ami-share:superseded-by` tonight.
    pub superseded: usize,
    /// Target parameters written or finished tonight.
    pub parameters_written: usize,
    /// Available copies that lack the watermark their source carries (see
    /// [`TargetCopyReport::watermark_missing`]); the first are listed in `problems`.
    pub watermarks_missing: usize,
    /// The first failed or refused targets, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<TargetCopyReport>,
}

impl TargetNight {
    pub fn add(&mut self, r: TargetCopyReport) {
        self.targets += 1;
        match r.status {
            TargetStatus::Finished => self.finished += 1,
            TargetStatus::Started => self.started += 1,
            TargetStatus::Pending => self.pending += 1,
            TargetStatus::Waiting => self.waiting += 1,
            TargetStatus::Failed | TargetStatus::Refused => self.failed += 1,
        }
        self.superseded += r.superseded.len();
        if r.parameter
            .as_deref()
            .is_some_and(|p| p.starts_with("published") || p.starts_with("finished"))
        {
            self.parameters_written += 1;
        }
        self.watermarks_missing += usize::from(r.watermark_missing.is_some());
        if (r.is_failure() || r.watermark_missing.is_some()) && self.problems.len() < LISTED {
            self.problems.push(r);
        }
    }
}
