//! Retirement: each night, per Region, the rules with `retire` take their older images through
//! the stages the rule names — deprecate, then disable, then deregister — never while anything
//! still uses them, and never the rule's newest image or an image a latest-image parameter
//! names.
//!
//! - Selection is the rule's (keep-N and/or age, per Region; a copy counts with its source's
//!   creation date, so the same images are selected in every Region the rule copies to).
//! - Each stage's time is a tag on the image (`ami-share:retire-stage`, `-stage-at`): stages only
//!   move forward, a cut-short run resumes where it stopped, and a wait is counted from the
//!   previous stage.
//! - A copy never goes past its source's stage, unless the source is gone: each Region's sweeper
//!   reads the source only when the copy's stage is due, within the night's checks.
//! - Before disabling or deregistering: nothing in the owner account references the image
//!   (`DescribeImageReferences`: instances, every launch template version, parameters, Image
//!   Builder recipes), it was not launched within `protect_if_launched_within_days`, and no
//!   consumer account uses it (an image usage report, requested one night and read the next).
//!   A protected image is reported with what protects it and checked again the next night.
//! - At most `sweeper.max_retirements` stages per run; `mode: report` (the default) only says
//!   what would be done.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, SecondsFormat, Utc};

use super::marks::{stage_mark_kind, verified_view, Quiet};
use super::ports::{ImageReference, Retirement, MAX_REFERENCE_IMAGES};
use super::report::{RetireItem, RetireLog};
use super::stage::{next_step, reached, select, Next, Stage, STAGE_AT_TAG, STAGE_TAG};
use super::usage::{consumer_use, own_protection, read_references, Usage};
use crate::config::{RetireMode, Rule};
use crate::deps::Deps;
use crate::error::Error;
use crate::lineage::CopyChecks;
use crate::names::MANAGED_TAG;
use crate::night::{Run, LISTED};
use crate::plan::{classify, has_skip_tag, ImageKind, SkipReason};
use crate::ports::{Aws, Image, ImageState};

/// Images checked for use per stage of the night's budget.
pub const CHECKS_PER_STAGE: usize = 5;

/// One image's step tonight.
struct Step<'a> {
    rule: &'a Rule,
    image: &'a Image,
    why: String,
    stage: Stage,
}

