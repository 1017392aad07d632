//! The rows: what the policy asks of each target in each Region, against what was read.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::read::{Observed, RegionView, TargetView};
use super::{Cell, Problem, Reason, Row, Status};
use crate::allowed::{self, Verdict};
use crate::plan::Desired;
use crate::ports::{Image, ImageState};

/// The status of an image the policy does not distribute.
pub fn problem_status(asked: &Image, problem: &Problem) -> Status {
    let reason = match problem {
        Problem::NotOwned(owner) => Reason::new("not-ours", format!("owned by account {owner}")),
        Problem::Forged(why) => Reason::new("forged-provenance", why.clone()),
        Problem::SourceGone(source) => {
            Reason::new("source-gone", format!("its source {source} is gone"))
        }
        Problem::Retired(why) => Reason::new("retired", why.clone()),
        Problem::OutsideRule(why) => Reason::new(
            "outside-rule",
            why.clone()
                .unwrap_or_else(|| format!("no rule matches {} ({})", asked.id, asked.name)),
        ),
    };
    Status {
        image_id: asked.id.clone(),
        region: asked.region.clone(),
        source_image_id: asked.id.clone(),
        source_region: asked.region.clone(),
        rules: Vec::new(),
        served: false,
        problems: vec![reason],
        rows: Vec::new(),
    }
}

/// A target of the share, as a row names it.
struct Target<'a> {
    id: &'a str,
    kind: &'static str,
    /// For `account-in-group`: the OU or organization it is reached through.
    via: Option<&'a str>,
}

/// The rows for every target in every Region; `expand`: OUs and organizations also as one
/// row per member account.
pub fn judge(o: &Observed, expand: bool, now: DateTime<Utc>) -> Status {
    let targets = share_targets(o, expand);
    let retired = retired(&o.source, now);
    let mut rows = Vec::new();
    for view in &o.regions {
        for t in &targets {
            let mut row = share_row(o, view, t, now);
            if let Some(r) = &retired {
                row.reasons.push(r.clone());
            }
            rows.push(row);
        }
    }
    rows.extend(o.targets.iter().map(target_row));
    let served = rows.iter().all(|r| r.reasons.is_empty());
    Status {
        image_id: o.asked.id.clone(),
        region: o.asked.region.clone(),
        source_image_id: o.source.id.clone(),
        source_region: o.source.region.clone(),
        rules: o.rules.clone(),
        served,
        problems: Vec::new(),
        rows,
    }
}

fn retired(source: &Image, now: DateTime<Utc>) -> Option<Reason> {
    if source.state == ImageState::Disabled {
        return Some(Reason::new("retired", format!("{} is disabled", source.id)));
    }
    let at = source.deprecation_time.as_deref()?;
    let t = DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc);
    (t <= now).then(|| Reason::new("retired", format!("{} is deprecated since {at}", source.id)))
}

fn share_targets(o: &Observed, expand: bool) -> Vec<Target<'_>> {
    let p = &o.plan;
    let own = o.source.owner_id.as_str();
    let accounts: BTreeSet<&String> = p
        .launch
        .accounts
        .iter()
        .chain(&p.snapshots.accounts)
        .chain(&p.kms.accounts)
        .chain(&p.kms_policy.accounts)
        .filter(|a| a.as_str() != own)
        .collect();
    let ous: BTreeSet<&String> = p
        .launch
        .organizational_units
        .iter()
        .chain(&p.snapshots.organizational_units)
        .chain(&p.kms.organizational_units)
        .chain(&p.kms_policy.organizational_units)
        .collect();
    let orgs: BTreeSet<&String> = p
        .launch
        .organizations
        .iter()
        .chain(&p.snapshots.organizations)
        .chain(&p.kms.organizations)
        .chain(&p.kms_policy.organizations)
        .collect();
    let mut out: Vec<Target> = accounts
        .into_iter()
        .map(|a| Target {
            id: a,
            kind: "account",
            via: None,
        })
        .collect();
    for (kind, groups) in [("organization", orgs), ("ou", ous)] {
        for g in groups {
            out.push(Target {
                id: g,
                kind,
                via: None,
            });
            if expand {
                for m in o.members.get(g).into_iter().flatten() {
                    if m != own {
                        out.push(Target {
                            id: m,
                            kind: "account-in-group",
                            via: Some(g),
                        });
                    }
                }
            }
        }
    }
    out
}

fn empty_row(target: &str, kind: &'static str, region: &str, image_id: Option<String>) -> Row {
    Row {
        target: target.to_string(),
        kind,
        region: region.to_string(),
        image_id,
        launch: Cell::NotAsked,
        snapshots: Cell::NotAsked,
        key: Cell::NotAsked,
        copy: Cell::NotAsked,
        parameter: Cell::NotAsked,
        target_copy: Cell::NotAsked,
        reasons: Vec::new(),
    }
}

