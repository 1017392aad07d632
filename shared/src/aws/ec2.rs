use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use aws_sdk_ec2::types::{
    Filter, ImageAttributeName, LaunchPermission, LaunchPermissionModifications, OperationType,
    PermissionGroup, ResourceType, SnapshotAttributeName, Tag, TagSpecification,
};

use super::{aws_error, AwsPorts};
use crate::error::AwsError;
use crate::ports::{AwsResult, CopyRequest, Image, Images, LaunchPermissions, Snapshot, Snapshots};

pub(super) use super::convert::convert_image;

/// The `LaunchPermission` entries of one `ModifyImageAttribute` (add or remove).
pub(super) fn launch_permission_entries(lp: &LaunchPermissions) -> Vec<LaunchPermission> {
    let mut entries: Vec<LaunchPermission> = Vec::new();
    entries.extend(
        lp.accounts
            .iter()
            .map(|a| LaunchPermission::builder().user_id(a).build()),
    );
    entries.extend(
        lp.organizations
            .iter()
            .map(|o| LaunchPermission::builder().organization_arn(o).build()),
    );
    entries.extend(lp.organizational_units.iter().map(|o| {
        LaunchPermission::builder()
            .organizational_unit_arn(o)
            .build()
    }));
    if lp.public {
        entries.push(
            LaunchPermission::builder()
                .group(PermissionGroup::All)
                .build(),
        );
    }
    entries
}

fn tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

impl AwsPorts {
    /// One `ModifyImageAttribute` of the launch permissions (adding or removing).
    async fn modify_launch_permissions(
        &self,
        region: &str,
        image_id: &str,
        modifications: LaunchPermissionModifications,
    ) -> AwsResult<()> {
        self.limit(region, "ModifyImageAttribute").await;
        self.ec2(region)
            .modify_image_attribute()
            .image_id(image_id)
            .launch_permission(modifications)
            .send()
            .await
            .map_err(|e| aws_error("ec2", "ModifyImageAttribute", image_id, e))?;
        Ok(())
    }

    /// One `ModifySnapshotAttribute` of createVolumePermission, in the flat form (OperationType +
    /// UserIds): the structured CreateVolumePermission form is the same for AWS, but the local
    /// emulator ignores it.
    async fn modify_create_volume_permission(
        &self,
        region: &str,
        snapshot_id: &str,
        operation: OperationType,
        accounts: &[String],
    ) -> AwsResult<()> {
        self.limit(region, "ModifySnapshotAttribute").await;
        self.ec2(region)
            .modify_snapshot_attribute()
            .snapshot_id(snapshot_id)
            .attribute(SnapshotAttributeName::CreateVolumePermission)
            .operation_type(operation)
            .set_user_ids(Some(accounts.to_vec()))
            .send()
            .await
            .map_err(|e| aws_error("ec2", "ModifySnapshotAttribute", snapshot_id, e))?;
        Ok(())
    }

    async fn describe_images_filtered(
        &self,
        region: &str,
        filters: Vec<Filter>,
        what: &str,
    ) -> AwsResult<Vec<Image>> {
        let mut pages = self
            .ec2(region)
            .describe_images()
            .owners("self")
            .include_disabled(true)
            .set_filters(Some(filters))
            .max_results(1000)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = {
            self.limit(region, "DescribeImages").await;
            pages.next().await
        } {
            let page = page.map_err(|e| aws_error("ec2", "DescribeImages", what, e))?;
            out.extend(page.images().iter().map(|i| convert_image(region, i)));
        }
        Ok(out)
    }
}

/// Most values EC2 takes in one filter.
const FILTER_VALUES: usize = 200;

#[async_trait]
impl Images for AwsPorts {
    async fn describe_images(&self, region: &str, image_ids: &[String]) -> AwsResult<Vec<Image>> {
        let mut out = Vec::new();
        for ids in image_ids.chunks(FILTER_VALUES) {
            let what = format!("{} images in {region} from {}", ids.len(), ids[0]);
            let filter = Filter::builder()
                .name("image-id")
                .set_values(Some(ids.to_vec()))
                .build();
            let mut pages = self
                .ec2(region)
                .describe_images()
                .include_disabled(true)
                .filters(filter)
                .max_results(1000)
                .into_paginator()
                .send();
            while let Some(page) = {
                self.limit(region, "DescribeImages").await;
                pages.next().await
            } {
                let page = page.map_err(|e| aws_error("ec2", "DescribeImages", &what, e))?;
                out.extend(page.images().iter().map(|i| convert_image(region, i)));
            }
        }
        Ok(out)
    }

