//! The second half of converging an image, once every check has passed
//! ([`super::check`]): the missing snapshot permissions and grants (concurrently, bounded),
//! launch permissions last, so an image only becomes visible to consumers once they can use
//! it; then the shares no rule asks for (pruned on the product's images when the policy says
//! so, reported otherwise).

use std::collections::BTreeSet;

use futures::stream::{self, StreamExt, TryStreamExt};

use super::check::ShareChecked;
use super::converge::{is_managed, Convergence};
use super::prune::describe_launch;
use super::report::{Converged, GrantRecord, ShareReport, SnapshotShare, Unlisted};
use crate::deps::{snapshot_ids, Encryption, SNAPSHOT_BATCH};
use crate::error::{Error, Result};
use crate::plan::{batches, Desired};
use crate::ports::{Aws, Image, LaunchPermissions};

/// What the grant step did: grants made, grants found, receipts to leave on the keys.
type Granted<'k> = (Vec<GrantRecord>, usize, Vec<(&'k str, String)>);

impl<P: Aws> Convergence<'_, P> {
    /// Make the shares `checked` found missing, and prune or report the unlisted ones: the
    /// snapshot permissions and grants first (at once), then the launch permissions (consumers
    /// see the image once they can use it) with the grant receipts, then the unlisted shares.
    pub(super) async fn write(&self, image: &Image, checked: ShareChecked) -> Result<Converged> {
        let ShareChecked {
            enc,
            current_launch,
            current_snaps,
            desired,
            add,
            refused,
        } = checked;
        let mut out = self.converged(image, &desired);
        out.complete = refused.is_none();
        out.refused = refused;

        // Watermarks first: consumers whose Allowed AMIs admit the image by watermark must
        // find it on the image from the first share on.
        out.watermarks_attached = self.attach_watermarks(image, &desired).await?;
        let (snapshot_added, (grants_created, grants_existing, receipts)) = futures::try_join!(
            self.share_snapshots(image, &current_snaps, &desired),
            self.grant_keys(image, &enc, &desired)
        )?;
        self.open_launch(image, &add, &receipts).await?;
        out.share = ShareReport {
            snapshots_shared: snapshot_shares(image, &desired),
            launch_permissions_added: add,
            snapshot_permissions_added: snapshot_added,
            grants_created,
            grants_existing,
        };
        if is_managed(image) {
            self.unlisted(image, &current_launch, current_snaps, &desired, &mut out)
                .await?;
        }
        Ok(out)
    }

    /// The rules' watermarks the image does not carry yet (EC2 carries them to copies, so a
    /// copy normally has them already), attached one call each; the names attached.
    async fn attach_watermarks(&self, image: &Image, desired: &Desired) -> Result<Vec<String>> {
        let mut attached = Vec::new();
        for key in desired
            .watermarks
            .difference(&image.watermarks.iter().cloned().collect())
        {
            let name = key.split_once(':').map_or(key.as_str(), |(_, n)| n);
            self.deps
                .aws
                .attach_watermark(&image.region, &image.id, name)
                .await?;
            tracing::info!(image_id = %image.id, region = %image.region, watermark = %key, "watermark attached");
            attached.push(key.clone());
        }
        Ok(attached)
    }

    /// The missing snapshot permissions, 500 accounts a call, bounded; how many were added.
    async fn share_snapshots(
        &self,
        image: &Image,
        current_snaps: &[(String, BTreeSet<String>)],
        desired: &Desired,
    ) -> Result<usize> {
        let region = image.region.as_str();
        let calls: Vec<(String, Vec<String>)> = current_snaps
            .iter()
            .flat_map(|(s, current)| {
                let missing: BTreeSet<String> = desired
                    .snapshot_accounts
                    .difference(current)
                    .cloned()
                    .collect();
                batches(&missing, SNAPSHOT_BATCH)
                    .into_iter()
                    .map(move |b| (s.clone(), b))
            })
            .collect();
        let added: usize = calls.iter().map(|(_, b)| b.len()).sum();
        stream::iter(calls)
            .map(|(snap, batch)| async move {
                self.deps
                    .aws
                    .add_create_volume_permission(region, &snap, &batch)
                    .await?;
                Ok::<_, Error>(())
            })
            .buffer_unordered(self.deps.settings.concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(added)
    }

    /// The grants each customer managed key of the image still needs; the receipts to leave.
    async fn grant_keys<'k>(
        &self,
        image: &Image,
        enc: &'k Encryption,
        desired: &Desired,
    ) -> Result<Granted<'k>> {
        let region = image.region.as_str();
        let mut created = Vec::new();
        let mut existing = 0usize;
        let mut receipts = Vec::new();
        for key in &enc.customer {
            let e = self
                .ensure_grants(region, &key.arn, &desired.grant_accounts)
                .await?;
            created.extend(e.created.into_iter().map(|account| GrantRecord {
                key_arn: key.arn.clone(),
                account,
            }));
            existing += e.existing;
            receipts.extend(e.receipt.map(|r| (key.arn.as_str(), r)));
        }
        Ok((created, existing, receipts))
    }

    /// Launch permissions last; the grant receipts (every grant is made) alongside.
    async fn open_launch(
        &self,
        image: &Image,
        add: &LaunchPermissions,
        receipts: &[(&str, String)],
    ) -> Result<()> {
        let region = image.region.as_str();
        let launch = async {
            if !add.is_empty() {
                self.deps
                    .aws
                    .add_launch_permissions(region, &image.id, add)
                    .await?;
            }
            Ok::<_, Error>(())
        };
        let receipts = stream::iter(receipts)
            .map(|(key, value)| self.leave_receipt(region, key, value))
            .buffer_unordered(self.deps.settings.concurrency)
            .try_collect::<Vec<()>>();
        futures::try_join!(launch, receipts)?;
        Ok(())
    }

    /// Shares no rule asks for, on the product's images: removed when the policy prunes,
    /// reported otherwise.
    async fn unlisted(
        &self,
        image: &Image,
        current_launch: &LaunchPermissions,
        current_snaps: Vec<(String, BTreeSet<String>)>,
        desired: &Desired,
        out: &mut Converged,
    ) -> Result<()> {
        let unlisted_launch = current_launch.missing_from(&desired.launch);
        let unlisted_snaps: Vec<(String, BTreeSet<String>)> = current_snaps
            .into_iter()
            .map(|(s, current)| {
                let extra: BTreeSet<String> = current
                    .difference(&desired.snapshot_accounts)
                    .cloned()
                    .collect();
                (s, extra)
            })
            .filter(|(_, extra)| !extra.is_empty())
            .collect();
        let lines = Unlisted {
            launch_permissions: describe_launch(&image.id, &unlisted_launch),
            snapshot_permissions: unlisted_snaps
                .iter()
                .flat_map(|(s, a)| a.iter().map(move |a| format!("{s}: {a}")))
                .collect(),
            grants: Vec::new(),
        };
        if desired.prune {
            self.prune(image, &unlisted_launch, &unlisted_snaps).await?;
            out.pruned = lines;
        } else {
            out.would_prune = lines;
        }
        Ok(())
    }
}

/// The image's snapshots and how many accounts each is shared with.
fn snapshot_shares(image: &Image, desired: &Desired) -> Vec<SnapshotShare> {
    snapshot_ids(image)
        .iter()
        .map(|s| SnapshotShare {
            snapshot_id: s.clone(),
            accounts: desired.snapshot_accounts.len(),
        })
        .filter(|s| s.accounts > 0)
        .collect()
}
