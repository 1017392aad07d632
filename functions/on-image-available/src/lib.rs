//! on-image-available: an image became `available`; share it as the policy says, in its own
//! Region, and start its copies to other Regions.

use amishare::copies::check_copy_plan;
use amishare::domain::matching::{classify, matching_rules, ImageKind};
use amishare::domain::names::{CopyKind, MANAGED_TAG};
use amishare::domain::plan::SharePlan;
use amishare::event::{AmiState, AmiStateChange};
use amishare::ports::{Aws, Image};
use amishare::report::{on_ami_event, CopyReport, Outcome, Summary};
use amishare::share::{aws_managed_message, tag_map, Deps};
use amishare::Error;
use serde_json::Value;

pub const FUNCTION: &str = "on-image-available";

/// Handle one event. Permanent failures are reported in the summary (and not retried);
/// transient ones are returned as errors so Lambda retries the event.
pub async fn handle<P: Aws>(deps: &Deps<P>, payload: Value) -> Result<Summary, Error> {
    on_ami_event(FUNCTION, payload, |change| async move {
        process(deps, &change).await
    })
    .await
}

async fn process<P: Aws>(deps: &Deps<P>, change: &AmiStateChange) -> Result<Summary, Error> {
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
        ImageKind::Source { is_foreign_copy } => is_foreign_copy,
    };
    let rules = match matching_rules(&deps.policy, &image, &deps.account_id) {
        Ok(rules) => rules,
        Err(reason) => return Ok(summary(Outcome::Skipped).because(reason.to_string())),
    };
    let plan = SharePlan::from_rules(rules);
    let mut out = summary(Outcome::Shared);
    out.rules = plan.rules.clone();

    // Check everything that can make the work impossible before changing anything.
    if !is_foreign_copy {
        check_copy_plan(&image, &plan)?;
    }
    let enc = deps.encryption(&image).await?;
    if let Some(key) = enc.aws_managed.first() {
        if plan.shares_anything() {
            let Some(cmk) = deps.policy.reencrypt_with.get(region) else {
                return Err(Error::refused(
                    &image.id,
                    aws_managed_message(&image, &key.arn),
                ));
            };
            let copy = deps
                .ensure_copy(&image, region, Some(cmk), CopyKind::Reencrypt, &plan.rules)
                .await?;
            out.outcome = Outcome::ReencryptStarted;
            out.reason = Some(format!(
                "snapshots use the AWS managed key aws/ebs ({}), which cannot be shared; a copy re-encrypted with {cmk} is shared instead when it becomes available",
                key.arn
            ));
            out.copies.push(copy);
            out.copies
                .extend(start_copies(deps, &image, &plan, is_foreign_copy).await?);
            return Ok(out);
        }
    }

    out.share = Some(deps.apply_sharing(&image, &plan, &enc).await?);
    mark_managed(deps, &image, &plan).await?;
    out.copies = start_copies(deps, &image, &plan, is_foreign_copy).await?;
    Ok(out)
}

/// Tag the image as managed by ami-share (what the sweeper's pruning acts on); skipped when
/// the tag already says so.
async fn mark_managed<P: Aws>(
    deps: &Deps<P>,
    image: &Image,
    plan: &SharePlan,
) -> Result<(), Error> {
    let value = plan.rules.join(",");
    if image.tags.get(MANAGED_TAG) != Some(&value) {
        deps.aws
            .tag_resources(
                &image.region,
                std::slice::from_ref(&image.id),
                &tag_map([(MANAGED_TAG, value.as_str())]),
            )
            .await?;
    }
    Ok(())
}

/// Start the copies to other Regions. Copies are never copied again, nor are images someone
/// else copied here (they are shared, not re-copied).
async fn start_copies<P: Aws>(
    deps: &Deps<P>,
    image: &Image,
    plan: &SharePlan,
    is_foreign_copy: bool,
) -> Result<Vec<CopyReport>, Error> {
    let mut reports = Vec::new();
    for dest in plan.copies.values() {
        if dest.region == image.region {
            reports.push(CopyReport {
                region: dest.region.clone(),
                image_id: None,
                status: "same-region".into(),
                detail: Some("the image is already in this Region".into()),
            });
            continue;
        }
        if is_foreign_copy {
            reports.push(CopyReport {
                region: dest.region.clone(),
                image_id: None,
                status: "refused".into(),
                detail: Some(format!(
                    "the image is itself a copy of {}/{}; copies are never copied again",
                    image.source_image_region.as_deref().unwrap_or("?"),
                    image.source_image_id.as_deref().unwrap_or("?")
                )),
            });
            continue;
        }
        reports.push(
            deps.ensure_copy(
                image,
                &dest.region,
                dest.kms_key_id.as_deref(),
                CopyKind::RegionCopy,
                &dest.rules,
            )
            .await?,
        );
    }
    Ok(reports)
}
