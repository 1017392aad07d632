//! What converging an image did: the share report of its own Region, the shares no rule asks
//! for, and the whole [`Converged`] record an event summary or a night's report carries.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::copy::CopyReport;
use crate::ports::LaunchPermissions;

/// Shares no rule asks for, one line each (`<image or snapshot>: <principal>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Unlisted {
    pub launch_permissions: Vec<String>,
    pub snapshot_permissions: Vec<String>,
    pub grants: Vec<String>,
}

impl Unlisted {
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn len(&self) -> usize {
        self.launch_permissions.len() + self.snapshot_permissions.len() + self.grants.len()
    }
    /// Append `other`, keeping at most `cap` lines per list (counts are kept elsewhere).
    pub fn extend_capped(&mut self, other: Unlisted, cap: usize) {
        for (into, from) in [
            (&mut self.launch_permissions, other.launch_permissions),
            (&mut self.snapshot_permissions, other.snapshot_permissions),
            (&mut self.grants, other.grants),
        ] {
            let room = cap.saturating_sub(into.len());
            into.extend(from.into_iter().take(room));
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotShare {
    pub snapshot_id: String,
    /// Accounts the snapshot is shared with now (added or already there).
    pub accounts: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantRecord {
    pub key_arn: String,
    pub account: String,
}

/// What sharing in the image's own Region changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShareReport {
    pub launch_permissions_added: LaunchPermissions,
    pub snapshots_shared: Vec<SnapshotShare>,
    /// (snapshot, account) permissions added.
    pub snapshot_permissions_added: usize,
    pub grants_created: Vec<GrantRecord>,
    pub grants_existing: usize,
}

/// What converging one image did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Converged {
    pub image_id: String,
    pub region: String,
    /// The fingerprint of the desired state.
    pub fingerprint: String,
    /// Every step done: the fingerprint may be recorded.
    pub complete: bool,
    /// The image is fully shared in its own Region (whatever became of its copies to other
    /// Regions): it may be published as its rules' newest image there.
    pub shared: bool,
    /// The image uses `aws/ebs`: a re-encrypted copy is shared instead of the image.
    pub reencrypt: bool,
    /// A part of the share that cannot be made (a new public share under block public
    /// access, or of an encrypted image), with why; the rest was shared.
    pub refused: Option<String>,
    pub share: ShareReport,
    /// Removed (`prune`).
    pub pruned: Unlisted,
    /// Would be removed if pruning were on (managed images only).
    pub would_prune: Unlisted,
    pub copies: Vec<CopyReport>,
    /// Watermarks attached now (`<account>:<name>`); empty when the image carried them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub watermarks_attached: Vec<String>,
    /// The tags that record this convergence (managed, plan, converged-at).
    pub record: BTreeMap<String, String>,
    /// Snapshots that get the record too: a source's, when it is first marked managed (what
    /// `sweeper.orphan_scope: managed` recognises after the image is gone).
    pub record_snapshots: Vec<String>,
}

impl Converged {
    /// Whether anything was changed.
    pub fn changes(&self) -> usize {
        self.share.launch_permissions_added.len()
            + self.share.snapshot_permissions_added
            + self.share.grants_created.len()
            + self.pruned.len()
            + self.copies.iter().filter(|c| c.status == "started").count()
            + self.watermarks_attached.len()
    }
}
