//! The sweeper's report: the invocation's result, its one summary log line, and the CloudWatch
//! Embedded Metric Format line operators alarm on. Its parts: [`OrphanReport`] (the orphan
//! sweep), [`DriftReport`] (drift repair), [`RetireReport`] (retirement, owned by
//! [`crate::retire`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use crate::config::SweepMode;
use crate::copy::CopyReport;
/// CloudWatch namespace of the sweeper's metrics.
pub use crate::metrics::NAMESPACE as METRIC_NAMESPACE;
use crate::night::Ledger;
pub use crate::night::LISTED;
use crate::publish::Publication;
use crate::reasons::Reason;
use crate::report::ErrorSummary;
use crate::retire::{RetireLog, RetireReport};
use crate::share::Converged;
pub use crate::share::Unlisted;
use crate::sweep::orphans::Action;
use crate::target_copies::TargetNight;
/// At most this many orphans are listed one by one in the report (all are counted).
pub const LISTED_ORPHANS: usize = 100;

/// One orphan, with its proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrphanEntry {
    pub snapshot_id: String,
    /// The image it was made for, which exists nowhere any more.
    pub image_id: String,
    pub description: String,
    pub size_gib: u64,
    /// What this run decided for it.
    #[serde(flatten)]
    pub action: Action,
}

/// The orphaned-snapshot half of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OrphanReport {
    /// `complete`, `aborted` (a listing failed or was cut short: nothing marked, nothing
    /// deleted), or `not_reached` (the deadline came first).
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aborted_because: Option<String>,
    pub snapshots_checked: usize,
    pub orphans_found: usize,
    pub orphans_gib: u64,
    /// The first [`LISTED_ORPHANS`] orphans.
    pub orphans: Vec<OrphanEntry>,
    pub marked: usize,
    pub unmarked: usize,
    /// Marked orphans still in their grace period (or due, in report mode).
    pub waiting: usize,
    /// The first snapshots deleted.
    pub deleted: Vec<String>,
    pub deleted_count: usize,
    pub deleted_gib: u64,
    /// Due for deletion but not reached before the deadline: the next run deletes them first.
    pub remaining: usize,
    /// Due for deletion, but over `max_deletions` for this run.
    pub over_max_deletions: usize,
    /// Why deleting stopped early (`InvalidSnapshot.InUse`: our proof was wrong).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletions_stopped: Option<String>,
    /// Snapshots kept, per reason.
    pub kept: BTreeMap<String, usize>,
    /// Orphan marks whose proof did not hold (copied, back-dated, dated before the snapshot
    /// or in the future): tampering, reported and started again from now.
    pub marks_tampered: usize,
    /// Marks without proof (an earlier version's, or written by hand): started again from now.
    pub marks_unsigned: usize,
    /// The first tampered marks, `<snapshot>: <why>`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tampered: Vec<String>,
}

/// The drift half of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DriftReport {
    /// `complete`, `not_reached` / `partial` (the deadline came first), `aborted`.
    pub status: String,
    /// Available images a rule matches, or managed ones.
    pub images_in_scope: usize,
    /// In sync by their fingerprint: no call made for them (but for the audited ones).
    pub in_sync: usize,
    /// Images that carry the product's copy tags or name without EC2's lineage to back them:
    /// never shared, published or retired (each also logged at WARN).
    pub forged_provenance: usize,
    /// The first of them, `<image>: <why>`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub forged: Vec<String>,
    /// Copies whose source is gone: they keep what they were shared with, nothing more.
    pub source_gone: usize,
    /// Images whose fingerprint was missing or differed, per reason.
    pub stale: BTreeMap<String, usize>,
    /// Stale images brought to their desired state.
    pub converged: usize,
    /// In-sync images whose actual sharing was read and compared (the rotating slice).
    pub audited: usize,
    /// Audited images that had drifted all the same (changed by hand) and were repaired.
    pub audit_found_drift: usize,
    /// Images not started before the deadline (the next run takes them first).
    pub not_reached: usize,
    /// `CreateTags` calls that recorded fingerprints (one per distinct tag set and 1,000 images).
    pub record_calls: usize,
    /// Why grants were not pruned or checked this run, if they were not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_pruning: Option<String>,
    /// Launch permission entities added.
    pub launch_permissions_added: usize,
    /// (snapshot, account) permissions added.
    pub snapshot_permissions_added: usize,
    pub grants_created: usize,
    /// Customer managed keys whose policy was checked for the organizations and OUs of
    /// `kms_access: key_policy` rules (once per key and night).
    pub key_policies_checked: usize,
    /// Keys whose policy does not admit them (each also an error with the statement to add).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub key_policies_refused: Vec<String>,
    /// The first copies started or checked.
    pub copies: Vec<CopyReport>,
    pub copies_started: usize,
    /// Copies that wait in their destination Region's line for a free slot (started by the
    /// line as copies end, not by the next night).
    pub copies_waiting: usize,
    /// Removed (`prune_unlisted_shares: true`): the first of each kind.
    pub pruned: Unlisted,
    pub pruned_total: usize,
    /// Would be removed with `prune_unlisted_shares: true`: the first of each kind.
    pub would_prune: Unlisted,
    pub would_prune_total: usize,
    /// Each publishing rule's newest fully shared image in the Region, as published (the
    /// parameter, its RAM share, the event).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publications: Vec<Publication>,
    /// Publications that changed something: a parameter written or finished, a share changed.
    pub publications_repaired: usize,
    /// Rules whose publication failed tonight (their retirement waits: what the parameter
    /// names is not known).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publications_failed: Vec<String>,
    /// Images worked on tonight whose distribution is not complete yet, with the reason
    /// codes of `ami-share status` (crate::reasons): the first of them, and how many.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<Incomplete>,
    pub incomplete_total: usize,
}

