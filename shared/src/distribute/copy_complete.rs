//! on-copy-complete's service: one of our copies became `available` (or `failed`) in its
//! destination Region. Share it there exactly like its source, with this Region's keys.

use std::sync::Arc;

use std::collections::BTreeMap;

use chrono::Utc;

use crate::config::{KmsAccess, Rule};
use crate::consumers::judge_event;
use crate::copy::{clear_source_fingerprint, deprecation_for_copy};
use crate::deps::Deps;
use crate::error::Error;
use crate::event::{AmiState, AmiStateChange};
use crate::names::{
    source_image_tag, Provenance, COPY_KIND_TAG, MANAGED_TAG, SOURCE_CREATED_TAG, SOURCE_IMAGE_TAG,
    SOURCE_RULE_TAG,
};
use crate::plan::{classify, copy_rules, ImageKind, SharePlan, SkipReason};
use crate::ports::{Aws, Image};
use crate::publish::{Publisher, Publishing};
use crate::report::{Outcome, Summary};
use crate::share::{already_recorded, Convergence, KeyState, CONVERGED_AT_TAG};

/// The function this service is the body of (named in its summaries).
pub const FUNCTION: &str = "on-copy-complete";

/// Share the copy in its Region exactly like its source, deprecate it like its source,
/// publish it once fully shared; a failed copy clears its source's fingerprint. Then, as an
/// image that was pending in the Region is not any more (a copy slot is free), start what
/// waits in the Region's copy line ([`super::line`]); a drain that fails is logged and left to the
/// line's one-minute timer.
///
/// `keys`: what the invocation's events know of their keys, shared by the events of a batch.
pub async fn copy_complete<P: Aws + Publishing>(
    deps: &Deps<P>,
    change: &AmiStateChange,
    keys: &Arc<KeyState>,
) -> Result<Summary, Error> {
    let mut out = share_copy(deps, change, keys).await?;
    if matches!(change.state, AmiState::Available | AmiState::Failed) {
        match super::line::drain_and_report(deps, &change.region).await {
            Ok(line) => out.line = Some(line),
            Err(e) => {
                tracing::warn!(region = %change.region, error = %e, "could not drain the copy line; its timer drains it within a minute")
            }
        }
    }
    Ok(out)
}

/// What a step decided: go on with `T`, or stop with this summary.
type Step<T> = Result<Result<T, Summary>, Error>;

/// The copy's own work, as steps: recognise the copy; a failed one clears its source's
/// record; otherwise its rules (from its source, now), converge and record it, deprecate it
/// like its source, publish it.
async fn share_copy<P: Aws + Publishing>(
    deps: &Deps<P>,
    change: &AmiStateChange,
    keys: &Arc<KeyState>,
) -> Result<Summary, Error> {
    let (mut copy, provenance) = match recognise(deps, change).await? {
        Ok(found) => found,
        Err(stop) => return Ok(stop),
    };
    let summary =
        || Summary::new(FUNCTION, Outcome::Shared).about(&change.region, &change.image_id);
    if change.state == AmiState::Failed {
        // The source's recorded state included this copy: clear its fingerprint, so the next
        // night converges the source again and starts a new copy.
        clear_source_fingerprint(deps, &provenance.source_region, &provenance.source_image_id)
            .await?;
        let mut out = summary().because(format!(
            "copy of {}/{} failed: {}; the source's fingerprint was cleared, so the nightly run starts the copy again (nothing was deregistered)",
            provenance.source_region,
            provenance.source_image_id,
            change.error_message.as_deref().unwrap_or("no error message in the event")
        ));
        out.outcome = Outcome::CopyFailed;
        return Ok(out);
    }
    let (source, plan) = match rules_of(deps, &mut copy, &provenance, summary()).await? {
        Ok(found) => found,
        Err(stop) => return Ok(stop),
    };
    let conv = Convergence::for_event(deps, Utc::now(), keys.clone());
    let done = match conv.converge(&copy, &plan, false, None).await {
        Ok(done) => done,
        Err(e) => {
            return Summary::failed_under(
                FUNCTION,
                e,
                &plan.rules,
                &change.region,
                &change.image_id,
            )
        }
    };
    let mut out = summary();
    out.rules = plan.rules.clone();
    record(deps, &copy, &provenance, &plan, &done).await?;
    if let Some(note) = deprecate_like_source(deps, &copy, source.as_ref()).await? {
        out.reason = Some(note);
    }
    if let Some(why) = &done.refused {
        out.outcome = Outcome::Refused;
        out.reason = Some(why.clone());
    }
    out.watermarks_attached = done.watermarks_attached.clone();
    out.share = Some(done.share);
    // Fully shared in its Region: the newest image of its rules there, for consumers.
    if !done.shared {
        return Ok(out);
    }
    let result = Publisher::new(deps).publish_for(&plan.rules, &copy).await;
    let mut out = out.with_publications(result)?;
    // Whether the consumers can see it here (this function has no target role: the targets'
    // organization policies are read).
    copy.watermarks
        .extend(out.watermarks_attached.iter().cloned());
    out.consumers = judge_event(deps, &copy, &plan.rules, None, Utc::now()).await;
    Ok(out)
}

