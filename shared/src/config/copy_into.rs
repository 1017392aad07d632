//! `copy_into`: copies owned by the target accounts (EC2 Image Builder's `targetAccountIds`).

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ids::{check_key, check_listed_region, is_account_id, parse_ou_arn};
use super::Problems;

/// Copy the rule's newest image *into* each target account and Region: the target account
/// owns its copy (encrypted with its own key), which stays when the publisher retires the
/// source. The product assumes the target-account role (the deployment's
/// `TargetAccountRoleName`, `templates/target-account-role.yaml`) to run `CopyImage` there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct CopyInto {
    /// 12-digit target account ids.
    #[serde(default)]
    pub accounts: Vec<String>,
    /// OU ARNs whose active accounts (nested OUs included) are targets. An account that
    /// leaves the OU keeps its copies; it gets no new ones.
    #[serde(default)]
    pub organizational_units: Vec<String>,
    /// The Regions to copy into, in every target account, each with the target account's key.
    pub regions: Vec<CopyIntoRegion>,
    /// When a newer image of the rule has its copy in a target account and Region, also
    /// deprecate the older copies there (they are always tagged `ami-share:superseded-by`).
    /// The product never disables or deregisters a target's copy. Default `false`.
    #[serde(default)]
    pub deprecate_superseded: bool,
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: BTreeMap<String, Value>,
}

/// One Region of `copy_into`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct CopyIntoRegion {
    /// Region code, e.g. `eu-west-1`.
    pub region: String,
    /// The key *in each target account* to encrypt its copy with: an alias name
    /// (`alias/…`, the same in every target account; a key id or ARN only when `copy_into`
    /// names exactly one account and no OU). Default: the target
    /// account's default EBS key in that Region, when it is a customer managed key (a copy
    /// encrypted with `aws/ebs` could never be shared on; the product refuses it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// Opt-in time-based copy into the target accounts (as `copy_to[].completion_minutes`):
    /// 15 to 2,880 minutes, in steps of 15; the target account pays for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 15, max = 2880))]
    pub completion_minutes: Option<u32>,
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: BTreeMap<String, Value>,
}

impl CopyInto {
    pub(crate) fn check(&self, at: &str, p: &mut Problems) {
        p.unknown(at, &self.unknown);
        for (j, a) in self.accounts.iter().enumerate() {
            if !is_account_id(a) {
                p.add(
                    format!("{at}.accounts[{j}]"),
                    format!("{a:?} is not a 12-digit account id"),
                );
            }
        }
        for (j, o) in self.organizational_units.iter().enumerate() {
            if parse_ou_arn(o).is_none() {
                p.add(
                    format!("{at}.organizational_units[{j}]"),
                    format!("{o:?} is not an OU ARN (arn:aws:organizations::<management-account-id>:ou/o-<id>/ou-<root>-<id>)"),
                );
            }
        }
        if self.accounts.is_empty() && self.organizational_units.is_empty() {
            p.add(
                at,
                "names no account and no OU to copy into; give \"accounts\" and/or \"organizational_units\"",
            );
        }
        if self.regions.is_empty() {
            p.add(
                format!("{at}.regions"),
                "is empty; give at least one {\"region\": \"…\"} to copy into",
            );
        }
        let mut seen = BTreeSet::new();
        for (j, r) in self.regions.iter().enumerate() {
            let rat = format!("{at}.regions[{j}]");
            p.unknown(&rat, &r.unknown);
            check_listed_region(
                &format!("{rat}.region"),
                &r.region,
                &mut seen,
                "copy_into",
                p,
            );
            super::rule::check_completion_minutes(
                &format!("{rat}.completion_minutes"),
                r.completion_minutes,
                p,
            );
            if let Some(key) = &r.kms_key_id {
                check_key(&format!("{rat}.kms_key_id"), key, Some(&r.region), p);
                let one_account = self.accounts.len() == 1 && self.organizational_units.is_empty();
                if !key.starts_with("alias/") && !one_account {
                    p.add(
                        format!("{rat}.kms_key_id"),
                        format!("{key:?} names one account's key, and copies go into several accounts: name an alias (\"alias/…\") that each target account has"),
                    );
                }
            }
        }
    }

    /// Every target Region with its key, in the order given.
    pub fn region_keys(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.regions
            .iter()
            .map(|r| (r.region.as_str(), r.kms_key_id.as_deref()))
    }
}
