//! Drift: every image the policy manages, brought to its desired state by the convergence
//! service ([`Convergence`]) — the same path the event functions take.
//!
//! Nightly work is proportional to change: each image's desired state is computed from the
//! policy and one organization listing per run (no AWS call per image), and compared with the
//! fingerprint recorded on the image (already in the `DescribeImages` listing). Only images
//! whose fingerprint is missing or differs are converged, plus a rotating audit slice of the
//! in-sync ones (`sweeper.audit_days`: every image audited at least that often) to catch
//! changes made by hand. Work is ordered by the time an image was last converged or audited,
//! oldest first, so what a run did not reach goes first the next night.
//!
//! Key access is settled per key, after all images ([`crate::sweep::keys`]): key policies
//! checked once a night, a grant revoked only when no image using the key still needs it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures::stream::{self, StreamExt};

use crate::config::Rule;
use crate::deps::Deps;
use crate::error::Error;
use crate::lineage::CopyChecks;
use crate::night::{Ledger, Run, LISTED};
use crate::plan::{classify, copy_rules, matching_rules, ImageKind, SharePlan, SkipReason};
use crate::ports::{Aws, Image, ImageState};
use crate::publish::Publishing;
use crate::share::{is_managed, Converged, Convergence, CONVERGED_AT_TAG, PLAN_TAG};
use crate::sweep::inventory::{Inventory, OwnSnapshot};
use crate::sweep::keys::{prune_grants, verify_key_policies, KeyNeeds, PolicyNeeds};
use crate::sweep::latest::{known_encryption, publish_latest};
use crate::sweep::report::{DriftReport, Incomplete, SweepReport};

/// Images converged at once (each one's calls are paced by the rate limits).
pub const CONCURRENCY: usize = 16;

/// One image's night: why it was taken (`None`: audit), and what converging it gave (`None`:
/// not started before the deadline).
type Outcome<'c, 'a> = (
    &'c Candidate<'a>,
    Option<&'static str>,
    Option<Result<Converged, Error>>,
);

/// One image in the policy's scope.
pub(super) struct Candidate<'a> {
    pub image: &'a Image,
    pub plan: SharePlan,
    pub may_copy: bool,
    pub converged_at: &'a str,
}

/// The images the night works on, in order, with why (`None`: the audit slice).
type Work<'c, 'a> = Vec<(&'c Candidate<'a>, Option<&'static str>)>;

pub async fn repair<P: Aws + Publishing + Inventory>(
    deps: &Deps<P>,
    run: &Run,
    images: &[Image],
    checks: &CopyChecks,
    snapshots: Option<&[OwnSnapshot]>,
    report: &mut SweepReport,
) {
    // Keys of encrypted snapshots, from the snapshot listing (no call per image).
    let keys_of: Option<HashMap<&str, &Arc<str>>> = snapshots.map(|all| {
        all.iter()
            .filter_map(|s| Some((&*s.id, s.kms_key_id.as_ref()?)))
            .collect()
    });
    let (candidates, mut needs) = in_scope(deps, images, checks, keys_of.as_ref());
    let conv =
        match Convergence::prepare(deps, candidates.iter().map(|c| (c.image, &c.plan)), run.now)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                report.drift.status = "aborted".into();
                report.error(
                    "drift repair not started: an organization listing failed",
                    &e,
                );
                return;
            }
        };
    let sorted = by_fingerprint(&conv, &candidates, keys_of.as_ref(), &mut needs);
    let work = tonight(deps, run, &candidates, &sorted, report);
    let results = converge_all(deps, run, &conv, work, keys_of.as_ref()).await;
    let (done, not_reached) = tally(results, report);
    let refs: Vec<&Converged> = done.iter().collect();
    match conv.record(&run.region, &refs).await {
        Ok(calls) => report.drift.record_calls = calls,
        Err(e) => report.error("recording fingerprints", &e),
    }
    let shared = fully_shared(&sorted.in_sync, &done);
    verify_key_policies(&conv, run, &sorted.policy_needs, &mut needs, report).await;
    publish_latest(deps, run, &candidates, &shared, keys_of.as_ref(), report).await;
    if not_reached > 0 {
        report.drift.not_reached = not_reached;
        report.left_for_next(format!(
            "drift repair of {not_reached} images (they are the oldest-converged, so the next run takes them first)"
        ));
        report.drift.status = "partial".into();
        return;
    }
    match keys_of {
        None => {
            report.drift.grant_pruning = Some(
                "skipped: the snapshot listing failed, so the keys of the images are unknown"
                    .into(),
            )
        }
        Some(_) => {
            if let Err(e) = prune_grants(&conv, run, &needs, report).await {
                report.error("grant pruning", &e);
            }
        }
    }
    report.drift.status = "complete".into();
}

