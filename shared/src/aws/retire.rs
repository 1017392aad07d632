//! Adapter of the retirement port: EC2's image references, usage reports, `DisableImage`,
//! `DeregisterImage`. Every request and page is paced like the rest of EC2.

use async_trait::async_trait;
use aws_sdk_ec2::types::{
    ImageReferenceOptionName, ImageReferenceResourceType, ImageUsageResourceTypeOptionRequest,
    ImageUsageResourceTypeRequest, ResourceType, ResourceTypeOption, ResourceTypeRequest, Tag,
    TagSpecification,
};
use aws_smithy_types::date_time::Format;

use super::{aws_error, AwsPorts};
use crate::ports::AwsResult;
use crate::retire::ports::{
    ImageReference, Retirement, UsageEntry, UsageReport, UsageReportRequest,
};

/// Launch template versions checked, from the newest: every version (EC2's maximum).
pub const ALL_VERSIONS: &str = "10000";

fn rfc3339(t: Option<&aws_smithy_types::DateTime>) -> Option<String> {
    t.and_then(|t| t.fmt(Format::DateTime).ok())
}

/// Every type of owner-account resource that can reference an image, launch templates with
/// all their versions.
fn reference_types() -> Vec<ResourceTypeRequest> {
    [
        ImageReferenceResourceType::Ec2Instance,
        ImageReferenceResourceType::Ec2LaunchTemplate,
        ImageReferenceResourceType::SsmParameter,
        ImageReferenceResourceType::ImageBuilderImageRecipe,
        ImageReferenceResourceType::ImageBuilderContainerRecipe,
    ]
    .into_iter()
    .map(|t| {
        let versions = (t == ImageReferenceResourceType::Ec2LaunchTemplate).then(|| {
            vec![ResourceTypeOption::builder()
                .option_name(ImageReferenceOptionName::VersionDepth)
                .option_values(ALL_VERSIONS)
                .build()]
        });
        ResourceTypeRequest::builder()
            .resource_type(t)
            .set_resource_type_options(versions)
            .build()
    })
    .collect()
}

#[async_trait]
impl Retirement for AwsPorts {
    async fn image_references(
        &self,
        region: &str,
        image_ids: &[String],
    ) -> AwsResult<Vec<ImageReference>> {
        let what = image_ids.join(",");
        let mut pages = self
            .ec2(region)
            .describe_image_references()
            .set_image_ids(Some(image_ids.to_vec()))
            .set_resource_types(Some(reference_types()))
            .max_results(1000)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = {
            self.limit(region, "DescribeImageReferences").await;
            pages.next().await
        } {
            let page = page.map_err(|e| aws_error("ec2", "DescribeImageReferences", &what, e))?;
            out.extend(page.image_references().iter().map(|r| {
                ImageReference {
                    image_id: r.image_id().unwrap_or_default().to_string(),
                    resource_type: r
                        .resource_type()
                        .map(|t| t.as_str().to_string())
                        .unwrap_or_default(),
                    arn: r.arn().unwrap_or_default().to_string(),
                }
            }));
        }
        Ok(out)
    }

    async fn create_usage_report(
        &self,
        region: &str,
        request: &UsageReportRequest,
    ) -> AwsResult<String> {
        let types = vec![
            ImageUsageResourceTypeRequest::builder()
                .resource_type("ec2:Instance")
                .build(),
            ImageUsageResourceTypeRequest::builder()
                .resource_type("ec2:LaunchTemplate")
                .resource_type_options(
                    ImageUsageResourceTypeOptionRequest::builder()
                        .option_name("version-depth")
                        .option_values(ALL_VERSIONS)
                        .build(),
                )
                .build(),
        ];
        let tags = TagSpecification::builder()
            .resource_type(ResourceType::ImageUsageReport)
            .set_tags(Some(
                request
                    .tags
                    .iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect(),
            ))
            .build();
        self.limit(region, "CreateImageUsageReport").await;
        let out = self
            .ec2(region)
            .create_image_usage_report()
            .image_id(&request.image_id)
            .set_resource_types(Some(types))
            .set_account_ids((!request.account_ids.is_empty()).then(|| request.account_ids.clone()))
            .tag_specifications(tags)
            .client_token(&request.client_token)
            .send()
            .await
            .map_err(|e| aws_error("ec2", "CreateImageUsageReport", &request.image_id, e))?;
        Ok(out.report_id().unwrap_or_default().to_string())
    }

    async fn usage_reports(&self, region: &str, image_id: &str) -> AwsResult<Vec<UsageReport>> {
        let mut pages = self
            .ec2(region)
            .describe_image_usage_reports()
            .image_ids(image_id)
            .max_results(100)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = {
            self.limit(region, "DescribeImageUsageReports").await;
            pages.next().await
        } {
            let page =
                page.map_err(|e| aws_error("ec2", "DescribeImageUsageReports", image_id, e))?;
            out.extend(page.image_usage_reports().iter().map(|r| {
                UsageReport {
                    report_id: r.report_id().unwrap_or_default().to_string(),
                    image_id: r.image_id().unwrap_or_default().to_string(),
                    state: r.state().unwrap_or_default().to_string(),
                    state_reason: r.state_reason().map(str::to_string),
                    creation_time: rfc3339(r.creation_time()),
                    expiration_time: rfc3339(r.expiration_time()),
                    account_ids: r.account_ids().to_vec(),
                    tags: r
                        .tags()
                        .iter()
                        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                        .collect(),
                }
            }));
        }
        Ok(out)
    }

    async fn usage_report_entries(
        &self,
        region: &str,
        report_ids: &[String],
    ) -> AwsResult<Vec<UsageEntry>> {
        let what = report_ids.join(",");
        let mut pages = self
            .ec2(region)
            .describe_image_usage_report_entries()
            .set_report_ids(Some(report_ids.to_vec()))
            .max_results(1000)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = {
            self.limit(region, "DescribeImageUsageReportEntries").await;
            pages.next().await
        } {
            let page =
                page.map_err(|e| aws_error("ec2", "DescribeImageUsageReportEntries", &what, e))?;
            out.extend(
                page.image_usage_report_entries()
                    .iter()
                    .map(|e| UsageEntry {
                        report_id: e.report_id().unwrap_or_default().to_string(),
                        account_id: e.account_id().unwrap_or_default().to_string(),
                        resource_type: e.resource_type().unwrap_or_default().to_string(),
                        usage_count: e.usage_count().unwrap_or_default(),
                    }),
            );
        }
        Ok(out)
    }

    async fn disable_image(&self, region: &str, image_id: &str) -> AwsResult<()> {
        self.limit(region, "DisableImage").await;
        self.ec2(region)
            .disable_image()
            .image_id(image_id)
            .send()
            .await
            .map_err(|e| aws_error("ec2", "DisableImage", image_id, e))?;
        Ok(())
    }

    async fn deregister_image(&self, region: &str, image_id: &str) -> AwsResult<()> {
        self.limit(region, "DeregisterImage").await;
        self.ec2(region)
            .deregister_image()
            .image_id(image_id)
            .delete_associated_snapshots(false)
            .send()
            .await
            .map_err(|e| aws_error("ec2", "DeregisterImage", image_id, e))?;
        Ok(())
    }
}
