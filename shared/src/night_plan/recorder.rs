//! The night's writes recorded instead of made: a port that passes every read to the real one
//! and keeps every write as a [`Write`], answering it as AWS would have (a new id where AWS
//! returns one). The copy line is not read (receiving would hide its entries from the real
//! drains), so a copy the night would queue shows as joining the line.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::Serialize;

use crate::ports::{
    AwsResult, CopyLine, CopyRequest, Grant, GrantRequest, Image, Images, KeyInfo, Keys,
    LaunchPermissions, LineEntry, Org, OrgAccount, Snapshot, Snapshots,
};
use crate::publish::ports::{
    EventEntry, Events, NewResourceShare, ParameterVersion, Parameters, ResourceShare,
    ResourceShares, ShareAssociations,
};
use crate::retire::ports::{
    ImageReference, Retirement, UsageEntry, UsageReport, UsageReportRequest,
};
use crate::retire::{STAGE_AT_TAG, STAGE_TAG};
use crate::sweep::inventory::{
    Inventory, OwnSnapshot, RecycledImage, Reference, ORPHANED_SINCE_TAG,
};
use crate::target_copies::TargetAccounts;

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
    inner: &'a P,
    writes: Mutex<Vec<Write>>,
    /// The images the listings returned, by id (the plan's rule attribution).
    seen: Mutex<HashMap<String, Image>>,
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

    fn record(&self, change: Change, action: &'static str, region: &str, resource: &str) {
        self.record_for(change, action, region, None, resource, Vec::new());
    }

    fn record_for(
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
    fn new_id(&self, prefix: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{prefix}-0planned{n:09x}")
    }
}

fn principals(p: &LaunchPermissions) -> Vec<String> {
    let mut out: Vec<String> = p.accounts.iter().cloned().collect();
    out.extend(p.organizations.iter().cloned());
    out.extend(p.organizational_units.iter().cloned());
    if p.public {
        out.push("all".to_string());
    }
    out
}

#[async_trait]
impl<P: Images> Images for Recorder<'_, P> {
    async fn describe_image(&self, region: &str, image_id: &str) -> AwsResult<Option<Image>> {
        self.inner.describe_image(region, image_id).await
    }
    async fn describe_images(&self, region: &str, image_ids: &[String]) -> AwsResult<Vec<Image>> {
        self.inner.describe_images(region, image_ids).await
    }
    async fn launch_permissions(
        &self,
        region: &str,
        image_id: &str,
    ) -> AwsResult<LaunchPermissions> {
        self.inner.launch_permissions(region, image_id).await
    }
    async fn add_launch_permissions(
        &self,
        region: &str,
        image_id: &str,
        add: &LaunchPermissions,
    ) -> AwsResult<()> {
        let change = Change::LaunchPermissionsAdded;
        let action = "ec2:ModifyImageAttribute";
        self.record_for(change, action, region, None, image_id, principals(add));
        Ok(())
    }
    async fn public_sharing_blocked(&self, region: &str) -> AwsResult<bool> {
        self.inner.public_sharing_blocked(region).await
    }
    async fn copy_image(&self, request: &CopyRequest) -> AwsResult<String> {
        let region = &request.destination_region;
        let from = format!("{} from {}", request.name, request.source_image_id);
        self.record(Change::CopiesStarted, "ec2:CopyImage", region, &from);
        Ok(self.new_id("ami"))
    }
    async fn find_own_images_by_tag(
        &self,
        region: &str,
        key: &str,
        value: &str,
    ) -> AwsResult<Vec<Image>> {
        self.inner.find_own_images_by_tag(region, key, value).await
    }
    async fn pending_images(&self, region: &str) -> AwsResult<Vec<Image>> {
        self.inner.pending_images(region).await
    }
    async fn find_own_images_by_name(&self, region: &str, name: &str) -> AwsResult<Vec<Image>> {
        self.inner.find_own_images_by_name(region, name).await
    }
    async fn enable_deprecation(
        &self,
        region: &str,
        image_id: &str,
        _deprecate_at: &str,
    ) -> AwsResult<()> {
        let action = "ec2:EnableImageDeprecation";
        self.record(Change::Deprecations, action, region, image_id);
        Ok(())
    }
    async fn tag_resources(
        &self,
        region: &str,
        resource_ids: &[String],
        tags: &BTreeMap<String, String>,
    ) -> AwsResult<()> {
        let change = if tags.contains_key(ORPHANED_SINCE_TAG) {
            Change::OrphansMarked
        } else if tags.contains_key(STAGE_TAG) || tags.contains_key(STAGE_AT_TAG) {
            Change::StageMarks
        } else {
            Change::Fingerprints
        };
        self.record(change, "ec2:CreateTags", region, &resource_ids.join(","));
        Ok(())
    }
    async fn untag_resources(
        &self,
        region: &str,
        resource_ids: &[String],
        keys: &[&str],
    ) -> AwsResult<()> {
        let change = if keys.contains(&ORPHANED_SINCE_TAG) {
            Change::OrphansUnmarked
        } else {
            Change::Fingerprints
        };
        self.record(change, "ec2:DeleteTags", region, &resource_ids.join(","));
        Ok(())
    }
    async fn remove_launch_permissions(
        &self,
        region: &str,
        image_id: &str,
        remove: &LaunchPermissions,
    ) -> AwsResult<()> {
        let change = Change::LaunchPermissionsRemoved;
        let action = "ec2:ModifyImageAttribute";
        self.record_for(change, action, region, None, image_id, principals(remove));
        Ok(())
    }
}

