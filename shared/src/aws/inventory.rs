//! The [`Inventory`] port over EC2 and Auto Scaling.

use std::collections::BTreeSet;

use async_trait::async_trait;
use aws_sdk_ec2::types::{
    Filter, LaunchPermissionModifications, OperationType, SnapshotAttributeName, Tag,
};
use chrono::{DateTime, Utc};

use super::ec2::convert_image;
use super::{aws_error, AwsPorts};
use crate::inventory::{
    Inventory, OwnSnapshot, RecycledImage, Reference, SnapshotState, SnapshotTags,
};
use crate::ports::{AwsResult, Image, LaunchPermissions};

fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos())
}

#[async_trait]
impl Inventory for AwsPorts {
    async fn list_own_snapshots(
        &self,
        region: &str,
        owner_id: &str,
    ) -> AwsResult<Vec<OwnSnapshot>> {
        // The `owner-id` filter rather than `OwnerIds`: the same for AWS, and the local
        // emulator ignores `OwnerIds`.
        let mut pages = self
            .ec2(region)
            .describe_snapshots()
            .filters(Filter::builder().name("owner-id").values(owner_id).build())
            .max_results(1000)
            .into_paginator()
            .send();
        let what = format!("snapshots of {owner_id} in {region}");
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("ec2", "DescribeSnapshots", &what, e))?;
            out.extend(
                page.snapshots()
                    .iter()
                    .filter(|s| s.owner_id().is_none_or(|o| o == owner_id))
                    .map(|s| OwnSnapshot {
                        id: s.snapshot_id().unwrap_or_default().to_string(),
                        description: s.description().unwrap_or_default().to_string(),
                        size_gib: u64::try_from(s.volume_size().unwrap_or(0)).unwrap_or(0),
                        start_time: s.start_time().and_then(to_chrono),
                        state: SnapshotState::parse(
                            s.state().map(|st| st.as_str()).unwrap_or("unknown"),
                        ),
                        tags: SnapshotTags::from_pairs(
                            s.tags()
                                .iter()
                                .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default()))),
                        ),
                    }),
            );
        }
        Ok(out)
    }

    async fn list_own_images(&self, region: &str) -> AwsResult<Vec<Image>> {
        let mut pages = self
            .ec2(region)
            .describe_images()
            .owners("self")
            .include_disabled(true)
            .include_deprecated(true)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                aws_error(
                    "ec2",
                    "DescribeImages",
                    &format!("own images in {region}"),
                    e,
                )
            })?;
            out.extend(page.images().iter().map(|i| convert_image(region, i)));
        }
        Ok(out)
    }

    async fn list_recycle_bin_images(&self, region: &str) -> AwsResult<Vec<RecycledImage>> {
        let mut pages = self
            .ec2(region)
            .list_images_in_recycle_bin()
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("ec2", "ListImagesInRecycleBin", region, e))?;
            out.extend(page.images().iter().filter_map(|i| {
                Some(RecycledImage {
                    id: i.image_id()?.to_string(),
                    name: i.name().unwrap_or_default().to_string(),
                })
            }));
        }
        Ok(out)
    }

    async fn list_launch_template_references(&self, region: &str) -> AwsResult<Vec<Reference>> {
        let ec2 = self.ec2(region);
        let mut template_ids = Vec::new();
        let mut pages = ec2.describe_launch_templates().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("ec2", "DescribeLaunchTemplates", region, e))?;
            template_ids.extend(
                page.launch_templates()
                    .iter()
                    .filter_map(|t| t.launch_template_id().map(str::to_string)),
            );
        }
        let mut out = Vec::new();
        for id in template_ids {
            // No `Versions`: every version of the template.
            let mut pages = ec2
                .describe_launch_template_versions()
                .launch_template_id(&id)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page =
                    page.map_err(|e| aws_error("ec2", "DescribeLaunchTemplateVersions", &id, e))?;
                for v in page.launch_template_versions() {
                    let data = v.launch_template_data();
                    out.push(Reference {
                        by: format!(
                            "launch template {id} version {}",
                            v.version_number().unwrap_or_default()
                        ),
                        snapshot_ids: data
                            .map(|d| {
                                d.block_device_mappings()
                                    .iter()
                                    .filter_map(|m| m.ebs()?.snapshot_id().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default(),
                        image_ids: data
                            .and_then(|d| d.image_id())
                            .map(str::to_string)
                            .into_iter()
                            .collect(),
                    });
                }
            }
        }
        Ok(out)
    }

    async fn list_launch_configuration_references(
        &self,
        region: &str,
    ) -> AwsResult<Vec<Reference>> {
        let mut pages = self
            .autoscaling(region)
            .describe_launch_configurations()
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page
                .map_err(|e| aws_error("autoscaling", "DescribeLaunchConfigurations", region, e))?;
            out.extend(page.launch_configurations().iter().map(|lc| {
                Reference {
                    by: format!(
                        "launch configuration {}",
                        lc.launch_configuration_name().unwrap_or_default()
                    ),
                    snapshot_ids: lc
                        .block_device_mappings()
                        .iter()
                        .filter_map(|m| m.ebs()?.snapshot_id().map(str::to_string))
                        .collect::<BTreeSet<_>>(),
                    image_ids: lc.image_id().map(str::to_string).into_iter().collect(),
                }
            }));
        }
        Ok(out)
    }

    async fn tag_snapshot(
        &self,
        region: &str,
        snapshot_id: &str,
        key: &str,
        value: &str,
    ) -> AwsResult<()> {
        self.ec2(region)
            .create_tags()
            .resources(snapshot_id)
            .tags(Tag::builder().key(key).value(value).build())
            .send()
            .await
            .map_err(|e| aws_error("ec2", "CreateTags", snapshot_id, e))?;
        Ok(())
    }

    async fn untag_snapshot(&self, region: &str, snapshot_id: &str, key: &str) -> AwsResult<()> {
        self.ec2(region)
            .delete_tags()
            .resources(snapshot_id)
            .tags(Tag::builder().key(key).build())
            .send()
            .await
            .map_err(|e| aws_error("ec2", "DeleteTags", snapshot_id, e))?;
        Ok(())
    }

    async fn delete_snapshot(&self, region: &str, snapshot_id: &str) -> AwsResult<()> {
        self.ec2(region)
            .delete_snapshot()
            .snapshot_id(snapshot_id)
            .send()
            .await
            .map_err(|e| aws_error("ec2", "DeleteSnapshot", snapshot_id, e))?;
        Ok(())
    }

    async fn remove_launch_permissions(
        &self,
        region: &str,
        image_id: &str,
        remove: &LaunchPermissions,
    ) -> AwsResult<()> {
        let entries = super::ec2::launch_permission_entries(remove);
        self.ec2(region)
            .modify_image_attribute()
            .image_id(image_id)
            .launch_permission(
                LaunchPermissionModifications::builder()
                    .set_remove(Some(entries))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| aws_error("ec2", "ModifyImageAttribute", image_id, e))?;
        Ok(())
    }

    async fn remove_create_volume_permission(
        &self,
        region: &str,
        snapshot_id: &str,
        accounts: &[String],
    ) -> AwsResult<()> {
        self.ec2(region)
            .modify_snapshot_attribute()
            .snapshot_id(snapshot_id)
            .attribute(SnapshotAttributeName::CreateVolumePermission)
            .operation_type(OperationType::Remove)
            .set_user_ids(Some(accounts.to_vec()))
            .send()
            .await
            .map_err(|e| aws_error("ec2", "ModifySnapshotAttribute", snapshot_id, e))?;
        Ok(())
    }

    async fn revoke_grant(&self, region: &str, key_arn: &str, grant_id: &str) -> AwsResult<()> {
        self.kms(region)
            .revoke_grant()
            .key_id(key_arn)
            .grant_id(grant_id)
            .send()
            .await
            .map_err(|e| {
                aws_error(
                    "kms",
                    "RevokeGrant",
                    &format!("{key_arn} grant {grant_id}"),
                    e,
                )
            })?;
        Ok(())
    }
}
