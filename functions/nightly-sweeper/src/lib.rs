//! nightly-sweeper: once a night per Region, find (and, only when told to, delete) the
//! snapshots deregistered images left behind, and bring every managed image back to what the
//! policy says.
//!
//! Order of a run: take the whole inventory of the Region first (every listing complete, or the
//! orphan half of the run is aborted: a partial inventory is not an inventory); judge and
//! mark / unmark / delete orphans from that fresh inventory; then repair drift. Before each
//! piece of work the deadline is checked: what was not reached is reported, never cut mid-way.

//!
//! This crate is the night's orchestration only: the parts are the library's —
//! [`amishare::sweep::listings`] (the inventory), [`amishare::sweep::orphans`],
//! [`amishare::sweep::drift`] (which repairs through sharing, copies and publication) and
//! [`amishare::retire`].

use amishare::config::SweepMode;
use amishare::deps::Deps;
use amishare::lineage::{verify_copies, CopyChecks};
use amishare::night::{Ledger, LISTED};
use amishare::night_plan::{NightPlan, Recorder};
use amishare::plan::SkipReason;
use amishare::ports::Aws;
use amishare::publish::Publishing;
use amishare::retire::{self, RetireReport, Retirement};
use amishare::sweep::consumers::judge_consumers;
use amishare::sweep::inventory::Inventory;
use amishare::sweep::listings::{complete_inventory, Listings};
use amishare::sweep::targets::finish_target_copies;
use amishare::sweep::{drift, orphans};
use amishare::target_copies::TargetAccounts;
use amishare::{AwsError, Error};
use serde::Serialize;
use serde_json::Value;

/// The types of [`handle`]'s signature: the night's run, and its report.
pub use amishare::night::{Clock, Run, DEFAULT_MARGIN};
pub use amishare::sweep::report;
pub use amishare::sweep::report::Carry;
pub use amishare::sweep::SweepReport;

pub const FUNCTION: &str = "nightly-sweeper";
/// Count, list and log (WARN) the images whose claim to be our copies failed tonight.
fn report_copy_checks(checks: &CopyChecks, report: &mut SweepReport) {
    let mut refused: Vec<(&String, &SkipReason)> = checks.refused.iter().collect();
    refused.sort_by_key(|(id, _)| *id);
    for (image_id, reason) in refused {
        match reason {
            SkipReason::ForgedProvenance(_) => {
                report.drift.forged_provenance += 1;
                if report.drift.forged.len() < LISTED {
                    tracing::warn!(image_id = %image_id, region = %report.region, reason_code = reason.code(),
                        "forged provenance: {reason}; not shared, published or retired");
                    report.drift.forged.push(format!("{image_id}: {reason}"));
                }
            }
            _ => report.drift.source_gone += 1,
        }
    }
}

/// The schedule's input: `{}` (the policy's mode) or `{"mode": "report" | "delete"}`. The input
/// may lower the policy's mode (`report` under a `delete` policy), never raise it ([`sweep`]).
pub fn parse_input(payload: &Value) -> Result<Option<SweepMode>, Error> {
    let obj = payload.as_object().ok_or_else(|| {
        Error::bad_event("input", format!("must be a JSON object ({{}} or {{\"mode\": \"report\"|\"delete\"|\"plan\"}}), got {payload}"))
    })?;
    if let Some(k) = obj
        .keys()
        .find(|k| !["mode", "consumers_judged"].contains(&k.as_str()))
    {
        return Err(Error::bad_event(
            k.clone(),
            "unknown field; the sweeper's input may only hold \"mode\" (and what a round of the night carries to the next: \"consumers_judged\")",
        ));
    }
    if obj.get("consumers_judged").is_some_and(|v| !v.is_boolean()) {
        return Err(Error::bad_event(
            "consumers_judged",
            "must be true or false (the continuation engine sets it)",
        ));
    }
    match obj.get("mode") {
        None => Ok(None),
        Some(Value::String(m)) if m == "report" => Ok(Some(SweepMode::Report)),
        Some(Value::String(m)) if m == "delete" => Ok(Some(SweepMode::Delete)),
        Some(other) => Err(Error::bad_event(
            "mode",
            format!("must be \"report\", \"delete\" or \"plan\", got {other}"),
        )),
    }
}

/// Run one sweep and return its report. Only an input that is not understood is an error
/// here; everything AWS does wrong is in the report (and its error count), which is also
/// logged and emitted as metrics.
pub async fn sweep<P: Aws + Publishing + Retirement + Inventory + TargetAccounts>(
    deps: &Deps<P>,
    payload: Value,
    run: &Run,
) -> Result<SweepReport, Error> {
    let (mode, from_input) = sweep_mode(deps, &payload)?;
    let carried = carried(&payload);
    Ok(finish(
        night(deps, mode, from_input, carried, run).await,
        run,
    ))
}

