//! What to share, with whom, and where to copy: the union of the matching rules.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::config::{CopyInto, KmsAccess, Rule};
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
    /// A time-based copy's completion duration (the shortest the rules ask for).
    pub completion_minutes: Option<u32>,
}

/// One rule's copies into target accounts (`copy_into`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IntoPlan {
    pub rule: String,
    /// The target accounts and OUs (expanded to their active accounts).
    pub targets: AccountTargets,
    /// Target Regions, each with the key named for it (`None`: the target's default EBS key).
    pub regions: Vec<(String, Option<String>)>,
    /// How the targets reach the source's customer managed keys (the rule's `kms_access`).
    pub kms_access: KmsAccess,
    pub deprecate_superseded: bool,
    /// The parameter written in each target account and Region (`publish.in_target_accounts`).
    pub parameter: Option<String>,
    /// Time-based copies, per target Region (`copy_into.regions[].completion_minutes`).
    pub completion_minutes: BTreeMap<String, u32>,
    /// The rule's watermark name: the target copies carry it from the source (EC2 copies it).
    pub watermark: Option<String>,
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
    /// Whose accounts get grants on customer managed keys (from rules with `grant_kms`;
    /// under `kms_access: key_policy` only their plain accounts).
    pub kms: AccountTargets,
    /// Organizations and OUs that reach the customer managed keys through the key policy
    /// (rules with `grant_kms` and `kms_access: key_policy`): checked, never granted.
    pub kms_policy: AccountTargets,
    /// Copy destinations, by Region.
    pub copies: BTreeMap<String, CopyDestination>,
    /// Rules that disagree on the key of a destination Region: `(region, rule, key)`.
    pub key_conflicts: Vec<(String, String, String)>,
    /// Copies into target accounts, by rule: only a source in its own Region is copied into
    /// targets (see [`SharePlan::for_source`]).
    pub into: Vec<IntoPlan>,
    /// Watermark names the rules attach (`watermark`), each `<own account>:<name>` on the image.
    pub watermarks: BTreeSet<String>,
}

impl SharePlan {
    /// Every plain account the plan shares with or copies into (launch permissions, snapshot
    /// permissions, grants, `copy_into` targets).
    pub fn plain_accounts(&self) -> BTreeSet<&String> {
        self.launch
            .accounts
            .iter()
            .chain(&self.snapshots.accounts)
            .chain(&self.kms.accounts)
            .chain(self.into.iter().flat_map(|i| &i.targets.accounts))
            .collect()
    }