#[async_trait]
impl<P: Snapshots> Snapshots for Recorder<'_, P> {
    async fn describe_snapshots(
        &self,
        region: &str,
        snapshot_ids: &[String],
    ) -> AwsResult<Vec<Snapshot>> {
        self.inner.describe_snapshots(region, snapshot_ids).await
    }
    async fn create_volume_permissions(
        &self,
        region: &str,
        snapshot_id: &str,
    ) -> AwsResult<BTreeSet<String>> {
        self.inner
            .create_volume_permissions(region, snapshot_id)
            .await
    }
    async fn add_create_volume_permission(
        &self,
        region: &str,
        snapshot_id: &str,
        accounts: &[String],
    ) -> AwsResult<()> {
        let (change, action) = (Change::SnapshotSharesAdded, "ec2:ModifySnapshotAttribute");
        self.record_for(change, action, region, None, snapshot_id, accounts.to_vec());
        Ok(())
    }
    async fn remove_create_volume_permission(
        &self,
        region: &str,
        snapshot_id: &str,
        accounts: &[String],
    ) -> AwsResult<()> {
        let (change, action) = (Change::SnapshotSharesRemoved, "ec2:ModifySnapshotAttribute");
        self.record_for(change, action, region, None, snapshot_id, accounts.to_vec());
        Ok(())
    }
}

#[async_trait]
impl<P: Keys> Keys for Recorder<'_, P> {
    async fn describe_key(&self, region: &str, key_id: &str) -> AwsResult<KeyInfo> {
        self.inner.describe_key(region, key_id).await
    }
    async fn key_policy(&self, region: &str, key_arn: &str) -> AwsResult<String> {
        self.inner.key_policy(region, key_arn).await
    }
    async fn list_grants(&self, region: &str, key_arn: &str) -> AwsResult<Vec<Grant>> {
        self.inner.list_grants(region, key_arn).await
    }
    async fn key_tag(&self, region: &str, key_arn: &str, tag: &str) -> AwsResult<Option<String>> {
        self.inner.key_tag(region, key_arn, tag).await
    }
    async fn set_key_tag(&self, region: &str, key_arn: &str, _: &str, _: &str) -> AwsResult<()> {
        self.record(Change::KeyMarks, "kms:TagResource", region, key_arn);
        Ok(())
    }
    async fn remove_key_tag(&self, region: &str, key_arn: &str, _: &str) -> AwsResult<()> {
        self.record(Change::KeyMarks, "kms:UntagResource", region, key_arn);
        Ok(())
    }
    async fn create_grant(&self, region: &str, grant: &GrantRequest) -> AwsResult<()> {
        let grantee = vec![grant.grantee_principal.clone()];
        let (change, action) = (Change::GrantsCreated, "kms:CreateGrant");
        self.record_for(change, action, region, None, &grant.key_arn, grantee);
        Ok(())
    }
    async fn revoke_grant(&self, region: &str, key_arn: &str, grant_id: &str) -> AwsResult<()> {
        let what = format!("{key_arn} grant {grant_id}");
        self.record(Change::GrantsRevoked, "kms:RevokeGrant", region, &what);
        Ok(())
    }
    async fn generate_mac(&self, region: &str, key_id: &str, message: &[u8]) -> AwsResult<Vec<u8>> {
        self.inner.generate_mac(region, key_id, message).await
    }
}

