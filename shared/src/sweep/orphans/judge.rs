//! Orphaned snapshots: is this snapshot an orphan, with what proof, or why is it kept; and
//! what to do about it this run (mark, unmark, wait, delete). Pure: no async, no I/O, "now"
//! is a parameter.
//!
//! A snapshot is an orphan only if ALL hold (aws-facts §6):
//! 1. its description names the image it was made for (`Created by CreateImage(…) for ami-…`,
//!    `Copied for DestinationAmi ami-… …`) — our provenance tag alone proves it is ours but
//!    names no image, so the Recycle Bin cannot be checked and it is kept;
//! 2. that image exists nowhere: not among the Region's images in any state (disabled,
//!    deprecated, pending included), not in the Recycle Bin;
//! 3. nothing references it: no image's block device mapping, no launch template version, no
//!    launch configuration (neither the snapshot nor the image it was made for);
//! 4. it is complete, not managed by AWS Backup or DLM, not tagged `ami-share:keep`, and older
//!    than `min_age_days`.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::config::SweepMode;
use crate::ports::Image;
use crate::sweep::inventory::{OwnSnapshot, RecycledImage, Reference, SnapshotState, KEEP_TAG};

/// The image a snapshot's description says it was made for.
pub fn image_named_in(description: &str) -> Option<&str> {
    let rest = if let Some(r) = description.strip_prefix("Created by CreateImage(") {
        // `Created by CreateImage(i-0123) for ami-0456` (sometimes followed by ` from vol-…`)
        let (_, after) = r.split_once(") for ")?;
        after
    } else {
        // `Copied for DestinationAmi ami-0456 from SourceAmi ami-0123 for SourceSnapshot snap-…`
        description.strip_prefix("Copied for DestinationAmi ")?
    };
    let id = rest
        .split(|c: char| c.is_whitespace() || c == ',' || c == '.')
        .next()?;
    is_image_id(id).then_some(id)
}

