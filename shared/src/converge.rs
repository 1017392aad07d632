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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;

use crate::copies::{check_copy_plan, copy_request, COPY_LIMIT_CODE};
use crate::deps::{
    aws_managed_message, snapshot_ids, Deps, Encryption, LAUNCH_PERMISSION_QUOTA, SNAPSHOT_BATCH,
};
use crate::domain::matching::{classify, ImageKind};
use crate::domain::names::{account_of_principal, account_principal, grant_name, CopyKind};
use crate::domain::plan::{batches, CopyDestination, Desired, Members, SharePlan};
use crate::error::{Error, Result};
use crate::ports::MAX_TAG_RESOURCES;
use crate::ports::{Aws, Grant, GrantRequest, Image, ImageState, LaunchPermissions};
use crate::report::CopyReport;

/// Tag on images the product manages (shares); its value names the rules.
pub use crate::domain::names::MANAGED_TAG;
/// Tag recording the fingerprint of the desired state an image was last fully converged to.
pub const PLAN_TAG: &str = "ami-share:plan";
/// Tag recording when an image was last converged or audited (RFC 3339, UTC): the nightly
/// order puts the oldest first, so nothing starves.
pub const CONVERGED_AT_TAG: &str = "ami-share:converged-at";

/// Shares no rule asks for, one line each (`<image or snapshot>: <principal>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Unlisted {
    pub launch_permissions: Vec<String>,
    pub snapshot_permissions: Vec<String>,
    pub grants: Vec<String>,
}

impl Unlisted {
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn len(&self) -> usize {
        self.launch_permissions.len() + self.snapshot_permissions.len() + self.grants.len()
    }
    /// Append `other`, keeping at most `cap` lines per list (counts are kept elsewhere).
    pub fn extend_capped(&mut self, other: Unlisted, cap: usize) {
        for (into, from) in [
            (&mut self.launch_permissions, other.launch_permissions),
            (&mut self.snapshot_permissions, other.snapshot_permissions),
            (&mut self.grants, other.grants),
        ] {
            let room = cap.saturating_sub(into.len());
            into.extend(from.into_iter().take(room));
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotShare {
    pub snapshot_id: String,
    /// Accounts the snapshot is shared with now (added or already there).
    pub accounts: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantRecord {
    pub key_arn: String,
    pub account: String,
}

/// What sharing in the image's own Region changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShareReport {
    pub launch_permissions_added: LaunchPermissions,
    pub snapshots_shared: Vec<SnapshotShare>,
    /// (snapshot, account) permissions added.
    pub snapshot_permissions_added: usize,
    pub grants_created: Vec<GrantRecord>,
    pub grants_existing: usize,
}

/// What converging one image did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Converged {
    pub image_id: String,
    pub region: String,
    /// The fingerprint of the desired state.
    pub fingerprint: String,
    /// Every step done: the fingerprint may be recorded.
    pub complete: bool,
    /// The image is fully shared in its own Region (whatever became of its copies to other
    /// Regions): it may be published as its rules' newest image there.
    pub shared: bool,
    /// The image uses `aws/ebs`: a re-encrypted copy is shared instead of the image.
    pub reencrypt: bool,
    /// A part of the share that cannot be made (a new public share under block public
    /// access, or of an encrypted image), with why; the rest was shared.
    pub refused: Option<String>,
    pub share: ShareReport,
    /// Removed (`prune`).
    pub pruned: Unlisted,
    /// Would be removed if pruning were on (managed images only).
    pub would_prune: Unlisted,
    pub copies: Vec<CopyReport>,
    /// The tags that record this convergence (managed, plan, converged-at).
    pub record: BTreeMap<String, String>,
}

impl Converged {
    /// Whether anything was changed.
    pub fn changes(&self) -> usize {
        self.share.launch_permissions_added.len()
            + self.share.snapshot_permissions_added
            + self.share.grants_created.len()
            + self.pruned.len()
            + self.copies.iter().filter(|c| c.status == "started").count()
    }
}

/// The grants of one key: `None` until read.
type GrantSlot = Arc<tokio::sync::Mutex<Option<Vec<Grant>>>>;

/// The convergence service of one invocation (an event) or one run (the sweeper): the
/// organization listings it needs, listed once, and the grants of each key, read once.
pub struct Convergence<'d, P> {
    deps: &'d Deps<P>,
    /// The organization and OU listings of this run, each listed once.
    members: Mutex<Members>,
    /// Whether a copy is looked up by name before it is started (the sweeper: a failed
    /// attempt is then retried under a new name). An event's copies rely on the client
    /// token alone: a redelivered event gets the same copy back.
    look_up_copies: bool,
    /// (Region, key ARN) → the key's grants as last read or written; one lock per key, so the
    /// grants of a key are read once per run and never created twice.
    grants: Mutex<HashMap<(String, String), GrantSlot>>,
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
        for (image, plan) in needs {
            arns.extend(needed_groups(image, plan));
        }
        let members = deps.members_of(arns).await?;
        Ok(Self {
            deps,
            members: Mutex::new(members),
            look_up_copies: true,
            grants: Mutex::default(),
            now,
        })
    }

