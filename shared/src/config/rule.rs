//! A rule: which images it matches, whom it shares them with, where it copies them.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ids::{check_key, check_listed_region, is_account_id, parse_org_arn, parse_ou_arn};
use super::{yes, CopyInto, Problems, Publish, Retire};

/// One sharing rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Rule {
    /// Unique name; recorded on copies in the `ami-share:source-rule` tag.
    /// Letters, digits, `.`, `_`, `-`; at most 64 characters.
    pub name: String,
    /// Which images the rule applies to. Every condition given must hold.
    #[serde(rename = "match")]
    pub matcher: Match,
    /// Who gets launch permission.
    #[serde(default)]
    pub share_with: ShareWith,
    /// Share every backing snapshot (createVolumePermission) with every target account,
    /// organizations and OUs expanded to their active accounts. Needed to copy the image or
    /// create volumes from its snapshots. Default `true`.
    #[serde(default = "yes")]
    pub share_snapshots: bool,
    /// Give every target account a grant on each customer managed key that encrypts the
    /// image's snapshots. Default `true`.
    #[serde(default = "yes")]
    pub grant_kms: bool,
    /// How the target accounts get the customer managed keys of the image (with `grant_kms`):
    /// `grants` (one KMS grant per account and key) or `key_policy` (organizations and OUs
    /// through a key-policy statement with `aws:PrincipalOrgID` / `aws:PrincipalOrgPaths`,
    /// checked, never written; single accounts still get grants). Default: the policy's
    /// `kms_access`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_access: Option<KmsAccess>,
    /// Other Regions to copy the image to; each copy is shared like the source.
    #[serde(default)]
    pub copy_to: Vec<CopyTarget>,
    /// Copies owned by target accounts (Image Builder's `targetAccountIds`): the newest image
    /// copied into each target account and Region, encrypted with the target's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_into: Option<CopyInto>,
    /// Publish the rule's newest image in each Region where it is shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Publish>,
    /// Retire the rule's older images in each Region: deprecate, then disable, then
    /// deregister, never while anything still uses them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire: Option<Retire>,
    /// A watermark name attached to the rule's images before they are first shared
    /// (`AttachImageWatermark`: the key is `<this account>:<name>`). EC2 carries it to every
    /// copy, including the copies target accounts own, so consumers' Allowed AMIs criteria can
    /// admit the images by watermark. 3 to 128 letters, digits, spaces and `()[]./-'@_`. A
    /// watermarked image cannot be made public. Default: the policy's `watermark`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: BTreeMap<String, Value>,
}

/// Conditions on the image. At least one must be given, or `"all": true`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Match {
    /// Explicitly match every image owned by the account (use with care).
    #[serde(default)]
    pub all: bool,
    /// Glob on the image name (`*`, `?`, `[abc]`, `{a,b}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tag key → required value; `"*"` means "present, any value".
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: BTreeMap<String, Value>,
}

/// The targets of launch permissions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ShareWith {
    /// 12-digit AWS account ids.
    #[serde(default)]
    pub accounts: Vec<String>,
    /// Organization ARNs: `arn:aws:organizations::<management-account>:organization/o-…`.
    #[serde(default)]
    pub organizations: Vec<String>,
    /// OU ARNs: `arn:aws:organizations::<management-account>:ou/o-…/ou-…`.
    #[serde(default)]
    pub organizational_units: Vec<String>,
    /// Make the image public. Refused unless the policy's `allow_public` is `true`.
    #[serde(default)]
    pub public: bool,
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: BTreeMap<String, Value>,
}

/// How consumers get access to a customer managed key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KmsAccess {
    /// One grant per (key, account): organizations and OUs expanded to their accounts.
    #[default]
    Grants,
    /// Organizations and OUs through a statement in the key policy (checked with
    /// `kms:GetKeyPolicy`); plain accounts through grants.
    KeyPolicy,
}

