//! on-image-available's service: an image became `available`; share it as the policy says,
//! in its own Region, start its copies to other Regions, and publish it once it is fully
//! shared; then start its copies into the target accounts of `copy_into`.

use std::sync::Arc;

use chrono::Utc;

use crate::copy::CopyReport;
use crate::deps::Deps;
use crate::error::Error;
use crate::event::{AmiState, AmiStateChange};
use crate::plan::{classify, matching_rules, ImageKind, SharePlan, SkipReason};
use crate::ports::{Aws, Image};
use crate::publish::{Publisher, Publishing};
use crate::report::{Outcome, Summary};
use crate::share::{already_recorded, Convergence, KeyState};
use crate::target_copies::{TargetAccounts, TargetCopier};

/// The function this service is the body of (named in its summaries).
pub const FUNCTION: &str = "on-image-available";

/// Share the image as the policy says, start its copies, publish it once fully shared.
///
/// `keys`: what the invocation's events know of their keys, shared by the events of a batch.
pub async fn image_available<P: Aws + Publishing + TargetAccounts>(
    deps: &Deps<P>,
    change: &AmiStateChange,
    keys: &Arc<KeyState>,
) -> Result<Summary, Error> {
    let (region, image_id) = (change.region.as_str(), change.image_id.as_str());
    let summary = |outcome| Summary::new(FUNCTION, outcome).about(region, image_id);
    if change.state != AmiState::Available {
        return Ok(summary(Outcome::Ignored)
            .because(format!("state {}: nothing to share", change.state.as_str())));
    }
    let Some(image) = deps.describe_image_eventually(region, image_id).await? else {
        return Ok(summary(Outcome::Skipped)
            .because("image not found (deregistered since the event, or never visible)"));
    };
    let is_foreign_copy = match classify(&image) {
        ImageKind::OurCopy(p) => {
            return Ok(summary(Outcome::Skipped).because(format!(
                "a copy made by ami-share of {}/{}; on-copy-complete shares it",
                p.source_region, p.source_image_id
            )))
        }
        ImageKind::Forged { why, .. } if image.owner_id == deps.account_id => {
            return Ok(summary(Outcome::Skipped).not_acted_on(&SkipReason::ForgedProvenance(why)))
        }
        ImageKind::Forged { .. } => false, // another account's: matching_rules says so
        ImageKind::Source { is_foreign_copy } => is_foreign_copy,
    };
    let rules = match matching_rules(&deps.policy, &image, &deps.account_id) {
        Ok(rules) => rules,
        Err(reason) => return Ok(summary(Outcome::Skipped).because(reason.to_string())),
    };
    let plan = SharePlan::from_rules(deps.policy.kms_access, rules);
    let not_made = copies_not_made(&image, &plan, is_foreign_copy);
    let plan = plan.for_source(!is_foreign_copy);
    let mut out = summary(Outcome::Shared);
    out.rules = plan.rules.clone();

    // The one convergence path (the sweeper's too): everything checked before anything is
    // changed; the fingerprint recorded once it all succeeded, so the night has nothing to do.
    let conv = Convergence::for_event(deps, Utc::now(), keys.clone());
    let done = match conv.converge(&image, &plan, !is_foreign_copy, None).await {
        Ok(done) => done,
        Err(e) => return Summary::failed_under(FUNCTION, e, &plan.rules, region, image_id),
    };
    if !already_recorded(&image, &done) {
        conv.record(region, &[&done]).await?;
    }
    if done.reencrypt {
        out.outcome = Outcome::ReencryptStarted;
        out.reason = Some(
            "snapshots use the AWS managed key aws/ebs, which cannot be shared; a copy re-encrypted with the policy's reencrypt_with key is shared instead when it becomes available".into(),
        );
    } else {
        if let Some(why) = &done.refused {
            out.outcome = Outcome::Refused;
            out.reason = Some(why.clone());
        }
        out.share = Some(done.share);
    }
    out.copies = done.copies;
    out.copies.extend(not_made);
    // Fully shared in its Region: the newest image of its rules there, for consumers.
    if !done.shared {
        return Ok(out);
    }
    let published = Publisher::new(deps).publish_for(&plan.rules, &image).await;
    let mut out = out.with_publications(published)?;
    // Shared with its targets: they can copy it now.
    if !plan.into.is_empty() {
        match TargetCopier::new(deps).start(&image, &plan.into).await {
            Ok(reports) => out = out.with_target_copies(reports),
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                let failed = Summary::failed(FUNCTION, &e);
                out.outcome = failed.outcome;
                out.error = failed.error;
            }
        }
    }
    Ok(out)
}

/// Copy destinations the image is not copied to, with why (reported, not acted on).
fn copies_not_made(image: &Image, plan: &SharePlan, is_foreign_copy: bool) -> Vec<CopyReport> {
    plan.copies
        .values()
        .filter_map(|dest| {
            let (status, detail) = if dest.region == image.region {
                (
                    "same-region",
                    "the image is already in this Region".to_string(),
                )
            } else if is_foreign_copy {
                (
                    "refused",
                    format!(
                        "the image is itself a copy of {}/{}; copies are never copied again",
                        image.source_image_region.as_deref().unwrap_or("?"),
                        image.source_image_id.as_deref().unwrap_or("?")
                    ),
                )
            } else {
                return None;
            };
            Some(CopyReport {
                region: dest.region.clone(),
                image_id: None,
                status: status.into(),
                detail: Some(detail),
            })
        })
        .collect()
}
