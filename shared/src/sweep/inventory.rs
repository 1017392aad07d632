//! The inventory port: what the nightly sweeper reads of a whole Region (every snapshot,
//! every image, the Recycle Bin, every launch template version, every launch configuration)
//! and the few writes it makes (mark / unmark / delete snapshots, remove shares, revoke grants).
//!
//! Listings return everything or fail: paginating is the adapter's job, and a listing that
//! fails on any page is an error, never a shorter list (a partial inventory is not an
//! inventory). Snapshots carry only what the sweeper needs, so 100,000 of them fit in a small
//! Lambda.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::names::{MANAGED_TAG, SOURCE_IMAGE_TAG};
use crate::ports::{AwsResult, Image};

/// Tag the sweeper puts on a snapshot it found orphaned: the date (`YYYY-MM-DD`, UTC) it was
/// first found so.
pub const ORPHANED_SINCE_TAG: &str = "ami-share:orphaned-since";
/// Tag that makes the sweeper leave a snapshot alone, whatever its value.
pub const KEEP_TAG: &str = "ami-share:keep";
/// Prefix of the tags AWS Backup puts on what it manages (`aws:backup:source-resource`, ...).
pub const BACKUP_TAG_PREFIX: &str = "aws:backup:";
/// Prefix of the tags Data Lifecycle Manager puts on what it manages
/// (`aws:dlm:lifecycle-policy-id`, ...).
pub const DLM_TAG_PREFIX: &str = "aws:dlm:";

/// The state of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotState {
    Pending,
    Completed,
    Error,
    Other(Box<str>),
}

impl SnapshotState {
    pub fn parse(s: &str) -> Self {
        match s {
            "pending" => Self::Pending,
            "completed" => Self::Completed,
            "error" => Self::Error,
            other => Self::Other(other.into()),
        }
    }
}

/// The few tags of a snapshot the sweeper reads; every other tag is dropped on listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SnapshotTags {
    /// Value of [`ORPHANED_SINCE_TAG`].
    pub orphaned_since: Option<Box<str>>,
    /// [`KEEP_TAG`] is present.
    pub keep: bool,
    /// Some `aws:backup:*` tag is present.
    pub backup: bool,
    /// Some `aws:dlm:*` tag is present.
    pub dlm: bool,
    /// Value of [`SOURCE_IMAGE_TAG`] (our copies' snapshots carry it).
    pub source_image: Option<Box<str>>,
    /// [`MANAGED_TAG`] is present (the snapshots of a source the product shared).
    pub managed: bool,
}

impl SnapshotTags {
    /// Keep what the sweeper reads of a snapshot's tags.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut t = SnapshotTags::default();
        for (k, v) in pairs {
            match k {
                ORPHANED_SINCE_TAG => t.orphaned_since = Some(v.into()),
                KEEP_TAG => t.keep = true,
                SOURCE_IMAGE_TAG => t.source_image = Some(v.into()),
                MANAGED_TAG => t.managed = true,
                _ if k.starts_with(BACKUP_TAG_PREFIX) => t.backup = true,
                _ if k.starts_with(DLM_TAG_PREFIX) => t.dlm = true,
                _ => {}
            }
        }
        t
    }
}

/// A snapshot owned by this account, as the sweeper sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnSnapshot {
    // Boxed strings, not `String`s: a Region holds up to a million of these (8 bytes each saved).
    pub id: Box<str>,
    pub description: Box<str>,
    pub size_gib: u64,
    /// `None` when AWS did not say (treated as "too young to judge").
    pub start_time: Option<DateTime<Utc>>,
    pub state: SnapshotState,
    pub tags: SnapshotTags,
    /// The KMS key ARN of an encrypted snapshot, shared between the snapshots of one key (a
    /// Region has few keys and up to a million snapshots).
    pub kms_key_id: Option<Arc<str>>,
}

/// An image in the Recycle Bin (it can be restored, so its snapshots are in use).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecycledImage {
    pub id: String,
    pub name: String,
}

/// Something outside the image list that references snapshots or images: one launch
/// template version, or one launch configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reference {
    /// Human-readable: `launch template lt-0abc version 3`, `launch configuration web-v2`.
    pub by: String,
    pub snapshot_ids: BTreeSet<String>,
    pub image_ids: BTreeSet<String>,
}

/// What the sweeper needs of one Region, beyond the sharing ports.
#[async_trait]
pub trait Inventory: Send + Sync {
    /// `DescribeSnapshots` with the `owner-id` filter, all pages.
    async fn list_own_snapshots(&self, region: &str, owner_id: &str)
        -> AwsResult<Vec<OwnSnapshot>>;
    /// `DescribeImages` `Owners=self`, `IncludeDisabled`, `IncludeDeprecated`, all pages: every
    /// image of ours in any state.
    async fn list_own_images(&self, region: &str) -> AwsResult<Vec<Image>>;
    /// `ListImagesInRecycleBin`, all pages.
    async fn list_recycle_bin_images(&self, region: &str) -> AwsResult<Vec<RecycledImage>>;
    /// `DescribeLaunchTemplates` then `DescribeLaunchTemplateVersions` of each template, every
    /// version: one [`Reference`] per version.
    async fn list_launch_template_references(&self, region: &str) -> AwsResult<Vec<Reference>>;
    /// `autoscaling:DescribeLaunchConfigurations`, all pages: one [`Reference`] each.
    async fn list_launch_configuration_references(&self, region: &str)
        -> AwsResult<Vec<Reference>>;
    /// `DeleteSnapshot`. `InvalidSnapshot.InUse` is returned as is: the caller must stop.
    async fn delete_snapshot(&self, region: &str, snapshot_id: &str) -> AwsResult<()>;
}

#[cfg(test)]
mod tests {
    /// A Region holds up to a million snapshots: what the sweeper keeps of each stays small
    /// (the benchmark measures the whole: docs/scale.md).
    #[test]
    fn a_snapshot_takes_at_most_136_bytes_before_its_strings() {
        assert!(
            std::mem::size_of::<super::OwnSnapshot>() <= 136,
            "{}",
            std::mem::size_of::<super::OwnSnapshot>()
        );
    }
}
