//! The [`Inventory`] port over EC2 and Auto Scaling.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_ec2::types::Filter;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};

use super::ec2::convert_image;
use super::{aws_error, AwsPorts};
use crate::ports::{AwsResult, Image};
use crate::sweep::inventory::{
    Inventory, OwnSnapshot, RecycledImage, Reference, SnapshotState, SnapshotTags,
};

fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos())
}

/// Listings run at most this many requests at once (launch template versions).
const LISTING_CONCURRENCY: usize = 4;

impl AwsPorts {
    /// Every version of one launch template (no `Versions`: all of them), one [`Reference`]
    /// each.
    async fn template_versions(
        &self,
        region: &str,
        ec2: &aws_sdk_ec2::Client,
        id: &str,
    ) -> AwsResult<Vec<Reference>> {
        let mut out = Vec::new();
        let mut pages = ec2
            .describe_launch_template_versions()
            .launch_template_id(id)
            .max_results(200)
            .into_paginator()
            .send();
        while let Some(page) = {
            self.limit(region, "DescribeLaunchTemplateVersions").await;
            pages.next().await
        } {
            let page =
                page.map_err(|e| aws_error("ec2", "DescribeLaunchTemplateVersions", id, e))?;
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
        Ok(out)
    }
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
        // A Region has few keys: one shared copy of each key ARN.
        let mut keys: HashMap<String, Arc<str>> = HashMap::new();
        while let Some(page) = {
            self.limit(region, "DescribeSnapshots").await;
            pages.next().await
        } {
            let page = page.map_err(|e| aws_error("ec2", "DescribeSnapshots", &what, e))?;
            out.extend(
                page.snapshots()
                    .iter()
                    .filter(|s| s.owner_id().is_none_or(|o| o == owner_id))
                    .map(|s| OwnSnapshot {
                        kms_key_id: s.kms_key_id().map(|k| {
                            keys.entry(k.to_string())
                                .or_insert_with(|| Arc::from(k))
                                .clone()
                        }),
                        id: s.snapshot_id().unwrap_or_default().into(),
                        description: s.description().unwrap_or_default().into(),
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
            .max_results(1000)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = {
            self.limit(region, "DescribeImages").await;
            pages.next().await
        } {
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
            .max_results(1000)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = {
            self.limit(region, "ListImagesInRecycleBin").await;
            pages.next().await
        } {
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
        let mut pages = ec2
            .describe_launch_templates()
            .max_results(200)
            .into_paginator()
            .send();
        while let Some(page) = {
            self.limit(region, "DescribeLaunchTemplates").await;
            pages.next().await
        } {
            let page = page.map_err(|e| aws_error("ec2", "DescribeLaunchTemplates", region, e))?;
            template_ids.extend(
                page.launch_templates()
                    .iter()
                    .filter_map(|t| t.launch_template_id().map(str::to_string)),
            );
        }
        // Every template's versions, a few templates at a time (the rate limit paces them).
        let per_template: Vec<Vec<Reference>> = stream::iter(template_ids)
            .map(|id| {
                let ec2 = ec2.clone();
                async move { self.template_versions(region, &ec2, &id).await }
            })
            .buffer_unordered(LISTING_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(per_template.into_iter().flatten().collect())
    }

    async fn list_launch_configuration_references(
        &self,
        region: &str,
    ) -> AwsResult<Vec<Reference>> {
        let mut pages = self
            .autoscaling(region)
            .describe_launch_configurations()
            .max_records(100)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = {
            self.limit(region, "DescribeLaunchConfigurations").await;
            pages.next().await
        } {
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

    async fn delete_snapshot(&self, region: &str, snapshot_id: &str) -> AwsResult<()> {
        self.limit(region, "DeleteSnapshot").await;
        self.ec2(region)
            .delete_snapshot()
            .snapshot_id(snapshot_id)
            .send()
            .await
            .map_err(|e| aws_error("ec2", "DeleteSnapshot", snapshot_id, e))?;
        Ok(())
    }
}
