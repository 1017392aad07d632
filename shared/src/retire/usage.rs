//! What still uses an image: references in the owner account (`DescribeImageReferences`), a
//! recent launch, deregistration protection, and consumer accounts (image usage reports,
//! requested one night and read the next).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use super::ports::{
    ImageReference, Retirement, UsageReport, UsageReportRequest, MAX_USAGE_REPORT_ACCOUNTS,
};
use super::report::RetireLog;
use super::stage::{Stage, USAGE_REPORT_TAG};
use crate::config::Rule;
use crate::deps::Deps;
use crate::error::Error;
use crate::night::Run;
use crate::ports::{Aws, Image};

/// A usage report older than this is requested again.
pub const USAGE_REPORT_MAX_AGE_DAYS: i64 = 7;

/// What a consumer-usage check found.
pub(super) enum Usage {
    Clear,
    InUse(Vec<String>),
    Pending(String),
}

/// `DescribeImageReferences` of `ids` (at most 10) into `into`; when it fails, each image is
/// protected by that for tonight.
pub(super) async fn read_references<P: Aws + Retirement>(
    deps: &Deps<P>,
    run: &Run,
    ids: &[String],
    into: &mut BTreeMap<String, Vec<ImageReference>>,
    report: &mut impl RetireLog,
) {
    for id in ids {
        into.entry(id.clone()).or_default();
    }
    match deps.aws.image_references(&run.region, ids).await {
        Ok(refs) => {
            for r in refs {
                into.entry(r.image_id.clone()).or_default().push(r);
            }
        }
        Err(e) => {
            report.error("retirement: DescribeImageReferences", &Error::from(e));
            for id in ids {
                into.entry(id.clone()).or_default().push(ImageReference {
                    image_id: id.clone(),
                    resource_type: "unknown".into(),
                    arn: "the references could not be read tonight".into(),
                });
            }
        }
    }
}

/// What in the owner account protects the image: references, a recent launch, and (before
/// deregistering) deregistration protection.
pub(super) fn own_protection(
    rule: &Rule,
    image: &Image,
    stage: Stage,
    now: DateTime<Utc>,
    references: Option<&Vec<ImageReference>>,
) -> Vec<String> {
    let mut out: Vec<String> = references
        .into_iter()
        .flatten()
        .map(|r| format!("referenced by {} {}", r.resource_type, r.arn))
        .collect();
    let days = rule
        .retire
        .as_ref()
        .map_or(0, |r| r.protect_if_launched_within_days);
    if let Some(at) = image
        .last_launched_time
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
    {
        if now - at.with_timezone(&Utc) < Duration::days(i64::from(days)) {
            out.push(format!(
                "launched at {at} (lastLaunchedTime), within {days} days"
            ));
        }
    }
    if stage == Stage::Deregistered
        && image
            .deregistration_protection
            .as_deref()
            .is_some_and(|p| p.starts_with("enabled"))
    {
        out.push("deregistration protection is on: turn it off (ec2 disable-image-deregistration-protection) to let the image be retired".into());
    }
    out
}

/// Whether consumer accounts use the image: the product's latest usage report of it, read
/// when ready; requested (one per 200 accounts) when there is none younger than
/// [`USAGE_REPORT_MAX_AGE_DAYS`].
pub(super) async fn consumer_use<P: Aws + Retirement>(
    deps: &Deps<P>,
    run: &Run,
    rule: &Rule,
    image: &Image,
) -> Result<Usage, Error> {
    let reports = recent_reports(deps, run, image).await?;
    if reports.is_empty() {
        return request_reports(deps, run, rule, image).await;
    }
    if let Some(p) = reports.iter().find(|r| r.state != "available") {
        return Ok(Usage::Pending(format!(
            "consumer usage report {} is {} (requested {}); read again next night",
            p.report_id,
            p.state,
            p.creation_time.as_deref().unwrap_or("?")
        )));
    }
    let ids: Vec<String> = reports.iter().map(|r| r.report_id.clone()).collect();
    let in_use: Vec<String> = deps
        .aws
        .usage_report_entries(&run.region, &ids)
        .await?
        .into_iter()
        .filter(|e| e.usage_count > 0)
        .map(|e| {
            format!(
                "used by account {}: {} {} (usage report {})",
                e.account_id, e.usage_count, e.resource_type, e.report_id
            )
        })
        .collect();
    Ok(if in_use.is_empty() {
        Usage::Clear
    } else {
        Usage::InUse(in_use)
    })
}

/// The product's usage reports of `image` younger than [`USAGE_REPORT_MAX_AGE_DAYS`], neither
/// failed nor expired.
async fn recent_reports<P: Aws + Retirement>(
    deps: &Deps<P>,
    run: &Run,
    image: &Image,
) -> Result<Vec<UsageReport>, Error> {
    let oldest = run.now - Duration::days(USAGE_REPORT_MAX_AGE_DAYS);
    Ok(deps
        .aws
        .usage_reports(&run.region, &image.id)
        .await?
        .into_iter()
        .filter(|r| r.tags.get(USAGE_REPORT_TAG) == Some(&image.id))
        .filter(|r| r.state != "failed" && r.state != "error")
        .filter(|r| {
            r.creation_time
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t.with_timezone(&Utc) >= oldest)
        })
        .filter(|r| {
            r.expiration_time
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .is_none_or(|t| t.with_timezone(&Utc) > run.now)
        })
        .collect())
}

/// Request tonight's usage reports of `image`: every account of the rule's organizations and
/// OUs in one, or its plain accounts 200 a report (a client token per image, day and report).
async fn request_reports<P: Aws + Retirement>(
    deps: &Deps<P>,
    run: &Run,
    rule: &Rule,
    image: &Image,
) -> Result<Usage, Error> {
    let sw = &rule.share_with;
    // Organizations and OUs: every account (the parameter left out); accounts: 200 a report.
    let accounts: Vec<String> =
        if sw.organizations.is_empty() && sw.organizational_units.is_empty() && !sw.public {
            sw.accounts
                .iter()
                .filter(|a| **a != deps.account_id)
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
    let chunks: Vec<Vec<String>> = if accounts.is_empty() {
        vec![Vec::new()]
    } else {
        accounts
            .chunks(MAX_USAGE_REPORT_ACCOUNTS)
            .map(<[String]>::to_vec)
            .collect()
    };
    let mut ids = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let token = hex::encode(
            &Sha256::digest(format!("{}|{}|{i}", image.id, run.now.format("%Y-%m-%d")))[..16],
        );
        let id = deps
            .aws
            .create_usage_report(
                &run.region,
                &UsageReportRequest {
                    image_id: image.id.clone(),
                    account_ids: chunk.clone(),
                    tags: BTreeMap::from([(USAGE_REPORT_TAG.to_string(), image.id.clone())]),
                    client_token: token,
                },
            )
            .await?;
        ids.push(id);
    }
    Ok(Usage::Pending(format!(
        "consumer usage report requested tonight ({}); it is read next night",
        ids.join(", ")
    )))
}
