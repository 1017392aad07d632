//! The ports only retirement needs: what still uses an image, and the stages past
//! deprecation.

use async_trait::async_trait;
use std::collections::BTreeMap;

use serde::Serialize;

use crate::ports::AwsResult;

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