/// An account whose Allowed AMIs (its EC2 declarative policy) exclude the image there: it is
/// shared, but invisible to the account.
fn allowed_there(
    o: &Observed,
    image: &Image,
    t: &Target,
    now: DateTime<Utc>,
    reasons: &mut Vec<Reason>,
) {
    if !matches!(t.kind, "account" | "account-in-group") {
        return;
    }
    let Some(Some(settings)) = o.allowed.get(t.id) else {
        return;
    };
    if let Verdict::NotAllowed { why } = allowed::judge(image, t.id, Some(settings), now) {
        reasons.push(Reason::new(
            "not-allowed-in-consumer",
            format!("{} in {}: {why}", image.id, t.id),
        ));
    }
}

fn share_row(o: &Observed, v: &RegionView, t: &Target, now: DateTime<Utc>) -> Row {
    let image_id = v.image.as_ref().map(|i| i.id.clone());
    let mut row = empty_row(t.id, t.kind, &v.region, image_id);
    if let (Some(acc), "account") = (o.accounts.get(t.id).and_then(Option::as_ref), t.kind) {
        if !acc.is_active() {
            let why = format!("account {} is {} in the organization", t.id, acc.status);
            row.reasons.push(Reason::new("account-suspended", why));
        }
    }
    if v.region != o.source.region {
        row.copy = copy_cell(v, &mut row.reasons);
    }
    let Some(image) = v
        .image
        .as_ref()
        .filter(|i| i.state == ImageState::Available)
    else {
        (row.launch, row.snapshots, row.key) = (Cell::Blocked, Cell::Blocked, Cell::Blocked);
        return row;
    };
    let desired = Desired::new(image, &o.plan, &o.members, &o.source.owner_id, false, false);
    allowed_there(o, image, t, now, &mut row.reasons);
    row.launch = launch_cell(o, v, t, &desired, &mut row.reasons);
    row.snapshots = snapshot_cell(o, v, t, &desired, &mut row.reasons);
    row.key = key_cell(o, v, t, &desired, &mut row.reasons);
    row.parameter = parameter_cell(v, &image.id, &mut row.reasons);
    row
}

fn copy_cell(v: &RegionView, reasons: &mut Vec<Reason>) -> Cell {
    let region = &v.region;
    let (code, detail) = match &v.image {
        Some(i) if matches!(i.state, ImageState::Available | ImageState::Disabled) => {
            return Cell::Ok
        }
        Some(i) if i.state == ImageState::Pending => (
            "copy-pending",
            format!("the copy {} in {region} is pending", i.id),
        ),
        Some(i) => (
            "copy-failed",
            format!("the copy {} in {region} is {}", i.id, i.state.as_str()),
        ),
        None if v.waiting_in_line > 0 => (
            "copy-waiting",
            format!(
                "no copy in {region} yet; {} copies wait in the Region's copy line",
                v.waiting_in_line
            ),
        ),
        None => ("copy-missing", format!("no copy in {region}")),
    };
    reasons.push(Reason::new(code, detail));
    Cell::Missing
}

/// The members of a group (empty when it was not listed).
fn members<'a>(o: &'a Observed, group: &str) -> impl Iterator<Item = &'a String> {
    o.members.get(group).into_iter().flatten()
}

fn launch_cell(
    o: &Observed,
    v: &RegionView,
    t: &Target,
    d: &Desired,
    reasons: &mut Vec<Reason>,
) -> Cell {
    let l = &v.launch;
    let (asked, has) = match (t.kind, t.via) {
        ("account", _) => (
            d.launch.accounts.contains(t.id),
            l.accounts.contains(t.id)
                || l.organizational_units
                    .iter()
                    .chain(&l.organizations)
                    .any(|g| members(o, g).any(|m| m == t.id)),
        ),
        ("ou", _) => (
            d.launch.organizational_units.contains(t.id),
            l.organizational_units.contains(t.id),
        ),
        ("organization", _) => (
            d.launch.organizations.contains(t.id),
            l.organizations.contains(t.id),
        ),
        (_, Some(g)) => (
            d.launch.organizational_units.contains(g) || d.launch.organizations.contains(g),
            l.organizational_units.contains(g)
                || l.organizations.contains(g)
                || l.accounts.contains(t.id),
        ),
        _ => (false, false),
    };
    judged(asked, has, reasons, || {
        Reason::new(
            "not-shared",
            format!("{} has no launch permission for {}", t.id, v.region),
        )
    })
}

fn judged(asked: bool, has: bool, reasons: &mut Vec<Reason>, why: impl FnOnce() -> Reason) -> Cell {
    match (asked, has) {
        (false, _) => Cell::NotAsked,
        (true, true) => Cell::Ok,
        (true, false) => {
            reasons.push(why());
            Cell::Missing
        }
    }
}

/// The accounts a row stands for: the account, or a group's members.
fn accounts_of<'a>(o: &'a Observed, t: &'a Target) -> Vec<&'a str> {
    match t.kind {
        "ou" | "organization" => members(o, t.id).map(String::as_str).collect(),
        _ => vec![t.id],
    }
}