/// The images in the policy's scope, each with its plan, and what their keys' grants must
/// keep: a disabled or deregistered image of ours counts only as far as other images need
/// its keys; an image left alone (skip tag, a copy whose check failed) puts its keys' grants
/// out of this run's judgement.
fn in_scope<'a, P: Aws>(
    deps: &Deps<P>,
    images: &'a [Image],
    checks: &CopyChecks,
    keys_of: Option<&HashMap<&str, &Arc<str>>>,
) -> (Vec<Candidate<'a>>, KeyNeeds) {
    let mut needs = KeyNeeds::new();
    let mut candidates = Vec::new();
    for image in images {
        let image_keys = keys_of.map(|k| image_key_ids(image, k)).unwrap_or_default();
        if image.state != ImageState::Available {
            if is_managed(image) {
                for k in &image_keys {
                    needs
                        .entry(k.clone())
                        .or_insert_with(|| Some(BTreeSet::new()));
                }
            }
            continue;
        }
        match rules_for(deps, image, checks) {
            Some((rules, may_copy)) => {
                if rules.is_empty() && !is_managed(image) {
                    continue; // not ours, and nothing asks for it
                }
                let plan = SharePlan::from_rules(deps.policy.kms_access, rules.iter().copied())
                    .for_source(may_copy);
                candidates.push(Candidate {
                    image,
                    plan,
                    may_copy,
                    converged_at: image
                        .tags
                        .get(CONVERGED_AT_TAG)
                        .map(String::as_str)
                        .unwrap_or(""),
                });
            }
            None => {
                for k in image_keys {
                    needs.insert(k, None);
                }
            }
        }
    }
    (candidates, needs)
}

/// The candidates split by their fingerprint, each part oldest-converged first, and what their
/// keys need (grants and key policy statements) under the desired state.
struct Sorted<'c, 'a> {
    stale: Vec<(&'c Candidate<'a>, &'static str)>,
    in_sync: Vec<&'c Candidate<'a>>,
    policy_needs: PolicyNeeds,
}

/// Every candidate's desired state and fingerprint, compared with the one it records.
fn by_fingerprint<'c, 'a, P: Aws>(
    conv: &Convergence<'_, P>,
    candidates: &'c [Candidate<'a>],
    keys_of: Option<&HashMap<&str, &Arc<str>>>,
    needs: &mut KeyNeeds,
) -> Sorted<'c, 'a> {
    let mut sorted = Sorted {
        stale: Vec::new(),
        in_sync: Vec::new(),
        policy_needs: PolicyNeeds::new(),
    };
    for c in candidates {
        let desired = conv.desired(c.image, &c.plan, c.may_copy);
        for k in keys_of
            .map(|k| image_key_ids(c.image, k))
            .unwrap_or_default()
        {
            if !desired.key_policy.is_empty() {
                sorted
                    .policy_needs
                    .entry(k.clone())
                    .or_default()
                    .extend(desired.key_policy.iter().cloned());
            }
            if let Some(set) = needs.entry(k).or_insert_with(|| Some(BTreeSet::new())) {
                set.extend(desired.grant_accounts.iter().cloned());
            }
        }
        match c.image.tags.get(PLAN_TAG) {
            None => sorted.stale.push((c, "no fingerprint")),
            Some(fp) if *fp != desired.fingerprint() => {
                sorted.stale.push((c, "fingerprint differs"))
            }
            Some(_) => sorted.in_sync.push(c),
        }
    }
    sorted.stale.sort_by(|a, b| {
        a.0.converged_at
            .cmp(b.0.converged_at)
            .then(a.0.image.id.cmp(&b.0.image.id))
    });
    sorted.in_sync.sort_by(|a, b| {
        a.converged_at
            .cmp(b.converged_at)
            .then(a.image.id.cmp(&b.image.id))
    });
    sorted
}