/// What an earlier round of tonight's night carried in the input (see [`Carry`]).
fn carried(payload: &Value) -> Carry {
    Carry {
        consumers_judged: payload
            .get("consumers_judged")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }
}

/// The night itself, in `mode`: the inventory, then orphans beside repair, retirement and
/// target copies; its report (not yet logged).
async fn night<P: Aws + Publishing + Retirement + Inventory + TargetAccounts>(
    deps: &Deps<P>,
    mode: SweepMode,
    from_input: bool,
    carried: Carry,
    run: &Run,
) -> SweepReport {
    let mut report = new_report(run, mode, from_input);
    report.carry = carried;
    if !run.may_start() {
        report.orphans.status = "not_reached".into();
        report.drift.status = "not_reached".into();
        report.left_for_next("the whole sweep: the deadline was too near at start".into());
        return report;
    }
    let Some(listings) = inventory_in_time(deps, run, &mut report).await else {
        return report;
    };
    // The two halves run side by side: deletions (DeleteSnapshot's bucket) never hold up
    // drift repair (the attribute and tag buckets), and the other way round.
    let mut orphan_half = report.clone();
    let mut drift_half = report.clone();
    futures::join!(
        orphans::sweep(deps, run, mode, &listings, &mut orphan_half),
        repair_retire_follow(deps, run, &listings, &mut drift_half),
    );
    report.orphans = std::mem::take(&mut orphan_half.orphans);
    report.drift = std::mem::take(&mut drift_half.drift);
    report.retirement = std::mem::take(&mut drift_half.retirement);
    report.target_copies = std::mem::take(&mut drift_half.target_copies);
    report.consumers = std::mem::take(&mut drift_half.consumers);
    report.carry = std::mem::take(&mut drift_half.carry);
    report.absorb(orphan_half);
    report.absorb(drift_half);
    let still_failed = listings.transient_failures();
    if !still_failed.is_empty() {
        report.retry = Some(format!(
            "the listing of {} still failed after {} more attempts, so no orphan was marked or deleted; \
             the invocation fails so that it is run again",
            still_failed.join(", "),
            run.listing_retry_delays.len()
        ));
    }
    report
}

/// The night's mode: the input's, which may lower the policy's `sweeper.mode` but never raise
/// it, or the policy's; `true` when it came from the input.
fn sweep_mode<P>(deps: &Deps<P>, payload: &Value) -> Result<(SweepMode, bool), Error> {
    let override_mode =
        parse_input(payload).inspect_err(|e| tracing::error!(error = %e, "rejected input"))?;
    if let (Some(SweepMode::Delete), SweepMode::Report) = (override_mode, deps.policy.sweeper.mode)
    {
        let e = Error::bad_event(
            "mode",
            "the input may lower the policy's sweeper.mode, never raise it: the policy says \"report\", \
             so nothing is deleted on an input's word. To delete, set \"sweeper\": {\"mode\": \"delete\"} \
             in the policy (reviewed and deployed like any policy change)",
        );
        tracing::error!(error = %e, "rejected input");
        return Err(e);
    }
    Ok((
        override_mode.unwrap_or(deps.policy.sweeper.mode),
        override_mode.is_some(),
    ))
}

/// The night's report before anything was done.
fn new_report(run: &Run, mode: SweepMode, from_input: bool) -> SweepReport {
    SweepReport {
        function: FUNCTION,
        region: run.region.clone(),
        mode,
        mode_from: if from_input { "input" } else { "policy" },
        started_at: run.now,
        orphans: report::OrphanReport::default(),
        drift: report::DriftReport::default(),
        retirement: RetireReport::default(),
        target_copies: Default::default(),
        consumers: Default::default(),
        inventory_retried: Vec::new(),
        retry: None,
        not_reached: Vec::new(),
        more: false,
        carry: Carry::default(),
        errors: Vec::new(),
        errors_total: 0,
    }
}

/// The Region's inventory, taken (and its transient failures retried) before the deadline's
/// margin; `None` when it was not: the report says so and asks for the invocation to be run
/// again.
async fn inventory_in_time<P: Aws + Inventory>(
    deps: &Deps<P>,
    run: &Run,
    report: &mut SweepReport,
) -> Option<Listings> {
    let (listings, retried) = match run.time_left() {
        None => complete_inventory(deps, run).await,
        Some(left) => match tokio::time::timeout(left, complete_inventory(deps, run)).await {
            Ok(l) => l,
            Err(_) => {
                let why = format!(
                    "the inventory was not complete {}s before the deadline",
                    run.margin.as_secs()
                );
                report.orphans.status = "aborted".into();
                report.orphans.aborted_because = Some(why.clone());
                report.drift.status = "not_reached".into();
                report.left_for_next(format!("orphans and drift repair: {why}"));
                report.retry = Some(format!(
                    "{why}; the invocation fails so that it is run again"
                ));
                return None;
            }
        },
    };
    report.inventory_retried = retried;
    Some(listings)
}

