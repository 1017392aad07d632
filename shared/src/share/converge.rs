//! Convergence: bring one image to the state the policy asks for — launch permissions,
//! snapshot permissions, KMS grants, copies to other Regions, the managed tag — and record a
//! fingerprint of that state on the image once it is all true.
//!
//! The one path to that state: on-image-available (a new image), on-copy-complete (a copy, in
//! its own Region) and the nightly sweeper (drift, audits) all converge through
//! [`Convergence::converge`]. An image whose recorded fingerprint equals the fingerprint of its
//! desired state needs no work at night.
//!
//! Order of work for one image: read and check everything first (keys, current launch and
//! snapshot permissions, grants) and refuse before writing anything when a step is impossible;
//! then the missing snapshot permissions and grants (concurrently, bounded); launch permissions
//! last, so an image only becomes visible to consumers once they can use it; then pruning
//! (managed images, when the policy says so) and copies. The fingerprint is recorded only when
//! every step succeeded (a deferred copy leaves it unrecorded, so the next night tries again).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};

use super::grants::KeyState;
use super::prune::describe_launch;
use super::report::{Converged, GrantRecord, ShareReport, SnapshotShare, Unlisted};
use crate::copy::{check_copy_plan, Copier};
use crate::deps::{
    aws_managed_message, snapshot_ids, Deps, Encryption, LAUNCH_PERMISSION_QUOTA, SNAPSHOT_BATCH,
};
use crate::error::{Error, Result};
use crate::names::{CopyKind, MANAGED_TAG};
use crate::plan::{batches, classify, Desired, ImageKind, Members, SharePlan};
use crate::ports::MAX_TAG_RESOURCES;
use crate::ports::{Aws, Image};

/// Tag recording the fingerprint of the desired state an image was last fully converged to.
pub const PLAN_TAG: &str = "ami-share:plan";
/// Tag recording when an image was last converged or audited (RFC 3339, UTC): the nightly
/// order puts the oldest first, so nothing starves.
pub const CONVERGED_AT_TAG: &str = "ami-share:converged-at";

/// The convergence service of one invocation (an event) or one run (the sweeper): the
/// organization listings it needs, listed once, and the grants of each key, read once.
pub struct Convergence<'d, P> {
    pub(super) deps: &'d Deps<P>,
    /// The organization and OU listings of this run, each listed once.
    members: Mutex<Members>,
    /// Starts the copies (the sweeper's looks a copy up by name first; an event's relies on
    /// the client token alone).
    copier: Copier<'d, P>,
    /// Per (Region, key ARN): the key's grants as last read or written (one lock per key, so
    /// the grants of a key are read once and never created twice), its policy document
    /// (`kms_access: key_policy`), its grant receipts ([`crate::names::GRANTS_TAG`]).
    pub(super) keys: Arc<KeyState>,
    /// Whether the receipts answer for the grants (the event path) or the grants are read
    /// (the night, which repairs what a receipt may hide).
    pub(super) trusts_receipts: bool,
    now: DateTime<Utc>,
}