    /// The union of the given rules; `kms_default` is the policy's `kms_access`, for rules
    /// that do not say.
    pub fn from_rules<'a>(
        kms_default: KmsAccess,
        rules: impl IntoIterator<Item = &'a Rule>,
    ) -> SharePlan {
        let mut plan = SharePlan::default();
        for rule in rules {
            plan.rules.push(rule.name.clone());
            plan.watermarks.extend(rule.watermark.iter().cloned());
            plan.add_shares(rule, kms_default);
            if let Some(ci) = &rule.copy_into {
                plan.into.push(into_plan(rule, ci, kms_default));
            }
            plan.add_copies(rule);
        }
        plan
    }

    /// What `rule`'s `share_with` adds: launch permissions, snapshot shares, key access (by
    /// grant, or by the key policy for organizations and OUs).
    fn add_shares(&mut self, rule: &Rule, kms_default: KmsAccess) {
        let sw = &rule.share_with;
        let targets = AccountTargets {
            accounts: sw.accounts.iter().cloned().collect(),
            organizations: sw.organizations.iter().cloned().collect(),
            organizational_units: sw.organizational_units.iter().cloned().collect(),
        };
        self.launch
            .accounts
            .extend(targets.accounts.iter().cloned());
        self.launch
            .organizations
            .extend(targets.organizations.iter().cloned());
        self.launch
            .organizational_units
            .extend(targets.organizational_units.iter().cloned());
        self.launch.public |= sw.public;
        if rule.share_snapshots {
            merge(&mut self.snapshots, &targets);
        }
        if rule.grant_kms {
            match rule.kms_access_or(kms_default) {
                KmsAccess::Grants => merge(&mut self.kms, &targets),
                KmsAccess::KeyPolicy => {
                    self.kms.accounts.extend(targets.accounts.iter().cloned());
                    merge(
                        &mut self.kms_policy,
                        &AccountTargets {
                            accounts: BTreeSet::new(),
                            ..targets.clone()
                        },
                    );
                }
            }
        }
    }

    /// What `rule`'s `copy_to` adds: a destination per Region (the rules, the key — rules
    /// naming different keys for one Region are a conflict — and the shortest completion time).
    fn add_copies(&mut self, rule: &Rule) {
        for c in &rule.copy_to {
            let dest = self
                .copies
                .entry(c.region.clone())
                .or_insert_with(|| CopyDestination {
                    region: c.region.clone(),
                    kms_key_id: None,
                    rules: Vec::new(),
                    completion_minutes: None,
                });
            dest.rules.push(rule.name.clone());
            dest.completion_minutes = match (dest.completion_minutes, c.completion_minutes) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match (&dest.kms_key_id, &c.kms_key_id) {
                (None, Some(k)) => dest.kms_key_id = Some(k.clone()),
                (Some(have), Some(k)) if have != k => {
                    self.key_conflicts
                        .push((c.region.clone(), rule.name.clone(), k.clone()));
                }
                _ => {}
            }
        }
    }

    /// The plan of a source image in its own Region (`may_copy`): its target accounts of
    /// `copy_into` get what a copy needs (launch permission, every snapshot, the keys: by grant,
    /// or by the key policy for OUs under `kms_access: key_policy`), and nothing more. Any
    /// other image (our copies, copies made by others) is neither copied nor copied into
    /// targets.
    pub fn for_source(mut self, may_copy: bool) -> Self {
        if !may_copy {
            self.copies.clear();
            self.into.clear();
            return self;
        }
        for into in &self.into {
            let t = &into.targets;
            self.launch.accounts.extend(t.accounts.iter().cloned());
            self.launch
                .organizational_units
                .extend(t.organizational_units.iter().cloned());
            merge(&mut self.snapshots, t);
            match into.kms_access {
                KmsAccess::Grants => merge(&mut self.kms, t),
                KmsAccess::KeyPolicy => {
                    self.kms.accounts.extend(t.accounts.iter().cloned());
                    self.kms_policy
                        .organizational_units
                        .extend(t.organizational_units.iter().cloned());
                }
            }
        }
        self
    }

    /// Whether anything is to be shared in the image's own Region.
    pub fn shares_anything(&self) -> bool {
        !self.launch.is_empty()
            || !self.snapshots.is_empty()
            || !self.kms.is_empty()
            || !self.kms_policy.is_empty()
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

/// Organization / OU ARN → its active member accounts (nested OUs included).
pub type Members = BTreeMap<String, BTreeSet<String>>;

impl AccountTargets {
    /// The plain accounts plus the members of every organization and OU, without `own`.
    pub fn accounts(&self, members: &Members, own: &str) -> BTreeSet<String> {
        let mut out = self.accounts.clone();
        for arn in self.organizations.iter().chain(&self.organizational_units) {
            if let Some(m) = members.get(arn) {
                out.extend(m.iter().cloned());
            }
        }
        out.remove(own);
        out
    }

    /// The organizations and OUs to list.
    pub fn groups(&self) -> impl Iterator<Item = &String> {
        self.organizations.iter().chain(&self.organizational_units)
    }
}

/// The whole state one image should have, everything expanded: what convergence makes true
/// and what its fingerprint stands for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Desired {
    pub rules: Vec<String>,
    /// Launch permissions (without the owner account).
    pub launch: LaunchPermissions,
    /// Accounts with createVolumePermission on every snapshot (empty without snapshots).
    pub snapshot_accounts: BTreeSet<String>,
    /// Accounts with a grant on every customer managed key of the image (empty when it is
    /// not encrypted).
    pub grant_accounts: BTreeSet<String>,
    /// Organization and OU ARNs every customer managed key's policy must let use the key
    /// (empty when the image is not encrypted or no rule uses `kms_access: key_policy`).
    pub key_policy: BTreeSet<String>,
    /// Copies to other Regions (none for a copy, or for someone else's copy).
    pub copies: Vec<CopyDestination>,
    /// Watermark keys (`<own account>:<name>`) the image must carry.
    pub watermarks: BTreeSet<String>,
    /// Shares no rule asks for are removed (managed images, `prune_unlisted_shares`).
    pub prune: bool,
    /// What the fingerprint records of pruning: the policy's `prune_unlisted_shares`, not
    /// whether this image is managed yet — the event that first shares an image (not managed
    /// before it) and the night after (managed by then) must agree, or every new image is
    /// converged again on its first night.
    pub prune_policy: bool,
}