/// An image whose distribution is not complete after tonight's work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incomplete {
    pub image_id: String,
    pub reasons: Vec<Reason>,
}

impl Incomplete {
    /// What is still missing after converging an image: a refused part of the share, copies
    /// in flight, waiting or failed. `None` when nothing is.
    pub fn of(c: &Converged) -> Option<Self> {
        let mut reasons = Vec::new();
        if let Some(why) = &c.refused {
            reasons.push(Reason::new(refusal_code(why), why.clone()));
        }
        for cp in &c.copies {
            let code = match cp.status.as_str() {
                "started" => "copy-pending",
                "waiting" => "copy-waiting",
                "failed" | "refused" => "copy-failed",
                _ => continue,
            };
            let what = cp
                .detail
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            reasons.push(Reason::new(
                code,
                format!("the copy to {} is {}{what}", cp.region, cp.status),
            ));
        }
        (!reasons.is_empty()).then(|| Self {
            image_id: c.image_id.clone(),
            reasons,
        })
    }

    /// An image whose convergence failed: its shares are not known to be complete.
    pub fn failed(image_id: &str, e: &crate::error::Error) -> Self {
        let reason = match e {
            crate::error::Error::Refused { message, .. } => {
                Reason::new(refusal_code(message), e.to_string())
            }
            _ => Reason::new("not-shared", format!("converging it failed: {e}")),
        };
        Self {
            image_id: image_id.to_string(),
            reasons: vec![reason],
        }
    }
}

/// A refusal's code: the key policy's (`kms_access: key_policy`), or any other.
fn refusal_code(message: &str) -> &'static str {
    if message.contains("kms_access is key_policy") {
        "key-policy-refuses"
    } else {
        "share-refused"
    }
}

impl DriftReport {
    pub fn repaired(&self) -> usize {
        self.launch_permissions_added
            + self.snapshot_permissions_added
            + self.grants_created
            + self.copies_started
            + self.pruned_total
            + self.publications_repaired
    }
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub function: &'static str,
    pub region: String,
    pub mode: SweepMode,
    /// `policy` or `input` (the schedule's input overrode the policy for this run).
    pub mode_from: &'static str,
    pub started_at: DateTime<Utc>,
    pub orphans: OrphanReport,
    pub drift: DriftReport,
    /// Retirement of older images (rules with `retire`).
    pub retirement: RetireReport,
    /// Copies into target accounts (rules with `copy_into`).
    pub target_copies: TargetNight,
    /// The consumers' Allowed AMIs: each rule's newest image judged in every account read.
    pub consumers: crate::sweep::consumers::ConsumerReport,
    /// Listings that failed transiently and were run again (after the SDK's own retries).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inventory_retried: Vec<String>,
    /// Why the invocation fails after this report, so that it is run again (an inventory that
    /// stayed incomplete through transient errors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
    /// Work not started because the invocation's deadline was near.
    pub not_reached: Vec<String>,
    /// The deadline left work for a follow-up invocation: the continuation engine (the
    /// template's state machine) runs the sweeper again while this is true.
    pub more: bool,
    /// What the night's next round must know of this one: the engine merges it into the next
    /// invocation's input (always an object).
    pub carry: Carry,
    /// The first errors.
    pub errors: Vec<ErrorSummary>,
    pub errors_total: usize,
}

