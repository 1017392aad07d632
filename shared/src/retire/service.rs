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

use std::collections::{BTreeMap, BTreeSet};

use super::marks::verified_view;
use super::ports::Retirement;
use super::report::{RetireItem, RetireLog};
use super::stage::{next_step, reached, select, Next, Stage};
use super::take::{record, take_steps};
use crate::config::{RetireMode, Rule};
use crate::deps::Deps;
use crate::lineage::CopyChecks;
use crate::marks::MarkKey;
use crate::names::MANAGED_TAG;
use crate::night::{Run, LISTED};
use crate::plan::{classify, has_skip_tag, ImageKind, SkipReason};
use crate::ports::{Aws, Image, ImageState};

/// Images checked for use per stage of the night's budget.
pub const CHECKS_PER_STAGE: usize = 5;

/// One image's step tonight.
pub(super) struct Step<'a> {
    pub rule: &'a Rule,
    pub image: &'a Image,
    pub why: String,
    pub stage: Stage,
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
    let Some(mark_key) = stage_key(deps, run, report).await else {
        return;
    };
    // What each image's marks prove: a mark whose proof does not hold is read as absent (the
    // image's own state says what was done; the wait starts again from now).
    let verified: Vec<Image> = images
        .iter()
        .map(|i| verified_view(&mark_key, i, run.now, report))
        .collect();
    let by_rule = images_by_rule(deps, &rules, &verified, checks);
    let mut due = steps_due(deps, run, &rules, &by_rule, published, unpublished, report).await;
    // The night's budget goes to the oldest images first, whatever their rule (the list was
    // built rule by rule); a stable sort keeps each rule's order among equals.
    due.sort_by_key(|step| crate::publish::publication_order(step.image));
    take_steps(deps, run, &mark_key, &due, report).await;
}

/// The key the stage marks are signed with: without it no stage moves tonight.
async fn stage_key<P: Aws + Retirement>(
    deps: &Deps<P>,
    run: &Run,
    report: &mut impl RetireLog,
) -> Option<MarkKey> {
    match deps.mark_key(&run.region).await {
        Ok(k) => Some(k),
        Err(e) => {
            report.retirement().status = "aborted".into();
            report.error("retirement: the stage marks' key", &e);
            None
        }
    }
}

/// The rules' images in this Region: those the rule's match selects now, and the copies of
/// them verified through EC2's lineage. A copy whose source is gone keeps the rules it was
/// managed under (its source can no longer be matched); an image whose provenance is forged,
/// or that no rule selects, is never retired.
fn images_by_rule<'a, P: Aws + Retirement>(
    deps: &Deps<P>,
    rules: &[&'a Rule],
    images: &'a [Image],
    checks: &CopyChecks,
) -> BTreeMap<&'a str, Vec<&'a Image>> {
    let mut by_rule: BTreeMap<&str, Vec<&Image>> = BTreeMap::new();
    for image in images.iter().filter(|i| {
        matches!(i.state, ImageState::Available | ImageState::Disabled)
            && i.owner_id == deps.account_id
            && !has_skip_tag(i)
    }) {
        for name in retiring_rules(rules, image, checks) {
            by_rule.entry(name).or_default().push(image);
        }
    }
    by_rule
}

/// Each rule's selected images, oldest first, with their next stage: the due ones returned;
/// the waiting, the published (protected) and the ones whose stage is recorded late said in
/// the report. A rule whose publication failed tonight moves nothing.
async fn steps_due<'a, P: Aws + Retirement>(
    deps: &Deps<P>,
    run: &Run,
    rules: &[&'a Rule],
    by_rule: &BTreeMap<&str, Vec<&'a Image>>,
    published: &BTreeSet<String>,
    unpublished: &[String],
    report: &mut impl RetireLog,
) -> Vec<Step<'a>> {
    let mut due = Vec::new();
    for rule in rules {
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
            let step = Step {
                rule,
                image,
                why,
                stage: Stage::Selected,
            };
            if let Some(step) = next_stage(deps, run, r, step, published, report).await {
                due.push(step);
            }
        }
    }
    due
}

/// An image's next stage: `Some` when it is due tonight; a wait, a stage reached without its
/// time recorded (recorded now) or a stage the latest-image parameter prevents is reported.
async fn next_stage<'a, P: Aws + Retirement>(
    deps: &Deps<P>,
    run: &Run,
    r: &crate::config::Retire,
    step: Step<'a>,
    published: &BTreeSet<String>,
    report: &mut impl RetireLog,
) -> Option<Step<'a>> {
    let Step {
        rule, image, why, ..
    } = step;
    match next_step(r, reached(image), run.now) {
        Next::Done => None,
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
            None
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
            None
        }
        Next::Due { stage } => {
            if published.contains(&image.id) {
                let by = format!("named by the latest-image parameter of rule {}", rule.name);
                protected(report, rule, image, stage, why, vec![by]);
                return None;
            }
            Some(Step {
                rule,
                image,
                why,
                stage,
            })
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
pub(super) fn protected(
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

pub(super) fn act(rule: &Rule) -> bool {
    rule.retire
        .as_ref()
        .is_some_and(|r| r.mode == RetireMode::Act)
}

pub(super) fn item(
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
