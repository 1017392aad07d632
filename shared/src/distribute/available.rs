//! on-image-available's service: an image became `available`; share it as the policy says,
//! in its own Region, start its copies to other Regions, and publish it once it is fully
//! shared; then start its copies into the target accounts of `copy_into`.

use std::sync::Arc;

use chrono::Utc;

use crate::consumers::judge_event;
use crate::copy::CopyReport;
use crate::deps::Deps;
use crate::error::Error;
use crate::event::{AmiState, AmiStateChange};
use crate::plan::{classify, matching_rules, ImageKind, SharePlan, SkipReason};
use crate::ports::{Aws, Image};
use crate::publish::{Publisher, Publishing};
use crate::report::{Outcome, Summary};
use crate::share::{already_recorded, Converged, Convergence, KeyState};
use crate::target_copies::{TargetAccounts, TargetCopier};

/// The function this service is the body of (named in its summaries).
pub const FUNCTION: &str = "on-image-available";

/// Share the image as the policy says, start its copies, publish it once fully shared.
/// The steps: recognise a source image and its rules; converge it (every check first, then
/// the shares alongside the copies) and record it; report; publish it once fully shared; then
/// start its copies in the target accounts.
///
/// `keys`: what the invocation's events know of their keys, shared by the events of a batch.
pub async fn image_available<P: Aws + Publishing + TargetAccounts>(
    deps: &Deps<P>,
    change: &AmiStateChange,
    keys: &Arc<KeyState>,
) -> Result<Summary, Error> {
    let (region, image_id) = (change.region.as_str(), change.image_id.as_str());
    let (image, is_foreign_copy, plan) = match recognise(deps, change).await? {
        Ok(found) => found,
        Err(stop) => return Ok(stop),
    };
    let not_made = copies_not_made(&image, &plan, is_foreign_copy);
    let plan = plan.for_source(!is_foreign_copy);

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
    let shared = done.shared;
    let mut out = converged_summary(change, &plan, done, not_made);
    // Fully shared in its Region: the newest image of its rules there, for consumers.
    if !shared {
        return Ok(out);
    }
    let published = Publisher::new(deps).publish_for(&plan.rules, &image).await;
    out = out.with_publications(published)?;
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
    // Last, as nothing waits for it: whether the consumers can see what was shared (with the
    // watermarks attached just now).
    let mut seen = image;
    seen.watermarks
        .extend(out.watermarks_attached.iter().cloned());
    out.consumers = judge_event(deps, &seen, &plan.rules, Some(&deps.aws), Utc::now()).await;
    Ok(out)
}

/// The event's image when it is a source the policy matches: the image, whether it is a copy
/// someone else made, and the plan of its rules; otherwise the summary that says why not.
async fn recognise<P: Aws>(
    deps: &Deps<P>,
    change: &AmiStateChange,
) -> Result<Result<(Image, bool, SharePlan), Summary>, Error> {
    let (region, image_id) = (change.region.as_str(), change.image_id.as_str());
    let summary = |outcome| Summary::new(FUNCTION, outcome).about(region, image_id);
    if change.state != AmiState::Available {
        return Ok(Err(summary(Outcome::Ignored).because(format!(
            "state {}: nothing to share",
            change.state.as_str()
        ))));
    }
    let Some(image) = deps.describe_image_eventually(region, image_id).await? else {
        return Ok(Err(summary(Outcome::Skipped).because(
            "image not found (deregistered since the event, or never visible)",
        )));
    };
    let is_foreign_copy = match classify(&image) {
        ImageKind::OurCopy(p) => {
            return Ok(Err(summary(Outcome::Skipped).because(format!(
                "a copy made by ami-share of {}/{}; on-copy-complete shares it",
                p.source_region, p.source_image_id
            ))))
        }
        ImageKind::Forged { why, .. } if image.owner_id == deps.account_id => {
            return Ok(Err(
                summary(Outcome::Skipped).not_acted_on(&SkipReason::ForgedProvenance(why))
            ))
        }
        ImageKind::Forged { .. } => false, // another account's: matching_rules says so
        ImageKind::Source { is_foreign_copy } => is_foreign_copy,
    };
    let plan = match matching_rules(&deps.policy, &image, &deps.account_id) {
        Ok(rules) => SharePlan::from_rules(deps.policy.kms_access, rules),
        Err(reason) => return Ok(Err(summary(Outcome::Skipped).because(reason.to_string()))),
    };
    Ok(Ok((image, is_foreign_copy, plan)))
}

/// The summary of a converged image: shared, refused in part, or re-encrypted first; its
/// copies, those started and those not made.
fn converged_summary(
    change: &AmiStateChange,
    plan: &SharePlan,
    done: Converged,
    not_made: Vec<CopyReport>,
) -> Summary {
    let mut out = Summary::new(FUNCTION, Outcome::Shared).about(&change.region, &change.image_id);
    out.rules = plan.rules.clone();
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
        out.watermarks_attached = done.watermarks_attached.clone();
        out.share = Some(done.share);
    }
    out.copies = done.copies;
    out.copies.extend(not_made);
    out
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