    /// The service of one event: nothing listed up front; [`Convergence::converge`] lists
    /// what the image needs concurrently with its other reads.
    pub fn for_event(deps: &'d Deps<P>, now: DateTime<Utc>) -> Self {
        Self {
            deps,
            members: Mutex::default(),
            look_up_copies: false,
            grants: Mutex::default(),
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
            self.copies(image, &copies_wanted)
        );
        let mut out = shared?;
        out.shared = out.complete && !out.reencrypt;
        out.copies.extend(copies?);
        out.complete &= out.copies.iter().all(|c| c.status != "deferred");
        out.record = self.record_tags(image, &plan.rules, &out);
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
        // The keys, then (still among the reads) the grants of each customer managed key.
        let keys = async {
            let enc = match enc {
                Some(e) => e,
                None => self.deps.encryption(image).await?,
            };
            stream::iter(&enc.customer)
                .map(|k| self.grants(region, &k.arn))
                .buffer_unordered(self.deps.settings.concurrency)
                .try_collect::<Vec<_>>()
                .await?;
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
            for key in &enc.customer {
                let (new, old) = self
                    .ensure_grants(region, &key.arn, &desired.grant_accounts)
                    .await?;
                created.extend(new.into_iter().map(|account| GrantRecord {
                    key_arn: key.arn.clone(),
                    account,
                }));
                existing += old;
            }
            Ok::<_, Error>((created, existing))
        };
        let (snapshot_added, (grants_created, grants_existing)) =
            futures::try_join!(snapshot_work, grant_work)?;
        if !add.is_empty() {
            self.deps
                .aws
                .add_launch_permissions(region, &image.id, &add)
                .await?;
        }
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
            groups
                .entry(&c.record)
                .or_default()
                .push(c.image_id.clone());
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

    /// The grants of a key, read once per convergence service.
    fn grant_slot(&self, region: &str, key_arn: &str) -> GrantSlot {
        let mut map = self.grants.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((region.to_string(), key_arn.to_string()))
            .or_default()
            .clone()
    }

    /// The key's grants (`ListGrants` once per run).
    pub async fn grants(&self, region: &str, key_arn: &str) -> Result<Vec<Grant>> {
        let slot = self.grant_slot(region, key_arn);
        let mut guard = slot.lock().await;
        if guard.is_none() {
            *guard = Some(self.deps.aws.list_grants(region, key_arn).await?);
        }
        Ok(guard.clone().unwrap_or_default())
    }

    /// One grant per account on the key, named deterministically; returns (created, already
    /// there).
    async fn ensure_grants(
        &self,
        region: &str,
        key_arn: &str,
        accounts: &BTreeSet<String>,
    ) -> Result<(Vec<String>, usize)> {
        if accounts.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let slot = self.grant_slot(region, key_arn);
        let mut guard = slot.lock().await;
        if guard.is_none() {
            *guard = Some(self.deps.aws.list_grants(region, key_arn).await?);
        }
        let grants = guard.get_or_insert_with(Vec::new);
        let have: BTreeSet<(String, String)> = grants
            .iter()
            .filter_map(|g| {
                Some((
                    g.name.clone()?,
                    account_of_principal(&g.grantee_principal)?.to_string(),
                ))
            })
            .collect();
        let missing: Vec<String> = accounts
            .iter()
            .filter(|a| !have.contains(&(grant_name(a), (*a).clone())))
            .cloned()
            .collect();
        let existing = accounts.len() - missing.len();
        let created: Vec<Grant> = stream::iter(missing.iter())
            .map(|account| async move {
                let req = GrantRequest {
                    key_arn: key_arn.to_string(),
                    grantee_principal: account_principal(account),
                    name: grant_name(account),
                };
                self.deps.aws.create_grant(region, &req).await?;
                Ok::<_, Error>(Grant {
                    grant_id: String::new(),
                    name: Some(req.name),
                    grantee_principal: req.grantee_principal,
                })
            })
            .buffer_unordered(self.deps.settings.grant_concurrency)
            .try_collect()
            .await?;
        grants.extend(created);
        Ok((missing, existing))
    }

    /// Start the copies to other Regions that do not exist yet, all Regions at once
    /// (bounded); reported in the order of the plan.
    async fn copies(&self, image: &Image, wanted: &[CopyDestination]) -> Result<Vec<CopyReport>> {
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
        let existing = if self.look_up_copies {
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

    async fn prune(
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

fn describe_launch(image_id: &str, lp: &LaunchPermissions) -> Vec<String> {
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
