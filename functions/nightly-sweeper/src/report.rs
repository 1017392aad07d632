//! The sweeper's report: the invocation's result, its one summary log line, and the CloudWatch
//! Embedded Metric Format line operators alarm on.

use std::collections::BTreeMap;

use amishare::config::SweepMode;
use amishare::domain::orphans::Action;
use amishare::report::{CopyReport, ErrorSummary};
use amishare::Error;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

/// CloudWatch namespace of the sweeper's metrics.
pub const METRIC_NAMESPACE: &str = "AmiShare";
/// At most this many orphans are listed one by one in the report (all are counted).
pub const LISTED_ORPHANS: usize = 500;

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
    pub deleted: Vec<String>,
    pub deleted_gib: u64,
    /// Due for deletion, but over `max_deletions` for this run.
    pub over_max_deletions: usize,
    /// Why deleting stopped early (`InvalidSnapshot.InUse`: our proof was wrong).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletions_stopped: Option<String>,
    /// Snapshots kept, per reason.
    pub kept: BTreeMap<String, usize>,
}

/// Shares and grants no rule asks for any more, on managed images.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Unlisted {
    pub launch_permissions: Vec<String>,
    pub snapshot_permissions: Vec<String>,
    pub grants: Vec<String>,
}

impl Unlisted {
    pub fn is_empty(&self) -> bool {
        self.launch_permissions.is_empty()
            && self.snapshot_permissions.is_empty()
            && self.grants.is_empty()
    }
    pub fn len(&self) -> usize {
        self.launch_permissions.len() + self.snapshot_permissions.len() + self.grants.len()
    }
}

/// The drift half of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DriftReport {
    /// `complete` or `not_reached` / `partial` (the deadline came first).
    pub status: String,
    pub images_checked: usize,
    /// Launch permission entities added.
    pub launch_permissions_added: usize,
    /// (snapshot, account) permissions added.
    pub snapshot_permissions_added: usize,
    pub grants_created: usize,
    pub copies: Vec<CopyReport>,
    pub copies_started: usize,
    /// Removed (`prune_unlisted_shares: true`).
    pub pruned: Unlisted,
    /// Would be removed with `prune_unlisted_shares: true`.
    pub would_prune: Unlisted,
}

impl DriftReport {
    pub fn repaired(&self) -> usize {
        self.launch_permissions_added
            + self.snapshot_permissions_added
            + self.grants_created
            + self.copies_started
            + self.pruned.len()
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
    /// Work not started because the invocation's deadline was near.
    pub not_reached: Vec<String>,
    pub errors: Vec<ErrorSummary>,
}

impl SweepReport {
    pub fn error(&mut self, context: &str, e: &Error) {
        self.errors.push(ErrorSummary {
            error_type: e.error_type(),
            message: format!("{context}: {e}"),
        });
    }

    /// The one summary line of the invocation.
    pub fn log(&self) {
        let json = serde_json::to_string(self).unwrap_or_default();
        let (o, d) = (&self.orphans, &self.drift);
        if self.errors.is_empty() && o.deletions_stopped.is_none() && o.aborted_because.is_none() {
            tracing::info!(region = %self.region, orphans = o.orphans_found, deleted = o.deleted.len(), drift_repaired = d.repaired(), errors = 0, summary = %json, "sweep summary");
        } else {
            tracing::error!(region = %self.region, orphans = o.orphans_found, deleted = o.deleted.len(), drift_repaired = d.repaired(), errors = self.errors.len(), summary = %json, "sweep summary");
        }
    }

    /// The CloudWatch Embedded Metric Format record of the run (one JSON object, printed as one
    /// line to stdout), dimension `Region`.
    pub fn emf(&self, now: DateTime<Utc>) -> Value {
        let metrics: [(&str, &str, u64); 7] = [
            (
                "OrphanedSnapshots",
                "Count",
                self.orphans.orphans_found as u64,
            ),
            ("OrphanedGiB", "Gigabytes", self.orphans.orphans_gib),
            (
                "SnapshotsDeleted",
                "Count",
                self.orphans.deleted.len() as u64,
            ),
            ("GiBReclaimed", "Gigabytes", self.orphans.deleted_gib),
            ("DriftRepaired", "Count", self.drift.repaired() as u64),
            ("CopiesStarted", "Count", self.drift.copies_started as u64),
            (
                "Errors",
                "Count",
                self.errors.len() as u64 + u64::from(self.orphans.deletions_stopped.is_some()),
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
