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
pub mod retire;

use std::time::{Duration, SystemTime};

use amishare::config::SweepMode;
use amishare::deps::Deps;
use amishare::inventory::{Inventory, OwnSnapshot, RecycledImage, Reference};
use amishare::ports::{Aws, Image};
use amishare::{AwsError, Error};
use chrono::{DateTime, Utc};
use serde_json::Value;

pub use report::SweepReport;

pub const FUNCTION: &str = "nightly-sweeper";
/// Stop starting new work this long before the invocation's deadline.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(60);

/// What one invocation is about: where, when, and until when.
/// Where "now" comes from for deadline checks: the system clock, or a test's own.
#[derive(Clone)]
pub struct Clock(pub std::sync::Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl Clock {
    pub fn system() -> Self {
        Clock(std::sync::Arc::new(SystemTime::now))
    }
    pub fn now(&self) -> SystemTime {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

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
    /// Delays before re-running a listing that failed with a transient error (after the SDK's
    /// own retries): one more attempt after each, while the deadline allows.
    pub listing_retry_delays: Vec<Duration>,
    /// The clock deadline checks read.
    pub clock: Clock,
}

/// Production delays before re-running a failed listing.
pub const LISTING_RETRY_DELAYS: [Duration; 3] = [
    Duration::from_secs(2),
    Duration::from_secs(10),
    Duration::from_secs(30),
];

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
            listing_retry_delays: LISTING_RETRY_DELAYS.to_vec(),
            clock: Clock::system(),
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

    /// The same run, reading deadlines off this clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The same run, re-running failed listings after these delays.
    pub fn with_listing_retry_delays(mut self, delays: Vec<Duration>) -> Self {
        self.listing_retry_delays = delays;
        self
    }

    pub fn time_left(&self) -> Option<Duration> {
        self.deadline.map(|d| {
            d.duration_since(self.clock.now())
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

fn retry_transient<T>(slot: &Result<T, AwsError>) -> bool {
    matches!(slot, Err(e) if e.is_transient())
}

impl Listings {
    /// The listings that failed with an error a later attempt may cure.
    fn transient_failures(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if retry_transient(&self.images) {
            out.push("images");
        }
        if retry_transient(&self.snapshots) {
            out.push("snapshots");
        }
        if retry_transient(&self.recycled) {
            out.push("Recycle Bin");
        }
        if retry_transient(&self.launch_templates) {
            out.push("launch templates");
        }
        if retry_transient(&self.launch_configurations) {
            out.push("launch configurations");
        }
        out
    }

    /// Run again, whole, the listings that failed transiently.
    async fn retry_failed<P: Aws + Inventory>(&mut self, deps: &Deps<P>, region: &str) {
        let (images, snapshots, recycled, templates, configurations) = futures::join!(
            async {
                if retry_transient(&self.images) {
                    Some(deps.aws.list_own_images(region).await)
                } else {
                    None
                }
            },
            async {
                if retry_transient(&self.snapshots) {
                    Some(deps.aws.list_own_snapshots(region, &deps.account_id).await)
                } else {
                    None
                }
            },
            async {
                if retry_transient(&self.recycled) {
                    Some(deps.aws.list_recycle_bin_images(region).await)
                } else {
                    None
                }
            },
            async {
                if retry_transient(&self.launch_templates) {
                    Some(deps.aws.list_launch_template_references(region).await)
                } else {
                    None
                }
            },
            async {
                if retry_transient(&self.launch_configurations) {
                    Some(deps.aws.list_launch_configuration_references(region).await)
                } else {
                    None
                }
            },
        );
        if let Some(x) = images {
            self.images = x;
        }
        if let Some(x) = snapshots {
            self.snapshots = x;
        }
        if let Some(x) = recycled {
            self.recycled = x;
        }
        if let Some(x) = templates {
            self.launch_templates = x;
        }
        if let Some(x) = configurations {
            self.launch_configurations = x;
        }
    }
}

/// The whole inventory, re-running the listings that failed transiently while the deadline
/// allows. Returns the listings and the names of those re-run.
async fn complete_inventory<P: Aws + Inventory>(
    deps: &Deps<P>,
    run: &Run,
) -> (Listings, Vec<String>) {
    let mut listings = take_inventory(deps, &run.region).await;
    let mut retried = Vec::new();
    for delay in &run.listing_retry_delays {
        let failed = listings.transient_failures();
        if failed.is_empty() {
            break;
        }
        if run.time_left().is_some_and(|left| left <= *delay) {
            break;
        }
        tracing::warn!(region = %run.region, listings = ?failed, delay_s = delay.as_secs(), "listings failed transiently; running them again");
        retried.extend(failed.iter().map(|f| f.to_string()));
        tokio::time::sleep(*delay).await;
        listings.retry_failed(deps, &run.region).await;
    }
    (listings, retried)
}

/// Run one sweep and return its report. Only an input that is not understood is an error
/// here; everything AWS does wrong is in the report (and its error count), which is also
/// logged and emitted as metrics.
pub async fn sweep<P: Aws + Inventory>(
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
        retirement: report::RetireReport::default(),
        inventory_retried: Vec::new(),
        retry: None,
        not_reached: Vec::new(),
        more: false,
        errors: Vec::new(),
        errors_total: 0,
    };

    if !run.may_start() {
        report.orphans.status = "not_reached".into();
        report.drift.status = "not_reached".into();
        report.left_for_next("the whole sweep: the deadline was too near at start".into());
        return Ok(finish(report, run));
    }
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
                return Ok(finish(report, run));
            }
        },
    };
    report.inventory_retried = retried;

    // The two halves run side by side: deletions (DeleteSnapshot's bucket) never hold up
    // drift repair (the attribute and tag buckets), and the other way round.
    let mut orphan_half = report.clone();
    let mut drift_half = report.clone();
    futures::join!(
        orphans::sweep(deps, run, mode, &listings, &mut orphan_half),
        async {
            match &listings.images {
                Ok(images) => {
                    drift::repair(
                        deps,
                        run,
                        images,
                        listings.snapshots.as_deref().ok(),
                        &mut drift_half,
                    )
                    .await;
                    // Retirement knows what the latest-image parameters name tonight.
                    let published = drift_half
                        .drift
                        .publications
                        .iter()
                        .map(|p| p.current_image_id.clone())
                        .collect();
                    let unpublished = drift_half.drift.publications_failed.clone();
                    retire::retire(deps, run, images, &published, &unpublished, &mut drift_half)
                        .await;
                }
                Err(e) => {
                    drift_half.drift.status = "aborted".into();
                    drift_half.error(
                        "drift repair not started: the image listing failed",
                        &Error::from(e.clone()),
                    );
                }
            }
        }
    );
    report.orphans = std::mem::take(&mut orphan_half.orphans);
    report.drift = std::mem::take(&mut drift_half.drift);
    report.retirement = std::mem::take(&mut drift_half.retirement);
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
    Ok(finish(report, run))
}

/// The Lambda handler: [`sweep`], then fail the invocation (after the report was logged) when
/// the inventory stayed incomplete through a transient error, so that the retry policy runs
/// the sweep again.
pub async fn handle<P: Aws + Inventory>(
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
