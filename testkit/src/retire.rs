//! Image references, usage reports, `DisableImage` and `DeregisterImage` in memory.
//!
//! Modelled: references in the owner account (set by a test, as `DescribeImageReferences`
//! would find them; at most 10 image ids per call); usage reports that are `pending` when
//! requested and become `available` only when the test says a night has passed
//! ([`FakeAws::finish_usage_reports`]), then list what the consumer accounts use (set by a
//! test with [`FakeAws::consumer_uses`]), limited to the report's accounts (at most 200; none:
//! every account); `DisableImage` makes the image `disabled` and private; `DeregisterImage`
//! removes it and keeps its snapshots, and is refused while deregistration protection is on.

use std::collections::BTreeMap;

use async_trait::async_trait;

use amishare::ports::*;
use amishare::retire::ports::*;

use crate::{err, FakeAws};

#[derive(Debug, Default)]
pub struct FakeRetirement {
    pub references: Vec<ImageReference>,
    pub reports: Vec<UsageReport>,
    /// image id → (account, resource type, count) the consumer accounts use.
    pub consumer_use: BTreeMap<String, Vec<(String, String, i64)>>,
    /// Every `CreateImageUsageReport` request, in order.
    pub report_requests: Vec<UsageReportRequest>,
    /// "Now" for report creation times (RFC 3339); set by the test.
    pub now: String,
}

impl FakeAws {
    /// Something in the owner account references the image.
    pub fn reference(&self, image_id: &str, resource_type: &str, arn: &str) {
        self.world().retirement.references.push(ImageReference {
            image_id: image_id.into(),
            resource_type: resource_type.into(),
            arn: arn.into(),
        });
    }

    /// A consumer account uses the image.
    pub fn consumer_uses(&self, image_id: &str, account: &str, resource_type: &str, count: i64) {
        self.world()
            .retirement
            .consumer_use
            .entry(image_id.into())
            .or_default()
            .push((account.into(), resource_type.into(), count));
    }

    /// A night passes for usage reports: every pending one becomes available.
    pub fn finish_usage_reports(&self) {
        for r in &mut self.world().retirement.reports {
            if r.state == "pending" {
                r.state = "available".into();
            }
        }
    }

    /// The clock usage reports are created by.
    pub fn set_report_clock(&self, now: &str) {
        self.world().retirement.now = now.into();
    }
}

#[async_trait]
impl Retirement for FakeAws {
    async fn image_references(
        &self,
        _region: &str,
        image_ids: &[String],
    ) -> AwsResult<Vec<ImageReference>> {
        self.call("ec2:DescribeImageReferences")?;
        if image_ids.is_empty() || image_ids.len() > MAX_REFERENCE_IMAGES {
            return Err(err(
                "ec2",
                "DescribeImageReferences",
                "InvalidParameterValue",
                "between 1 and 10 image ids",
                "images",
            ));
        }
        Ok(self
            .world()
            .retirement
            .references
            .iter()
            .filter(|r| image_ids.contains(&r.image_id))
            .cloned()
            .collect())
    }

    async fn create_usage_report(
        &self,
        region: &str,
        request: &UsageReportRequest,
    ) -> AwsResult<String> {
        self.call("ec2:CreateImageUsageReport")?;
        if request.account_ids.len() > MAX_USAGE_REPORT_ACCOUNTS {
            return Err(err(
                "ec2",
                "CreateImageUsageReport",
                "InvalidParameterValue",
                "at most 200 account ids",
                &request.image_id,
            ));
        }
        let mut w = self.world();
        w.image_mut("CreateImageUsageReport", region, &request.image_id)?;
        w.next_id += 1;
        let id = format!("amiur-{:017x}", w.next_id);
        let now = w.retirement.now.clone();
        w.retirement.report_requests.push(request.clone());
        w.retirement.reports.push(UsageReport {
            report_id: id.clone(),
            image_id: request.image_id.clone(),
            state: "pending".into(),
            state_reason: None,
            creation_time: Some(now),
            expiration_time: None,
            account_ids: request.account_ids.clone(),
            tags: request.tags.clone(),
        });
        Ok(id)
    }

    async fn usage_reports(&self, _region: &str, image_id: &str) -> AwsResult<Vec<UsageReport>> {
        self.call("ec2:DescribeImageUsageReports")?;
        Ok(self
            .world()
            .retirement
            .reports
            .iter()
            .filter(|r| r.image_id == image_id)
            .cloned()
            .collect())
    }

    async fn usage_report_entries(
        &self,
        _region: &str,
        report_ids: &[String],
    ) -> AwsResult<Vec<UsageEntry>> {
        self.call("ec2:DescribeImageUsageReportEntries")?;
        let w = self.world();
        let mut out = Vec::new();
        for r in w
            .retirement
            .reports
            .iter()
            .filter(|r| report_ids.contains(&r.report_id) && r.state == "available")
        {
            for (account, kind, count) in w
                .retirement
                .consumer_use
                .get(&r.image_id)
                .into_iter()
                .flatten()
            {
                if r.account_ids.is_empty() || r.account_ids.contains(account) {
                    out.push(UsageEntry {
                        report_id: r.report_id.clone(),
                        account_id: account.clone(),
                        resource_type: kind.clone(),
                        usage_count: *count,
                    });
                }
            }
        }
        Ok(out)
    }

    async fn disable_image(&self, region: &str, image_id: &str) -> AwsResult<()> {
        self.call("ec2:DisableImage")?;
        let mut w = self.world();
        let img = w.image_mut("DisableImage", region, image_id)?;
        img.image.state = ImageState::Disabled;
        img.launch = LaunchPermissions::default();
        Ok(())
    }

    async fn deregister_image(&self, region: &str, image_id: &str) -> AwsResult<()> {
        self.call("ec2:DeregisterImage")?;
        let mut w = self.world();
        let img = w.image_mut("DeregisterImage", region, image_id)?;
        if img
            .image
            .deregistration_protection
            .as_deref()
            .is_some_and(|p| p.starts_with("enabled"))
        {
            return Err(err(
                "ec2",
                "DeregisterImage",
                "InvalidParameterValue",
                "deregistration protection is enabled",
                image_id,
            ));
        }
        w.images.remove(&(region.to_string(), image_id.to_string()));
        Ok(())
    }
}
