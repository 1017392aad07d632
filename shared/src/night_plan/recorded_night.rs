//! The recorder over the night's own ports (retirement, the inventory, publishing, target
//! accounts): reads passed through, writes recorded.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::recorder::{Change, Recorder};
use crate::ports::{AwsResult, CopyRequest, Image, KeyInfo};
use crate::publish::ports::{
    EventEntry, Events, NewResourceShare, ParameterVersion, Parameters, ResourceShare,
    ResourceShares, ShareAssociations,
};
use crate::retire::ports::{
    ImageReference, Retirement, UsageEntry, UsageReport, UsageReportRequest,
};
use crate::sweep::inventory::{Inventory, OwnSnapshot, RecycledImage, Reference};
use crate::target_copies::TargetAccounts;

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
    async fn allowed_images_settings(
        &self,
        account: &str,
        region: &str,
    ) -> AwsResult<crate::allowed::Settings> {
        self.inner.allowed_images_settings(account, region).await
    }
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
