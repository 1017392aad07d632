//! nightly-sweeper: once a night per Region, find (and, only when told to, delete) the
//! snapshots deregistered images left behind, and bring every managed image back to what the
//! policy says.
//!
//! Order of a run: take the whole inventory of the Region first (every listing complete, or the
//! orphan half of the run is aborted: a partial inventory is not an inventory); judge and
//! mark / unmark / delete orphans from that fresh inventory; then repair drift. Before each
//! piece of work the deadline is checked: what was not reached is reported, never cut mid-way.

pub mod drift;
pub mod orphans;
pub mod report;

use std::time::{Duration, SystemTime};

use amishare::config::SweepMode;
use amishare::inventory::{Inventory, OwnSnapshot, RecycledImage, Reference};
use amishare::ports::{Aws, Image};
use amishare::share::Deps;
use amishare::{AwsError, Error};
use chrono::{DateTime, Utc};
use serde_json::Value;

pub use report::SweepReport;

pub const FUNCTION: &str = "nightly-sweeper";
/// Stop starting new work this long before the invocation's deadline.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(60);

/// What one invocation is about: where, when, and until when.
#[derive(Debug, Clone)]
pub struct Run {
    /// The Region swept (the Region of the function's own configuration).
    pub region: String,
    /// "Now", for ages, marks and grace periods.
    pub now: DateTime<Utc>,
    /// The invocation's deadline (`None`: no deadline).
    pub deadline: Option<SystemTime>,
    /// No new work is started later than this before the deadline.
    pub margin: Duration,
}

impl Run {
    pub fn new(
        region: impl Into<String>,
        now: DateTime<Utc>,
        deadline: Option<SystemTime>,
    ) -> Self {
        Self {
            region: region.into(),
            now,
            deadline,
            margin: DEFAULT_MARGIN,
        }
    }

    /// Time left before the margin; `None` without a deadline.
    /// A run with the deadline the runtime announced. A deadline already past when the
    /// invocation starts cannot be real (local emulators such as `cargo lambda watch` send a
    /// duration instead of an epoch time): it is ignored, with a warning, instead of making the
    /// sweep give up before it starts.
    pub fn for_invocation(
        region: impl Into<String>,
        now: DateTime<Utc>,
        deadline: SystemTime,
    ) -> Self {
        let deadline = if deadline <= SystemTime::now() {
            tracing::warn!(
                ?deadline,
                "the invocation's deadline is already past; running without one"
            );
            None
        } else {
            Some(deadline)
        };
        Self::new(region, now, deadline)
    }

    pub fn time_left(&self) -> Option<Duration> {
        self.deadline.map(|d| {
            d.duration_since(SystemTime::now())
                .unwrap_or_default()
                .saturating_sub(self.margin)
        })
    }

    /// Whether new work may still be started.
    pub fn may_start(&self) -> bool {
        self.time_left().is_none_or(|left| !left.is_zero())
    }
}

/// The schedule's input: `{}` (the policy's mode) or `{"mode": "report" | "delete"}`.
pub fn parse_input(payload: &Value) -> Result<Option<SweepMode>, Error> {
    let obj = payload.as_object().ok_or_else(|| {
        Error::bad_event("input", format!("must be a JSON object ({{}} or {{\"mode\": \"report\"|\"delete\"}}), got {payload}"))
    })?;
    if let Some(k) = obj.keys().find(|k| k.as_str() != "mode") {
        return Err(Error::bad_event(
            k.clone(),
            "unknown field; the sweeper's input may only hold \"mode\"",
        ));
    }
    match obj.get("mode") {
        None => Ok(None),
        Some(Value::String(m)) if m == "report" => Ok(Some(SweepMode::Report)),
        Some(Value::String(m)) if m == "delete" => Ok(Some(SweepMode::Delete)),
        Some(other) => Err(Error::bad_event(
            "mode",
            format!("must be \"report\" or \"delete\", got {other}"),
        )),
    }
}

/// The Region's inventory, each listing complete or failed.
pub struct Listings {
    pub images: Result<Vec<Image>, AwsError>,
    pub snapshots: Result<Vec<OwnSnapshot>, AwsError>,
    pub recycled: Result<Vec<RecycledImage>, AwsError>,
    pub launch_templates: Result<Vec<Reference>, AwsError>,
    pub launch_configurations: Result<Vec<Reference>, AwsError>,
}

async fn take_inventory<P: Aws + Inventory>(deps: &Deps<P>, region: &str) -> Listings {
    let (images, snapshots, recycled, launch_templates, launch_configurations) = futures::join!(
        deps.aws.list_own_images(region),
        deps.aws.list_own_snapshots(region, &deps.account_id),
        deps.aws.list_recycle_bin_images(region),
        deps.aws.list_launch_template_references(region),
        deps.aws.list_launch_configuration_references(region),
    );
    Listings {
        images,
        snapshots,
        recycled,
        launch_templates,
        launch_configurations,
    }
}

/// Run one sweep. Only an input that is not understood is an error; everything AWS does wrong
/// is in the report (and its error count), which is also logged and emitted as metrics.
pub async fn handle<P: Aws + Inventory>(
    deps: &Deps<P>,
    payload: Value,
    run: &Run,
) -> Result<SweepReport, Error> {
    let override_mode =
        parse_input(&payload).inspect_err(|e| tracing::error!(error = %e, "rejected input"))?;
    let mode = override_mode.unwrap_or(deps.policy.sweeper.mode);
    let mut report = SweepReport {
        function: FUNCTION,
        region: run.region.clone(),
        mode,
        mode_from: if override_mode.is_some() {
            "input"
        } else {
            "policy"
        },
        started_at: run.now,
        orphans: report::OrphanReport::default(),
        drift: report::DriftReport::default(),
        not_reached: Vec::new(),
        errors: Vec::new(),
    };

    if !run.may_start() {
        report.orphans.status = "not_reached".into();
        report.drift.status = "not_reached".into();
        report
            .not_reached
            .push("the whole sweep: the deadline was too near at start".into());
        return Ok(finish(report, run));
    }
    let listings = match run.time_left() {
        None => take_inventory(deps, &run.region).await,
        Some(left) => match tokio::time::timeout(left, take_inventory(deps, &run.region)).await {
            Ok(l) => l,
            Err(_) => {
                let why = format!(
                    "the inventory was not complete {}s before the deadline",
                    run.margin.as_secs()
                );
                report.orphans.status = "aborted".into();
                report.orphans.aborted_because = Some(why.clone());
                report.drift.status = "not_reached".into();
                report
                    .not_reached
                    .push(format!("orphans and drift repair: {why}"));
                return Ok(finish(report, run));
            }
        },
    };

    orphans::sweep(deps, run, mode, &listings, &mut report).await;

    match &listings.images {
        Ok(images) => drift::repair(deps, run, images, &mut report).await,
        Err(e) => {
            report.drift.status = "aborted".into();
            report.error(
                "drift repair not started: the image listing failed",
                &Error::from(e.clone()),
            );
        }
    }
    Ok(finish(report, run))
}

fn finish(report: SweepReport, run: &Run) -> SweepReport {
    report.log();
    println!("{}", report.emf(run.now));
    report
}