/// The event's image, when it is one of this account's copies (EC2's lineage); otherwise the
/// summary that says why nothing is done.
async fn recognise<P: Aws>(deps: &Deps<P>, change: &AmiStateChange) -> Step<(Image, Provenance)> {
    let (region, image_id) = (change.region.as_str(), change.image_id.as_str());
    let summary = |outcome| Summary::new(FUNCTION, outcome).about(region, image_id);
    if !matches!(change.state, AmiState::Available | AmiState::Failed) {
        return Ok(Err(summary(Outcome::Ignored).because(format!(
            "state {}: nothing to do",
            change.state.as_str()
        ))));
    }
    let Some(copy) = deps.describe_image_eventually(region, image_id).await? else {
        let why = match change.state {
            AmiState::Failed => {
                "image not found; if it was one of our copies, the nightly run starts it again"
            }
            _ => "image not found (deregistered since the event, or never visible)",
        };
        return Ok(Err(summary(Outcome::Skipped).because(why)));
    };
    let provenance = match classify(&copy) {
        ImageKind::OurCopy(p) => p,
        ImageKind::Forged { why, .. } if copy.owner_id == deps.account_id => {
            return Ok(Err(
                summary(Outcome::Skipped).not_acted_on(&SkipReason::ForgedProvenance(why))
            ))
        }
        _ => {
            return Ok(Err(summary(Outcome::Ignored).because(
                "not a copy made by ami-share; on-image-available handles it",
            )))
        }
    };
    if copy.owner_id != deps.account_id {
        return Ok(Err(summary(Outcome::Skipped).because(format!(
            "owned by account {}, not by this account",
            copy.owner_id
        ))));
    }
    Ok(Ok((copy, provenance)))
}

/// The copy's source (read first, named by EC2's lineage) and the plan of the rules the source
/// matches now; a same-Region copy must also prove itself by its snapshots.
async fn rules_of<P: Aws>(
    deps: &Deps<P>,
    copy: &mut Image,
    provenance: &Provenance,
    summary: Summary,
) -> Step<(Option<Image>, SharePlan)> {
    let skipped = |s: Summary| {
        let mut s = s;
        s.outcome = Outcome::Skipped;
        s
    };
    // A same-Region copy proves itself by its snapshots (its lineage is also a CreateImage
    // derivative's).
    if let Some(forged) = crate::lineage::unproven_reencryption(deps, copy, provenance).await? {
        return Ok(Err(skipped(summary).not_acted_on(&forged)));
    }
    // The copy's rules are those its source, named by EC2's lineage, matches now: the source
    // is read first (never the rule names in the copy's tags).
    let source = deps
        .aws
        .describe_image(&provenance.source_region, &provenance.source_image_id)
        .await?;
    let rules = match copy_rules(
        &deps.policy,
        copy,
        provenance,
        source.as_ref(),
        &deps.account_id,
    ) {
        Ok(rules) => rules,
        Err(SkipReason::NoRuleMatches) => {
            return Ok(Err(no_rule_left(skipped(summary), provenance)))
        }
        Err(reason) => return Ok(Err(skipped(summary).not_acted_on(&reason))),
    };
    match copy_plan(deps.policy.kms_access, &rules) {
        Some(plan) => Ok(Ok((source, plan))),
        None => Ok(Err(no_rule_left(skipped(summary), provenance))),
    }
}