/// Which of `wanted` lack what `has` gives, as a detail (`None`: none lack it).
fn lacking(wanted: &[&str], has: &BTreeSet<String>) -> Option<String> {
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|a| !has.contains(*a))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let first: Vec<&str> = missing.iter().copied().take(5).collect();
    let more = if missing.len() > 5 {
        format!(" and {} more", missing.len() - 5)
    } else {
        String::new()
    };
    Some(format!(
        "{} of {} accounts: {}{more}",
        missing.len(),
        wanted.len(),
        first.join(", ")
    ))
}

/// A per-account cell: the accounts the row stands for that `desired` names must all be in
/// `has` (`None`: nothing to read there).
fn accounts_cell(
    o: &Observed,
    t: &Target,
    desired: &BTreeSet<String>,
    has: Option<&BTreeSet<String>>,
    reasons: &mut Vec<Reason>,
    why: impl FnOnce(String) -> Reason,
) -> Cell {
    let Some(has) = has else {
        return Cell::NotAsked;
    };
    let wanted: Vec<&str> = accounts_of(o, t)
        .into_iter()
        .filter(|a| desired.contains(*a))
        .collect();
    let missing = lacking(&wanted, has);
    judged(!wanted.is_empty(), missing.is_none(), reasons, || {
        why(missing.unwrap_or_default())
    })
}

fn snapshot_cell(
    o: &Observed,
    v: &RegionView,
    t: &Target,
    d: &Desired,
    reasons: &mut Vec<Reason>,
) -> Cell {
    let has = v.snapshot_accounts.as_ref();
    accounts_cell(o, t, &d.snapshot_accounts, has, reasons, |who| {
        let what = format!("snapshots in {} not shared with {who}", v.region);
        Reason::new("snapshot-not-shared", what)
    })
}

fn key_cell(
    o: &Observed,
    v: &RegionView,
    t: &Target,
    d: &Desired,
    reasons: &mut Vec<Reason>,
) -> Cell {
    if d.key_policy.contains(t.id) {
        let refusals = v.key_policy_refusals.join("; ");
        return judged(true, refusals.is_empty(), reasons, || {
            Reason::new("key-policy-refuses", refusals)
        });
    }
    let has = v.grant_accounts.as_ref();
    accounts_cell(o, t, &d.grant_accounts, has, reasons, |who| {
        Reason::new(
            "no-key-access",
            format!("no grant in {} for {who}", v.region),
        )
    })
}

fn parameter_cell(v: &RegionView, image_id: &str, reasons: &mut Vec<Reason>) -> Cell {
    if v.parameters.is_empty() {
        return Cell::NotAsked;
    }
    let missing: Vec<&String> = v
        .parameters
        .iter()
        .filter(|(_, value)| value.is_none())
        .map(|(n, _)| n)
        .collect();
    if let Some(name) = missing.first() {
        reasons.push(Reason::new(
            "not-published",
            format!("{name} does not exist in {}", v.region),
        ));
        return Cell::Missing;
    }
    if v.parameters
        .values()
        .any(|value| value.as_deref() == Some(image_id))
    {
        Cell::Ok
    } else {
        Cell::Elsewhere
    }
}

fn target_row(t: &TargetView) -> Row {
    let mut row = empty_row(&t.account, "target-account", &t.region, None);
    let (code, detail) = match &t.copy {
        Err(e) => (
            "role-not-assumable",
            format!("account {} could not be read ({e})", t.account),
        ),
        Ok(None) => (
            "target-copy-missing",
            format!(
                "account {} holds no copy in {} (rule {})",
                t.account, t.region, t.rule
            ),
        ),
        Ok(Some(i)) => {
            row.image_id = Some(i.id.clone());
            match i.state {
                ImageState::Available | ImageState::Disabled => {
                    row.target_copy = Cell::Ok;
                    if let Some(key) = t.watermark.as_ref().filter(|k| !i.watermarks.contains(k)) {
                        row.reasons.push(Reason::new(
                            "target-copy-unwatermarked",
                            format!("{} lacks {key}, which its source carries", i.id),
                        ));
                    }
                    return row;
                }
                ImageState::Pending => ("target-copy-pending", format!("{} is pending", i.id)),
                _ => (
                    "target-copy-failed",
                    format!("{} is {}", i.id, i.state.as_str()),
                ),
            }
        }
    };
    row.target_copy = Cell::Missing;
    row.reasons.push(Reason::new(code, detail));
    row
}

/// Counts of the reason codes over the rows (the night's report and the summary line).
pub fn reason_counts(status: &Status) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for r in status
        .rows
        .iter()
        .flat_map(|r| &r.reasons)
        .chain(&status.problems)
    {
        *m.entry(r.code).or_insert(0) += 1;
    }
    m
}