/// A Region to copy to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct CopyTarget {
    /// Destination Region code, e.g. `us-west-2`.
    pub region: String,
    /// KMS key in the destination Region to encrypt the copy with (key id, key ARN, alias
    /// name or alias ARN). Required when the source is encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// Opt-in time-based copy: EC2 completes the copy's snapshots within this many minutes
    /// (`SnapshotCopyCompletionDurationMinutes`: 15 to 2,880, in steps of 15), for a fee per GiB
    /// and within the account's time-based copy throughput quotas. Unset: a standard copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 15, max = 2880))]
    pub completion_minutes: Option<u32>,
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: BTreeMap<String, Value>,
}

/// Refuse a `completion_minutes` EC2 would refuse: 15 to 2,880 minutes, in steps of 15.
/// A watermark name as `AttachImageWatermark` takes it: 3 to 128 letters, digits, spaces and
/// `()[]./-'@_`.
pub(crate) fn check_watermark(at: &str, name: &str, p: &mut Problems) {
    let len = name.chars().count();
    let bad: Vec<char> = name
        .chars()
        .filter(|c| !(c.is_ascii_alphanumeric() || "()[] ./-'@_".contains(*c)))
        .collect();
    if !(3..=128).contains(&len) || !bad.is_empty() {
        p.add(
            at,
            format!(
                "{name:?} is not a valid watermark name (3 to 128 letters, digits, spaces and ()[]./-'@_{})",
                if bad.is_empty() { String::new() } else { format!("; not {:?}", bad.iter().collect::<String>()) }
            ),
        );
    }
}

pub(crate) fn check_completion_minutes(at: &str, minutes: Option<u32>, p: &mut Problems) {
    if let Some(m) = minutes {
        if !(15..=2880).contains(&m) || m % 15 != 0 {
            p.add(
                at,
                format!("{m} is not a time-based copy duration EC2 accepts: 15 to 2880 minutes, in steps of 15 (e.g. 15, 60, 120); leave it out for a standard copy"),
            );
        }
    }
}

impl Rule {
    /// How this rule gives key access, `default` (the policy's) when it says nothing.
    pub fn kms_access_or(&self, default: KmsAccess) -> KmsAccess {
        self.kms_access.unwrap_or(default)
    }

    /// The watermark this rule attaches: its own, or the policy's `default`.
    pub fn watermark_or<'a>(&'a self, default: Option<&'a str>) -> Option<&'a str> {
        self.watermark.as_deref().or(default)
    }