/// `ami-` followed by 8 or 17 lowercase hex digits.
pub fn is_image_id(s: &str) -> bool {
    s.strip_prefix("ami-").is_some_and(|h| {
        (h.len() == 8 || h.len() == 17)
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// What the rest of the Region says about snapshots: which images exist (any state), which are
/// in the Recycle Bin, and who references which snapshot or image.
#[derive(Debug, Default)]
pub struct InUse {
    /// Image id → state, for every image of ours in the Region.
    images: HashMap<String, String>,
    recycled: HashSet<String>,
    /// Snapshot id → who references it (an image's block device mapping, a launch template
    /// version, a launch configuration). The first referrer found is kept.
    snapshot_refs: HashMap<String, String>,
    /// Image id → launch template version / launch configuration still naming it.
    image_refs: HashMap<String, String>,
}

impl InUse {
    pub fn new(images: &[Image], recycled: &[RecycledImage], references: &[Reference]) -> Self {
        let mut u = InUse::default();
        for i in images {
            u.images.insert(i.id.clone(), i.state.as_str().to_string());
            for v in &i.volumes {
                u.snapshot_refs
                    .entry(v.snapshot_id.clone())
                    .or_insert_with(|| format!("image {}", i.id));
            }
        }
        u.recycled.extend(recycled.iter().map(|r| r.id.clone()));
        for r in references {
            for s in &r.snapshot_ids {
                u.snapshot_refs
                    .entry(s.clone())
                    .or_insert_with(|| r.by.clone());
            }
            for i in &r.image_ids {
                u.image_refs
                    .entry(i.clone())
                    .or_insert_with(|| r.by.clone());
            }
        }
        u
    }
}

/// Why a snapshot is not an orphan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum KeepReason {
    /// Its description does not name an image it was made for, and it has no provenance tag
    /// of ours: never ours to delete.
    NoProofOfOrigin,
    /// Our provenance tag, but the description names no image: the Recycle Bin cannot be
    /// checked, so it is kept.
    ImageNotNamed,
    /// Not `completed` (a copy or image still in progress, or an error to look at).
    NotCompleted { state: String },
    /// Tagged `ami-share:keep`.
    KeepTag,
    /// AWS Backup manages it.
    BackupManaged,
    /// Data Lifecycle Manager manages it.
    DlmManaged,
    /// The image it was made for still exists (disabled, deprecated and pending included).
    ImageExists { image_id: String, state: String },
    /// The image it was made for is in the Recycle Bin and can be restored.
    ImageInRecycleBin { image_id: String },
    /// An image's block device mapping, a launch template version or a launch configuration
    /// references the snapshot.
    Referenced { by: String },
    /// A launch template version or launch configuration still names the image it was made
    /// for.
    ImageReferenced { image_id: String, by: String },
    /// Younger than `min_age_days`.
    TooYoung { min_age_days: u32 },
    /// `sweeper.orphan_scope: managed`, and it carries neither the product's mark nor its
    /// copy provenance: not the product's to judge.
    NotManaged,
}

impl KeepReason {
    /// The key of the per-reason counts in the report.
    pub fn code(&self) -> &'static str {
        match self {
            KeepReason::NoProofOfOrigin => "no_proof_of_origin",
            KeepReason::NotManaged => "not_managed",
            KeepReason::ImageNotNamed => "image_not_named",
            KeepReason::NotCompleted { .. } => "not_completed",
            KeepReason::KeepTag => "keep_tag",
            KeepReason::BackupManaged => "backup_managed",
            KeepReason::DlmManaged => "dlm_managed",
            KeepReason::ImageExists { .. } => "image_exists",
            KeepReason::ImageInRecycleBin { .. } => "image_in_recycle_bin",
            KeepReason::Referenced { .. } => "referenced",
            KeepReason::ImageReferenced { .. } => "image_referenced",
            KeepReason::TooYoung { .. } => "too_young",
        }
    }
}

impl std::fmt::Display for KeepReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeepReason::NoProofOfOrigin => {
                write!(f, "no proof of origin in its description or tags")
            }
            KeepReason::ImageNotNamed => write!(
                f,
                "has our provenance tag but its description names no image"
            ),
            KeepReason::NotCompleted { state } => write!(f, "snapshot is {state}"),
            KeepReason::KeepTag => write!(f, "tagged {KEEP_TAG}"),
            KeepReason::BackupManaged => write!(f, "managed by AWS Backup"),
            KeepReason::DlmManaged => write!(f, "managed by Data Lifecycle Manager"),
            KeepReason::ImageExists { image_id, state } => {
                write!(f, "image {image_id} exists ({state})")
            }
            KeepReason::ImageInRecycleBin { image_id } => {
                write!(f, "image {image_id} is in the Recycle Bin")
            }
            KeepReason::Referenced { by } => write!(f, "referenced by {by}"),
            KeepReason::ImageReferenced { image_id, by } => {
                write!(f, "its image {image_id} is referenced by {by}")
            }
            KeepReason::TooYoung { min_age_days } => write!(f, "younger than {min_age_days} days"),
            KeepReason::NotManaged => write!(
                f,
                "sweeper.orphan_scope is managed and it carries no ami-share mark or copy provenance"
            ),
        }
    }
}

/// An orphan and the proof that it is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrphanProof {
    /// The image it was made for, which exists nowhere any more.
    pub image_id: String,
    /// The description naming it.
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Verdict {
    Orphan(OrphanProof),
    Keep(KeepReason),
}

/// Judge one snapshot against the Region's inventory.
/// Whether the snapshot is in the orphan sweep's scope: every snapshot (`account`), or those
/// the product marked or made (`managed`).
pub fn in_scope(s: &OwnSnapshot, scope: crate::config::OrphanScope) -> bool {
    match scope {
        crate::config::OrphanScope::Account => true,
        crate::config::OrphanScope::Managed => s.tags.managed || s.tags.source_image.is_some(),
    }
}