#[async_trait]
impl<P: CopyLine> CopyLine for Recorder<'_, P> {
    async fn line_send(&self, region: &str, _: &str, dedup_id: &str, _: &str) -> AwsResult<()> {
        self.record(Change::CopiesQueued, "sqs:SendMessage", region, dedup_id);
        Ok(())
    }
    /// Not read: receiving hides the entries from the real drains for a while.
    async fn line_receive(&self, _: &str, _: usize, _: u32) -> AwsResult<Vec<LineEntry>> {
        Ok(Vec::new())
    }
    async fn line_delete(&self, region: &str, receipt: &str) -> AwsResult<()> {
        self.record(Change::Line, "sqs:DeleteMessage", region, receipt);
        Ok(())
    }
    async fn line_release(&self, region: &str, receipt: &str) -> AwsResult<()> {
        self.record(Change::Line, "sqs:ChangeMessageVisibility", region, receipt);
        Ok(())
    }
    async fn line_length(&self, region: &str) -> AwsResult<usize> {
        self.inner.line_length(region).await
    }
    async fn follow_send(&self, entries: &[(String, u32)]) -> AwsResult<()> {
        for (body, _) in entries {
            let action = "sqs:SendMessageBatch";
            self.record(Change::TargetCopiesFollowed, action, "", body);
        }
        Ok(())
    }
}

#[async_trait]
impl<P: Org> Org for Recorder<'_, P> {
    async fn organization_id(&self) -> AwsResult<String> {
        self.inner.organization_id().await
    }
    async fn describe_account(&self, account_id: &str) -> AwsResult<Option<OrgAccount>> {
        self.inner.describe_account(account_id).await
    }
    async fn all_accounts(&self) -> AwsResult<Vec<OrgAccount>> {
        self.inner.all_accounts().await
    }
    async fn accounts_for_parent(&self, parent_id: &str) -> AwsResult<Vec<OrgAccount>> {
        self.inner.accounts_for_parent(parent_id).await
    }
    async fn child_ous(&self, parent_id: &str) -> AwsResult<Vec<String>> {
        self.inner.child_ous(parent_id).await
    }
}

#[async_trait]
impl<P: Retirement> Retirement for Recorder<'_, P> {
    async fn image_references(
        &self,
        region: &str,
        image_ids: &[String],
    ) -> AwsResult<Vec<ImageReference>> {
        self.inner.image_references(region, image_ids).await
    }
    async fn create_usage_report(
        &self,
        region: &str,
        request: &UsageReportRequest,
    ) -> AwsResult<String> {
        let action = "ec2:CreateImageUsageReport";
        let (change, image) = (Change::UsageReportsRequested, &request.image_id);
        self.record_for(
            change,
            action,
            region,
            None,
            image,
            request.account_ids.clone(),
        );
        Ok(self.new_id("amiur"))
    }
    async fn usage_reports(&self, region: &str, image_id: &str) -> AwsResult<Vec<UsageReport>> {
        self.inner.usage_reports(region, image_id).await
    }
    async fn usage_report_entries(
        &self,
        region: &str,
        report_ids: &[String],
    ) -> AwsResult<Vec<UsageEntry>> {
        self.inner.usage_report_entries(region, report_ids).await
    }
    async fn disable_image(&self, region: &str, image_id: &str) -> AwsResult<()> {
        self.record(Change::Disables, "ec2:DisableImage", region, image_id);
        Ok(())
    }
    async fn deregister_image(&self, region: &str, image_id: &str) -> AwsResult<()> {
        let action = "ec2:DeregisterImage";
        self.record(Change::Deregistrations, action, region, image_id);
        Ok(())
    }
}