/// What one round of the night tells the next (the sweeper's input carries it back).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Carry {
    /// The consumers' Allowed AMIs were read and judged this night: later rounds do not read
    /// them again (each account at most once a night).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub consumers_judged: bool,
}

impl Ledger for SweepReport {
    fn push_error(&mut self, e: ErrorSummary) {
        self.errors_total += 1;
        if self.errors.len() < LISTED {
            self.errors.push(e);
        }
    }

    fn left_for_next(&mut self, what: String) {
        self.not_reached.push(what);
        self.more = true;
    }
}

impl RetireLog for SweepReport {
    fn retirement(&mut self) -> &mut RetireReport {
        &mut self.retirement
    }
}

impl SweepReport {
    /// Merge the other half of a run (its orphan or drift part, errors and work not reached).
    pub fn absorb(&mut self, other: SweepReport) {
        self.errors_total += other.errors_total;
        let room = LISTED.saturating_sub(self.errors.len());
        self.errors.extend(other.errors.into_iter().take(room));
        self.not_reached.extend(other.not_reached);
        self.more |= other.more;
    }

    /// The one summary line of the invocation.
    pub fn log(&self) {
        let json = serde_json::to_string(self).unwrap_or_default();
        let (o, d) = (&self.orphans, &self.drift);
        if self.errors_total == 0 && o.deletions_stopped.is_none() && o.aborted_because.is_none() {
            tracing::info!(region = %self.region, orphans = o.orphans_found, deleted = o.deleted_count, drift_repaired = d.repaired(), errors = 0, summary = %json, "sweep summary");
        } else {
            tracing::error!(region = %self.region, orphans = o.orphans_found, deleted = o.deleted_count, drift_repaired = d.repaired(), errors = self.errors_total, summary = %json, "sweep summary");
        }
    }

    /// The CloudWatch Embedded Metric Format record of the run (one JSON object, printed as one
    /// line to stdout), dimension `Region`.
    pub fn emf(&self, now: DateTime<Utc>) -> Value {
        let metrics: [(&str, &str, u64); 15] = [
            (
                "OrphanedSnapshots",
                "Count",
                self.orphans.orphans_found as u64,
            ),
            ("OrphanedGiB", "Gigabytes", self.orphans.orphans_gib),
            (
                "SnapshotsDeleted",
                "Count",
                self.orphans.deleted_count as u64,
            ),
            ("GiBReclaimed", "Gigabytes", self.orphans.deleted_gib),
            ("DriftRepaired", "Count", self.drift.repaired() as u64),
            ("CopiesStarted", "Count", self.drift.copies_started as u64),
            (
                "CopiesWaitingAtNight",
                "Count",
                self.drift.copies_waiting as u64,
            ),
            ("RetirementStages", "Count", self.retirement.done as u64),
            (
                "TargetCopiesStarted",
                "Count",
                self.target_copies.started as u64,
            ),
            (
                "TargetCopiesFailed",
                "Count",
                self.target_copies.failed as u64,
            ),
            ("ImagesProtected", "Count", self.retirement.protected as u64),
            (
                crate::metrics::NOT_ALLOWED_IN_CONSUMERS,
                "Count",
                self.consumers.not_allowed_total as u64,
            ),
            (
                crate::metrics::FORGED_PROVENANCE,
                "Count",
                self.drift.forged_provenance as u64,
            ),
            (
                crate::metrics::MARKS_TAMPERED,
                "Count",
                (self.orphans.marks_tampered + self.retirement.marks_tampered) as u64,
            ),
            (
                "Errors",
                "Count",
                self.errors_total as u64 + u64::from(self.orphans.deletions_stopped.is_some()),
            ),
        ];
        let mut record = json!({
            "_aws": {
                "Timestamp": now.timestamp_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": METRIC_NAMESPACE,
                    "Dimensions": [["Region"]],
                    "Metrics": metrics.iter().map(|(n, u, _)| json!({"Name": n, "Unit": u})).collect::<Vec<_>>(),
                }],
            },
            "Region": self.region,
            "function": self.function,
        });
        for (name, _, value) in metrics {
            record[name] = json!(value);
        }
        record
    }
}
