//! The copies' waiting line: EC2 lets only so many snapshot copies be in flight into one
//! destination Region (20 for EBS, `ResourceLimitExceeded` past it), so every copy joins its
//! destination Region's line and starts as soon as a slot is free, oldest first.
//!
//! The line is an SQS FIFO queue in the destination Region, read by the functions themselves
//! ([`Line::drain`]): after a copy joins it (on-image-available, the night), when a copy into
//! the Region ends (on-copy-complete, its `available` or `failed` event) and on a one-minute
//! timer while anything waits (the template's `CopyLineTimer`). A drain holds the entries it
//! received (SQS hides them, and FIFO hands out no later entry of their group meanwhile: the
//! line's lock), counts the Region's slots in use from EC2 itself (`DescribeImages` of the
//! account's pending images, a slot per snapshot, whoever started them), starts what fits and
//! deletes it, and hands back the rest at their place. A `ResourceLimitExceeded` that still
//! comes back means "wait", never a failure. An entry keeps the request of the copy's first
//! attempt (its name and client token), so an entry delivered twice starts one copy: a copy
//! already pending under its name is not started again, and EC2 answers a repeated client
//! token with the same copy. `docs/critical-path.md` argues the design.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::request::COPY_LIMIT_CODE;
use crate::deps::Deps;
use crate::error::{AwsError, Result};
use crate::names::PLAN_TAG;
use crate::ports::{Aws, CopyRequest, Image, LineEntry};

/// EBS's concurrent snapshot copies per destination Region (not adjustable): at this cap EC2
/// itself refuses what does not fit.
pub const EBS_COPY_CAP: usize = 20;
/// The message group of the account's own copies (a target account's copies wait in a group
/// of their own, named by the account).
pub const OWN_GROUP: &str = "self";
/// How long a drain hides the entries it received from other readers: longer than a drain
/// may take ([`DRAIN_BUDGET`]), so no entry is read twice at once.
pub const HIDE_SECONDS: u32 = 120;
/// How long one drain keeps reading the line (then the next trigger goes on).
pub const DRAIN_BUDGET: Duration = Duration::from_secs(60);

/// One waiting copy: the message body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingCopy {
    /// The copy's first attempt: its name and client token never change.
    pub request: CopyRequest,
    /// The slots it takes: one per snapshot of the source.
    pub slots: usize,
    /// When it joined the line.
    pub since: DateTime<Utc>,
}

impl WaitingCopy {
    pub fn new(request: CopyRequest, source: &Image, now: DateTime<Utc>) -> Self {
        Self {
            request,
            slots: slots_of(source),
            since: now,
        }
    }
}

/// The copy slots an image takes: one per snapshot (EBS counts snapshot copies), at least one.
pub fn slots_of(image: &Image) -> usize {
    image.volumes.len().max(1)
}

/// A copy the line started (or found started).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StartedCopy {
    pub client_token: String,
    pub source_image_id: String,
    /// The copy, when this drain started it (`None`: found pending under its name).
    pub image_id: Option<String>,
    pub waited_seconds: i64,
}

/// A waiting copy the line dropped: its source is gone, or EC2 refused it.
#[derive(Debug, Clone)]
pub struct DroppedCopy {
    pub client_token: String,
    pub source_image_id: String,
    pub why: String,
    /// EC2's refusal (`None`: the source is gone, or the entry was malformed).
    pub error: Option<AwsError>,
}

/// What one drain did in one Region.
#[derive(Debug, Clone, Default)]
pub struct Drained {
    pub region: String,
    pub started: Vec<StartedCopy>,
    pub dropped: Vec<DroppedCopy>,
    /// Entries handed back to wait (no slot free).
    pub held: usize,
    /// Slots in use when the drain ended (as counted, plus what it started).
    pub in_flight: usize,
    /// How long the oldest entry handed back has waited.
    pub oldest_wait_seconds: i64,
}

impl Drained {
    /// The drain started the copy with this client token (or found it started).
    pub fn started(&self, client_token: &str) -> Option<&StartedCopy> {
        self.started.iter().find(|s| s.client_token == client_token)
    }
}

