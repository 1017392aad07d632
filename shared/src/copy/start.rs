//! Starting a copy: unless one exists already (found by its deterministic name, which a copy
//! keeps even where tags are dropped), with a deterministic client token that makes a
//! concurrent duplicate harmless too. A copy limit defers the copy to the night.

use futures::stream::{self, StreamExt, TryStreamExt};

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
                )
            })
            .buffered(self.deps.settings.concurrency)
            .try_collect()
            .await
    }

    /// Start the copy unless one exists already (found by its deterministic name, which a copy
    /// keeps even where tags are dropped); the deterministic client token makes a concurrent
    /// duplicate harmless too.
    pub async fn ensure_copy(
        &self,
        source: &Image,
        dest_region: &str,
        kms_key_id: Option<&str>,
        kind: CopyKind,
        rules: &[String],
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
        let failed = existing
            .iter()
            .filter(|i| i.state == ImageState::Failed)
            .count();
        let req = if failed == 0 {
            first
        } else {
            copy_request(source, dest_region, kms_key_id, kind, rules, failed)
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
        match self.deps.aws.copy_image(&req).await {
            Ok(id) => {
                tracing::info!(source_image = %source.id, region = dest_region, copy = %id, kind = kind.as_str(), "copy started");
                Ok(CopyReport {
                    region: dest_region.to_string(),
                    image_id: Some(id),
                    status: "started".into(),
                    detail: None,
                })
            }
            Err(e) if e.code == COPY_LIMIT_CODE => {
                tracing::warn!(source_image = %source.id, region = dest_region, error = %e, "too many copies in flight; the nightly run will start this copy");
                Ok(CopyReport {
                    region: dest_region.to_string(),
                    image_id: None,
                    status: "deferred".into(),
                    detail: Some(format!("{COPY_LIMIT_CODE}: too many copies in flight to {dest_region}; the nightly sweeper starts it later")),
                })
            }
            Err(e) => Err(e.into()),
        }
    }
}
