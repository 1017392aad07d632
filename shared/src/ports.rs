//! The ports: what the product needs from AWS, in its own words and types.
//!
//! No SDK type crosses these traits. The adapters in [`crate::aws`] implement them over the
//! real SDK clients; `amishare_testkit::FakeAws` (a dev-only crate) implements them in memory. Listing methods return
//! everything: paginating is the adapter's job.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use serde::Serialize;

use crate::error::AwsError;

pub type AwsResult<T> = Result<T, AwsError>;

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
}

/// Who manages a KMS key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum KeyManager {
    /// AWS managed (`aws/ebs`): cannot be used by other accounts, so its snapshots cannot be
    /// shared.
    Aws,
    Customer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    pub arn: String,
    pub manager: KeyManager,
    pub enabled: bool,
}

/// A grant on a KMS key, as `ListGrants` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    pub grant_id: String,
    pub name: Option<String>,
    pub grantee_principal: String,
}

/// A grant to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantRequest {
    pub key_arn: String,
    pub grantee_principal: String,
    pub name: String,
}

/// An account of the organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrgAccount {
    pub id: String,
    /// `ACTIVE`, `SUSPENDED`, `PENDING_CLOSURE`, ...
    pub status: String,
}

impl OrgAccount {
    pub fn is_active(&self) -> bool {
        self.status == "ACTIVE"
    }
}

/// A `CopyImage` call, made in the destination Region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
}

/// EC2 images.
#[async_trait]
pub trait Images: Send + Sync {
    /// `DescribeImages` of one image (including disabled ones); `None` when it does not exist.
    async fn describe_image(&self, region: &str, image_id: &str) -> AwsResult<Option<Image>>;
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

/// KMS keys.
#[async_trait]
pub trait Keys: Send + Sync {
    /// `DescribeKey`: the key's ARN and who manages it.
    async fn describe_key(&self, region: &str, key_id: &str) -> AwsResult<KeyInfo>;
    /// `ListGrants` of the key, all pages.
    async fn list_grants(&self, region: &str, key_arn: &str) -> AwsResult<Vec<Grant>>;
    /// `CreateGrant` with the operations launching and copying need.
    async fn create_grant(&self, region: &str, grant: &GrantRequest) -> AwsResult<()>;
    /// `RevokeGrant` (the key owner's way to delete a grant).
    async fn revoke_grant(&self, region: &str, key_arn: &str, grant_id: &str) -> AwsResult<()>;
}

/// AWS Organizations (read-only).
#[async_trait]
pub trait Org: Send + Sync {
    /// `DescribeOrganization`: the id (`o-…`) of the caller's organization.
    async fn organization_id(&self) -> AwsResult<String>;
    /// `ListAccounts`: every account of the organization.
    async fn all_accounts(&self) -> AwsResult<Vec<OrgAccount>>;
    /// `ListAccountsForParent`: accounts directly under a root or OU.
    async fn accounts_for_parent(&self, parent_id: &str) -> AwsResult<Vec<OrgAccount>>;
    /// `ListChildren(ORGANIZATIONAL_UNIT)`: OUs directly under a root or OU.
    async fn child_ous(&self, parent_id: &str) -> AwsResult<Vec<String>>;
}

/// One version of a Parameter Store parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParameterVersion {
    pub name: String,
    pub value: String,
    pub version: i64,
}

/// Parameter Store, for the parameters that publish a rule's newest image.
#[async_trait]
pub trait Parameters: Send + Sync {
    /// One `GetParameters` of at most 10 names, each optionally with a `:<label>` or
    /// `:<version>` selector; the parameters found, keyed by the name as requested.
    async fn get_parameters(
        &self,
        region: &str,
        names: &[String],
    ) -> AwsResult<BTreeMap<String, ParameterVersion>>;
    /// `PutParameter` of an image id: type `String`, data type `aws:ec2:image`, advanced tier,
    /// overwrite. Returns the new version.
    async fn put_image_parameter(
        &self,
        region: &str,
        name: &str,
        image_id: &str,
        description: &str,
    ) -> AwsResult<i64>;
    /// `LabelParameterVersion` (a label sits on one version at a time: it moves).
    async fn label_parameter_version(
        &self,
        region: &str,
        name: &str,
        version: i64,
        label: &str,
    ) -> AwsResult<()>;
    /// `GetParameterHistory`, all pages, oldest first: (version, labels).
    async fn parameter_labels(
        &self,
        region: &str,
        name: &str,
    ) -> AwsResult<Vec<(i64, Vec<String>)>>;
    /// `UnlabelParameterVersion`.
    async fn unlabel_parameter_version(
        &self,
        region: &str,
        name: &str,
        version: i64,
        labels: &[String],
    ) -> AwsResult<()>;
}

/// An AWS RAM resource share owned by this account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceShare {
    pub arn: String,
    pub name: String,
    pub allow_external_principals: bool,
}

/// A resource share to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewResourceShare {
    pub name: String,
    pub resource_arns: Vec<String>,
    pub principals: Vec<String>,
    pub allow_external_principals: bool,
    pub tags: BTreeMap<String, String>,
    pub client_token: String,
}

