//! EC2: images and their snapshots.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use serde::Serialize;

use super::AwsResult;

/// The state of an image, as `DescribeImages` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageState {
    Pending,
    Available,
    Failed,
    Deregistered,
    Disabled,
    Other(String),
}

impl ImageState {
    pub fn parse(s: &str) -> Self {
        match s {
            "pending" => Self::Pending,
            "available" => Self::Available,
            "failed" => Self::Failed,
            "deregistered" => Self::Deregistered,
            "disabled" => Self::Disabled,
            other => Self::Other(other.to_string()),
        }
    }
    pub fn as_str(&self) -> &str {
        match self {
            Self::Pending => "pending",
            Self::Available => "available",
            Self::Failed => "failed",
            Self::Deregistered => "deregistered",
            Self::Disabled => "disabled",
            Self::Other(s) => s,
        }
    }
}

/// One EBS volume of an image's block device mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EbsVolume {
    pub device_name: String,
    pub snapshot_id: String,
    pub encrypted: bool,
}

/// An image, with what the product reads of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Image {
    pub id: String,
    pub region: String,
    pub name: String,
    pub owner_id: String,
    pub state: ImageState,
    pub tags: BTreeMap<String, String>,
    pub volumes: Vec<EbsVolume>,
    pub source_image_id: Option<String>,
    pub source_image_region: Option<String>,
    pub deprecation_time: Option<String>,
    pub creation_date: Option<String>,
    /// When an instance was last launched from it (EC2 updates it up to 24 hours late).
    pub last_launched_time: Option<String>,
    /// `enabled`, `enabled-with-cooldown`, `disabled` (or absent): while enabled the image
    /// cannot be deregistered.
    pub deregistration_protection: Option<String>,
    /// For one of the product's copies, the creation date of its source as read through EC2's
    /// lineage (`SourceImageId` / `SourceImageRegion`) once the copy was verified
    /// ([`crate::plan::verify_copy`]); never read from a tag. `None` for every other image and
    /// for a copy not (yet) verified. Not part of `DescribeImages`: adapters leave it `None`.
    pub verified_source_created: Option<String>,
    /// The watermarks the image carries (`ImageWatermarks`), each `<account>:<name>`: attached
    /// to it, or carried from its source by `CopyImage` / `CreateImage`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub watermarks: Vec<String>,
}

impl Image {
    pub fn is_encrypted(&self) -> bool {
        self.volumes.iter().any(|v| v.encrypted)
    }
}

/// Launch permissions of an image: who may launch it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LaunchPermissions {
    pub accounts: BTreeSet<String>,
    pub organizations: BTreeSet<String>,
    pub organizational_units: BTreeSet<String>,
    pub public: bool,
}

impl LaunchPermissions {
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
            && self.organizations.is_empty()
            && self.organizational_units.is_empty()
            && !self.public
    }

    /// What `self` has that `current` lacks.
    pub fn missing_from(&self, current: &LaunchPermissions) -> LaunchPermissions {
        LaunchPermissions {
            accounts: self
                .accounts
                .difference(&current.accounts)
                .cloned()
                .collect(),
            organizations: self
                .organizations
                .difference(&current.organizations)
                .cloned()
                .collect(),
            organizational_units: self
                .organizational_units
                .difference(&current.organizational_units)
                .cloned()
                .collect(),
            public: self.public && !current.public,
        }
    }

    /// Number of entities (the AMI sharing quota counts accounts, organizations and OUs).
    pub fn len(&self) -> usize {
        self.accounts.len()
            + self.organizations.len()
            + self.organizational_units.len()
            + usize::from(self.public)
    }
}

/// A snapshot, with what the product reads of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub id: String,
    pub encrypted: bool,
    /// The key ARN, for encrypted snapshots.
    pub kms_key_id: Option<String>,
    /// EC2's description (`Copied for DestinationAmi … from SourceAmi …` on a copy's snapshot,
    /// which EC2 writes and no one can change).
    pub description: String,
}

/// A `CopyImage` call, made in the destination Region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CopyRequest {
    pub source_region: String,
    pub source_image_id: String,
    pub destination_region: String,
    pub name: String,
    pub description: String,
    pub client_token: String,
    /// Encrypt the copy with this key (in the destination Region).
    pub kms_key_id: Option<String>,
    /// Tags put on the new image and its snapshots at creation.
    pub tags: BTreeMap<String, String>,
    /// Carry the source's user tags too.
    pub copy_image_tags: bool,
    /// A time-based copy: `SnapshotCopyCompletionDurationMinutes` (15 to 2,880, steps of 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_minutes: Option<u32>,
}

