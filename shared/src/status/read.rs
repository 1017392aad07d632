//! What AWS says of one image and everything the policy made of it: the image (or, for one of
//! our copies, its source, checked against EC2's lineage), its copy in every Region its rules
//! reach, each one's launch permissions, snapshot permissions, key grants and key policies, the
//! rules' parameters, the organization's word on each account, and the copies in target
//! accounts. Reads only.

use std::collections::{BTreeMap, BTreeSet};

use futures::stream::{self, StreamExt};

use super::{Problem, Progress};
use crate::consumers::{read_settings, Consumer, Reading, READ_CONCURRENCY};
use crate::deps::{Deps, Encryption};
use crate::error::{Error, Result};
use crate::names::{copy_name, CopyKind};
use crate::plan::{classify, matching_rules, verify_copy, ImageKind, SharePlan, SkipReason};
use crate::ports::{Aws, Image, ImageState, LaunchPermissions, OrgAccount};
use crate::publish::Publishing;
use crate::share::key_policy::{check, OrgTarget};
use crate::target_copies::TargetAccounts;

/// Everything read for one image.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The image asked about.
    pub asked: Image,
    /// The source the status is about (the asked image, or the source of our copy).
    pub source: Image,
    pub rules: Vec<String>,
    pub plan: SharePlan,
    /// Organization and OU ARN → their active accounts.
    pub members: BTreeMap<String, BTreeSet<String>>,
    /// The source's Region first, then each copy Region.
    pub regions: Vec<RegionView>,
    /// Each plain account of the plan, as the organization knows it (`None`: not a member).
    pub accounts: BTreeMap<String, Option<OrgAccount>>,
    /// Copies in target accounts (`copy_into`), one per (account, Region).
    pub targets: Vec<TargetView>,
    /// Each consumer account's Allowed AMIs settings as the organization's EC2 declarative
    /// policy gives them (`None`: none set, or not readable).
    pub allowed: BTreeMap<String, Option<crate::allowed::Settings>>,
}

/// One Region: the image there and what it gives.
#[derive(Debug, Clone, Default)]
pub struct RegionView {
    pub region: String,
    /// The source, or the copy found (available, else pending, else failed).
    pub image: Option<Image>,
    /// Entries waiting in the Region's copy line (read when no copy was found).
    pub waiting_in_line: usize,
    pub launch: LaunchPermissions,
    /// Accounts every snapshot is shared with (`None`: the image has no snapshot to read).
    pub snapshot_accounts: Option<BTreeSet<String>>,
    /// Accounts with a grant on every customer managed key (`None`: no such key).
    pub grant_accounts: Option<BTreeSet<String>>,
    /// Key policies that refuse the OUs and organizations of `kms_access: key_policy`.
    pub key_policy_refusals: Vec<String>,
    /// Each rule's parameter and the image it names there (`None`: no such parameter).
    pub parameters: BTreeMap<String, Option<String>>,
}

/// A target account's copy (`copy_into`) in one Region.
#[derive(Debug, Clone)]
pub struct TargetView {
    pub account: String,
    pub region: String,
    pub rule: String,
    /// The copy found (`Ok(None)`: none), or why the account could not be read.
    pub copy: std::result::Result<Option<Image>, String>,
    /// The rule's watermark key when the source carries it: EC2 carried it to copies made
    /// since.
    pub watermark: Option<String>,
}

