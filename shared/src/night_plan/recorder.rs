//! The night's writes recorded instead of made: a port that passes every read to the real one
//! and keeps every write as a [`Write`], answering it as AWS would have (a new id where AWS
//! returns one). The copy line is not read (receiving would hide its entries from the real
//! drains), so a copy the night would queue shows as joining the line.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use crate::ports::Image;

/// What a write would change, by the plan's sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    LaunchPermissionsAdded,
    LaunchPermissionsRemoved,
    SnapshotSharesAdded,
    SnapshotSharesRemoved,
    GrantsCreated,
    GrantsRevoked,
    CopiesStarted,
    CopiesQueued,
    TargetCopiesStarted,
    TargetCopiesFollowed,
    TargetImagesChanged,
    ParametersMoved,
    ParameterLabels,
    ResourceShares,
    Deprecations,
    Disables,
    Deregistrations,
    UsageReportsRequested,
    StageMarks,
    OrphansMarked,
    OrphansUnmarked,
    OrphansDeleted,
    Fingerprints,
    Watermarks,
    KeyMarks,
    Events,
    Line,
}

/// One write the night would make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Write {
    pub change: Change,
    /// The AWS action, `service:Operation`.
    pub action: &'static str,
    pub region: String,
    /// The target account it is made in (`copy_into`); none: the publisher account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// What it is made on (image, snapshot, key, parameter, share).
    pub resource: String,
    /// Who gains or loses access, where the write is about access.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
}

/// The recording port: reads through `inner`, writes into [`Recorder::writes`].
pub struct Recorder<'a, P> {
    pub(super) inner: &'a P,
    writes: Mutex<Vec<Write>>,
    /// The images the listings returned, by id (the plan's rule attribution).
    pub(super) seen: Mutex<HashMap<String, Image>>,
    next: AtomicU64,
}

impl<'a, P> Recorder<'a, P> {
    pub fn new(inner: &'a P) -> Self {
        Self {
            inner,
            writes: Mutex::new(Vec::new()),
            seen: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
        }
    }

    /// The writes recorded so far, in the order they were asked for.
    pub fn writes(&self) -> Vec<Write> {
        self.writes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The images the night's listings returned.
    pub fn images_seen(&self) -> HashMap<String, Image> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn record(
        &self,
        change: Change,
        action: &'static str,
        region: &str,
        resource: &str,
    ) {
        self.record_for(change, action, region, None, resource, Vec::new());
    }

    pub(super) fn record_for(
        &self,
        change: Change,
        action: &'static str,
        region: &str,
        account: Option<&str>,
        resource: &str,
        principals: Vec<String>,
    ) {
        self.writes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Write {
                change,
                action,
                region: region.to_string(),
                account: account.map(str::to_string),
                resource: resource.to_string(),
                principals,
            });
    }

    /// A made-up id for what a write would create.
    pub(super) fn new_id(&self, prefix: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{prefix}-0planned{n:09x}")
    }
}