    pub(crate) fn check(
        &self,
        at: &str,
        allow_public: bool,
        default_watermark: Option<&str>,
        p: &mut Problems,
    ) {
        p.unknown(at, &self.unknown);
        if let Some(w) = &self.watermark {
            check_watermark(&format!("{at}.watermark"), w, p);
        }
        if let (Some(w), true) = (self.watermark_or(default_watermark), self.share_with.public) {
            p.add(
                format!("{at}.share_with.public"),
                format!(
                    "the rule's images carry the watermark {w:?}, and EC2 refuses to make a watermarked image public: \
                     drop \"public\": true, or give this rule no watermark"
                ),
            );
        }
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            p.add(
                format!("{at}.name"),
                format!(
                    "{:?} is not a valid rule name (1 to 64 letters, digits, '.', '_', '-')",
                    self.name
                ),
            );
        }
        self.check_match(&format!("{at}.match"), p);
        let sw = &self.share_with;
        let sat = format!("{at}.share_with");
        check_share_with(&sat, sw, p);
        if sw.public && !allow_public {
            p.add(
                format!("{sat}.public"),
                "public sharing is refused unless \"allow_public\": true is set at the top of the policy",
            );
        }
        let shares = !sw.accounts.is_empty()
            || !sw.organizations.is_empty()
            || !sw.organizational_units.is_empty()
            || sw.public;
        if !shares && self.copy_to.is_empty() && self.copy_into.is_none() {
            p.add(&sat, "names no account, organization, OU or public, and the rule has no copy_to or copy_into: the rule would do nothing");
        }
        if let Some(ci) = &self.copy_into {
            ci.check(&format!("{at}.copy_into"), p);
        }
        self.check_copy_to(at, p);
        if self.kms_access.is_some() && !self.grant_kms {
            p.add(
                format!("{at}.kms_access"),
                "has no effect with \"grant_kms\": false (the rule gives no key access at all); remove one of them",
            );
        }
        if let Some(r) = &self.retire {
            r.check(&format!("{at}.retire"), p);
        }
        if let Some(publish) = &self.publish {
            publish.check(&format!("{at}.publish"), sw, self.copy_into.is_some(), p);
        }
    }

    /// `match`: not empty, `all` alone, a valid glob, valid tag keys.
    fn check_match(&self, mat: &str, p: &mut Problems) {
        let m = &self.matcher;
        p.unknown(mat, &m.unknown);
        if !m.all && m.name.is_none() && m.tags.is_empty() {
            p.add(
            mat,
            "is empty, which would share every image; give \"name\" and/or \"tags\", or say \"all\": true explicitly",
        );
        }
        if m.all && (m.name.is_some() || !m.tags.is_empty()) {
            p.add(
                mat,
                "\"all\": true cannot be combined with \"name\" or \"tags\"",
            );
        }
        if let Some(glob) = &m.name {
            if let Err(e) = compile_glob(glob) {
                p.add(
                    format!("{mat}.name"),
                    format!("{glob:?} is not a valid glob: {e}"),
                );
            }
        }
        for key in m.tags.keys() {
            if key.is_empty() || key.len() > 128 {
                p.add(
                    format!("{mat}.tags"),
                    format!("{key:?} is not a valid tag key (1 to 128 characters)"),
                );
            }
        }
    }

    /// `copy_to`: each Region listed once, its key in that Region, a valid completion time.
    fn check_copy_to(&self, at: &str, p: &mut Problems) {
        let mut regions = BTreeSet::new();
        for (j, c) in self.copy_to.iter().enumerate() {
            let cat = format!("{at}.copy_to[{j}]");
            p.unknown(&cat, &c.unknown);
            check_listed_region(&format!("{cat}.region"), &c.region, &mut regions, "rule", p);
            if let Some(key) = &c.kms_key_id {
                check_key(&format!("{cat}.kms_key_id"), key, Some(&c.region), p);
            }
            check_completion_minutes(
                &format!("{cat}.completion_minutes"),
                c.completion_minutes,
                p,
            );
        }
    }
}

/// `share_with`: account ids, organization and OU ARNs.
fn check_share_with(sat: &str, sw: &ShareWith, p: &mut Problems) {
    p.unknown(sat, &sw.unknown);
    for (j, a) in sw.accounts.iter().enumerate() {
        if !is_account_id(a) {
            p.add(
                format!("{sat}.accounts[{j}]"),
                format!("{a:?} is not a 12-digit account id"),
            );
        }
    }
    for (j, o) in sw.organizations.iter().enumerate() {
        if parse_org_arn(o).is_none() {
            p.add(
                format!("{sat}.organizations[{j}]"),
                format!("{o:?} is not an organization ARN (arn:aws:organizations::<management-account-id>:organization/o-<id>)"),
            );
        }
    }
    for (j, o) in sw.organizational_units.iter().enumerate() {
        if parse_ou_arn(o).is_none() {
            p.add(
                format!("{sat}.organizational_units[{j}]"),
                format!("{o:?} is not an OU ARN (arn:aws:organizations::<management-account-id>:ou/o-<id>/ou-<root>-<id>)"),
            );
        }
    }
}

/// The glob dialect of `match.name` (`*`, `?`, `[abc]`, `{a,b}`; `/` is an ordinary character).
/// The policy validates with it; the matching decisions compile with it.
pub fn compile_glob(pattern: &str) -> Result<globset::Glob, globset::Error> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
}