/// EC2 images.
#[async_trait]
pub trait Images: Send + Sync {
    /// `DescribeImages` of one image (including disabled ones); `None` when it does not exist.
    async fn describe_image(&self, region: &str, image_id: &str) -> AwsResult<Option<Image>>;
    /// `DescribeImages` of these images (any owner, disabled ones too), paged, at most 200 ids a
    /// call (the `image-id` filter's limit); those that do not exist are left out.
    async fn describe_images(&self, region: &str, image_ids: &[String]) -> AwsResult<Vec<Image>>;
    /// `DescribeImageAttribute launchPermission`, the owner's view (includes org/OU shares).
    async fn launch_permissions(
        &self,
        region: &str,
        image_id: &str,
    ) -> AwsResult<LaunchPermissions>;
    /// One `ModifyImageAttribute` adding all of `add`.
    async fn add_launch_permissions(
        &self,
        region: &str,
        image_id: &str,
        add: &LaunchPermissions,
    ) -> AwsResult<()>;
    /// `GetImageBlockPublicAccessState`: `true` when public sharing is blocked in the Region.
    async fn public_sharing_blocked(&self, region: &str) -> AwsResult<bool>;
    /// `CopyImage` in the destination Region; returns the new image id.
    async fn copy_image(&self, request: &CopyRequest) -> AwsResult<String>;
    /// Images owned by this account in the Region carrying tag `key` = `value`
    /// (including pending and disabled ones).
    async fn find_own_images_by_tag(
        &self,
        region: &str,
        key: &str,
        value: &str,
    ) -> AwsResult<Vec<Image>>;
    /// Images owned by this account in the Region that are `pending` (copies in flight, and
    /// images being created): what holds the Region's copy slots.
    async fn pending_images(&self, region: &str) -> AwsResult<Vec<Image>>;
    /// Images owned by this account in the Region whose name matches (`*` and `?` are
    /// wildcards, as in EC2's `name` filter).
    async fn find_own_images_by_name(&self, region: &str, name: &str) -> AwsResult<Vec<Image>>;
    /// `EnableImageDeprecation` at the given time (ISO 8601).
    async fn enable_deprecation(
        &self,
        region: &str,
        image_id: &str,
        deprecate_at: &str,
    ) -> AwsResult<()>;
    /// One `CreateTags` putting the same tags on the given resources (at most
    /// [`MAX_TAG_RESOURCES`]).
    async fn tag_resources(
        &self,
        region: &str,
        resource_ids: &[String],
        tags: &BTreeMap<String, String>,
    ) -> AwsResult<()>;
    /// One `DeleteTags` removing the given tag keys (any value) from the given resources (at
    /// most [`MAX_TAG_RESOURCES`]).
    async fn untag_resources(
        &self,
        region: &str,
        resource_ids: &[String],
        keys: &[&str],
    ) -> AwsResult<()>;
    /// One `ModifyImageAttribute` removing all of `remove`.
    async fn remove_launch_permissions(
        &self,
        region: &str,
        image_id: &str,
        remove: &LaunchPermissions,
    ) -> AwsResult<()>;
    /// `AttachImageWatermark`: the watermark `<own account>:<name>` on the image (the owner
    /// only; at most 5 per image; never on a public image).
    async fn attach_watermark(&self, region: &str, image_id: &str, name: &str) -> AwsResult<()>;
}

/// Most resource ids one `CreateTags` / `DeleteTags` call takes.
pub const MAX_TAG_RESOURCES: usize = 1000;

/// EBS snapshots.
#[async_trait]
pub trait Snapshots: Send + Sync {
    /// `DescribeSnapshots` of these ids.
    async fn describe_snapshots(
        &self,
        region: &str,
        snapshot_ids: &[String],
    ) -> AwsResult<Vec<Snapshot>>;
    /// `DescribeSnapshotAttribute createVolumePermission`: the account ids it is shared with.
    async fn create_volume_permissions(
        &self,
        region: &str,
        snapshot_id: &str,
    ) -> AwsResult<BTreeSet<String>>;
    /// One `ModifySnapshotAttribute` (flat `OperationType=add` + `UserIds` form) for at most
    /// 500 accounts.
    async fn add_create_volume_permission(
        &self,
        region: &str,
        snapshot_id: &str,
        accounts: &[String],
    ) -> AwsResult<()>;
    /// One `ModifySnapshotAttribute` (flat `OperationType=remove` + `UserIds`) for at most 500
    /// accounts.
    async fn remove_create_volume_permission(
        &self,
        region: &str,
        snapshot_id: &str,
        accounts: &[String],
    ) -> AwsResult<()>;
}
