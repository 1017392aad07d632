//! What to share, with whom, and where to copy: the union of the matching rules.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::config::Rule;
use crate::ports::LaunchPermissions;

/// Organizations and OUs to expand into accounts, plus plain accounts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AccountTargets {
    pub accounts: BTreeSet<String>,
    pub organizations: BTreeSet<String>,
    pub organizational_units: BTreeSet<String>,
}

impl AccountTargets {
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
            && self.organizations.is_empty()
            && self.organizational_units.is_empty()
    }
}

/// A destination Region of copies, with the key to encrypt with there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyDestination {
    pub region: String,
    pub kms_key_id: Option<String>,
    pub rules: Vec<String>,
}

/// Everything the matching rules ask for one image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SharePlan {
    /// Names of the matching rules.
    pub rules: Vec<String>,
    /// Launch permissions the image must have.
    pub launch: LaunchPermissions,
    /// Whose accounts get createVolumePermission on every snapshot (from rules with
    /// `share_snapshots`). Never public.
    pub snapshots: AccountTargets,
    /// Whose accounts get grants on customer managed keys (from rules with `grant_kms`).
    pub kms: AccountTargets,
    /// Copy destinations, by Region.
    pub copies: BTreeMap<String, CopyDestination>,
    /// Rules that disagree on the key of a destination Region: `(region, rule, key)`.
    pub key_conflicts: Vec<(String, String, String)>,
}

impl SharePlan {
    /// The union of the given rules.
    pub fn from_rules<'a>(rules: impl IntoIterator<Item = &'a Rule>) -> SharePlan {
        let mut plan = SharePlan::default();
        for rule in rules {
            plan.rules.push(rule.name.clone());
            let sw = &rule.share_with;
            let targets = AccountTargets {
                accounts: sw.accounts.iter().cloned().collect(),
                organizations: sw.organizations.iter().cloned().collect(),
                organizational_units: sw.organizational_units.iter().cloned().collect(),
            };
            plan.launch
                .accounts
                .extend(targets.accounts.iter().cloned());
            plan.launch
                .organizations
                .extend(targets.organizations.iter().cloned());
            plan.launch
                .organizational_units
                .extend(targets.organizational_units.iter().cloned());
            plan.launch.public |= sw.public;
            if rule.share_snapshots {
                merge(&mut plan.snapshots, &targets);
            }
            if rule.grant_kms {
                merge(&mut plan.kms, &targets);
            }
            for c in &rule.copy_to {
                let dest = plan
                    .copies
                    .entry(c.region.clone())
                    .or_insert_with(|| CopyDestination {
                        region: c.region.clone(),
                        kms_key_id: None,
                        rules: Vec::new(),
                    });
                dest.rules.push(rule.name.clone());
                match (&dest.kms_key_id, &c.kms_key_id) {
                    (None, Some(k)) => dest.kms_key_id = Some(k.clone()),
                    (Some(have), Some(k)) if have != k => {
                        plan.key_conflicts
                            .push((c.region.clone(), rule.name.clone(), k.clone()));
                    }
                    _ => {}
                }
            }
        }
        plan
    }

    /// Whether anything is to be shared in the image's own Region.
    pub fn shares_anything(&self) -> bool {
        !self.launch.is_empty() || !self.snapshots.is_empty() || !self.kms.is_empty()
    }
}

fn merge(into: &mut AccountTargets, from: &AccountTargets) {
    into.accounts.extend(from.accounts.iter().cloned());
    into.organizations
        .extend(from.organizations.iter().cloned());
    into.organizational_units
        .extend(from.organizational_units.iter().cloned());
}

/// Split `accounts` into the batches of at most `size` that one call may carry.
pub fn batches(accounts: &BTreeSet<String>, size: usize) -> Vec<Vec<String>> {
    let all: Vec<String> = accounts.iter().cloned().collect();
    all.chunks(size.max(1)).map(<[String]>::to_vec).collect()
}
