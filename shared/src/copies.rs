//! Starting copies: cross-Region copies of source images, and same-Region re-encrypted copies
//! of images whose snapshots use `aws/ebs`. Never waits for a copy: the destination Region's
//! `available` event (or the nightly run) takes over.

use std::collections::BTreeMap;

use crate::domain::names::{
    copy_client_token, copy_name, source_image_tag, CopyKind, COPY_KIND_TAG, SOURCE_IMAGE_TAG,
    SOURCE_RULE_TAG,
};
use crate::domain::plan::SharePlan;
use crate::error::{Error, Result};
use crate::ports::{Aws, CopyRequest, Image, ImageState};
use crate::report::CopyReport;
use crate::share::Deps;

/// The error code EC2 gives when too many copies are in flight to a Region.
pub const COPY_LIMIT_CODE: &str = "ResourceLimitExceeded";

/// The request for a copy of `source` into `dest_region`.
pub fn copy_request(
    source: &Image,
    dest_region: &str,
    kms_key_id: Option<&str>,
    kind: CopyKind,
    rules: &[String],
    attempt: usize,
) -> CopyRequest {
    let mut tags = BTreeMap::new();
    tags.insert(
        SOURCE_IMAGE_TAG.to_string(),
        source_image_tag(&source.region, &source.id),
    );
    tags.insert(SOURCE_RULE_TAG.to_string(), rules.join(","));
    tags.insert(COPY_KIND_TAG.to_string(), kind.as_str().to_string());
    CopyRequest {
        source_region: source.region.clone(),
        source_image_id: source.id.clone(),
        destination_region: dest_region.to_string(),
        name: copy_name(&source.name, &source.region, &source.id, kind, attempt),
        description: format!(
            "Copy of {} ({}) from {} by ami-share",
            source.name, source.id, source.region
        ),
        client_token: copy_client_token(
            &source.region,
            &source.id,
            dest_region,
            kms_key_id,
            attempt,
        ),
        kms_key_id: kms_key_id.map(str::to_string),
        tags,
        copy_image_tags: true,
    }
}

/// Refuse, before any copy starts, copies that cannot be made as asked.
pub fn check_copy_plan(source: &Image, plan: &SharePlan) -> Result<()> {
    if let Some((region, rule, key)) = plan.key_conflicts.first() {
        return Err(Error::refused(
            &source.id,
            format!("rules disagree on the KMS key for copies to {region}: rule {rule:?} names {key}, an earlier matching rule another key; make them name the same key"),
        ));
    }
    if source.is_encrypted() {
        if let Some(dest) = plan
            .copies
            .values()
            .find(|d| d.kms_key_id.is_none() && d.region != source.region)
        {
            return Err(Error::refused(
                &source.id,
                format!(
                    "the image is encrypted, so its copy to {r} must be encrypted with a key in {r}, and the rule's copy_to entry for {r} names none; \
                     add \"kms_key_id\": \"<key ARN or alias in {r}>\" to it (rules: {})",
                    dest.rules.join(", "),
                    r = dest.region
                ),
            ));
        }
    }
    Ok(())
}

impl<P: Aws> Deps<P> {
    /// Start the copy unless one exists already (found by its deterministic name, which a copy
    /// keeps even where tags are dropped); the deterministic client token makes a concurrent
    /// duplicate harmless too.
    pub async fn ensure_copy(
        &self,
        source: &Image,
        dest_region: &str,
        kms_key_id: Option<&str>,
        kind: CopyKind,
        rules: &[String],
    ) -> Result<CopyReport> {
        let first = copy_request(source, dest_region, kms_key_id, kind, rules, 0);
        // One lookup finds the first attempt and every retry (`<name>-r<n>`).
        let existing = self
            .aws
            .find_own_images_by_name(dest_region, &format!("{}*", first.name))
            .await?;
        let failed = existing
            .iter()
            .filter(|i| i.state == ImageState::Failed)
            .count();
        let req = if failed == 0 {
            first
        } else {
            copy_request(source, dest_region, kms_key_id, kind, rules, failed)
        };
        if let Some(found) = existing
            .iter()
            .find(|i| i.state != ImageState::Failed && i.state != ImageState::Deregistered)
        {
            return Ok(CopyReport {
                region: dest_region.to_string(),
                image_id: Some(found.id.clone()),
                status: "exists".into(),
                detail: Some(format!("copy is {}", found.state.as_str())),
            });
        }
        match self.aws.copy_image(&req).await {
            Ok(id) => {
                tracing::info!(source_image = %source.id, region = dest_region, copy = %id, kind = kind.as_str(), "copy started");
                Ok(CopyReport {
                    region: dest_region.to_string(),
                    image_id: Some(id),
                    status: "started".into(),
                    detail: None,
                })
            }
            Err(e) if e.code == COPY_LIMIT_CODE => {
                tracing::warn!(source_image = %source.id, region = dest_region, error = %e, "too many copies in flight; the nightly run will start this copy");
                Ok(CopyReport {
                    region: dest_region.to_string(),
                    image_id: None,
                    status: "deferred".into(),
                    detail: Some(format!("{COPY_LIMIT_CODE}: too many copies in flight to {dest_region}; the nightly sweeper starts it later")),
                })
            }
            Err(e) => Err(e.into()),
        }
    }
}