/// What a drain reports (the summary's `line`, the timer's answer).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LineReport {
    pub region: String,
    /// Copies it started (or found started).
    pub started: usize,
    /// Entries it dropped, with why (the first few).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<String>,
    /// Copies still waiting in the line (SQS's approximate count; 0 when none was handed back).
    pub waiting: usize,
    /// Slots in use after the drain, and the cap.
    pub in_flight: usize,
    pub cap: usize,
    /// How long the oldest waiting copy has waited.
    #[serde(skip_serializing_if = "is_zero")]
    pub oldest_wait_seconds: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// The slots of one Region, as counted once per drain.
pub struct Slots {
    pub in_flight: usize,
    pub pending_names: BTreeSet<String>,
}

/// Reads and starts one Region's line.
pub struct Line<'d, P> {
    deps: &'d Deps<P>,
}

impl<'d, P: Aws> Line<'d, P> {
    pub fn new(deps: &'d Deps<P>) -> Self {
        Self { deps }
    }

    pub fn cap(&self) -> usize {
        self.deps.policy.rate_limits.copies_in_flight
    }

    /// Whether `slots` more fit in a Region with `in_flight` in use (a copy larger than the
    /// cap starts alone).
    pub fn fits(&self, in_flight: usize, slots: usize) -> bool {
        in_flight == 0 || in_flight + slots <= self.cap()
    }

    /// Put `copy` at the end of its destination Region's line.
    pub async fn join(&self, copy: &WaitingCopy) -> Result<()> {
        let body = serde_json::to_string(copy)
            .map_err(|e| crate::Error::Config(format!("cannot encode a waiting copy: {e}")))?;
        let r = &copy.request;
        self.deps
            .aws
            .line_send(&r.destination_region, OWN_GROUP, &r.client_token, &body)
            .await?;
        tracing::info!(source_image = %r.source_image_id, region = %r.destination_region, name = %r.name, "copy joined the line");
        Ok(())
    }

    /// Start what fits of `region`'s line, oldest first, for up to [`DRAIN_BUDGET`]; hand the
    /// rest back (on-copy-complete when a copy ends, and the timer).
    pub async fn drain(&self, region: &str) -> Result<Drained> {
        self.drain_until(region, None).await
    }

    /// The same, ending once the copy with `token` was taken (started, found started or
    /// dropped): the function that joined a copy drains until its own copy's turn and no
    /// longer, so an event's latency does not carry the whole line; the copies behind it are
    /// started by their own events' drains, by the next copy's end or by the timer.
    pub async fn drain_until(&self, region: &str, token: Option<&str>) -> Result<Drained> {
        let begun = Instant::now();
        let now = Utc::now();
        let mut out = Drained {
            region: region.to_string(),
            ..Drained::default()
        };
        let mut held: Vec<LineEntry> = Vec::new();
        let mut slots: Option<Slots> = None;
        let done = |out: &Drained| {
            token.is_some_and(|t| {
                out.started(t).is_some() || out.dropped.iter().any(|d| d.client_token == t)
            })
        };
        while begun.elapsed() < DRAIN_BUDGET && held.is_empty() && !done(&out) {
            let entries = self.deps.aws.line_receive(region, 10, HIDE_SECONDS).await?;
            if entries.is_empty() {
                break;
            }
            for entry in entries {
                if !held.is_empty() {
                    held.push(entry); // oldest first: nothing overtakes an entry that waits
                    continue;
                }
                let slots = match &mut slots {
                    Some(s) => s,
                    None => slots.insert(self.count(region).await?),
                };
                if !self.take(region, &entry, slots, now, &mut out).await? {
                    held.push(entry);
                }
            }
        }
        out.in_flight = slots.map_or(0, |s| s.in_flight);
        self.hand_back(region, held, now, &mut out).await?;
        Ok(out)
    }

    /// The Region's slots in use: a slot per snapshot of each pending image of the account.
    pub async fn count(&self, region: &str) -> Result<Slots> {
        let pending = self.deps.aws.pending_images(region).await?;
        Ok(Slots {
            in_flight: pending.iter().map(slots_of).sum(),
            pending_names: pending.into_iter().map(|i| i.name).collect(),
        })
    }