#[async_trait]
impl<P: Inventory> Inventory for Recorder<'_, P> {
    async fn list_own_snapshots(
        &self,
        region: &str,
        owner_id: &str,
    ) -> AwsResult<Vec<OwnSnapshot>> {
        self.inner.list_own_snapshots(region, owner_id).await
    }
    async fn list_own_images(&self, region: &str) -> AwsResult<Vec<Image>> {
        let images = self.inner.list_own_images(region).await?;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.extend(images.iter().map(|i| (i.id.clone(), i.clone())));
        Ok(images)
    }
    async fn list_recycle_bin_images(&self, region: &str) -> AwsResult<Vec<RecycledImage>> {
        self.inner.list_recycle_bin_images(region).await
    }
    async fn list_launch_template_references(&self, region: &str) -> AwsResult<Vec<Reference>> {
        self.inner.list_launch_template_references(region).await
    }
    async fn list_launch_configuration_references(
        &self,
        region: &str,
    ) -> AwsResult<Vec<Reference>> {
        self.inner
            .list_launch_configuration_references(region)
            .await
    }
    async fn delete_snapshot(&self, region: &str, snapshot_id: &str) -> AwsResult<()> {
        let action = "ec2:DeleteSnapshot";
        self.record(Change::OrphansDeleted, action, region, snapshot_id);
        Ok(())
    }
}

#[async_trait]
impl<P: Parameters> Parameters for Recorder<'_, P> {
    async fn get_parameters(
        &self,
        region: &str,
        names: &[String],
    ) -> AwsResult<BTreeMap<String, ParameterVersion>> {
        self.inner.get_parameters(region, names).await
    }
    async fn put_image_parameter(
        &self,
        region: &str,
        name: &str,
        image_id: &str,
        _: &str,
    ) -> AwsResult<i64> {
        let what = format!("{name} → {image_id}");
        self.record(Change::ParametersMoved, "ssm:PutParameter", region, &what);
        Ok(0)
    }
    async fn label_parameter_version(
        &self,
        region: &str,
        name: &str,
        _: i64,
        label: &str,
    ) -> AwsResult<()> {
        let what = format!("{name} label {label}");
        let action = "ssm:LabelParameterVersion";
        self.record(Change::ParameterLabels, action, region, &what);
        Ok(())
    }
    async fn parameter_labels(
        &self,
        region: &str,
        name: &str,
    ) -> AwsResult<Vec<(i64, Vec<String>)>> {
        self.inner.parameter_labels(region, name).await
    }
    async fn unlabel_parameter_version(
        &self,
        region: &str,
        name: &str,
        _: i64,
        labels: &[String],
    ) -> AwsResult<()> {
        let what = format!("{name} unlabel {}", labels.join(","));
        let action = "ssm:UnlabelParameterVersion";
        self.record(Change::ParameterLabels, action, region, &what);
        Ok(())
    }
}

#[async_trait]
impl<P: ResourceShares> ResourceShares for Recorder<'_, P> {
    async fn resource_shares_named(
        &self,
        region: &str,
        name: &str,
    ) -> AwsResult<Vec<ResourceShare>> {
        self.inner.resource_shares_named(region, name).await
    }
    async fn create_resource_share(
        &self,
        region: &str,
        share: &NewResourceShare,
    ) -> AwsResult<ResourceShare> {
        let (change, action) = (Change::ResourceShares, "ram:CreateResourceShare");
        let who = share.principals.clone();
        self.record_for(change, action, region, None, &share.name, who);
        Ok(ResourceShare {
            arn: self.new_id("arn:aws:ram:planned:resource-share/share"),
            name: share.name.clone(),
            allow_external_principals: share.allow_external_principals,
        })
    }
    async fn share_associations(
        &self,
        region: &str,
        share_arn: &str,
    ) -> AwsResult<ShareAssociations> {
        self.inner.share_associations(region, share_arn).await
    }
    async fn associate_resource_share(
        &self,
        region: &str,
        share_arn: &str,
        principals: &[String],
        _: &[String],
    ) -> AwsResult<()> {
        let (change, action) = (Change::ResourceShares, "ram:AssociateResourceShare");
        self.record_for(change, action, region, None, share_arn, principals.to_vec());
        Ok(())
    }
    async fn disassociate_principals(
        &self,
        region: &str,
        share_arn: &str,
        principals: &[String],
    ) -> AwsResult<()> {
        let (change, action) = (Change::ResourceShares, "ram:DisassociateResourceShare");
        self.record_for(change, action, region, None, share_arn, principals.to_vec());
        Ok(())
    }
    async fn allow_external_principals(&self, region: &str, share_arn: &str) -> AwsResult<()> {
        let action = "ram:UpdateResourceShare";
        self.record(Change::ResourceShares, action, region, share_arn);
        Ok(())
    }
}

