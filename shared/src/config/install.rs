//! What installing a policy takes, beyond the stack in the Regions that build images: the
//! Regions its rules copy to (each needs the stack: copies raise their events there), and the
//! target accounts of `copy_into` (each needs the target-account role, installed by a StackSet
//! with automatic deployment to the OUs). `scripts/deploy.sh` reads it through
//! `ami-share install-plan`.

use std::collections::BTreeSet;

use super::ids::{parse_org_arn, parse_ou_arn};
use super::Policy;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallPlan {
    /// Every `copy_to` Region.
    pub copy_regions: BTreeSet<String>,
    /// The OU ids of every `copy_into` (the StackSet's deployment targets).
    pub target_ous: BTreeSet<String>,
    /// The plain accounts of every `copy_into`.
    pub target_accounts: BTreeSet<String>,
    /// The organization ids the policy's organization and OU ARNs name.
    pub organizations: BTreeSet<String>,
    /// The organization roots, from the OU ids (`ou-<root>-…` lies under `r-<root>`).
    pub roots: BTreeSet<String>,
    /// `allowed_amis.read_through_role`: the functions assume the target-account role in
    /// every consumer (deployed read-only to the rules' other OUs), so the stacks need its name.
    pub read_through_role: bool,
}

impl InstallPlan {
    pub fn of(policy: &Policy) -> Self {
        let mut plan = InstallPlan {
            read_through_role: policy.allowed_amis.read_through_role,
            ..InstallPlan::default()
        };
        for rule in &policy.rules {
            plan.copy_regions
                .extend(rule.copy_to.iter().map(|c| c.region.clone()));
            let sw = &rule.share_with;
            let mut ous: Vec<&String> = sw.organizational_units.iter().collect();
            for arn in &sw.organizations {
                plan.organizations
                    .extend(parse_org_arn(arn).map(str::to_string));
            }
            if let Some(ci) = &rule.copy_into {
                plan.target_accounts.extend(ci.accounts.iter().cloned());
                for arn in &ci.organizational_units {
                    if let Some((_, ou)) = parse_ou_arn(arn) {
                        plan.target_ous.insert(ou.to_string());
                    }
                }
                ous.extend(&ci.organizational_units);
            }
            for arn in ous {
                if let Some((org, ou)) = parse_ou_arn(arn) {
                    plan.organizations.insert(org.to_string());
                    if let Some((root, _)) = ou.trim_start_matches("ou-").split_once('-') {
                        plan.roots.insert(format!("r-{root}"));
                    }
                }
            }
        }
        plan
    }

    /// Whether the policy copies into target accounts (the StackSet is needed).
    pub fn has_targets(&self) -> bool {
        !self.target_ous.is_empty() || !self.target_accounts.is_empty()
    }

    /// One `key value…` line per item, for the deployment script.
    pub fn lines(&self) -> String {
        let join = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(" ");
        [
            ("copy-regions", &self.copy_regions),
            ("target-ous", &self.target_ous),
            ("target-accounts", &self.target_accounts),
            ("organizations", &self.organizations),
            ("roots", &self.roots),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}\n", join(v)))
        .chain(std::iter::once(format!(
            "read-through-role={}\n",
            self.read_through_role
        )))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_targets_organization_and_root_from_the_policy() {
        let p = Policy::from_json(
            r#"{"rules": [
              {"name": "a", "match": {"name": "a-*"}, "share_with": {"accounts": ["999988887777"]},
               "copy_to": [{"region": "us-west-2"}, {"region": "eu-west-1"}]},
              {"name": "b", "match": {"name": "b-*"},
               "copy_into": {"accounts": ["111122223333"],
                 "organizational_units": ["arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456"],
                 "regions": [{"region": "eu-west-1"}]}}]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let plan = InstallPlan::of(&p);
        assert!(plan.has_targets());
        assert_eq!(
            plan.lines(),
            "copy-regions=eu-west-1 us-west-2\ntarget-ous=ou-ab12-cdef3456\ntarget-accounts=111122223333\norganizations=o-a1b2c3d4e5\nroots=r-ab12\nread-through-role=false\n"
        );
    }
}
