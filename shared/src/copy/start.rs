//! Starting a copy: unless one exists already (found by its deterministic name, which a copy
//! keeps even where tags are dropped), it starts at once when nothing waits in its destination
//! Region's line and a slot is free; otherwise it joins the line ([`super::line`]), which is
//! drained at once: it starts when its turn comes and a slot is free, and otherwise waits, at
//! its place, for the next copy into that Region to end.

use chrono::Utc;
use futures::stream::{self, StreamExt, TryStreamExt};

use super::line::{slots_of, Drained, Line, WaitingCopy, EBS_COPY_CAP};
use super::request::{copy_request, COPY_LIMIT_CODE};
use super::CopyReport;
use crate::deps::Deps;
use crate::error::Result;
use crate::names::CopyKind;
use crate::plan::CopyDestination;
use crate::ports::{Aws, Image, ImageState};

/// Starts copies for one invocation or one night.
pub struct Copier<'d, P> {
    deps: &'d Deps<P>,
    /// Whether a copy is looked up by name before it is started (the sweeper: a failed
    /// attempt is then retried under a new name). An event's copies rely on the client
    /// token alone: a redelivered event gets the same copy back.
    look_up: bool,
}

impl<'d, P: Aws> Copier<'d, P> {
    pub fn new(deps: &'d Deps<P>, look_up: bool) -> Self {
        Self { deps, look_up }
    }

    /// Start (or queue) the copies of `image` to `wanted`, all Regions concurrently
    /// (bounded); reported in the order of the plan.
    pub async fn copies(
        &self,
        image: &Image,
        wanted: &[CopyDestination],
    ) -> Result<Vec<CopyReport>> {
        stream::iter(wanted)
            .map(|dest| {
                self.ensure_copy(
                    image,
                    &dest.region,
                    dest.kms_key_id.as_deref(),
                    CopyKind::RegionCopy,
                    &dest.rules,
                    dest.completion_minutes,
                )
            })
            .buffered(self.deps.settings.concurrency)
            .try_collect()
            .await
    }

    /// Start the copy unless one exists already: it joins its Region's line, which is
    /// drained at once.
    pub async fn ensure_copy(
        &self,
        source: &Image,
        dest_region: &str,
        kms_key_id: Option<&str>,
        kind: CopyKind,
        rules: &[String],
        completion_minutes: Option<u32>,
    ) -> Result<CopyReport> {
        let first = copy_request(source, dest_region, kms_key_id, kind, rules, 0);
        // One lookup finds the first attempt and every retry (`<name>-r<n>`).
        let existing = if self.look_up {
            self.deps
                .aws
                .find_own_images_by_name(dest_region, &format!("{}*", first.name))
                .await?
        } else {
            Vec::new()
        };
        if let Some(found) = existing
            .iter()
            .find(|i| i.state != ImageState::Failed && i.state != ImageState::Deregistered)
        {
            return Ok(CopyReport {
                region: dest_region.to_string(),
                image_id: Some(found.id.clone()),
                status: "exists".into(),
                detail: Some(format!("copy is {}", found.state.as_str())),
            });
        }
        let failed = existing
            .iter()
            .filter(|i| i.state == ImageState::Failed)
            .count();
        let mut req = if failed == 0 {
            first
        } else {
            copy_request(source, dest_region, kms_key_id, kind, rules, failed)
        };
        req.completion_minutes = completion_minutes;
        let (token, name) = (req.client_token.clone(), req.name.clone());
        let line = Line::new(self.deps);
        if let Some(id) = self.start_directly(&line, source, &req).await? {
            tracing::info!(source_image = %source.id, region = dest_region, copy = %id, kind = kind.as_str(), "copy started");
            return Ok(CopyReport {
                region: dest_region.to_string(),
                image_id: Some(id),
                status: "started".into(),
                detail: None,
            });
        }
        line.join(&WaitingCopy::new(req, source, Utc::now()))
            .await?;
        let drained = line.drain_until(dest_region, Some(&token)).await?;
        self.report(source, dest_region, kind, (&token, &name), &drained)
            .await
    }

    /// Start the copy at once when nothing waits in its Region's line and a slot is free;
    /// `None` when it must join the line (something waits: oldest first; no slot; or EC2
    /// answered `ResourceLimitExceeded`). At the policy's default cap, EBS's own 20, EC2 is
    /// the count: the copy is asked for and a refusal sends it to the line (no
    /// `DescribeImages` per copy on the event path); under a lower cap the Region's pending
    /// images are counted first, with the line's length.
    async fn start_directly(
        &self,
        line: &Line<'d, P>,
        source: &Image,
        req: &crate::ports::CopyRequest,
    ) -> Result<Option<String>> {
        let region = req.destination_region.as_str();
        let waiting = async { Ok::<_, crate::Error>(self.deps.aws.line_length(region).await?) };
        let fits = async {
            if line.cap() >= EBS_COPY_CAP {
                return Ok(true);
            }
            let slots = line.count(region).await?;
            Ok(line.fits(slots.in_flight, slots_of(source)))
        };
        let (waiting, fits) = futures::try_join!(waiting, fits)?;
        if waiting > 0 || !fits {
            return Ok(None);
        }
        match self.deps.aws.copy_image(req).await {
            Ok(id) => Ok(Some(id)),
            Err(e) if e.code == COPY_LIMIT_CODE || e.is_transient() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// What became of the copy with `token` after the drain.
    async fn report(
        &self,
        source: &Image,
        region: &str,
        kind: CopyKind,
        (token, name): (&str, &str),
        drained: &Drained,
    ) -> Result<CopyReport> {
        let mut out = CopyReport {
            region: region.to_string(),
            image_id: None,
            status: "started".into(),
            detail: None,
        };
        if let Some(s) = drained.started(token) {
            tracing::info!(source_image = %source.id, region, copy = ?s.image_id, kind = kind.as_str(), "copy started");
            out.image_id = s.image_id.clone();
            if s.image_id.is_none() {
                out.status = "exists".into();
                out.detail = Some("copy is pending".into());
            }
            return Ok(out);
        }
        if let Some(d) = drained.dropped.iter().find(|d| d.client_token == token) {
            if let Some(e) = &d.error {
                return Err(e.clone().into());
            }
            out.status = "failed".into();
            out.detail = Some(d.why.clone());
            return Ok(out);
        }
        let length = self.deps.aws.line_length(region).await?;
        if length == 0 {
            // Not in the line and not started by this drain: started already (an event
            // delivered again, or another drain took it); the copy has its first name.
            let found = self.deps.aws.find_own_images_by_name(region, name).await?;
            if let Some(copy) = found.first() {
                out.status = "exists".into();
                out.image_id = Some(copy.id.clone());
                out.detail = Some(format!("copy is {}", copy.state.as_str()));
                return Ok(out);
            }
        }
        out.status = "waiting".into();
        out.detail = Some(format!(
            "waiting for a free copy slot in {region}: {} of {} in flight, {length} in the line (position about {length}); it starts as soon as a copy into {region} ends",
            drained.in_flight,
            self.deps.policy.rate_limits.copies_in_flight
        ));
        tracing::info!(source_image = %source.id, region, in_line = length, "copy waits in the line");
        Ok(out)
    }
}
