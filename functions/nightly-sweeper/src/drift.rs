//! Drift repair, stateless: the desired state comes from the policy, the actual state from AWS.
//! Reuses the sharing service ([`Deps::apply_sharing`], [`Deps::ensure_copy`]) and the pure
//! decisions ([`classify`], [`matching_rules`], [`SharePlan`]); only pruning is the sweeper's own.

use std::collections::{BTreeMap, BTreeSet};

use amishare::config::Rule;
use amishare::copies::check_copy_plan;
use amishare::domain::matching::{classify, matching_rules, ImageKind, SkipReason};
use amishare::domain::names::{account_of_principal, grant_name, CopyKind, MANAGED_TAG};
use amishare::domain::plan::{batches, AccountTargets, SharePlan};
use amishare::inventory::Inventory;
use amishare::ports::{Aws, Image, ImageState, KeyManager, LaunchPermissions};
use amishare::share::{snapshot_ids, Deps, SNAPSHOT_BATCH};
use amishare::Error;

use crate::report::SweepReport;
use crate::Run;

/// Key ARN → accounts some image encrypted with it still needs a grant for; `None` once an
/// image using the key could not be checked (its grants are then never pruned this run).
type KeyNeeds = BTreeMap<String, Option<BTreeSet<String>>>;

pub async fn repair<P: Aws + Inventory>(
    deps: &Deps<P>,
    run: &Run,
    images: &[Image],
    report: &mut SweepReport,
) {
    let mut needs = KeyNeeds::new();
    let mut complete = true;
    for (i, image) in images.iter().enumerate() {
        if !run.may_start() {
            report
                .not_reached
                .push(format!("drift repair of {} images", images.len() - i));
            complete = false;
            break;
        }
        if let Err(e) = repair_image(deps, image, report, &mut needs).await {
            report.error(&format!("drift repair of {}", image.id), &e);
        }
    }
    if complete {
        if let Err(e) = prune_grants(deps, run, &needs, report).await {
            report.error("grant pruning", &e);
        }
        report.drift.status = "complete".into();
    } else {
        report.drift.status = "partial".into();
    }
}

/// The rules for an image of ours, or `None` when it is not ours to share. A managed image no
/// rule matches any more gets an empty plan (everything on it is unlisted).
async fn rules_for<'p, P: Aws>(
    deps: &'p Deps<P>,
    image: &Image,
) -> Result<Option<(Vec<&'p Rule>, bool)>, Error> {
    match classify(image) {
        ImageKind::OurCopy(p) => {
            let named: Vec<&Rule> = p.rules.iter().filter_map(|n| deps.policy.rule(n)).collect();
            if !named.is_empty() {
                return Ok(Some((named, false)));
            }
            let source = deps
                .aws
                .describe_image(&p.source_region, &p.source_image_id)
                .await?;
            let rules = source
                .map(|s| matching_rules(&deps.policy, &s, &deps.account_id).unwrap_or_default())
                .unwrap_or_default();
            Ok(Some((rules, false)))
        }
        ImageKind::Source { is_foreign_copy } => {
            match matching_rules(&deps.policy, image, &deps.account_id) {
                Ok(rules) => Ok(Some((rules, !is_foreign_copy))),
                Err(SkipReason::NoRuleMatches) => Ok(Some((Vec::new(), false))),
                Err(_) => Ok(None),
            }
        }
    }
}

