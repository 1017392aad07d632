//! Starting copies: cross-Region copies of source images, and same-Region re-encrypted copies
//! of images whose snapshots use `aws/ebs`. Never waits for a copy: the destination Region's
//! `available` event (or the nightly run) takes over. The copies are started by
//! [`crate::share::Convergence::ensure_copy`].

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, SecondsFormat, Utc};

use crate::error::{Error, Result};
use crate::names::{
    copy_client_token, copy_name, source_image_tag, CopyKind, COPY_KIND_TAG, MANAGED_TAG,
    SOURCE_CREATED_TAG, SOURCE_IMAGE_TAG, SOURCE_RULE_TAG,
};
use crate::plan::SharePlan;
use crate::ports::{CopyRequest, Image};

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
    // A copy is the product's from its creation: pruning treats it as managed even when its
    // `available` event is lost.
    tags.insert(MANAGED_TAG.to_string(), rules.join(","));
    if let Some(created) = &source.creation_date {
        tags.insert(SOURCE_CREATED_TAG.to_string(), created.clone());
    }
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
        completion_minutes: None,
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

/// The deprecation time for a copy of a source deprecated at `source_at`. EC2 refuses a time
/// in the past, so a source already deprecated makes the copy deprecated now (the next whole
/// minute, EC2's granularity), with a note saying so.
pub fn deprecation_for_copy(source_at: &str, now: DateTime<Utc>) -> (String, Option<String>) {
    let Ok(at) = DateTime::parse_from_rfc3339(source_at) else {
        return (source_at.to_string(), None);
    };
    let earliest = now + Duration::seconds(60);
    if at.with_timezone(&Utc) > earliest {
        return (source_at.to_string(), None);
    }
    let secs = earliest.timestamp();
    let next_minute = secs + (60 - secs.rem_euclid(60)) % 60;
    let when = DateTime::from_timestamp(next_minute, 0)
        .unwrap_or(earliest)
        .to_rfc3339_opts(SecondsFormat::Secs, true);
    let note = format!(
        "the source was deprecated at {source_at}, before this copy became available; EC2 takes no deprecation time in the past, so the copy is deprecated from {when}"
    );
    (when, Some(note))
}