/// The images' half of the night: the copies checked against EC2's lineage, drift repaired,
/// retirement (knowing what the latest-image parameters name tonight), each `copy_into`
/// rule's newest image followed into its target accounts, then each rule's newest image
/// judged in its consumers' Allowed AMIs.
async fn repair_retire_follow<P: Aws + Publishing + Retirement + Inventory + TargetAccounts>(
    deps: &Deps<P>,
    run: &Run,
    listings: &Listings,
    report: &mut SweepReport,
) {
    let images = match &listings.images {
        Ok(images) => images,
        Err(e) => {
            report.drift.status = "aborted".into();
            report.error(
                "drift repair not started: the image listing failed",
                &Error::from(e.clone()),
            );
            return;
        }
    };
    // Which images are our copies is EC2's lineage's word, checked against the sources
    // tonight (never the tags'): one read per 200 sources.
    let mut images = images.clone();
    let checks = match verify_copies(deps, &mut images).await {
        Ok(checks) => checks,
        Err(e) => {
            report.drift.status = "aborted".into();
            report.error(
                "drift repair not started: the copies' sources could not be read",
                &e,
            );
            return;
        }
    };
    report_copy_checks(&checks, report);
    let images = images.as_slice();
    let snapshots = listings.snapshots.as_deref().ok();
    drift::repair(deps, run, images, &checks, snapshots, report).await;
    let published = report
        .drift
        .publications
        .iter()
        .map(|p| p.current_image_id.clone())
        .collect();
    let unpublished = report.drift.publications_failed.clone();
    retire::retire(deps, run, images, &checks, &published, &unpublished, report).await;
    finish_target_copies(deps, run, images, report).await;
    // Once a night, in the round that finished the images' work (their watermarks attached).
    if report.carry.consumers_judged {
        report.consumers.status = "judged-earlier-tonight".into();
    } else if report.more {
        report.consumers.status = "next-round".into();
    } else {
        judge_consumers(deps, run, images, &checks, report).await;
        report.carry.consumers_judged = true;
    }
}

/// What the input `{"mode": "plan"}` returns: the writes the next night would make under
/// the deployed policy, none of them made, and the report the night would give.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub mode: &'static str,
    pub plan: NightPlan,
    pub night: SweepReport,
}

/// `true` for the input `{"mode": "plan"}`.
pub fn wants_plan(payload: &Value) -> bool {
    payload
        .as_object()
        .is_some_and(|o| o.len() == 1 && o.get("mode").and_then(Value::as_str) == Some("plan"))
}

/// The next night in the policy's mode, every read made and every write recorded instead
/// ([`Recorder`]); no metrics are emitted and nothing is written.
pub async fn plan<P: Aws + Publishing + Retirement + Inventory + TargetAccounts>(
    deps: &Deps<P>,
    run: &Run,
) -> Planned {
    let dry = deps.over(Recorder::new(&deps.aws));
    let night = night(&dry, deps.policy.sweeper.mode, false, Carry::default(), run).await;
    let plan = NightPlan::of(
        &run.region,
        dry.aws.writes(),
        &dry.aws.images_seen(),
        &deps.policy,
        &deps.account_id,
    );
    tracing::info!(region = %run.region, writes = plan.writes, errors = night.errors_total,
        "plan of the next night computed; nothing was written");
    Planned {
        mode: "plan",
        plan,
        night,
    }
}

/// The function's entry: `{"mode": "plan"}` answers [`plan`]; any other input runs
/// [`handle`].
pub async fn invoke<P: Aws + Publishing + Retirement + Inventory + TargetAccounts>(
    deps: &Deps<P>,
    payload: Value,
    run: &Run,
) -> Result<Value, Error> {
    let out = if wants_plan(&payload) {
        serde_json::to_value(plan(deps, run).await)
    } else {
        serde_json::to_value(handle(deps, payload, run).await?)
    };
    out.map_err(|e| Error::Config(format!("the sweeper's answer could not be serialised: {e}")))
}

/// The Lambda handler: [`sweep`], then fail the invocation (after the report was logged) when
/// the inventory stayed incomplete through a transient error, so that the retry policy runs
/// the sweep again.
pub async fn handle<P: Aws + Publishing + Retirement + Inventory + TargetAccounts>(
    deps: &Deps<P>,
    payload: Value,
    run: &Run,
) -> Result<SweepReport, Error> {
    let report = sweep(deps, payload, run).await?;
    match &report.retry {
        Some(why) => {
            tracing::error!(region = %run.region, reason = %why, "sweep incomplete; failing the invocation so that it is run again");
            Err(Error::Transient(AwsError::new(
                "ami-share",
                "Sweep",
                "InventoryIncomplete",
                why.clone(),
                run.region.clone(),
            )))
        }
        None => Ok(report),
    }
}

fn finish(report: SweepReport, run: &Run) -> SweepReport {
    report.log();
    println!("{}", report.emf(run.now));
    report
}