/// Tonight's work: every stale image, then the night's audit slice of the in-sync ones. A
/// follow-up invocation of the same night (the continuation engine) only takes what the
/// night's earlier rounds did not audit yet. Counted in the report.
fn tonight<'c, 'a, P: Aws>(
    deps: &Deps<P>,
    run: &Run,
    candidates: &[Candidate<'a>],
    sorted: &Sorted<'c, 'a>,
    report: &mut SweepReport,
) -> Work<'c, 'a> {
    let audit_days = deps.policy.sweeper.audit_days.max(1) as usize;
    let today = run.now.format("%Y-%m-%d").to_string();
    let done_today = sorted
        .in_sync
        .iter()
        .filter(|c| c.converged_at.starts_with(&today))
        .count();
    let audit = sorted
        .in_sync
        .len()
        .div_ceil(audit_days)
        .saturating_sub(done_today);
    let d = &mut report.drift;
    d.images_in_scope = candidates.len();
    d.in_sync = sorted.in_sync.len();
    for (_, why) in &sorted.stale {
        *d.stale.entry((*why).to_string()).or_insert(0) += 1;
    }
    sorted
        .stale
        .iter()
        .map(|(c, why)| (*c, Some(*why)))
        .chain(sorted.in_sync.iter().take(audit).map(|c| (*c, None)))
        .collect()
}

/// The work converged, CONCURRENCY images at once; none started once the deadline is near.
async fn converge_all<'c, 'a, P: Aws + Publishing + Inventory>(
    deps: &Deps<P>,
    run: &Run,
    conv: &Convergence<'_, P>,
    work: Work<'c, 'a>,
    keys_of: Option<&HashMap<&str, &Arc<str>>>,
) -> Vec<Outcome<'c, 'a>> {
    stream::iter(work)
        .map(|(c, why)| async move {
            if !run.may_start() {
                return (c, why, None);
            }
            let enc = match keys_of {
                Some(k) => known_encryption(deps, c.image, k).await,
                None => None,
            };
            (
                c,
                why,
                Some(conv.converge(c.image, &c.plan, c.may_copy, enc).await),
            )
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await
}

/// Each image's outcome counted in the report (errors and refusals named); the converged
/// returned, with the number not reached.
fn tally(results: Vec<Outcome>, report: &mut SweepReport) -> (Vec<Converged>, usize) {
    let mut done: Vec<Converged> = Vec::new();
    let mut not_reached = 0usize;
    for (c, why, result) in results {
        match result {
            None => not_reached += 1,
            Some(Err(e)) => {
                incomplete(&mut report.drift, Some(Incomplete::failed(&c.image.id, &e)));
                report.error(&format!("drift repair of {}", c.image.id), &e)
            }
            Some(Ok(conv_done)) => {
                incomplete(&mut report.drift, Incomplete::of(&conv_done));
                if let Some(why) = &conv_done.refused {
                    report.error(
                        &format!("drift repair of {}", c.image.id),
                        &Error::refused(&c.image.id, why.clone()),
                    );
                }
                count(&mut report.drift, why.is_some(), &conv_done);
                done.push(conv_done);
            }
        }
    }
    (done, not_reached)
}

/// An image left incomplete tonight, counted and (the first of them) listed with its reasons.
fn incomplete(d: &mut DriftReport, item: Option<Incomplete>) {
    if let Some(item) = item {
        d.incomplete_total += 1;
        if d.incomplete.len() < LISTED {
            d.incomplete.push(item);
        }
    }
}

/// One converged image in the drift report: converged or audited, what was added, the copies,
/// what was (or would be) pruned.
fn count(d: &mut DriftReport, stale: bool, conv_done: &Converged) {
    if stale {
        d.converged += 1;
    } else {
        d.audited += 1;
        if conv_done.changes() > 0 {
            d.audit_found_drift += 1;
        }
    }
    d.launch_permissions_added += conv_done.share.launch_permissions_added.len();
    d.snapshot_permissions_added += conv_done.share.snapshot_permissions_added;
    d.grants_created += conv_done.share.grants_created.len();
    for cp in &conv_done.copies {
        match cp.status.as_str() {
            "started" => d.copies_started += 1,
            "waiting" => d.copies_waiting += 1,
            _ => {}
        }
        if d.copies.len() < LISTED {
            d.copies.push(cp.clone());
        }
    }
    d.pruned_total += conv_done.pruned.len();
    d.would_prune_total += conv_done.would_prune.len();
    d.pruned.extend_capped(conv_done.pruned.clone(), LISTED);
    d.would_prune
        .extend_capped(conv_done.would_prune.clone(), LISTED);
}

/// Fully shared in this Region: in sync by fingerprint, or converged now and shared.
fn fully_shared<'a>(in_sync: &[&Candidate<'a>], done: &'a [Converged]) -> BTreeSet<&'a str> {
    let mut shared: BTreeSet<&str> = in_sync.iter().map(|c| c.image.id.as_str()).collect();
    for c in done {
        if c.shared {
            shared.insert(&c.image_id);
        } else {
            shared.remove(c.image_id.as_str());
        }
    }
    shared
}

/// The key ARNs of an image's snapshots, from the snapshot listing.
pub(super) fn image_key_ids(image: &Image, keys_of: &HashMap<&str, &Arc<str>>) -> Vec<String> {
    let set: BTreeSet<String> = image
        .volumes
        .iter()
        .filter_map(|v| keys_of.get(v.snapshot_id.as_str()).map(|k| k.to_string()))
        .collect();
    set.into_iter().collect()
}

/// The rules for an image of ours, or `None` when it is not ours to share. A managed image no
/// rule matches any more gets an empty plan (everything on it is unlisted). A copy's rules are
/// those its source (named by EC2's lineage, read tonight) matches now; a copy whose check
/// failed (`forged-provenance`, `source-gone`) is left as it is.
fn rules_for<'p, P: Aws>(
    deps: &'p Deps<P>,
    image: &Image,
    checks: &CopyChecks,
) -> Option<(Vec<&'p Rule>, bool)> {
    match classify(image) {
        ImageKind::OurCopy(p) => {
            if checks.refused.contains_key(&image.id) {
                return None;
            }
            let mut copy = image.clone();
            match copy_rules(
                &deps.policy,
                &mut copy,
                &p,
                checks.source_of(&p),
                &deps.account_id,
            ) {
                Ok(rules) => Some((rules, false)),
                Err(SkipReason::NoRuleMatches) => Some((Vec::new(), false)),
                Err(_) => None,
            }
        }
        ImageKind::Forged { .. } => None,
        ImageKind::Source { is_foreign_copy } => {
            match matching_rules(&deps.policy, image, &deps.account_id) {
                Ok(rules) => Some((rules, !is_foreign_copy)),
                Err(SkipReason::NoRuleMatches) => Some((Vec::new(), false)),
                Err(_) => None,
            }
        }
    }
}