/// Record the convergence on the copy (and the provenance tags it misses), before the late
/// steps: a copy that was shared is managed, whatever fails next.
async fn record<P: Aws>(
    deps: &Deps<P>,
    copy: &Image,
    provenance: &Provenance,
    plan: &SharePlan,
    done: &crate::share::Converged,
) -> Result<(), Error> {
    // A redelivered event changes no tag: the convergence time only moves with a change.
    let mut record = done.record.clone();
    if already_recorded(copy, done) {
        record.remove(CONVERGED_AT_TAG);
    }
    // A copy counts, among its rule's images, with its source's creation date, read through
    // EC2's lineage; the tag is a note for people, never read back.
    if let Some(created) = &copy.verified_source_created {
        record.insert(SOURCE_CREATED_TAG.to_string(), created.clone());
    }
    complete_tags(deps, copy, provenance, plan, &record).await
}

/// The source's deprecation time on the copy (the next minute when it is past); the note
/// saying so.
async fn deprecate_like_source<P: Aws>(
    deps: &Deps<P>,
    copy: &Image,
    source: Option<&Image>,
) -> Result<Option<String>, Error> {
    let Some(at) = source.and_then(|s| s.deprecation_time.as_deref()) else {
        return Ok(None);
    };
    if copy.deprecation_time.is_some() {
        return Ok(None);
    }
    let (at, note) = deprecation_for_copy(at, Utc::now());
    deps.aws
        .enable_deprecation(&copy.region, &copy.id, &at)
        .await?;
    if let Some(note) = &note {
        tracing::info!(image_id = %copy.id, region = %copy.region, deprecate_at = %at, "{note}");
    }
    Ok(note)
}

/// The plan for a copy under `rules` (a copy is never copied again); `None` without rules.
fn copy_plan(kms_default: KmsAccess, rules: &[&Rule]) -> Option<SharePlan> {
    if rules.is_empty() {
        return None;
    }
    Some(SharePlan::from_rules(kms_default, rules.iter().copied()).for_source(false))
}

fn no_rule_left(s: Summary, p: &Provenance) -> Summary {
    s.because(format!(
        "no rule of the policy asks for copies of {}/{} any more",
        p.source_region, p.source_image_id
    ))
}

/// Add the provenance tags a copy is missing (where tags were dropped at creation) and record
/// its convergence (managed, fingerprint); one `CreateTags` at most.
async fn complete_tags<P: Aws>(
    deps: &Deps<P>,
    copy: &Image,
    p: &Provenance,
    plan: &SharePlan,
    record: &BTreeMap<String, String>,
) -> Result<(), Error> {
    let want = [
        (
            SOURCE_IMAGE_TAG,
            source_image_tag(&p.source_region, &p.source_image_id),
        ),
        (SOURCE_RULE_TAG, plan.rules.join(",")),
        (COPY_KIND_TAG, p.kind.as_str().to_string()),
        (MANAGED_TAG, plan.rules.join(",")),
    ];
    let missing: BTreeMap<String, String> = want
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(record.clone())
        .filter(|(k, v)| copy.tags.get(k) != Some(v))
        .collect();
    if !missing.is_empty() {
        deps.aws
            .tag_resources(&copy.region, std::slice::from_ref(&copy.id), &missing)
            .await?;
    }
    Ok(())
}