/// What a resource share holds and whom it is shared with (associated or associating).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShareAssociations {
    pub principals: BTreeSet<String>,
    pub resources: BTreeSet<String>,
}

/// AWS RAM.
#[async_trait]
pub trait ResourceShares: Send + Sync {
    /// `GetResourceShares` (owner `SELF`, status `ACTIVE`, this name), all pages.
    async fn resource_shares_named(
        &self,
        region: &str,
        name: &str,
    ) -> AwsResult<Vec<ResourceShare>>;
    /// `CreateResourceShare`.
    async fn create_resource_share(
        &self,
        region: &str,
        share: &NewResourceShare,
    ) -> AwsResult<ResourceShare>;
    /// `GetResourceShareAssociations` of both types, all pages.
    async fn share_associations(
        &self,
        region: &str,
        share_arn: &str,
    ) -> AwsResult<ShareAssociations>;
    /// One `AssociateResourceShare` adding principals and/or resources.
    async fn associate_resource_share(
        &self,
        region: &str,
        share_arn: &str,
        principals: &[String],
        resource_arns: &[String],
    ) -> AwsResult<()>;
    /// One `DisassociateResourceShare` removing principals.
    async fn disassociate_principals(
        &self,
        region: &str,
        share_arn: &str,
        principals: &[String],
    ) -> AwsResult<()>;
    /// `UpdateResourceShare` allowing principals outside the organization.
    async fn allow_external_principals(&self, region: &str, share_arn: &str) -> AwsResult<()>;
}

/// One event for `PutEvents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventEntry {
    /// `default` or a bus ARN.
    pub bus: String,
    pub source: String,
    pub detail_type: String,
    /// JSON text.
    pub detail: String,
    pub resources: Vec<String>,
}

/// Amazon EventBridge.
#[async_trait]
pub trait Events: Send + Sync {
    /// One `PutEvents` in `region`; an entry EventBridge refuses fails the call with the
    /// entry's error code.
    async fn put_events(&self, region: &str, entries: &[EventEntry]) -> AwsResult<()>;
}

/// What in the owner account references an image (`DescribeImageReferences`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageReference {
    pub image_id: String,
    /// `ec2:Instance`, `ec2:LaunchTemplate`, `ssm:Parameter`, `imagebuilder:ImageRecipe`, ...
    pub resource_type: String,
    pub arn: String,
}

/// An image usage report (`DescribeImageUsageReports`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageReport {
    pub report_id: String,
    pub image_id: String,
    /// `pending`, `available`, `failed`, ...
    pub state: String,
    pub state_reason: Option<String>,
    /// RFC 3339.
    pub creation_time: Option<String>,
    pub expiration_time: Option<String>,
    pub account_ids: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

/// One line of a usage report: an account's resources of one type that use the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageEntry {
    pub report_id: String,
    pub account_id: String,
    /// `ec2:Instance`, `ec2:LaunchTemplate`.
    pub resource_type: String,
    pub usage_count: i64,
}

/// A usage report to request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageReportRequest {
    pub image_id: String,
    /// At most [`MAX_USAGE_REPORT_ACCOUNTS`]; empty: every account.
    pub account_ids: Vec<String>,
    pub tags: BTreeMap<String, String>,
    pub client_token: String,
}

/// Most accounts one `CreateImageUsageReport` takes.
pub const MAX_USAGE_REPORT_ACCOUNTS: usize = 200;
/// Most images one `DescribeImageReferences` takes.
pub const MAX_REFERENCE_IMAGES: usize = 10;

/// Retiring images: what still uses them, and the stages past deprecation.
#[async_trait]
pub trait Retirement: Send + Sync {
    /// `DescribeImageReferences` of at most [`MAX_REFERENCE_IMAGES`] images: instances, every
    /// launch template version, Parameter Store parameters, Image Builder recipes; all pages.
    async fn image_references(
        &self,
        region: &str,
        image_ids: &[String],
    ) -> AwsResult<Vec<ImageReference>>;
    /// `CreateImageUsageReport` over instances and every launch template version; returns
    /// the report id.
    async fn create_usage_report(
        &self,
        region: &str,
        request: &UsageReportRequest,
    ) -> AwsResult<String>;
    /// `DescribeImageUsageReports` of one image, all pages.
    async fn usage_reports(&self, region: &str, image_id: &str) -> AwsResult<Vec<UsageReport>>;
    /// `DescribeImageUsageReportEntries` of these reports, all pages.
    async fn usage_report_entries(
        &self,
        region: &str,
        report_ids: &[String],
    ) -> AwsResult<Vec<UsageEntry>>;
    /// `DisableImage`: no new launches, and the image becomes private.
    async fn disable_image(&self, region: &str, image_id: &str) -> AwsResult<()>;
    /// `DeregisterImage`, keeping the snapshots (the orphan sweep reclaims them, with proof).
    async fn deregister_image(&self, region: &str, image_id: &str) -> AwsResult<()>;
}

/// Everything the sharing functions need.
pub trait Aws:
    Images + Snapshots + Keys + Org + Parameters + ResourceShares + Events + Retirement
{
}
impl<T: Images + Snapshots + Keys + Org + Parameters + ResourceShares + Events + Retirement> Aws
    for T
{
}