    async fn describe_image(&self, region: &str, image_id: &str) -> AwsResult<Option<Image>> {
        self.limit(region, "DescribeImages").await;
        let result = self
            .ec2(region)
            .describe_images()
            .image_ids(image_id)
            .include_disabled(true)
            .send()
            .await;
        match result {
            Ok(out) => Ok(out
                .images()
                .iter()
                .find(|i| i.image_id() == Some(image_id))
                .map(|i| convert_image(region, i))),
            Err(e) => {
                let err = aws_error("ec2", "DescribeImages", image_id, e);
                if matches!(
                    err.code.as_str(),
                    "InvalidAMIID.NotFound" | "InvalidAMIID.Unavailable"
                ) {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    async fn launch_permissions(
        &self,
        region: &str,
        image_id: &str,
    ) -> AwsResult<LaunchPermissions> {
        self.limit(region, "DescribeImageAttribute").await;
        let out = self
            .ec2(region)
            .describe_image_attribute()
            .image_id(image_id)
            .attribute(ImageAttributeName::LaunchPermission)
            .send()
            .await
            .map_err(|e| aws_error("ec2", "DescribeImageAttribute", image_id, e))?;
        let mut lp = LaunchPermissions::default();
        for p in out.launch_permissions() {
            if let Some(a) = p.user_id() {
                lp.accounts.insert(a.to_string());
            }
            if let Some(o) = p.organization_arn() {
                lp.organizations.insert(o.to_string());
            }
            if let Some(o) = p.organizational_unit_arn() {
                lp.organizational_units.insert(o.to_string());
            }
            if p.group() == Some(&PermissionGroup::All) {
                lp.public = true;
            }
        }
        Ok(lp)
    }

    async fn add_launch_permissions(
        &self,
        region: &str,
        image_id: &str,
        add: &LaunchPermissions,
    ) -> AwsResult<()> {
        let m = LaunchPermissionModifications::builder()
            .set_add(Some(launch_permission_entries(add)))
            .build();
        self.modify_launch_permissions(region, image_id, m).await
    }

    async fn public_sharing_blocked(&self, region: &str) -> AwsResult<bool> {
        self.limit(region, "GetImageBlockPublicAccessState").await;
        let out = self
            .ec2(region)
            .get_image_block_public_access_state()
            .send()
            .await
            .map_err(|e| aws_error("ec2", "GetImageBlockPublicAccessState", region, e))?;
        Ok(out.image_block_public_access_state() != Some("unblocked"))
    }

    async fn copy_image(&self, r: &CopyRequest) -> AwsResult<String> {
        self.limit(&r.destination_region, "CopyImage").await;
        let mut req = self
            .ec2(&r.destination_region)
            .copy_image()
            .source_region(&r.source_region)
            .source_image_id(&r.source_image_id)
            .name(&r.name)
            .description(&r.description)
            .client_token(&r.client_token)
            .copy_image_tags(r.copy_image_tags)
            .set_snapshot_copy_completion_duration_minutes(r.completion_minutes.map(i64::from));
        if let Some(key) = &r.kms_key_id {
            req = req.encrypted(true).kms_key_id(key);
        }
        if !r.tags.is_empty() {
            for rt in [ResourceType::Image, ResourceType::Snapshot] {
                req = req.tag_specifications(
                    TagSpecification::builder()
                        .resource_type(rt)
                        .set_tags(Some(tags(&r.tags)))
                        .build(),
                );
            }
        }
        let out = req.send().await.map_err(|e| {
            aws_error(
                "ec2",
                "CopyImage",
                &format!(
                    "{}/{} -> {}",
                    r.source_region, r.source_image_id, r.destination_region
                ),
                e,
            )
        })?;
        Ok(out.image_id().unwrap_or_default().to_string())
    }

    async fn find_own_images_by_tag(
        &self,
        region: &str,
        key: &str,
        value: &str,
    ) -> AwsResult<Vec<Image>> {
        let f = Filter::builder()
            .name(format!("tag:{key}"))
            .values(value)
            .build();
        self.describe_images_filtered(region, vec![f], &format!("tag {key}={value} in {region}"))
            .await
    }

    async fn pending_images(&self, region: &str) -> AwsResult<Vec<Image>> {
        let f = Filter::builder().name("state").values("pending").build();
        self.describe_images_filtered(region, vec![f], &format!("pending images in {region}"))
            .await
    }

    async fn find_own_images_by_name(&self, region: &str, name: &str) -> AwsResult<Vec<Image>> {
        let f = Filter::builder().name("name").values(name).build();
        self.describe_images_filtered(region, vec![f], &format!("name {name} in {region}"))
            .await
    }

    async fn enable_deprecation(
        &self,
        region: &str,
        image_id: &str,
        deprecate_at: &str,
    ) -> AwsResult<()> {
        let at = aws_smithy_types::DateTime::from_str(
            deprecate_at,
            aws_smithy_types::date_time::Format::DateTime,
        )
        .map_err(|e| {
            AwsError::new(
                "ec2",
                "EnableImageDeprecation",
                "InvalidDeprecationTime",
                e.to_string(),
                image_id,
            )
        })?;
        self.limit(region, "EnableImageDeprecation").await;
        self.ec2(region)
            .enable_image_deprecation()
            .image_id(image_id)
            .deprecate_at(at)
            .send()
            .await
            .map_err(|e| aws_error("ec2", "EnableImageDeprecation", image_id, e))?;
        Ok(())
    }

    async fn tag_resources(
        &self,
        region: &str,
        resource_ids: &[String],
        t: &BTreeMap<String, String>,
    ) -> AwsResult<()> {
        self.limit(region, "CreateTags").await;
        self.ec2(region)
            .create_tags()
            .set_resources(Some(resource_ids.to_vec()))
            .set_tags(Some(tags(t)))
            .send()
            .await
            .map_err(|e| aws_error("ec2", "CreateTags", &resource_list(resource_ids), e))?;
        Ok(())
    }

    async fn untag_resources(
        &self,
        region: &str,
        resource_ids: &[String],
        keys: &[&str],
    ) -> AwsResult<()> {
        self.limit(region, "DeleteTags").await;
        self.ec2(region)
            .delete_tags()
            .set_resources(Some(resource_ids.to_vec()))
            .set_tags(Some(
                keys.iter()
                    .map(|k| Tag::builder().key(*k).build())
                    .collect(),
            ))
            .send()
            .await
            .map_err(|e| aws_error("ec2", "DeleteTags", &resource_list(resource_ids), e))?;
        Ok(())
    }

    async fn remove_launch_permissions(
        &self,
        region: &str,
        image_id: &str,
        remove: &LaunchPermissions,
    ) -> AwsResult<()> {
        let m = LaunchPermissionModifications::builder()
            .set_remove(Some(launch_permission_entries(remove)))
            .build();
        self.modify_launch_permissions(region, image_id, m).await
    }

    async fn attach_watermark(&self, region: &str, image_id: &str, name: &str) -> AwsResult<()> {
        self.limit(region, "AttachImageWatermark").await;
        self.ec2(region)
            .attach_image_watermark()
            .image_id(image_id)
            .watermark_name(name)
            .send()
            .await
            .map_err(|e| aws_error("ec2", "AttachImageWatermark", image_id, e))?;
        Ok(())
    }
}

/// The resources of a batch call, for error messages: the first few ids and how many.
fn resource_list(ids: &[String]) -> String {
    match ids {
        [one] => one.clone(),
        _ => format!(
            "{} resources ({}{})",
            ids.len(),
            ids.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
            if ids.len() > 3 { ", …" } else { "" }
        ),
    }
}

#[async_trait]
impl Snapshots for AwsPorts {
    async fn describe_snapshots(
        &self,
        region: &str,
        snapshot_ids: &[String],
    ) -> AwsResult<Vec<Snapshot>> {
        self.limit(region, "DescribeSnapshots").await;
        let out = self
            .ec2(region)
            .describe_snapshots()
            .set_snapshot_ids(Some(snapshot_ids.to_vec()))
            .send()
            .await
            .map_err(|e| aws_error("ec2", "DescribeSnapshots", &snapshot_ids.join(","), e))?;
        Ok(out
            .snapshots()
            .iter()
            .map(|s| Snapshot {
                id: s.snapshot_id().unwrap_or_default().to_string(),
                encrypted: s.encrypted().unwrap_or(false),
                kms_key_id: s.kms_key_id().map(str::to_string),
                description: s.description().unwrap_or_default().to_string(),
            })
            .collect())
    }

    async fn create_volume_permissions(
        &self,
        region: &str,
        snapshot_id: &str,
    ) -> AwsResult<BTreeSet<String>> {
        self.limit(region, "DescribeSnapshotAttribute").await;
        let out = self
            .ec2(region)
            .describe_snapshot_attribute()
            .snapshot_id(snapshot_id)
            .attribute(SnapshotAttributeName::CreateVolumePermission)
            .send()
            .await
            .map_err(|e| aws_error("ec2", "DescribeSnapshotAttribute", snapshot_id, e))?;
        Ok(out
            .create_volume_permissions()
            .iter()
            .filter_map(|p| p.user_id().map(str::to_string))
            .collect())
    }

    async fn add_create_volume_permission(
        &self,
        region: &str,
        snapshot_id: &str,
        accounts: &[String],
    ) -> AwsResult<()> {
        self.modify_create_volume_permission(region, snapshot_id, OperationType::Add, accounts)
            .await
    }

    async fn remove_create_volume_permission(
        &self,
        region: &str,
        snapshot_id: &str,
        accounts: &[String],
    ) -> AwsResult<()> {
        self.modify_create_volume_permission(region, snapshot_id, OperationType::Remove, accounts)
            .await
    }
}