    /// Start `entry` if a slot is free (or drop it): `false` when it must wait.
    async fn take(
        &self,
        region: &str,
        entry: &LineEntry,
        slots: &mut Slots,
        now: DateTime<Utc>,
        out: &mut Drained,
    ) -> Result<bool> {
        let aws = &self.deps.aws;
        let Ok(w) = serde_json::from_str::<WaitingCopy>(&entry.body) else {
            tracing::error!(region, body = %entry.body, "an entry of the copy line that is not a waiting copy; dropped");
            out.dropped.push(DroppedCopy {
                client_token: String::new(),
                source_image_id: String::new(),
                why: "not a waiting copy (malformed entry)".into(),
                error: None,
            });
            aws.line_delete(region, &entry.receipt).await?;
            return Ok(true);
        };
        let r = &w.request;
        let started = |image_id| StartedCopy {
            client_token: r.client_token.clone(),
            source_image_id: r.source_image_id.clone(),
            image_id,
            waited_seconds: (now - w.since).num_seconds().max(0),
        };
        if slots.pending_names.contains(&r.name) {
            // Delivered twice, or started by an earlier drain whose delete was lost.
            out.started.push(started(None));
            aws.line_delete(region, &entry.receipt).await?;
            return Ok(true);
        }
        if !self.fits(slots.in_flight, w.slots) {
            return Ok(false);
        }
        match aws.copy_image(r).await {
            Ok(id) => {
                tracing::info!(source_image = %r.source_image_id, region, copy = %id, waited_seconds = (now - w.since).num_seconds(), "copy started from the line");
                slots.in_flight += w.slots;
                slots.pending_names.insert(r.name.clone());
                out.started.push(started(Some(id)));
            }
            Err(e) if e.code == COPY_LIMIT_CODE || e.is_transient() => {
                // EC2 counts copies this drain cannot see (CopySnapshot, other tools): wait.
                tracing::info!(source_image = %r.source_image_id, region, code = %e.code, "copy waits for a slot");
                slots.in_flight = slots.in_flight.max(self.cap());
                return Ok(false);
            }
            Err(e) => {
                let gone = e.code.starts_with("InvalidAMIID");
                let why = if gone {
                    format!(
                        "the source {}/{} is gone ({}): the waiting copy was dropped",
                        r.source_region, r.source_image_id, e.code
                    )
                } else {
                    format!("EC2 refused the copy: {e}")
                };
                tracing::warn!(source_image = %r.source_image_id, region, error = %e, "waiting copy dropped: {why}");
                if !gone {
                    // The source's record counted this copy as on its way: clear it, so the
                    // night converges the source again (as a copy's `failed` event does).
                    clear_source_fingerprint(self.deps, &r.source_region, &r.source_image_id)
                        .await?;
                }
                out.dropped.push(DroppedCopy {
                    client_token: r.client_token.clone(),
                    source_image_id: r.source_image_id.clone(),
                    why,
                    error: (!gone).then_some(e),
                });
            }
        }
        aws.line_delete(region, &entry.receipt).await?;
        Ok(true)
    }

    /// Hand the entries that must wait back to the line, at their place (visible at once, so
    /// the next trigger finds them).
    async fn hand_back(
        &self,
        region: &str,
        held: Vec<LineEntry>,
        now: DateTime<Utc>,
        out: &mut Drained,
    ) -> Result<()> {
        out.held = held.len();
        for entry in &held {
            if let Ok(w) = serde_json::from_str::<WaitingCopy>(&entry.body) {
                out.oldest_wait_seconds =
                    out.oldest_wait_seconds.max((now - w.since).num_seconds());
            }
            self.deps.aws.line_release(region, &entry.receipt).await?;
        }
        Ok(())
    }
}

/// Clear the fingerprint (`ami-share:plan`) of a source whose recorded state counted on a copy
/// that will not be made (it failed, or EC2 refused it for good in the line): the next night
/// converges the source again. A source that is gone needs nothing.
pub async fn clear_source_fingerprint<P: Aws>(
    deps: &Deps<P>,
    region: &str,
    image_id: &str,
) -> Result<()> {
    match deps
        .aws
        .untag_resources(region, &[image_id.to_string()], &[PLAN_TAG])
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if e.code.starts_with("InvalidAMIID") => Ok(()),
        Err(e) => Err(e.into()),
    }
}