#[async_trait]
impl<P: Events> Events for Recorder<'_, P> {
    async fn put_events(&self, region: &str, entries: &[EventEntry]) -> AwsResult<()> {
        let what = format!("{} events", entries.len());
        self.record(Change::Events, "events:PutEvents", region, &what);
        Ok(())
    }
}

#[async_trait]
impl<P: TargetAccounts> TargetAccounts for Recorder<'_, P> {
    async fn target_copies(
        &self,
        account: &str,
        region: &str,
        publisher: &str,
    ) -> AwsResult<Vec<Image>> {
        self.inner.target_copies(account, region, publisher).await
    }
    async fn target_key(
        &self,
        account: &str,
        region: &str,
        key: Option<&str>,
    ) -> AwsResult<KeyInfo> {
        self.inner.target_key(account, region, key).await
    }
    async fn copy_into_target(&self, account: &str, request: &CopyRequest) -> AwsResult<String> {
        let region = &request.destination_region;
        let from = format!("{} from {}", request.name, request.source_image_id);
        let (change, action) = (Change::TargetCopiesStarted, "ec2:CopyImage");
        self.record_for(change, action, region, Some(account), &from, Vec::new());
        Ok(self.new_id("ami"))
    }
    async fn tag_target_image(
        &self,
        account: &str,
        region: &str,
        image_id: &str,
        _: &BTreeMap<String, String>,
    ) -> AwsResult<()> {
        let (change, action) = (Change::TargetImagesChanged, "ec2:CreateTags");
        self.record_for(change, action, region, Some(account), image_id, Vec::new());
        Ok(())
    }
    async fn deprecate_target_image(
        &self,
        account: &str,
        region: &str,
        image_id: &str,
        _: &str,
    ) -> AwsResult<()> {
        let (change, action) = (Change::TargetImagesChanged, "ec2:EnableImageDeprecation");
        self.record_for(change, action, region, Some(account), image_id, Vec::new());
        Ok(())
    }
    async fn target_parameters(
        &self,
        account: &str,
        region: &str,
        names: &[String],
    ) -> AwsResult<BTreeMap<String, ParameterVersion>> {
        self.inner.target_parameters(account, region, names).await
    }
    async fn put_target_parameter(
        &self,
        account: &str,
        region: &str,
        name: &str,
        image_id: &str,
        _: &str,
    ) -> AwsResult<i64> {
        let what = format!("{name} → {image_id}");
        let (change, action) = (Change::ParametersMoved, "ssm:PutParameter");
        self.record_for(change, action, region, Some(account), &what, Vec::new());
        Ok(0)
    }
    async fn target_parameter_history(
        &self,
        account: &str,
        region: &str,
        name: &str,
    ) -> AwsResult<Vec<(i64, Vec<String>)>> {
        self.inner
            .target_parameter_history(account, region, name)
            .await
    }
    async fn unlabel_target_parameter(
        &self,
        account: &str,
        region: &str,
        name: &str,
        _: i64,
        _: &[String],
    ) -> AwsResult<()> {
        let (change, action) = (Change::ParameterLabels, "ssm:UnlabelParameterVersion");
        self.record_for(change, action, region, Some(account), name, Vec::new());
        Ok(())
    }
    async fn label_target_parameter(
        &self,
        account: &str,
        region: &str,
        name: &str,
        _: i64,
        _: &str,
    ) -> AwsResult<()> {
        let (change, action) = (Change::ParameterLabels, "ssm:LabelParameterVersion");
        self.record_for(change, action, region, Some(account), name, Vec::new());
        Ok(())
    }
}
