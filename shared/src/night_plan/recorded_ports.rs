//! The recorder over the functions' own ports (EC2 images and snapshots, KMS, the copy line,
//! Organizations): reads passed through, writes recorded.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;

use super::recorder::{Change, Recorder};
use crate::ports::{
    AwsResult, CopyLine, CopyRequest, Grant, GrantRequest, Image, Images, KeyInfo, Keys,
    LaunchPermissions, LineEntry, Org, OrgAccount, Snapshot, Snapshots,
};
use crate::retire::{STAGE_AT_TAG, STAGE_TAG};
use crate::sweep::inventory::ORPHANED_SINCE_TAG;

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
    async fn attach_watermark(&self, region: &str, image_id: &str, name: &str) -> AwsResult<()> {
        let what = format!("{image_id} watermark {name}");
        self.record(
            Change::Watermarks,
            "ec2:AttachImageWatermark",
            region,
            &what,
        );
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
    async fn effective_ec2_policy(&self, account_id: &str) -> AwsResult<Option<String>> {
        self.inner.effective_ec2_policy(account_id).await
    }
}