/// Read everything about `image_id` in `region`. `Ok(Err(problem))` when the image is not
/// one the policy distributes (not ours, a forged copy, no rule selects it).
pub async fn observe<P: Aws + Publishing + TargetAccounts>(
    deps: &Deps<P>,
    region: &str,
    image_id: &str,
    expand: bool,
    progress: &dyn Progress,
) -> Result<std::result::Result<Observed, (Image, Problem)>> {
    progress.step(&format!("reading {image_id} in {region}"));
    let asked = deps
        .aws
        .describe_image(region, image_id)
        .await?
        .ok_or_else(|| {
            Error::refused(
                image_id,
                format!(
                    "no such image in {region} visible to account {} (check the Region and the id)",
                    deps.account_id
                ),
            )
        })?;
    let source = match source_of(deps, &asked).await? {
        Ok(s) => s,
        Err(p) => return Ok(Err((asked, p))),
    };
    if source.state == ImageState::Disabled {
        return Ok(Err((
            asked,
            Problem::Retired(format!("{} is disabled", source.id)),
        )));
    }
    let rules = match matching_rules(&deps.policy, &source, &deps.account_id) {
        Ok(r) if !r.is_empty() => r,
        Ok(_) => return Ok(Err((asked, Problem::OutsideRule(None)))),
        Err(why) => return Ok(Err((asked, Problem::OutsideRule(Some(why.to_string()))))),
    };
    let plan =
        SharePlan::from_rules(deps.policy.kms_access, rules.iter().copied()).for_source(true);
    let groups: BTreeSet<&String> = plan
        .launch
        .organizations
        .iter()
        .chain(&plan.launch.organizational_units)
        .chain(plan.snapshots.groups())
        .chain(plan.kms.groups())
        .chain(plan.into.iter().flat_map(|i| i.targets.groups()))
        .collect();
    progress.step(&format!("listing {} organizations and OUs", groups.len()));
    let members = deps.members_of(groups).await?;
    let mut regions =
        vec![region_view(deps, &source.region, Some(source.clone()), &plan, &rules).await?];
    for dest in plan.copies.values().filter(|d| d.region != source.region) {
        progress.step(&format!("reading the copy in {}", dest.region));
        let copy = find_copy(deps, &source, &dest.region).await?;
        regions.push(region_view(deps, &dest.region, copy, &plan, &rules).await?);
    }
    let mut accounts = BTreeMap::new();
    for a in plan.plain_accounts() {
        accounts.insert(a.clone(), deps.aws.describe_account(a).await?);
    }
    let targets = target_views(deps, &source, &plan, &members, progress).await;
    let allowed = allowed_settings(deps, &plan, &members, expand, progress).await;
    Ok(Ok(Observed {
        rules: rules.iter().map(|r| r.name.clone()).collect(),
        asked,
        source,
        plan,
        members,
        regions,
        accounts,
        targets,
        allowed,
    }))
}

/// The consumers' Allowed AMIs from their EC2 declarative policies: the plain accounts of the
/// share, and with `expand` every member of its OUs and organizations; one read each.
async fn allowed_settings<P: Aws>(
    deps: &Deps<P>,
    plan: &SharePlan,
    members: &BTreeMap<String, BTreeSet<String>>,
    expand: bool,
    progress: &dyn Progress,
) -> BTreeMap<String, Option<crate::allowed::Settings>> {
    let mut accounts: BTreeSet<&String> = plan.launch.accounts.iter().collect();
    if expand {
        for g in plan
            .launch
            .organizations
            .iter()
            .chain(&plan.launch.organizational_units)
        {
            accounts.extend(members.get(g).into_iter().flatten());
        }
    }
    accounts.remove(&deps.account_id);
    progress.step(&format!(
        "reading the Allowed AMIs of {} accounts",
        accounts.len()
    ));
    // Several at once: the rate limiter paces them (thousands with --accounts).
    let accounts: Vec<Consumer> = accounts.into_iter().map(|a| (a.clone(), false)).collect();
    let how = Reading {
        region: "",
        roles: None,
        budget: None,
        may_start: &|| true,
        reuse: false,
        through_role: false,
    };
    read_settings(deps, &accounts, &how)
        .await
        .into_iter()
        .map(|(a, s)| (a, s.ok()))
        .collect()
}

/// The source of the asked image: itself, or the source EC2's lineage names for our copy.
async fn source_of<P: Aws>(
    deps: &Deps<P>,
    asked: &Image,
) -> Result<std::result::Result<Image, Problem>> {
    if asked.owner_id != deps.account_id {
        return Ok(Err(Problem::NotOwned(asked.owner_id.clone())));
    }
    match classify(asked) {
        ImageKind::Source { .. } => Ok(Ok(asked.clone())),
        ImageKind::Forged { why, .. } => Ok(Err(Problem::Forged(why))),
        ImageKind::OurCopy(claim) => {
            let source = deps
                .aws
                .describe_image(&claim.source_region, &claim.source_image_id)
                .await?;
            let mut copy = asked.clone();
            match verify_copy(&mut copy, &claim, source.as_ref(), &deps.account_id) {
                Ok(()) => Ok(source.ok_or(Problem::SourceGone(claim.source_image_id))),
                Err(SkipReason::ForgedProvenance(why)) => Ok(Err(Problem::Forged(why))),
                Err(other) => Ok(Err(Problem::SourceGone(other.to_string()))),
            }
        }
    }
}

/// The source's copy in `region`, found by its deterministic name: available first, then
/// pending, then failed.
async fn find_copy<P: Aws>(deps: &Deps<P>, source: &Image, region: &str) -> Result<Option<Image>> {
    let name = copy_name(
        &source.name,
        &source.region,
        &source.id,
        CopyKind::RegionCopy,
        0,
    );
    let found = deps
        .aws
        .find_own_images_by_name(region, &format!("{name}*"))
        .await?;
    let rank = |i: &Image| match i.state {
        ImageState::Available | ImageState::Disabled => 0,
        ImageState::Pending => 1,
        _ => 2,
    };
    Ok(found
        .into_iter()
        .filter(|i| {
            i.state != ImageState::Deregistered && i.source_image_id.as_deref() == Some(&source.id)
        })
        .min_by_key(rank))
}

