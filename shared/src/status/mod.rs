//! `ami-share status`: where an image is, and why not where the policy wants it. For every
//! target of the policy, one row per (account, OU or organization; Region): launch permission,
//! snapshot permission, key access, the copy, the published parameter and the target-owned
//! copy, each missing piece with a reason code from [`REASONS`] and its fix.
//!
//! - [`read`]: what AWS says (reads only);
//! - [`judge`]: the rows, from what was read and what the policy says (pure).

pub mod judge;
pub mod read;

use serde::Serialize;

pub use crate::reasons::{Reason, REASONS};
pub use judge::{judge, problem_status};
pub use read::{observe, Observed};

/// Where the long reads say what they are doing (the CLI: a line on stderr).
pub trait Progress: Sync {
    fn step(&self, what: &str);
}

/// No progress shown.
pub struct Silent;

impl Progress for Silent {
    fn step(&self, _: &str) {}
}

/// Why the image is not one the policy distributes at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Owned by another account.
    NotOwned(String),
    /// Claims to be our copy; EC2's lineage says otherwise.
    Forged(String),
    /// Our copy, whose source is gone.
    SourceGone(String),
    /// No rule of the policy selects it (why, when a rule refused it).
    OutsideRule(Option<String>),
    /// Disabled by retirement (or by hand): nothing is shared any more.
    Retired(String),
}

/// An OU or organization ARN as its id (`ou-…`, `o-…`), for the table; the JSON keeps the ARN.
fn short(target: &str) -> &str {
    if target.starts_with("arn:") {
        target.rsplit('/').next().unwrap_or(target)
    } else {
        target
    }
}

/// One piece of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cell {
    Ok,
    Missing,
    /// The policy does not ask for it here.
    NotAsked,
    /// Cannot be there yet: the image is not available in the Region (see the copy).
    Blocked,
    /// The parameter names another (newer) image.
    Elsewhere,
}

impl Cell {
    fn label(self) -> &'static str {
        match self {
            Cell::Ok => "ok",
            Cell::Missing => "MISSING",
            Cell::NotAsked => "-",
            Cell::Blocked => "blocked",
            Cell::Elsewhere => "other",
        }
    }
}

/// One target in one Region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// Account id, OU or organization ARN.
    pub target: String,
    /// `account`, `ou`, `organization`, `account-in-group` (with `--accounts`) or
    /// `target-account` (`copy_into`).
    pub kind: &'static str,
    pub region: String,
    /// The image there (the source, or its copy).
    pub image_id: Option<String>,
    pub launch: Cell,
    pub snapshots: Cell,
    pub key: Cell,
    pub copy: Cell,
    pub parameter: Cell,
    pub target_copy: Cell,
    pub reasons: Vec<Reason>,
}

/// The answer for one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub image_id: String,
    pub region: String,
    /// The source the rows are about (the image itself, or the source of our copy).
    pub source_image_id: String,
    pub source_region: String,
    pub rules: Vec<String>,
    /// Every target served: no row and no problem has a reason.
    pub served: bool,
    /// Why the image is not distributed at all (then there are no rows).
    pub problems: Vec<Reason>,
    pub rows: Vec<Row>,
}

impl Status {
    /// The table for people.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let from = if self.source_image_id == self.image_id {
            String::new()
        } else {
            format!(
                " (a copy of {} in {})",
                self.source_image_id, self.source_region
            )
        };
        let _ = writeln!(
            out,
            "{} in {}{from}: {} (rules: {})",
            self.image_id,
            self.region,
            if self.served {
                "served everywhere"
            } else {
                "NOT served everywhere"
            },
            if self.rules.is_empty() {
                "none".to_string()
            } else {
                self.rules.join(", ")
            }
        );
        for p in &self.problems {
            let _ = writeln!(out, "  {}: {}\n    fix: {}", p.code, p.detail, p.fix);
        }
        if self.rows.is_empty() {
            return out;
        }
        let _ = writeln!(
            out,
            "\n{:<20} {:<15} {:<22} {:<7} {:<9} {:<7} {:<7} {:<9} {:<11} REASONS",
            "TARGET",
            "REGION",
            "IMAGE",
            "LAUNCH",
            "SNAPSHOTS",
            "KEY",
            "COPY",
            "PARAMETER",
            "TARGET-COPY"
        );
        for r in &self.rows {
            let codes: Vec<&str> = r.reasons.iter().map(|x| x.code).collect();
            let _ = writeln!(
                out,
                "{:<20} {:<15} {:<22} {:<7} {:<9} {:<7} {:<7} {:<9} {:<11} {}",
                short(&r.target),
                r.region,
                r.image_id.as_deref().unwrap_or("-"),
                r.launch.label(),
                r.snapshots.label(),
                r.key.label(),
                r.copy.label(),
                r.parameter.label(),
                r.target_copy.label(),
                codes.join(",")
            );
        }
        out.push_str(&self.details());
        out
    }

    /// Each distinct reason of the rows, with its fix (the first 20).
    fn details(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let mut seen = std::collections::BTreeSet::new();
        let details: Vec<&Reason> = self
            .rows
            .iter()
            .flat_map(|r| &r.reasons)
            .filter(|x| seen.insert((x.code, x.detail.clone())))
            .collect();
        if !details.is_empty() {
            let _ = writeln!(out, "\nwhy, and the fix:");
            for x in details.iter().take(20) {
                let _ = writeln!(out, "  {}: {}\n    fix: {}", x.code, x.detail, x.fix);
            }
            if details.len() > 20 {
                let _ = writeln!(out, "  … {} more (--json lists all)", details.len() - 20);
            }
        }
        out
    }
}

/// The status of `image_id` in `region`: read, then judged.
pub async fn status<P>(
    deps: &crate::deps::Deps<P>,
    region: &str,
    image_id: &str,
    expand: bool,
    now: chrono::DateTime<chrono::Utc>,
    progress: &dyn Progress,
) -> crate::error::Result<Status>
where
    P: crate::ports::Aws + crate::publish::Publishing + crate::target_copies::TargetAccounts,
{
    Ok(
        match observe(deps, region, image_id, expand, progress).await? {
            Ok(o) => judge(&o, expand, now),
            Err((asked, problem)) => problem_status(&asked, &problem),
        },
    )
}

/// A rule's newest available source image in `region` (what `status --rule` reports on):
/// the images of the Region's listing the rule selects, newest by creation.
pub async fn newest_of_rule<P>(
    deps: &crate::deps::Deps<P>,
    region: &str,
    rule: &str,
    progress: &dyn Progress,
) -> crate::error::Result<Option<String>>
where
    P: crate::ports::Aws + crate::sweep::inventory::Inventory,
{
    use crate::plan::{classify, matching_rules, ImageKind};
    if !deps.policy.rules.iter().any(|r| r.name == rule) {
        let names: Vec<&str> = deps.policy.rules.iter().map(|r| r.name.as_str()).collect();
        return Err(crate::error::Error::Config(format!(
            "the policy has no rule {rule:?} (its rules: {})",
            names.join(", ")
        )));
    }
    progress.step(&format!("listing the account's images in {region}"));
    let images = deps.aws.list_own_images(region).await?;
    Ok(images
        .iter()
        .filter(|i| i.state == crate::ports::ImageState::Available)
        .filter(|i| matches!(classify(i), ImageKind::Source { .. }))
        .filter(|i| {
            matching_rules(&deps.policy, i, &deps.account_id)
                .is_ok_and(|rs| rs.iter().any(|r| r.name == rule))
        })
        .max_by_key(|i| crate::publish::publication_order(i))
        .map(|i| i.id.clone()))
}
