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
use crate::deps::{Deps, Encryption};
use crate::error::Error;
use crate::lineage::CopyChecks;
use crate::night::{Ledger, Run, LISTED};
use crate::plan::{classify, copy_rules, matching_rules, ImageKind, SharePlan, SkipReason};
use crate::ports::{Aws, Image, ImageState};
use crate::publish::{publication_order, PublishStatus, Publisher, Publishing};
use crate::share::{is_managed, Converged, Convergence, CONVERGED_AT_TAG, PLAN_TAG};
use crate::sweep::inventory::{Inventory, OwnSnapshot};
use crate::sweep::keys::{prune_grants, verify_key_policies, KeyNeeds, PolicyNeeds};
use crate::sweep::report::SweepReport;

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
struct Candidate<'a> {
    image: &'a Image,
    plan: SharePlan,
    may_copy: bool,
    converged_at: &'a str,
}

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
    let mut needs = KeyNeeds::new();
    let mut candidates = Vec::new();
    for image in images {
        let image_keys = keys_of
            .as_ref()
            .map(|k| image_key_ids(image, k))
            .unwrap_or_default();
        if image.state != ImageState::Available {
            // Disabled / deregistered images of ours: nothing to share, but their keys' grants
            // count only as far as other images still need them.
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
                // Left alone (skip tag, a copy whose check failed): its keys' grants are not
                // ours to judge this run.
                for k in image_keys {
                    needs.insert(k, None);
                }
            }
        }
    }

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

    // Desired state and fingerprint of every candidate; stale ones first, oldest first.
    let mut stale: Vec<(&Candidate, &'static str)> = Vec::new();
    let mut in_sync: Vec<&Candidate> = Vec::new();
    let mut policy_needs = PolicyNeeds::new();
    for c in &candidates {
        let desired = conv.desired(c.image, &c.plan, c.may_copy);
        for k in keys_of
            .as_ref()
            .map(|k| image_key_ids(c.image, k))
            .unwrap_or_default()
        {
            if !desired.key_policy.is_empty() {
                policy_needs
                    .entry(k.clone())
                    .or_default()
                    .extend(desired.key_policy.iter().cloned());
            }
            if let Some(set) = needs.entry(k).or_insert_with(|| Some(BTreeSet::new())) {
                set.extend(desired.grant_accounts.iter().cloned());
            }
        }
        match c.image.tags.get(PLAN_TAG) {
            None => stale.push((c, "no fingerprint")),
            Some(fp) if *fp != desired.fingerprint() => stale.push((c, "fingerprint differs")),
            Some(_) => in_sync.push(c),
        }
    }
    stale.sort_by(|a, b| {
        a.0.converged_at
            .cmp(b.0.converged_at)
            .then(a.0.image.id.cmp(&b.0.image.id))
    });
    in_sync.sort_by(|a, b| {
        a.converged_at
            .cmp(b.converged_at)
            .then(a.image.id.cmp(&b.image.id))
    });
    // A night's slice; follow-up invocations of the same night (the continuation engine) only
    // take what the night's earlier rounds did not audit yet.
    let audit_days = deps.policy.sweeper.audit_days.max(1) as usize;
    let today = run.now.format("%Y-%m-%d").to_string();
    let done_today = in_sync
        .iter()
        .filter(|c| c.converged_at.starts_with(&today))
        .count();
    let audit = in_sync
        .len()
        .div_ceil(audit_days)
        .saturating_sub(done_today);
    let d = &mut report.drift;
    d.images_in_scope = candidates.len();
    d.in_sync = in_sync.len();
    for (_, why) in &stale {
        *d.stale.entry((*why).to_string()).or_insert(0) += 1;
    }
    let work: Vec<(&Candidate, Option<&'static str>)> = stale
        .iter()
        .map(|(c, why)| (*c, Some(*why)))
        .chain(in_sync.iter().take(audit).map(|c| (*c, None)))
        .collect();

    let results: Vec<Outcome> = stream::iter(work)
        .map(|(c, why)| {
            let conv = &conv;
            let keys_of = keys_of.as_ref();
            async move {
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
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;

    let mut done: Vec<Converged> = Vec::new();
    let mut not_reached = 0usize;
    for (c, why, result) in results {
        match result {
            None => not_reached += 1,
            Some(Err(e)) => report.error(&format!("drift repair of {}", c.image.id), &e),
            Some(Ok(conv_done)) => {
                if let Some(why) = &conv_done.refused {
                    report.error(
                        &format!("drift repair of {}", c.image.id),
                        &Error::refused(&c.image.id, why.clone()),
                    );
                }
                let d = &mut report.drift;
                match why {
                    Some(_) => d.converged += 1,
                    None => {
                        d.audited += 1;
                        if conv_done.changes() > 0 {
                            d.audit_found_drift += 1;
                        }
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
                done.push(conv_done);
            }
        }
    }
    let refs: Vec<&Converged> = done.iter().collect();
    match conv.record(&run.region, &refs).await {
        Ok(calls) => report.drift.record_calls = calls,
        Err(e) => report.error("recording fingerprints", &e),
    }
    // Fully shared in this Region: in sync by fingerprint, or converged now and shared.
    let mut shared: BTreeSet<&str> = in_sync.iter().map(|c| c.image.id.as_str()).collect();
    for c in &done {
        if c.shared {
            shared.insert(&c.image_id);
        } else {
            shared.remove(c.image_id.as_str());
        }
    }
    verify_key_policies(&conv, run, &policy_needs, &mut needs, report).await;
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

/// Each publishing rule's newest fully shared image in the Region, published through the event
/// functions' path ([`Publisher::publish`]): a missing or wrong parameter, an unfinished
/// publication and a share out of step with the rule are repaired. A few calls per rule, none
/// per image.
async fn publish_latest<P: Aws + Publishing>(
    deps: &Deps<P>,
    run: &Run,
    candidates: &[Candidate<'_>],
    shared: &BTreeSet<&str>,
    keys_of: Option<&HashMap<&str, &Arc<str>>>,
    report: &mut SweepReport,
) {
    let publisher = Publisher::new(deps);
    let publishes = |r: &&crate::config::Rule| {
        r.publish
            .as_ref()
            .is_some_and(|p| p.shares_from_publisher(&r.share_with))
    };
    for rule in deps.policy.rules.iter().filter(publishes) {
        if !run.may_start() {
            report.left_for_next(format!("publication of rule {}", rule.name));
            return;
        }
        let mut mine: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| shared.contains(c.image.id.as_str()) && c.plan.rules.contains(&rule.name))
            .collect();
        mine.sort_by_key(|c| std::cmp::Reverse(publication_order(c.image)));
        for c in mine {
            // An image on aws/ebs is never shared itself (its re-encrypted copy is).
            if c.image.is_encrypted() {
                let enc = match keys_of {
                    Some(k) => known_encryption(deps, c.image, k).await,
                    None => None,
                };
                let enc = match enc {
                    Some(e) => e,
                    None => match deps.encryption(c.image).await {
                        Ok(e) => e,
                        Err(e) => {
                            report.drift.publications_failed.push(rule.name.clone());
                            report.error(&format!("publication of rule {}", rule.name), &e);
                            break;
                        }
                    },
                };
                if !enc.aws_managed.is_empty() {
                    continue;
                }
            }
            match publisher.publish(rule, c.image).await {
                Ok(p) => {
                    let d = &mut report.drift;
                    if matches!(p.status, PublishStatus::Published | PublishStatus::Finished)
                        || p.share.changes() > 0
                    {
                        d.publications_repaired += 1;
                    }
                    if d.publications.len() < LISTED {
                        d.publications.push(p);
                    }
                }
                Err(e) => {
                    report.drift.publications_failed.push(rule.name.clone());
                    report.error(
                        &format!("publication of rule {} ({})", rule.name, c.image.id),
                        &e,
                    )
                }
            }
            break;
        }
    }
}

/// The key ARNs of an image's snapshots, from the snapshot listing.
fn image_key_ids(image: &Image, keys_of: &HashMap<&str, &Arc<str>>) -> Vec<String> {
    let set: BTreeSet<String> = image
        .volumes
        .iter()
        .filter_map(|v| keys_of.get(v.snapshot_id.as_str()).map(|k| k.to_string()))
        .collect();
    set.into_iter().collect()
}

/// The image's keys from the snapshot listing (`DescribeKey` once per key and warm Lambda);
/// `None` when some snapshot is missing from the listing (then convergence reads them).
async fn known_encryption<P: Aws>(
    deps: &Deps<P>,
    image: &Image,
    keys_of: &HashMap<&str, &Arc<str>>,
) -> Option<Encryption> {
    if !image.is_encrypted() {
        return Some(Encryption::default());
    }
    if image
        .volumes
        .iter()
        .any(|v| v.encrypted && !keys_of.contains_key(v.snapshot_id.as_str()))
    {
        return None;
    }
    deps.encryption_by_keys(&image.region, image_key_ids(image, keys_of))
        .await
        .ok()
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