async fn repair_image<P: Aws + Inventory>(
    deps: &Deps<P>,
    image: &Image,
    report: &mut SweepReport,
    needs: &mut KeyNeeds,
) -> Result<(), Error> {
    let managed = image.tags.contains_key(MANAGED_TAG);
    if image.state != ImageState::Available {
        // Disabled / deregistered images of ours: nothing to share, but their keys' grants
        // count only as far as other images still need them.
        if managed && image.is_encrypted() {
            note_keys(deps, image, false, needs).await;
        }
        return Ok(());
    }
    let Some((rules, may_copy)) = rules_for(deps, image).await? else {
        // Left alone (skip tag): its keys' grants are not ours to judge this run.
        if image.is_encrypted() {
            note_keys(deps, image, true, needs).await;
        }
        return Ok(());
    };
    if rules.is_empty() && !managed {
        return Ok(()); // not ours, and nothing asks for it
    }
    report.drift.images_checked += 1;
    let mut plan = SharePlan::from_rules(rules.iter().copied());
    if !may_copy {
        plan.copies.clear();
    }
    let enc = match deps.encryption(image).await {
        Ok(enc) => enc,
        Err(e) => {
            needs.insert(String::new(), None); // keys unknown: no grant may be pruned this run
            return Err(e);
        }
    };
    // Grants this image needs, per key, recorded before anything else can fail.
    let grant_accounts = if enc.customer.is_empty() {
        Ok(BTreeSet::new())
    } else {
        deps.expand(&plan.kms).await
    };
    for key in &enc.customer {
        let entry = needs
            .entry(key.arn.clone())
            .or_insert_with(|| Some(BTreeSet::new()));
        match (&grant_accounts, entry) {
            (Ok(accounts), Some(set)) => set.extend(accounts.iter().cloned()),
            (Err(_), e) => *e = None,
            _ => {}
        }
    }
    grant_accounts?;

    if let Some(key) = enc.aws_managed.first() {
        if plan.shares_anything() {
            // aws/ebs cannot be shared: the re-encrypted copy is shared instead.
            match deps.policy.reencrypt_with.get(&image.region) {
                Some(cmk) => {
                    let c = deps
                        .ensure_copy(
                            image,
                            &image.region,
                            Some(cmk),
                            CopyKind::Reencrypt,
                            &plan.rules,
                        )
                        .await?;
                    if c.status == "started" {
                        report.drift.copies_started += 1;
                    }
                    report.drift.copies.push(c);
                }
                None => {
                    return Err(Error::refused(
                        &image.id,
                        amishare::share::aws_managed_message(image, &key.arn),
                    ))
                }
            }
            return Ok(());
        }
    }

    // Snapshot permissions: what is there, what the plan wants.
    let snaps = snapshot_ids(image);
    let wanted_snap = if snaps.is_empty() {
        BTreeSet::new()
    } else {
        deps.expand(&plan.snapshots).await?
    };
    let mut missing_snap = 0usize;
    let mut unlisted_snap: Vec<(String, Vec<String>)> = Vec::new();
    for s in &snaps {
        let current = deps.aws.create_volume_permissions(&image.region, s).await?;
        missing_snap += wanted_snap.difference(&current).count();
        let extra: Vec<String> = current.difference(&wanted_snap).cloned().collect();
        if !extra.is_empty() {
            unlisted_snap.push((s.clone(), extra));
        }
    }
    let current_launch = deps
        .aws
        .launch_permissions(&image.region, &image.id)
        .await?;

    // Additions: the sharing service, exactly as the event functions use it. Snapshot
    // permissions are only written when some are missing.
    let mut apply = plan.clone();
    if missing_snap == 0 {
        apply.snapshots = AccountTargets::default();
    }
    let share = deps.apply_sharing(image, &apply, &enc).await?;
    report.drift.launch_permissions_added += share.launch_permissions_added.len();
    report.drift.snapshot_permissions_added += missing_snap;
    report.drift.grants_created += share.grants_created.len();

    // Copies missing in destination Regions.
    if !plan.copies.is_empty() {
        check_copy_plan(image, &plan)?;
        for dest in plan.copies.values().filter(|d| d.region != image.region) {
            let c = deps
                .ensure_copy(
                    image,
                    &dest.region,
                    dest.kms_key_id.as_deref(),
                    CopyKind::RegionCopy,
                    &dest.rules,
                )
                .await?;
            if c.status == "started" {
                report.drift.copies_started += 1;
            }
            report.drift.copies.push(c);
        }
    }

    // Pruning: managed images only.
    if !managed {
        return Ok(());
    }
    let mut wanted_launch = plan.launch.clone();
    wanted_launch.accounts.remove(&deps.account_id);
    let unlisted_launch = current_launch.missing_from(&wanted_launch);
    let prune = deps.policy.sweeper.prune_unlisted_shares;
    let describe = |lp: &LaunchPermissions| -> Vec<String> {
        let mut v: Vec<String> = lp
            .accounts
            .iter()
            .chain(&lp.organizations)
            .chain(&lp.organizational_units)
            .map(|a| format!("{}: {a}", image.id))
            .collect();
        if lp.public {
            v.push(format!("{}: public", image.id));
        }
        v
    };
    let snap_lines: Vec<String> = unlisted_snap
        .iter()
        .flat_map(|(s, accounts)| accounts.iter().map(move |a| format!("{s}: {a}")))
        .collect();
    if prune {
        if !unlisted_launch.is_empty() {
            deps.aws
                .remove_launch_permissions(&image.region, &image.id, &unlisted_launch)
                .await?;
        }
        for (s, accounts) in &unlisted_snap {
            let set: BTreeSet<String> = accounts.iter().cloned().collect();
            for b in batches(&set, SNAPSHOT_BATCH) {
                deps.aws
                    .remove_create_volume_permission(&image.region, s, &b)
                    .await?;
            }
        }
        report
            .drift
            .pruned
            .launch_permissions
            .extend(describe(&unlisted_launch));
        report.drift.pruned.snapshot_permissions.extend(snap_lines);
    } else {
        report
            .drift
            .would_prune
            .launch_permissions
            .extend(describe(&unlisted_launch));
        report
            .drift
            .would_prune
            .snapshot_permissions
            .extend(snap_lines);
    }
    Ok(())
}

