//! Convergence: bring one image to the state the policy asks for — launch permissions,
//! snapshot permissions, KMS grants, copies to other Regions, the managed tag — and record a
//! fingerprint of that state on the image once it is all true.
//!
//! The one path to that state: on-image-available (a new image), on-copy-complete (a copy, in
//! its own Region) and the nightly sweeper (drift, audits) all converge through
//! [`Convergence::converge`]. An image whose recorded fingerprint equals the fingerprint of its
//! desired state needs no work at night.
//!
//! Order of work for one image: read and check everything first ([`super::check`]: keys and
//! the key policies of every Region's key its copies use, current launch and snapshot
//! permissions, grants, block public access) and refuse before writing anything when a step is
//! impossible; then ([`super::write`]) the missing snapshot permissions and grants
//! (concurrently, bounded), launch permissions last, so an image only becomes visible to
//! consumers once they can use it, then pruning (managed images, when the policy says so);
//! the copies start alongside those writes, never before the checks. The fingerprint is
//! recorded only when every step succeeded (a copy still waiting for a slot leaves it
//! unrecorded, so the next night looks again).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};

use super::check::Checked;
use super::grants::KeyState;
use super::report::{Converged, ShareReport, Unlisted};
use crate::copy::{check_copy_plan, Copier, CopyReport};
use crate::deps::{snapshot_ids, Deps, Encryption};
use crate::error::Result;
use crate::names::{CopyKind, MANAGED_TAG};
use crate::plan::{classify, CopyDestination, Desired, ImageKind, Members, SharePlan};
use crate::ports::MAX_TAG_RESOURCES;
use crate::ports::{Aws, Image};

pub use crate::names::PLAN_TAG;
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
    pub(super) async fn ensure_members(&self, image: &Image, plan: &SharePlan) -> Result<()> {
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
    /// Every check first ([`super::check`]): the organization's boundary, the copy plan, the
    /// image's reads and refusals and the key policies of the copies' keys. Only when they all
    /// pass are the shares written ([`super::write`]) and, at the same time, the copies to
    /// other Regions put in their Regions' waiting lines ([`crate::copy`]); a copy is shared
    /// in its Region by on-copy-complete. A refused image starts no copy.
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
        let (checked, ()) = futures::try_join!(
            self.check(image, plan, may_copy, enc),
            self.check_copy_keys(image, plan, &copies_wanted)
        )?;
        let mut out = match checked {
            Checked::Reencrypt { cmk } => {
                let (reencrypted, copies) = futures::join!(
                    self.copier.ensure_copy(
                        image,
                        &image.region,
                        Some(&cmk),
                        CopyKind::Reencrypt,
                        &plan.rules,
                        None
                    ),
                    self.copier.copies(image, &copies_wanted)
                );
                let mut out = self.converged(image, &self.desired(image, plan, may_copy));
                out.reencrypt = true;
                out.copies.push(reencrypted?);
                out.copies.extend(copies?);
                out
            }
            Checked::Share(checked) => {
                let refused = checked.refused.clone();
                let copies = async {
                    match &refused {
                        None => self.copier.copies(image, &copies_wanted).await,
                        Some(why) => Ok(not_copied(&copies_wanted, why)),
                    }
                };
                let (shared, copies) = futures::join!(self.write(image, *checked), copies);
                let mut out = shared?;
                out.copies.extend(copies?);
                out
            }
        };
        out.shared = out.complete && !out.reencrypt;
        out.complete &= out.copies.iter().all(|c| c.is_settled());
        out.record = self.record_tags(image, &plan.rules, &out);
        if !image.tags.contains_key(MANAGED_TAG)
            && out.record.contains_key(MANAGED_TAG)
            && matches!(classify(image), ImageKind::Source { .. })
        {
            out.record_snapshots = snapshot_ids(image);
        }
        Ok(out)
    }

    /// A convergence of `image` to `desired` with nothing done yet.
    pub(super) fn converged(&self, image: &Image, desired: &Desired) -> Converged {
        Converged {
            image_id: image.id.clone(),
            region: image.region.clone(),
            fingerprint: desired.fingerprint(),
            complete: true,
            shared: false,
            reencrypt: false,
            refused: None,
            share: ShareReport::default(),
            pruned: Unlisted::default(),
            would_prune: Unlisted::default(),
            copies: Vec::new(),
            watermarks_attached: Vec::new(),
            record: BTreeMap::new(),
            record_snapshots: Vec::new(),
        }
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

/// The copies a refused image does not get: none starts until the image passes every check.
fn not_copied(copies: &[CopyDestination], why: &str) -> Vec<CopyReport> {
    copies
        .iter()
        .map(|c| CopyReport {
            region: c.region.clone(),
            image_id: None,
            status: "refused".into(),
            detail: Some(format!("not copied: the source is refused here ({why})")),
        })
        .collect()
}