impl Desired {
    /// The desired state of `image` under `plan`, with the organization listings of this run.
    pub fn new(
        image: &crate::ports::Image,
        plan: &SharePlan,
        members: &Members,
        own: &str,
        may_copy: bool,
        prune: bool,
    ) -> Desired {
        let mut launch = plan.launch.clone();
        launch.accounts.remove(own);
        Desired {
            rules: plan.rules.clone(),
            launch,
            snapshot_accounts: if image.volumes.is_empty() {
                BTreeSet::new()
            } else {
                plan.snapshots.accounts(members, own)
            },
            grant_accounts: if image.is_encrypted() {
                plan.kms.accounts(members, own)
            } else {
                BTreeSet::new()
            },
            key_policy: if image.is_encrypted() {
                plan.kms_policy.groups().cloned().collect()
            } else {
                BTreeSet::new()
            },
            copies: if may_copy {
                plan.copies
                    .values()
                    .filter(|d| d.region != image.region)
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            },
            watermarks: plan
                .watermarks
                .iter()
                .map(|n| format!("{own}:{n}"))
                .collect(),
            prune,
            prune_policy: prune,
        }
    }

    /// The same desired state, its fingerprint recording the policy's pruning setting.
    pub fn with_prune_policy(mut self, prune_unlisted_shares: bool) -> Desired {
        self.prune_policy = prune_unlisted_shares;
        self
    }

    /// Whether anything is to be shared in the image's own Region.
    pub fn shares_anything(&self) -> bool {
        !self.launch.is_empty()
            || !self.snapshot_accounts.is_empty()
            || !self.grant_accounts.is_empty()
            || !self.key_policy.is_empty()
    }

    /// A short, stable digest of the whole desired state (16 hex digits): equal fingerprints,
    /// equal states. Recorded on the image once it has been fully converged.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let mut part = |name: &str, items: &mut dyn Iterator<Item = String>| {
            h.update(name.as_bytes());
            h.update(b"=");
            for i in items {
                h.update(i.as_bytes());
                h.update(b",");
            }
            h.update(b";");
        };
        part("v1.rules", &mut self.rules.iter().cloned());
        part("launch.accounts", &mut self.launch.accounts.iter().cloned());
        part(
            "launch.orgs",
            &mut self.launch.organizations.iter().cloned(),
        );
        part(
            "launch.ous",
            &mut self.launch.organizational_units.iter().cloned(),
        );
        part(
            "launch.public",
            &mut std::iter::once(self.launch.public.to_string()),
        );
        part("snapshots", &mut self.snapshot_accounts.iter().cloned());
        part("grants", &mut self.grant_accounts.iter().cloned());
        // Only when used, so that the fingerprints of every image without it stay as they
        // were recorded (a new part would make every image stale for one night).
        if !self.key_policy.is_empty() {
            part("key_policy", &mut self.key_policy.iter().cloned());
        }
        if !self.watermarks.is_empty() {
            part("watermarks", &mut self.watermarks.iter().cloned());
        }
        part(
            "copies",
            &mut self
                .copies
                .iter()
                .map(|c| format!("{}:{}", c.region, c.kms_key_id.as_deref().unwrap_or("-"))),
        );
        part("prune", &mut std::iter::once(self.prune_policy.to_string()));
        hex::encode(h.finalize())[..16].to_string()
    }
}

/// One rule's copies into target accounts.
fn into_plan(rule: &Rule, ci: &CopyInto, kms_default: KmsAccess) -> IntoPlan {
    IntoPlan {
        rule: rule.name.clone(),
        targets: AccountTargets {
            accounts: ci.accounts.iter().cloned().collect(),
            organizations: BTreeSet::new(),
            organizational_units: ci.organizational_units.iter().cloned().collect(),
        },
        regions: ci
            .region_keys()
            .map(|(r, k)| (r.to_string(), k.map(str::to_string)))
            .collect(),
        completion_minutes: ci
            .regions
            .iter()
            .filter_map(|r| Some((r.region.clone(), r.completion_minutes?)))
            .collect(),
        kms_access: if rule.grant_kms {
            rule.kms_access_or(kms_default)
        } else {
            KmsAccess::Grants
        },
        deprecate_superseded: ci.deprecate_superseded,
        watermark: rule.watermark.clone(),
        parameter: rule
            .publish
            .as_ref()
            .filter(|p| p.in_target_accounts)
            .map(|p| p.parameter.clone()),
    }
}