/// Record the image's customer managed keys with no need of their own; `poison`: the image
/// is not ours to judge, so its keys' grants are never pruned this run.
async fn note_keys<P: Aws>(deps: &Deps<P>, image: &Image, poison: bool, needs: &mut KeyNeeds) {
    match deps.encryption(image).await {
        Ok(enc) => {
            for key in enc
                .customer
                .iter()
                .filter(|k| k.manager == KeyManager::Customer)
            {
                let e = needs
                    .entry(key.arn.clone())
                    .or_insert_with(|| Some(BTreeSet::new()));
                if poison {
                    *e = None;
                }
            }
        }
        Err(e) => {
            tracing::warn!(image_id = %image.id, error = %e, "keys of an image unknown; grant pruning skipped");
            needs.insert(String::new(), None);
        }
    }
}

/// Our grants (named `ami-share-<account>`) on keys of managed images that no remaining image
/// encrypted with that key targets.
async fn prune_grants<P: Aws + Inventory>(
    deps: &Deps<P>,
    run: &Run,
    needs: &KeyNeeds,
    report: &mut SweepReport,
) -> Result<(), Error> {
    if needs.get("").is_some() {
        return Ok(());
    }
    for (key_arn, need) in needs {
        let Some(need) = need else { continue };
        if !run.may_start() {
            report.not_reached.push("grant pruning".into());
            return Ok(());
        }
        let grants = deps.aws.list_grants(&run.region, key_arn).await?;
        for g in grants {
            let Some(account) = account_of_principal(&g.grantee_principal) else {
                continue;
            };
            if g.name.as_deref() != Some(grant_name(account).as_str()) || need.contains(account) {
                continue; // not ours, or still needed
            }
            let line = format!("{key_arn}: {account}");
            if deps.policy.sweeper.prune_unlisted_shares {
                deps.aws
                    .revoke_grant(&run.region, key_arn, &g.grant_id)
                    .await?;
                report.drift.pruned.grants.push(line);
            } else {
                report.drift.would_prune.grants.push(line);
            }
        }
    }
    Ok(())
}