async fn region_view<P: Aws + Publishing>(
    deps: &Deps<P>,
    region: &str,
    image: Option<Image>,
    plan: &SharePlan,
    rules: &[&crate::config::Rule],
) -> Result<RegionView> {
    let mut view = RegionView {
        region: region.to_string(),
        ..RegionView::default()
    };
    let names: Vec<String> = rules
        .iter()
        .filter_map(|r| r.publish.as_ref().map(|p| p.parameter.clone()))
        .collect();
    if !names.is_empty() {
        let found = deps.aws.get_parameters(region, &names).await?;
        for n in names {
            let value = found.get(&n).map(|p| p.value.clone());
            view.parameters.insert(n, value);
        }
    }
    let Some(image) = image else {
        view.waiting_in_line = deps.aws.line_length(region).await?;
        return Ok(view);
    };
    if image.state == ImageState::Available || image.state == ImageState::Disabled {
        view.launch = deps.aws.launch_permissions(region, &image.id).await?;
        read_snapshots_and_keys(deps, region, &image, plan, &mut view).await?;
    }
    view.image = Some(image);
    Ok(view)
}

async fn read_snapshots_and_keys<P: Aws>(
    deps: &Deps<P>,
    region: &str,
    image: &Image,
    plan: &SharePlan,
    view: &mut RegionView,
) -> Result<()> {
    let mut shared: Option<BTreeSet<String>> = None;
    for v in &image.volumes {
        let with = deps
            .aws
            .create_volume_permissions(region, &v.snapshot_id)
            .await?;
        shared = Some(match shared {
            None => with,
            Some(s) => s.intersection(&with).cloned().collect(),
        });
    }
    view.snapshot_accounts = shared;
    if !image.is_encrypted() {
        return Ok(());
    }
    let Encryption { customer, .. } = deps.encryption(image).await?;
    let targets: BTreeSet<OrgTarget> = plan
        .kms_policy
        .groups()
        .filter_map(|arn| OrgTarget::from_arn(arn))
        .collect();
    let mut granted: Option<BTreeSet<String>> = None;
    for key in &customer {
        let grants = deps.aws.list_grants(region, &key.arn).await?;
        let accounts: BTreeSet<String> = grants
            .iter()
            .filter_map(|g| account_of_principal(&g.grantee_principal))
            .collect();
        granted = Some(match granted {
            None => accounts,
            Some(s) => s.intersection(&accounts).cloned().collect(),
        });
        if !targets.is_empty() {
            let doc = deps.aws.key_policy(region, &key.arn).await?;
            if let Err(gap) = check(&doc, &targets) {
                view.key_policy_refusals.push(gap.message(&key.arn));
            }
        }
    }
    view.grant_accounts = granted;
    Ok(())
}

/// The account of a grantee principal (`arn:aws:iam::<account>:root`, or a bare account).
fn account_of_principal(p: &str) -> Option<String> {
    let account = p
        .strip_prefix("arn:aws:iam::")
        .and_then(|r| r.split(':').next())
        .unwrap_or(p);
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()))
        .then(|| account.to_string())
}

/// Every `copy_into` target account's copy of the source, in every Region of the rule.
async fn target_views<P: Aws + TargetAccounts>(
    deps: &Deps<P>,
    source: &Image,
    plan: &SharePlan,
    members: &BTreeMap<String, BTreeSet<String>>,
    progress: &dyn Progress,
) -> Vec<TargetView> {
    let mut wanted = Vec::new();
    for into in &plan.into {
        let accounts = into.targets.accounts(members, &deps.account_id);
        progress.step(&format!(
            "reading {} target accounts of rule {}",
            accounts.len(),
            into.rule
        ));
        let watermark = into
            .watermark
            .as_ref()
            .map(|w| format!("{}:{w}", deps.account_id))
            .filter(|key| source.watermarks.contains(key));
        for account in accounts {
            for (region, _) in &into.regions {
                wanted.push((
                    account.clone(),
                    region.clone(),
                    into.rule.clone(),
                    watermark.clone(),
                ));
            }
        }
    }
    // Several at once (each account through its role), in the order listed.
    stream::iter(wanted)
        .map(|(account, region, rule, watermark)| async move {
            let copy = match deps
                .aws
                .target_copies(&account, &region, &deps.account_id)
                .await
            {
                Ok(images) => Ok(images
                    .into_iter()
                    .filter(|i| i.source_image_id.as_deref() == Some(&source.id))
                    .min_by_key(|i| i.state != ImageState::Available)),
                Err(e) => Err(format!("{}: {}", e.code, e.message)),
            };
            TargetView {
                account,
                region,
                rule,
                copy,
                watermark,
            }
        })
        .buffered(READ_CONCURRENCY)
        .collect()
        .await
}