pub async fn retire<P: Aws + Retirement>(
    deps: &Deps<P>,
    run: &Run,
    images: &[Image],
    checks: &CopyChecks,
    published: &BTreeSet<String>,
    unpublished: &[String],
    report: &mut impl RetireLog,
) {
    let rules: Vec<&Rule> = deps
        .policy
        .rules
        .iter()
        .filter(|r| r.retire.is_some())
        .collect();
    if rules.is_empty() {
        return;
    }
    report.retirement().status = "complete".into();
    // The stage marks are signed: without the key no stage moves tonight.
    let mark_key = match deps.mark_key(&run.region).await {
        Ok(k) => k,
        Err(e) => {
            report.retirement().status = "aborted".into();
            report.error("retirement: the stage marks' key", &e);
            return;
        }
    };
    // What each image's marks prove: a mark whose proof does not hold is read as absent (the
    // image's own state says what was done; the wait starts again from now).
    let verified: Vec<Image> = images
        .iter()
        .map(|i| verified_view(&mark_key, i, run.now, report))
        .collect();
    let images = verified.as_slice();
    // The rules' images in this Region: those the rule's match selects now, and the copies of
    // them verified through EC2's lineage. A copy whose source is gone keeps the rules it
    // was managed under (its source can no longer be matched); an image whose provenance is
    // forged, or that no rule selects, is never retired.
    let mut by_rule: BTreeMap<&str, Vec<&Image>> = BTreeMap::new();
    for image in images.iter().filter(|i| {
        matches!(i.state, ImageState::Available | ImageState::Disabled)
            && i.owner_id == deps.account_id
            && !has_skip_tag(i)
    }) {
        for name in retiring_rules(&rules, image, checks) {
            by_rule.entry(name).or_default().push(image);
        }
    }

    let mut sources: HashMap<(String, String), Option<Image>> = HashMap::new();
    let mut due: Vec<Step> = Vec::new();
    for rule in &rules {
        let Some(r) = &rule.retire else { continue };
        if rule.publish.is_some() && unpublished.contains(&rule.name) {
            // What the rule's parameter names is unknown tonight: nothing of it moves.
            report.retirement().status = "partial".into();
            report.left_for_next(format!(
                "retirement of rule {}: its publication failed tonight, so the image its parameter names is not known",
                rule.name
            ));
            continue;
        }
        let imgs = by_rule.get(rule.name.as_str()).cloned().unwrap_or_default();
        let mut selected = select(r, &imgs, run.now);
        selected.reverse(); // oldest first
        report.retirement().selected += selected.len();
        for (image, why) in selected {
            let next = next_step(r, reached(image), run.now);
            match next {
                Next::Done => {}
                Next::Waiting { stage, due_at } => {
                    report.retirement().waiting += 1;
                    item(
                        report,
                        rule,
                        image,
                        Some(stage),
                        "waiting",
                        format!("{why}; {} is due at {due_at}", stage.as_str()),
                        Vec::new(),
                    );
                }
                Next::Record { stage } => {
                    // A run stopped between the action and its tag: the time is recorded now.
                    if act(rule) {
                        if let Err(e) = record(deps, run, image, stage).await {
                            report.error(&format!("retirement of {}", image.id), &e);
                        }
                    }
                    item(report, rule, image, Some(stage), if act(rule) { "recorded" } else { "would-record" },
                        format!("{why}; {} was reached without its time recorded (a run stopped between the action and its tag)", stage.as_str()), Vec::new());
                }
                Next::Due { stage } => {
                    if published.contains(&image.id) {
                        let by =
                            format!("named by the latest-image parameter of rule {}", rule.name);
                        protected(report, rule, image, stage, why.clone(), vec![by]);
                        continue;
                    }
                    due.push(Step {
                        rule,
                        image,
                        why,
                        stage,
                    });
                }
            }
        }
    }

    // The night's budget goes to the oldest images first, whatever their rule (the list was
    // built rule by rule); a stable sort keeps each rule's order among equals.
    due.sort_by_key(|step| crate::publish::publication_order(step.image));

    // Own-account references are read 10 images a call, as the night reaches them; checks stop
    // with the night's budget, so a large backlog costs no more calls than the stages taken.
    let mut references: BTreeMap<String, Vec<ImageReference>> = BTreeMap::new();
    let mut budget = deps.policy.sweeper.max_retirements as usize;
    // Images checked for use (a protected one is checked again the next night): at most
    // CHECKS_PER_STAGE a stage of the night's budget, oldest first.
    let mut checks = budget * CHECKS_PER_STAGE;
    for (i, step) in due.iter().enumerate() {
        if budget > 0
            && checks > 0
            && step.stage.needs_protection_check()
            && !references.contains_key(&step.image.id)
        {
            let chunk: Vec<String> = due[i..]
                .iter()
                .filter(|s| s.stage.needs_protection_check())
                .take(MAX_REFERENCE_IMAGES)
                .map(|s| s.image.id.clone())
                .collect();
            read_references(deps, run, &chunk, &mut references, report).await;
        }
        let Step {
            rule,
            image,
            ref why,
            stage,
        } = *step;
        let why = why.clone();
        if !run.may_start() {
            report.retirement().not_reached += 1;
            report.retirement().status = "partial".into();
            continue;
        }
        let copy = match classify(image) {
            ImageKind::OurCopy(p) => Some(p),
            ImageKind::Source { .. } | ImageKind::Forged { .. } => None,
        };
        if budget == 0 || ((stage.needs_protection_check() || copy.is_some()) && checks == 0) {
            report.retirement().not_reached += 1;
            report.retirement().status = "partial".into();
            item(
                report,
                rule,
                image,
                Some(stage),
                "limit",
                format!("{why}; the night's sweeper.max_retirements (or its checks) reached"),
                Vec::new(),
            );
            continue;
        }
        if stage.needs_protection_check() || copy.is_some() {
            checks -= 1;
        }
        // A copy never goes past its source's stage, unless the source is gone: read only for
        // a copy whose stage is due, within the night's checks (cached per source).
        if let Some(p) = &copy {
            let key = (p.source_region.clone(), p.source_image_id.clone());
            if !sources.contains_key(&key) {
                match deps.aws.describe_image(&key.0, &key.1).await {
                    Ok(s) => {
                        let s = s.map(|s| verified_view(&mark_key, &s, run.now, &mut Quiet));
                        sources.insert(key.clone(), s);
                    }
                    Err(e) => {
                        report.error(
                            &format!("retirement of {}: reading its source", image.id),
                            &Error::from(e),
                        );
                        continue;
                    }
                }
            }
            if let Some(Some(source)) = sources.get(&key) {
                let source_stage = reached(source).map(|(s, _)| s);
                if source_stage.is_none_or(|s| s < stage) {
                    report.retirement().held += 1;
                    let detail = format!(
                        "{why}; waits for its source {} in {} ({}) to reach {} first",
                        p.source_image_id,
                        p.source_region,
                        source_stage.map_or("not retired", Stage::as_str),
                        stage.as_str()
                    );
                    item(report, rule, image, Some(stage), "held", detail, Vec::new());
                    continue;
                }
            }
        }
        let mut protected_by = Vec::new();
        if stage.needs_protection_check() {
            protected_by = own_protection(rule, image, stage, run.now, references.get(&image.id));
            if protected_by.is_empty() {
                match consumer_use(deps, run, rule, image).await {
                    Ok(Usage::Clear) => {}
                    Ok(Usage::InUse(lines)) => protected_by.extend(lines),
                    Ok(Usage::Pending(line)) => {
                        report.retirement().usage_reports_pending += 1;
                        protected_by.push(line);
                    }
                    Err(e) => {
                        report.error(&format!("retirement of {}: usage report", image.id), &e);
                        protected_by
                            .push("the consumer accounts' usage could not be read tonight".into());
                    }
                }
            }
        }
        if !protected_by.is_empty() {
            protected(report, rule, image, stage, why, protected_by);
            continue;
        }
        budget -= 1;
        if !act(rule) {
            report.retirement().would += 1;
            item(report, rule, image, Some(stage), "would", why, Vec::new());
            continue;
        }
        match take(deps, run, image, stage).await {
            Ok(()) => {
                let r = report.retirement();
                r.done += 1;
                match stage {
                    Stage::Deprecated => r.deprecated += 1,
                    Stage::Disabled => r.disabled += 1,
                    Stage::Deregistered => r.deregistered += 1,
                    Stage::Selected => {}
                }
                tracing::info!(image_id = %image.id, rule = %rule.name, stage = stage.as_str(), "retirement stage taken");
                item(report, rule, image, Some(stage), "done", why, Vec::new());
            }
            Err(e) => report.error(
                &format!("retirement of {} ({})", image.id, stage.as_str()),
                &e,
            ),
        }
    }
}