impl<'d, P: Aws> Convergence<'d, P> {
    /// Lists every organization and OU of `plans` that `images` need (snapshots to share, keys
    /// to grant), each once.
    pub async fn prepare<'a>(
        deps: &'d Deps<P>,
        needs: impl IntoIterator<Item = (&'a Image, &'a SharePlan)>,
        now: DateTime<Utc>,
    ) -> Result<Self> {
        let mut arns: BTreeSet<&String> = BTreeSet::new();
        let mut plain: BTreeSet<&String> = BTreeSet::new();
        for (image, plan) in needs {
            arns.extend(needed_groups(image, plan));
            plain.extend(plan.plain_accounts());
        }
        let members = deps.members_of(arns).await?;
        // Each plain account's membership, asked once for the run (the images converged at
        // once would otherwise all miss the cache together); outsiders are refused per image.
        if !deps.policy.allow_external_accounts {
            deps.outside_organization(plain).await?;
        }
        Ok(Self {
            deps,
            members: Mutex::new(members),
            copier: Copier::new(deps, true),
            keys: Arc::default(),
            trusts_receipts: false,
            now,
        })
    }

    /// The service of one event: nothing listed up front; [`Convergence::converge`] lists
    /// what the image needs concurrently with its other reads. `keys`: what the invocation's
    /// events know of their keys, shared (a batch reads a key's grants once).
    pub fn for_event(deps: &'d Deps<P>, now: DateTime<Utc>, keys: Arc<KeyState>) -> Self {
        Self {
            deps,
            members: Mutex::default(),
            copier: Copier::new(deps, false),
            keys,
            trusts_receipts: true,
            now,
        }
    }

    /// List the organizations and OUs `image` needs under `plan` that are not listed yet.
    async fn ensure_members(&self, image: &Image, plan: &SharePlan) -> Result<()> {
        let missing: Vec<String> = {
            let have = self.members.lock().unwrap_or_else(|p| p.into_inner());
            needed_groups(image, plan)
                .filter(|a| !have.contains_key(*a))
                .cloned()
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let listed = self.deps.members_of(missing.iter()).await?;
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(listed);
        Ok(())
    }

    pub fn deps(&self) -> &'d Deps<P> {
        self.deps
    }

    /// Whether shares no rule asks for may be removed from `image`: the policy says so, and
    /// the image is the product's (tagged managed, or a copy the product made).
    pub fn prunes(&self, image: &Image) -> bool {
        self.deps.policy.sweeper.prune_unlisted_shares && is_managed(image)
    }

    /// The desired state of `image` (no AWS call).
    pub fn desired(&self, image: &Image, plan: &SharePlan, may_copy: bool) -> Desired {
        let members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        Desired::new(
            image,
            plan,
            &members,
            &self.deps.account_id,
            may_copy,
            self.prunes(image),
        )
        .with_prune_policy(self.deps.policy.sweeper.prune_unlisted_shares)
    }

    /// Bring `image` to its desired state under `plan`. `enc`: the image's keys when already
    /// known (the sweeper's snapshot listing); otherwise they are read.
    ///
    /// The copies to other Regions start at once, all Regions concurrently, while the image is
    /// shared in its own Region (they depend only on the image's description); a copy is shared
    /// in its Region by on-copy-complete.
    pub async fn converge(
        &self,
        image: &Image,
        plan: &SharePlan,
        may_copy: bool,
        enc: Option<Encryption>,
    ) -> Result<Converged> {
        // The organization's boundary first: a plain account outside it is refused before
        // anything is written (copies included).
        self.deps
            .check_inside_organization(&image.id, plan.plain_accounts())
            .await?;
        // Copies need no organization listing: their destinations come from the plan alone.
        let copies_wanted = Desired::new(
            image,
            plan,
            &Members::new(),
            &self.deps.account_id,
            may_copy,
            false,
        )
        .copies;
        if !copies_wanted.is_empty() {
            check_copy_plan(image, plan)?;
        }
        let (shared, copies) = futures::join!(
            self.share(image, plan, may_copy, enc),
            self.copier.copies(image, &copies_wanted)
        );
        let mut out = shared?;
        out.shared = out.complete && !out.reencrypt;
        out.copies.extend(copies?);
        out.complete &= out.copies.iter().all(|c| c.status != "deferred");
        out.record = self.record_tags(image, &plan.rules, &out);
        if !image.tags.contains_key(MANAGED_TAG)
            && out.record.contains_key(MANAGED_TAG)
            && matches!(classify(image), ImageKind::Source { .. })
        {
            out.record_snapshots = snapshot_ids(image);
        }
        Ok(out)
    }

    /// Everything but the copies: permissions, grants, pruning, in the image's own Region.
    async fn share(
        &self,
        image: &Image,
        plan: &SharePlan,
        may_copy: bool,
        enc: Option<Encryption>,
    ) -> Result<Converged> {
        let region = image.region.as_str();
        let snapshots = snapshot_ids(image);

        // Reads, all at once: the organization listings the image needs, its keys, its launch
        // and snapshot permissions, and (for a public share) image block public access.
        // The keys, then (still among the reads) what each customer managed key gives.
        let keys = async {
            let enc = match enc {
                Some(e) => e,
                None => self.deps.encryption(image).await?,
            };
            self.read_key_access(image, plan, &enc).await?;
            Ok::<_, Error>(enc)
        };
        let read_snapshots = stream::iter(snapshots.iter())
            .map(|s| async move {
                let current = self.deps.aws.create_volume_permissions(region, s).await?;
                Ok::<_, Error>((s.clone(), current))
            })
            .buffer_unordered(self.deps.settings.concurrency)
            .try_collect::<Vec<_>>();
        let read_launch =
            async { Ok::<_, Error>(self.deps.aws.launch_permissions(region, &image.id).await?) };
        let read_blocked = async {
            if plan.launch.public && !image.is_encrypted() {
                Ok::<_, Error>(self.deps.aws.public_sharing_blocked(region).await?)
            } else {
                Ok(false)
            }
        };
        let ((), enc, current_launch, current_snaps, blocked) = futures::try_join!(
            self.ensure_members(image, plan),
            keys,
            read_launch,
            read_snapshots,
            read_blocked
        )?;

        let desired = self.desired(image, plan, may_copy);
        let mut out = Converged {
            image_id: image.id.clone(),
            region: region.to_string(),
            fingerprint: desired.fingerprint(),
            complete: true,
            shared: false,
            reencrypt: false,
            refused: None,
            share: ShareReport::default(),
            pruned: Unlisted::default(),
            would_prune: Unlisted::default(),
            copies: Vec::new(),
            record: BTreeMap::new(),
            record_snapshots: Vec::new(),
        };

        // aws/ebs cannot be shared: a same-Region copy re-encrypted with a customer managed
        // key is made and shared instead.
        if let Some(key) = enc.aws_managed.first() {
            if desired.shares_anything() {
                let Some(cmk) = self.deps.policy.reencrypt_with.get(region) else {
                    return Err(Error::refused(
                        &image.id,
                        aws_managed_message(image, &key.arn),
                    ));
                };
                let c = self
                    .copier
                    .ensure_copy(image, region, Some(cmk), CopyKind::Reencrypt, &plan.rules)
                    .await?;
                out.reencrypt = true;
                out.copies.push(c);
                return Ok(out);
            }
        }

        // A new public share that cannot be made is refused on its own: an image that is
        // public already stays so (block public access blocks only new public shares), and
        // the accounts, organizations, OUs and snapshots are shared all the same.
        let mut want = desired.launch.clone();
        if want.public && !current_launch.public {
            let why = if image.is_encrypted() {
                Some("encrypted images cannot be made public; remove share_with.public from the rule or share an unencrypted image".to_string())
            } else if blocked {
                Some(format!("image block public access is on in {region}, so a new public share is refused; turn it off (ec2 disable-image-block-public-access) or remove share_with.public from the rule"))
            } else {
                None
            };
            if let Some(why) = why {
                want.public = false;
                out.refused = Some(format!("public share of {}: {why}", image.id));
                out.complete = false;
            }
        }
        let add = want.missing_from(&current_launch);
        let total = current_launch.len() + add.len();
        if total > LAUNCH_PERMISSION_QUOTA {
            return Err(Error::refused(
                &image.id,
                format!("sharing would give the image {total} launch permission entities, over the quota of {LAUNCH_PERMISSION_QUOTA} per image and Region; share with organizations or OUs instead of single accounts"),
            ));
        }

        // Writes: missing snapshot permissions and grants first, launch permissions last.
        let snapshot_work = async {
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
            Ok::<_, Error>(added)
        };
        let grant_work = async {
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
            Ok::<_, Error>((created, existing, receipts))
        };
        let (snapshot_added, (grants_created, grants_existing, receipts)) =
            futures::try_join!(snapshot_work, grant_work)?;
        // Launch permissions last; the grant receipts (every grant is made) alongside.
        let launch = async {
            if !add.is_empty() {
                self.deps
                    .aws
                    .add_launch_permissions(region, &image.id, &add)
                    .await?;
            }
            Ok::<_, Error>(())
        };
        let receipts = stream::iter(&receipts)
            .map(|(key, value)| self.leave_receipt(region, key, value))
            .buffer_unordered(self.deps.settings.concurrency)
            .try_collect::<Vec<()>>();
        futures::try_join!(launch, receipts)?;
        out.share = ShareReport {
            launch_permissions_added: add,
            snapshots_shared: snapshots
                .iter()
                .map(|s| SnapshotShare {
                    snapshot_id: s.clone(),
                    accounts: desired.snapshot_accounts.len(),
                })
                .filter(|s| s.accounts > 0)
                .collect(),
            snapshot_permissions_added: snapshot_added,
            grants_created,
            grants_existing,
        };

        // Shares no rule asks for: on the product's images only.
        if is_managed(image) {
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
        }

        Ok(out)
    }

    /// Record convergences: one `CreateTags` per distinct set of tags and up to 1,000 images.
    pub async fn record(&self, region: &str, done: &[&Converged]) -> Result<usize> {
        let mut groups: BTreeMap<&BTreeMap<String, String>, Vec<String>> = BTreeMap::new();
        for c in done.iter().filter(|c| !c.record.is_empty()) {
            let ids = groups.entry(&c.record).or_default();
            ids.push(c.image_id.clone());
            ids.extend(c.record_snapshots.iter().cloned());
        }
        let mut calls = 0;
        for (tags, ids) in groups {
            for chunk in ids.chunks(MAX_TAG_RESOURCES) {
                self.deps.aws.tag_resources(region, chunk, tags).await?;
                calls += 1;
            }
        }
        Ok(calls)
    }

    /// The tags that record a convergence: the managed mark always (the image is the
    /// product's from its first share on), the fingerprint and its time only when complete.
    fn record_tags(
        &self,
        image: &Image,
        rules: &[String],
        out: &Converged,
    ) -> BTreeMap<String, String> {
        let mut tags = BTreeMap::new();
        // The managed mark names the rules; an image no rule matches any more keeps its mark
        // (it is still ours: its unlisted shares are what pruning removes).
        let rules = if rules.is_empty() {
            image.tags.get(MANAGED_TAG).cloned().unwrap_or_default()
        } else {
            rules.join(",")
        };
        if !out.complete && image.tags.get(MANAGED_TAG) == Some(&rules) {
            return tags; // nothing to record: managed already, and not converged
        }
        tags.insert(MANAGED_TAG.to_string(), rules);
        if out.complete {
            tags.insert(PLAN_TAG.to_string(), out.fingerprint.clone());
            tags.insert(
                CONVERGED_AT_TAG.to_string(),
                self.now.to_rfc3339_opts(SecondsFormat::Secs, true),
            );
        }
        tags
    }
}

/// The organizations and OUs an image needs listed under `plan`: the accounts its snapshots
/// are shared with and its keys granted to.
fn needed_groups<'a>(image: &Image, plan: &'a SharePlan) -> impl Iterator<Item = &'a String> {
    let snaps = (!image.volumes.is_empty()).then(|| plan.snapshots.groups());
    let keys = image.is_encrypted().then(|| plan.kms.groups());
    snaps
        .into_iter()
        .flatten()
        .chain(keys.into_iter().flatten())
}

/// Whether the image already carries this convergence's managed mark and fingerprint (an
/// event function then writes nothing: a redelivered event changes no tag).
pub fn already_recorded(image: &Image, done: &Converged) -> bool {
    [MANAGED_TAG, PLAN_TAG]
        .iter()
        .all(|k| image.tags.get(*k) == done.record.get(*k))
}

/// Whether the image is the product's: tagged managed, or a copy the product made (a copy is
/// managed from its creation, whether or not its `available` event arrived).
pub fn is_managed(image: &Image) -> bool {
    image.tags.contains_key(MANAGED_TAG) || matches!(classify(image), ImageKind::OurCopy(_))
}
