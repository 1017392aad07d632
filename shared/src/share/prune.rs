//! Removing the shares no rule asks for, from the product's own images (when the policy says
//! so).

use std::collections::BTreeSet;

use super::Convergence;
use crate::deps::SNAPSHOT_BATCH;
use crate::error::Result;
use crate::plan::batches;
use crate::ports::{Aws, Image, LaunchPermissions};

impl<P: Aws> Convergence<'_, P> {
    pub(super) async fn prune(
        &self,
        image: &Image,
        launch: &LaunchPermissions,
        snaps: &[(String, BTreeSet<String>)],
    ) -> Result<()> {
        let region = image.region.as_str();
        if !launch.is_empty() {
            self.deps
                .aws
                .remove_launch_permissions(region, &image.id, launch)
                .await?;
        }
        for (s, accounts) in snaps {
            for b in batches(accounts, SNAPSHOT_BATCH) {
                self.deps
                    .aws
                    .remove_create_volume_permission(region, s, &b)
                    .await?;
            }
        }
        Ok(())
    }
}

pub(super) fn describe_launch(image_id: &str, lp: &LaunchPermissions) -> Vec<String> {
    let mut v: Vec<String> = lp
        .accounts
        .iter()
        .chain(&lp.organizations)
        .chain(&lp.organizational_units)
        .map(|a| format!("{image_id}: {a}"))
        .collect();
    if lp.public {
        v.push(format!("{image_id}: public"));
    }
    v
}
