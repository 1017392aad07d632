//! The night's due retirement stages taken, oldest first, within its budget: own-account
//! references read ten images a call as the night reaches them, a copy held behind its
//! source's stage, what still uses an image checked, then the stage's action and its tag.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, SecondsFormat, Utc};

use super::marks::{stage_mark_kind, verified_view, Quiet};
use super::ports::{ImageReference, Retirement, MAX_REFERENCE_IMAGES};
use super::report::RetireLog;
use super::service::{act, item, protected, Step, CHECKS_PER_STAGE};
use super::stage::{reached, Stage, STAGE_AT_TAG, STAGE_TAG};
use super::usage::{consumer_use, own_protection, read_references, Usage};
use crate::deps::Deps;
use crate::error::Error;
use crate::marks::MarkKey;
use crate::names::Provenance;
use crate::night::Run;
use crate::plan::{classify, ImageKind};
use crate::ports::{Aws, Image};

/// What the night has left and has read, step after step.
struct Night {
    /// Own-account references read so far, by image.
    references: BTreeMap<String, Vec<ImageReference>>,
    /// Stages the night may still take (`sweeper.max_retirements`).
    budget: usize,
    /// Images it may still check for use: CHECKS_PER_STAGE a stage of the budget.
    checks: usize,
    /// Each copy's source as read tonight (`None`: gone), by (Region, image id).
    sources: HashMap<(String, String), Option<Image>>,
}

pub(super) async fn take_steps<P: Aws + Retirement>(
    deps: &Deps<P>,
    run: &Run,
    mark_key: &MarkKey,
    due: &[Step<'_>],
    report: &mut impl RetireLog,
) {
    // Own-account references are read 10 images a call, as the night reaches them; checks stop
    // with the night's budget, so a large backlog costs no more calls than the stages taken.
    let budget = deps.policy.sweeper.max_retirements as usize;
    let mut night = Night {
        references: BTreeMap::new(),
        budget,
        // Images checked for use (a protected one is checked again the next night): at most
        // CHECKS_PER_STAGE a stage of the night's budget, oldest first.
        checks: budget * CHECKS_PER_STAGE,
        sources: HashMap::new(),
    };
    for (i, step) in due.iter().enumerate() {
        if night.budget > 0
            && night.checks > 0
            && step.stage.needs_protection_check()
            && !night.references.contains_key(&step.image.id)
        {
            let chunk: Vec<String> = due[i..]
                .iter()
                .filter(|s| s.stage.needs_protection_check())
                .take(MAX_REFERENCE_IMAGES)
                .map(|s| s.image.id.clone())
                .collect();
            read_references(deps, run, &chunk, &mut night.references, report).await;
        }
        take_step(deps, run, mark_key, &mut night, step, report).await;
    }
}

/// One due stage: not reached (deadline or budget), held behind its source, protected, or
/// taken (or, in report mode, said).
async fn take_step<P: Aws + Retirement>(
    deps: &Deps<P>,
    run: &Run,
    mark_key: &MarkKey,
    night: &mut Night,
    step: &Step<'_>,
    report: &mut impl RetireLog,
) {
    let Step {
        rule, image, stage, ..
    } = *step;
    let why = step.why.clone();
    if !run.may_start() {
        report.retirement().not_reached += 1;
        report.retirement().status = "partial".into();
        return;
    }
    let copy = match classify(image) {
        ImageKind::OurCopy(p) => Some(p),
        ImageKind::Source { .. } | ImageKind::Forged { .. } => None,
    };
    let checked = stage.needs_protection_check() || copy.is_some();
    if night.budget == 0 || (checked && night.checks == 0) {
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
        return;
    }
    if checked {
        night.checks -= 1;
    }
    if let Some(p) = &copy {
        if held_by_source(deps, run, mark_key, night, step, p, report).await {
            return;
        }
    }
    let protected_by = protection(deps, run, night, step, report).await;
    if !protected_by.is_empty() {
        protected(report, rule, image, stage, why, protected_by);
        return;
    }
    night.budget -= 1;
    if !act(rule) {
        report.retirement().would += 1;
        item(report, rule, image, Some(stage), "would", why, Vec::new());
        return;
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

/// A copy never goes past its source's stage, unless the source is gone: the source is read
/// only for a copy whose stage is due, within the night's checks (once per source). True when
/// the copy waits tonight (held, or its source could not be read).
async fn held_by_source<P: Aws + Retirement>(
    deps: &Deps<P>,
    run: &Run,
    mark_key: &MarkKey,
    night: &mut Night,
    step: &Step<'_>,
    p: &Provenance,
    report: &mut impl RetireLog,
) -> bool {
    let Step {
        rule, image, stage, ..
    } = *step;
    let key = (p.source_region.clone(), p.source_image_id.clone());
    if !night.sources.contains_key(&key) {
        match deps.aws.describe_image(&key.0, &key.1).await {
            Ok(s) => {
                let s = s.map(|s| verified_view(mark_key, &s, run.now, &mut Quiet));
                night.sources.insert(key.clone(), s);
            }
            Err(e) => {
                report.error(
                    &format!("retirement of {}: reading its source", image.id),
                    &Error::from(e),
                );
                return true;
            }
        }
    }
    let Some(Some(source)) = night.sources.get(&key) else {
        return false;
    };
    let source_stage = reached(source).map(|(s, _)| s);
    if source_stage.is_some_and(|s| s >= stage) {
        return false;
    }
    report.retirement().held += 1;
    let detail = format!(
        "{}; waits for its source {} in {} ({}) to reach {} first",
        step.why,
        p.source_image_id,
        p.source_region,
        source_stage.map_or("not retired", Stage::as_str),
        stage.as_str()
    );
    item(report, rule, image, Some(stage), "held", detail, Vec::new());
    true
}

/// What prevents a stage that needs the check (disable, deregister): the owner account's
/// references and launches, then the consumer accounts' usage. Empty: nothing does.
async fn protection<P: Aws + Retirement>(
    deps: &Deps<P>,
    run: &Run,
    night: &Night,
    step: &Step<'_>,
    report: &mut impl RetireLog,
) -> Vec<String> {
    let Step {
        rule, image, stage, ..
    } = *step;
    if !stage.needs_protection_check() {
        return Vec::new();
    }
    let mut protected_by =
        own_protection(rule, image, stage, run.now, night.references.get(&image.id));
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
                protected_by.push("the consumer accounts' usage could not be read tonight".into());
            }
        }
    }
    protected_by
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

pub(super) async fn record<P: Aws + Retirement>(
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