/// The names of the retiring `rules` that take `image` through retirement tonight: a source's
/// rules are those whose match selects it now; a verified copy's, those its source's; a copy
/// whose source is gone, the rules its managed tag names (the only record left).
fn retiring_rules<'r>(rules: &[&'r Rule], image: &Image, checks: &CopyChecks) -> Vec<&'r str> {
    let selects = |img: &Image| -> Vec<&'r str> {
        rules
            .iter()
            .filter(|r| r.matcher.matches(img))
            .map(|r| r.name.as_str())
            .collect()
    };
    match classify(image) {
        ImageKind::Source { .. } => selects(image),
        ImageKind::Forged { .. } => Vec::new(),
        ImageKind::OurCopy(p) => match checks.refused.get(&image.id) {
            Some(SkipReason::SourceGone { .. }) => {
                let managed: Vec<&str> = image
                    .tags
                    .get(MANAGED_TAG)
                    .map(|v| v.split(',').collect())
                    .unwrap_or_default();
                rules
                    .iter()
                    .map(|r| r.name.as_str())
                    .filter(|n| managed.contains(n))
                    .collect()
            }
            Some(_) => Vec::new(),
            None => checks.source_of(&p).map(selects).unwrap_or_default(),
        },
    }
}

/// An image whose due stage something prevents, with what.
fn protected(
    report: &mut impl RetireLog,
    rule: &Rule,
    image: &Image,
    stage: Stage,
    why: String,
    by: Vec<String>,
) {
    report.retirement().protected += 1;
    item(report, rule, image, Some(stage), "protected", why, by);
}

fn act(rule: &Rule) -> bool {
    rule.retire
        .as_ref()
        .is_some_and(|r| r.mode == RetireMode::Act)
}

fn item(
    report: &mut impl RetireLog,
    rule: &Rule,
    image: &Image,
    stage: Option<Stage>,
    status: &'static str,
    detail: String,
    protected_by: Vec<String>,
) {
    let items = &mut report.retirement().items;
    if items.len() < LISTED {
        items.push(RetireItem {
            image_id: image.id.clone(),
            image_name: image.name.clone(),
            rule: rule.name.clone(),
            stage,
            status,
            detail,
            protected_by,
        });
    }
}

/// Take a stage: the action, then its tag (a run stopping in between is resumed by
/// [`Next::Record`]).
async fn take<P: Aws + Retirement>(
    deps: &Deps<P>,
    run: &Run,
    image: &Image,
    stage: Stage,
) -> Result<(), Error> {
    let region = run.region.as_str();
    match stage {
        Stage::Selected => {}
        Stage::Deprecated => {
            let already = image
                .deprecation_time
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t.with_timezone(&Utc) <= run.now);
            if !already {
                let at = next_minute(run.now);
                deps.aws.enable_deprecation(region, &image.id, &at).await?;
            }
        }
        Stage::Disabled => deps.aws.disable_image(region, &image.id).await?,
        Stage::Deregistered => {
            deps.aws.deregister_image(region, &image.id).await?;
            return Ok(()); // gone: nothing to tag
        }
    }
    record(deps, run, image, stage).await
}

async fn record<P: Aws + Retirement>(
    deps: &Deps<P>,
    run: &Run,
    image: &Image,
    stage: Stage,
) -> Result<(), Error> {
    let key = deps.mark_key(&run.region).await?;
    let at = run.now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let tags = BTreeMap::from([
        (STAGE_TAG.to_string(), stage.as_str().to_string()),
        (
            STAGE_AT_TAG.to_string(),
            key.sign(&stage_mark_kind(stage.as_str()), &image.id, &at),
        ),
    ]);
    deps.aws
        .tag_resources(&run.region, std::slice::from_ref(&image.id), &tags)
        .await?;
    Ok(())
}

/// EC2 takes deprecation times to the minute and none in the past: the next whole minute at
/// least a minute away.
fn next_minute(now: DateTime<Utc>) -> String {
    let secs = (now + Duration::seconds(60)).timestamp();
    let rounded = secs + (60 - secs.rem_euclid(60)) % 60;
    DateTime::from_timestamp(rounded, 0)
        .unwrap_or(now)
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}