pub fn judge(s: &OwnSnapshot, in_use: &InUse, now: DateTime<Utc>, min_age_days: u32) -> Verdict {
    let keep = Verdict::Keep;
    let Some(image_id) = image_named_in(&s.description) else {
        return keep(if s.tags.source_image.is_some() {
            KeepReason::ImageNotNamed
        } else {
            KeepReason::NoProofOfOrigin
        });
    };
    if s.tags.keep {
        return keep(KeepReason::KeepTag);
    }
    if s.tags.backup {
        return keep(KeepReason::BackupManaged);
    }
    if s.tags.dlm {
        return keep(KeepReason::DlmManaged);
    }
    if s.state != SnapshotState::Completed {
        let state = match &s.state {
            SnapshotState::Pending => "pending".to_string(),
            SnapshotState::Error => "error".to_string(),
            SnapshotState::Other(o) => o.to_string(),
            SnapshotState::Completed => "completed".to_string(),
        };
        return keep(KeepReason::NotCompleted { state });
    }
    if let Some(state) = in_use.images.get(image_id) {
        return keep(KeepReason::ImageExists {
            image_id: image_id.to_string(),
            state: state.clone(),
        });
    }
    if in_use.recycled.contains(image_id) {
        return keep(KeepReason::ImageInRecycleBin {
            image_id: image_id.to_string(),
        });
    }
    if let Some(by) = in_use.snapshot_refs.get(&*s.id) {
        return keep(KeepReason::Referenced { by: by.clone() });
    }
    if let Some(by) = in_use.image_refs.get(image_id) {
        return keep(KeepReason::ImageReferenced {
            image_id: image_id.to_string(),
            by: by.clone(),
        });
    }
    if !old_enough(s.start_time, now, min_age_days) {
        return keep(KeepReason::TooYoung { min_age_days });
    }
    Verdict::Orphan(OrphanProof {
        image_id: image_id.to_string(),
        description: s.description.to_string(),
    })
}

/// Started at least `min_age_days` before `now`. An unknown start time is never old enough.
pub fn old_enough(
    start_time: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    min_age_days: u32,
) -> bool {
    start_time.is_some_and(|t| {
        now.signed_duration_since(t) >= chrono::Duration::days(i64::from(min_age_days))
    })
}

/// The value of the orphaned-since tag for `now`: `YYYY-MM-DD` (UTC).
pub fn mark_value(now: DateTime<Utc>) -> String {
    now.date_naive().format("%Y-%m-%d").to_string()
}

/// The date of an orphaned-since tag; `None` when it is not a `YYYY-MM-DD` date.
pub fn parse_mark(value: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d").ok()
}

/// What to do with one snapshot this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Nothing: not an orphan and not marked.
    None,
    /// An orphan not (validly) marked yet: tag it with today's date. A tag that is not a date,
    /// or a date in the future, is replaced, so the grace period starts again.
    Mark,
    /// Marked, but not an orphan any more: remove the tag.
    Unmark,
    /// An orphan marked `since`, whose grace period runs `days_left` more days (0: due, but
    /// this run only reports).
    Wait { since: NaiveDate, days_left: i64 },
    /// An orphan marked at least `grace_days` ago and still an orphan: delete it.
    Delete { since: NaiveDate },
}

/// Mark, wait, re-check, delete.
pub fn decide(
    is_orphan: bool,
    orphaned_since: Option<&str>,
    today: NaiveDate,
    mode: SweepMode,
    grace_days: u32,
) -> Action {
    match (is_orphan, orphaned_since) {
        (false, None) => Action::None,
        (false, Some(_)) => Action::Unmark,
        (true, None) => Action::Mark,
        (true, Some(value)) => {
            let Some(since) = parse_mark(value).filter(|d| *d <= today) else {
                return Action::Mark;
            };
            let elapsed = (today - since).num_days();
            let days_left = (i64::from(grace_days) - elapsed).max(0);
            if mode == SweepMode::Delete && elapsed >= i64::from(grace_days) {
                Action::Delete { since }
            } else {
                Action::Wait { since, days_left }
            }
        }
    }
}
