//! The policy: what to share with whom, where to copy, how to sweep.
//!
//! Parsed and validated once, at start ([`Policy::from_json`]), before any AWS call. Every
//! problem is reported at once, each with its JSON path, in one error message.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;

/// Environment variable holding the policy JSON.
pub const POLICY_ENV: &str = "AMI_SHARE_POLICY";
/// Optional environment variable: role to assume for AWS Organizations reads.
/// Where the policy is read from when it is too large for an environment variable: a file
/// (in Lambda, `/opt/ami-share/policy.json` from the policy layer `scripts/deploy.sh` builds).
pub const POLICY_FILE_ENV: &str = "AMI_SHARE_POLICY_FILE";
/// The account the functions run in, for local runs; in Lambda it comes from the function's
/// ARN with the first event (no `sts:GetCallerIdentity` at start).
pub const ACCOUNT_ENV: &str = "AMI_SHARE_ACCOUNT_ID";
pub const ORG_ROLE_ENV: &str = "AMI_SHARE_ORG_ROLE_ARN";

/// The whole policy (`AMI_SHARE_POLICY`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Policy {
    /// The sharing rules. An image matched by several rules gets the union of their targets
    /// and copy Regions.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Must be `true` for any rule to use `share_with.public: true`.
    #[serde(default)]
    pub allow_public: bool,
    /// Region → customer managed KMS key. An image in that Region whose snapshots are
    /// encrypted with the AWS managed key `aws/ebs` (which cannot be shared) is copied in
    /// the same Region, re-encrypted with this key, and the copy is shared instead.
    #[serde(default)]
    pub reencrypt_with: BTreeMap<String, String>,
    /// Settings of the nightly sweeper.
    #[serde(default)]
    pub sweeper: SweeperConfig,
    /// How fast the functions may call EC2 (per Region and API action).
    #[serde(default)]
    pub rate_limits: RateLimitConfig,
    /// "AMI Distributed" events: one on the default bus after each publication, and one on
    /// this bus when given.
    #[serde(default)]
    pub events: EventsConfig,
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: BTreeMap<String, Value>,
}

/// The request rates the functions allow themselves against EC2's per-API token buckets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// The share of each API's refill rate the functions may use; the rest is left for the
    /// account's other tools. Between 0 (exclusive) and 1. Default 0.8.
    #[serde(default = "default_share")]
    pub share: f64,
    /// EC2 action → the account's sustained rate (requests a second) where it was raised
    /// through Service Quotas, e.g. `{"DeleteSnapshot": 20}`. Unlisted actions use EC2's
    /// documented rates: 20 a second for `Describe*`/`List*`/`Get*`, 5 for the mutating ones.
    #[serde(default)]
    pub requests_per_second: BTreeMap<String, f64>,
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: BTreeMap<String, Value>,
}

fn default_share() -> f64 {
    0.8
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            share: default_share(),
            requests_per_second: BTreeMap::new(),
            unknown: BTreeMap::new(),
        }
    }
}

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
    /// Other Regions to copy the image to; each copy is shared like the source.
    #[serde(default)]
    pub copy_to: Vec<CopyTarget>,
    /// Publish the rule's newest image in each Region where it is shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Publish>,
    /// Retire the rule's older images in each Region: deprecate, then disable, then
    /// deregister, never while anything still uses them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire: Option<Retire>,
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: BTreeMap<String, Value>,
}

/// Where a rule's newest image is published for its consumers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Publish {
    /// Parameter Store name, e.g. `/golden/al2023/latest`, set in each Region to the id of the
    /// rule's newest fully shared image there (data type `aws:ec2:image`, advanced tier),
    /// and shared through AWS RAM with the rule's accounts, OUs and organizations. Consumers
    /// launch with `resolve:ssm:<parameter ARN>`. Must start with `/` and lie under the
    /// deployment's `ParameterPathPrefix`; unique across rules.
    pub parameter: String,
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: BTreeMap<String, Value>,
}

/// Whether retirement acts or only says what it would do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RetireMode {
    /// Say, in the sweeper's report, what would be done; change nothing.
    #[default]
    Report,
    /// Deprecate, disable and deregister as the stages say.
    Act,
}

/// How a rule's older images are retired, per Region, by the nightly sweeper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Retire {
    /// Keep the newest `keep` images of the rule in each Region (by creation date; a copy by
    /// its source's). With `max_age_days` too, an image is retired only when it is both beyond
    /// the newest `keep` and older than `max_age_days`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
    /// Retire images created more than this many days ago.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_days: Option<u32>,
    /// Stage 1: deprecate the image (it drops out of searches; it still launches by id).
    /// Default `true`.
    #[serde(default = "yes")]
    pub deprecate: bool,
    /// Stage 2: disable the image (no new launches; it becomes private) this many days after
    /// the previous stage. Absent: never disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_after_days: Option<u32>,
    /// Stage 3: deregister the image this many days after the previous stage; its snapshots
    /// are then reclaimed by the orphan sweep. Absent: never deregistered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregister_after_days: Option<u32>,
    /// An image launched within this many days (`lastLaunchedTime`) is not disabled or
    /// deregistered. Default 30.
    #[serde(default = "thirty")]
    pub protect_if_launched_within_days: u32,
    /// `report` (default): the sweeper's report says what would be done; `act`: do it.
    #[serde(default)]
    pub mode: RetireMode,
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: BTreeMap<String, Value>,
}

fn thirty() -> u32 {
    30
}

/// Where "AMI Distributed" events go besides the account's default event bus.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EventsConfig {
    /// An event bus ARN (e.g. an organization-wide bus in another account) that also gets
    /// every "AMI Distributed" event. Its resource policy must let this account put events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_bus_arn: Option<String>,
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: BTreeMap<String, Value>,
}

fn yes() -> bool {
    true
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
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: BTreeMap<String, Value>,
}

/// What the sweeper does with orphaned snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SweepMode {
    /// Find and mark orphans; delete nothing.
    #[default]
    Report,
    /// Delete orphans marked at least `grace_days` ago that are still orphans.
    Delete,
}

/// Settings of the nightly sweeper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SweeperConfig {
    #[serde(default)]
    pub mode: SweepMode,
    /// Snapshots younger than this are never orphans. Default 7.
    #[serde(default = "seven")]
    pub min_age_days: u32,
    /// Days between marking an orphan and deleting it. Default 7.
    #[serde(default = "seven")]
    pub grace_days: u32,
    /// Remove, from managed images only, shares and grants no rule asks for any more.
    /// Default `false` (report what would be removed).
    #[serde(default)]
    pub prune_unlisted_shares: bool,
    /// At most this many deletions per run. Default 100.
    #[serde(default = "hundred")]
    pub max_deletions: u32,
    /// Every image in sync by its fingerprint has its actual sharing read and compared at
    /// least once in this many days (a rotating slice each night catches changes made by
    /// hand). Default 7.
    #[serde(default = "seven")]
    pub audit_days: u32,
    /// At most this many retirement stages (deprecate, disable, deregister) per run and
    /// Region, done or, in report mode, reported as would-be-done. Default 20.
    #[serde(default = "twenty")]
    pub max_retirements: u32,
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: BTreeMap<String, Value>,
}

fn seven() -> u32 {
    7
}
fn hundred() -> u32 {
    100
}
fn twenty() -> u32 {
    20
}

impl Default for SweeperConfig {
    fn default() -> Self {
        Self {
            mode: SweepMode::Report,
            min_age_days: 7,
            grace_days: 7,
            prune_unlisted_shares: false,
            max_deletions: 100,
            audit_days: 7,
            max_retirements: 20,
            unknown: BTreeMap::new(),
        }
    }
}

impl Policy {
    /// Parse and validate. On failure the error lists every problem found, one per line,
    /// each prefixed with its JSON path.
    pub fn from_json(text: &str) -> Result<Policy, Error> {
        Self::from_json_in(text, POLICY_ENV)
    }

    /// The same, naming `source` (the variable or file the policy came from) in the errors.
    pub fn from_json_in(text: &str, source: &str) -> Result<Policy, Error> {
        let mut de = serde_json::Deserializer::from_str(text);
        let policy: Policy = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." {
                "policy".to_string()
            } else {
                path
            };
            Error::Config(format!(
                "{source} is not a valid policy:\n  {path}: {}",
                e.inner()
            ))
        })?;
        let problems = policy.problems();
        if problems.is_empty() {
            Ok(policy)
        } else {
            Err(Error::Config(format!(
                "{source} has {} problem{}:\n  {}",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" },
                problems.join("\n  ")
            )))
        }
    }

    /// Every problem in the policy, each as `path: message`.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Problems::default();
        p.unknown("", &self.unknown);
        let mut names = BTreeSet::new();
        let mut parameters: BTreeMap<&str, &str> = BTreeMap::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            rule.check(&at, self.allow_public, &mut p);
            if let Some(publish) = &rule.publish {
                if let Some(other) = parameters.insert(&publish.parameter, &rule.name) {
                    p.add(
                        format!("{at}.publish.parameter"),
                        format!(
                            "{:?} is published by rule {other:?} already; each rule needs its own parameter (two rules would move one pointer back and forth)",
                            publish.parameter
                        ),
                    );
                }
            }
            if !names.insert(rule.name.as_str()) {
                p.add(
                    format!("{at}.name"),
                    format!(
                        "{:?} is used by an earlier rule; rule names must be unique",
                        rule.name
                    ),
                );
            }
        }
        for (region, key) in &self.reencrypt_with {
            let at = format!("reencrypt_with.{region}");
            if !is_region(region) {
                p.add(
                    &at,
                    format!("{region:?} is not a Region code (like \"us-east-1\")"),
                );
            }
            check_key(&at, key, Some(region), &mut p);
        }
        p.unknown("events", &self.events.unknown);
        if let Some(arn) = &self.events.event_bus_arn {
            if parse_event_bus_arn(arn).is_none() {
                p.add(
                    "events.event_bus_arn",
                    format!("{arn:?} is not an event bus ARN (arn:aws:events:<region>:<account-id>:event-bus/<name>)"),
                );
            }
        }
        let s = &self.sweeper;
        p.unknown("sweeper", &s.unknown);
        if s.max_deletions == 0 {
            p.add(
                "sweeper.max_deletions",
                "must be at least 1 (use mode \"report\" to delete nothing)",
            );
        }
        if s.audit_days == 0 {
            p.add(
                "sweeper.audit_days",
                "must be at least 1 (1 audits every image every night)",
            );
        }
        let r = &self.rate_limits;
        p.unknown("rate_limits", &r.unknown);
        if !(r.share > 0.0 && r.share <= 1.0) {
            p.add(
                "rate_limits.share",
                format!("{} is not a share between 0 (exclusive) and 1", r.share),
            );
        }
        for (action, rate) in &r.requests_per_second {
            let at = format!("rate_limits.requests_per_second.{action}");
            if action.is_empty()
                || !action.starts_with(|c: char| c.is_ascii_uppercase())
                || !action.chars().all(|c| c.is_ascii_alphanumeric())
            {
                p.add(
                    &at,
                    format!("{action:?} is not an EC2 API action name (like \"DeleteSnapshot\")"),
                );
            }
            if !(rate.is_finite() && *rate > 0.0) {
                p.add(
                    &at,
                    format!("{rate} is not a positive rate (requests a second)"),
                );
            }
        }
        p.0
    }

    /// The rule with this name.
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// The parameters the rules publish that do not lie under `prefix` (the deployment's
    /// `ParameterPathPrefix`, which its IAM policy is limited to), as `path: message`.
    pub fn parameters_outside(&self, prefix: &str) -> Vec<String> {
        self.rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((i, r.publish.as_ref()?)))
            .filter(|(_, p)| !p.parameter.starts_with(prefix))
            .map(|(i, p)| {
                format!(
                    "rules[{i}].publish.parameter: {:?} is not under the deployment's parameter path prefix {prefix:?}, so the functions may not write it; use a name under {prefix:?} or deploy with ParameterPathPrefix set accordingly",
                    p.parameter
                )
            })
            .collect()
    }
}

/// `arn:<partition>:events:<region>:<account>:event-bus/<name>` → (Region, account, name).
pub fn parse_event_bus_arn(arn: &str) -> Option<(&str, &str, &str)> {
    let rest = arn.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix("events:")?;
    let (region, rest) = rest.split_once(':')?;
    let (account, rest) = rest.split_once(':')?;
    let name = rest.strip_prefix("event-bus/")?;
    let name_ok = !name.is_empty()
        && name.len() <= 256
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    (!partition.is_empty() && is_region(region) && is_account_id(account) && name_ok)
        .then_some((region, account, name))
}

/// Problems with a Parameter Store name (AWS's rules for names, plus: a path, so the IAM
/// policy can be limited to a prefix).
fn parameter_name_problem(name: &str) -> Option<String> {
    if !name.starts_with('/') {
        return Some("must be a path starting with '/', like \"/golden/al2023/latest\"".into());
    }
    if name.len() > 1011 {
        return Some("is longer than 1011 characters".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
    {
        return Some("may hold only letters, digits, '.', '_', '-' and '/'".into());
    }
    if name.ends_with('/') || name.contains("//") {
        return Some("has an empty path segment".into());
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("/aws") || lower.starts_with("/ssm") {
        return Some("may not start with \"aws\" or \"ssm\" (reserved by AWS)".into());
    }
    if name.matches('/').count() > 15 {
        return Some("has more than 15 levels".into());
    }
    None
}

impl Rule {
    fn check(&self, at: &str, allow_public: bool, p: &mut Problems) {
        p.unknown(at, &self.unknown);
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
        let m = &self.matcher;
        let mat = format!("{at}.match");
        p.unknown(&mat, &m.unknown);
        if !m.all && m.name.is_none() && m.tags.is_empty() {
            p.add(
                &mat,
                "is empty, which would share every image; give \"name\" and/or \"tags\", or say \"all\": true explicitly",
            );
        }
        if m.all && (m.name.is_some() || !m.tags.is_empty()) {
            p.add(
                &mat,
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
        let sw = &self.share_with;
        let sat = format!("{at}.share_with");
        p.unknown(&sat, &sw.unknown);
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
        if !shares && self.copy_to.is_empty() {
            p.add(&sat, "names no account, organization, OU or public, and the rule has no copy_to: the rule would do nothing");
        }
        let mut regions = BTreeSet::new();
        for (j, c) in self.copy_to.iter().enumerate() {
            let cat = format!("{at}.copy_to[{j}]");
            p.unknown(&cat, &c.unknown);
            if !is_region(&c.region) {
                p.add(
                    format!("{cat}.region"),
                    format!("{:?} is not a Region code (like \"us-west-2\")", c.region),
                );
            } else if !regions.insert(c.region.as_str()) {
                p.add(
                    format!("{cat}.region"),
                    format!("{:?} is listed twice in this rule", c.region),
                );
            }
            if let Some(key) = &c.kms_key_id {
                check_key(&format!("{cat}.kms_key_id"), key, Some(&c.region), p);
            }
        }
        if let Some(r) = &self.retire {
            let rat = format!("{at}.retire");
            p.unknown(&rat, &r.unknown);
            if r.keep.is_none() && r.max_age_days.is_none() {
                p.add(
                    &rat,
                    "names neither \"keep\" nor \"max_age_days\", so no image would ever be selected",
                );
            }
            if r.keep == Some(0) {
                p.add(
                    format!("{rat}.keep"),
                    "must be at least 1 (the newest image of a rule is never retired)",
                );
            }
            if !r.deprecate && r.disable_after_days.is_none() && r.deregister_after_days.is_none() {
                p.add(
                    &rat,
                    "has no stage: set \"deprecate\": true, \"disable_after_days\" or \"deregister_after_days\"",
                );
            }
        }
        if let Some(publish) = &self.publish {
            let pat = format!("{at}.publish");
            p.unknown(&pat, &publish.unknown);
            if let Some(why) = parameter_name_problem(&publish.parameter) {
                p.add(
                    format!("{pat}.parameter"),
                    format!("{:?} {why}", publish.parameter),
                );
            }
            if sw.accounts.is_empty()
                && sw.organizations.is_empty()
                && sw.organizational_units.is_empty()
            {
                p.add(
                    &pat,
                    "the rule shares with no account, organization or OU, so there is no one to share the parameter with (AWS RAM cannot share publicly)",
                );
            }
        }
    }
}

#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, path: impl AsRef<str>, msg: impl AsRef<str>) {
        self.0.push(format!("{}: {}", path.as_ref(), msg.as_ref()));
    }
    fn unknown(&mut self, at: &str, fields: &BTreeMap<String, Value>) {
        for k in fields.keys() {
            let path = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            self.add(
                path,
                "unknown field (see docs/policy.schema.json for the allowed fields)",
            );
        }
    }
}

fn check_key(at: &str, key: &str, region: Option<&str>, p: &mut Problems) {
    match parse_key_ref(key) {
        None => p.add(
            at,
            format!("{key:?} is not a KMS key id, key ARN, alias name (alias/…) or alias ARN"),
        ),
        Some(KeyRef { region: Some(kr), .. }) if region.is_some_and(|r| r != kr) => p.add(
            at,
            format!(
                "{key:?} is in Region {kr} but is used for {}; KMS keys are regional: name a key (or multi-Region replica) in {}",
                region.unwrap_or_default(),
                region.unwrap_or_default()
            ),
        ),
        Some(_) => {}
    }
}

/// `123456789012`.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`, `ap-southeast-4`, `cn-north-1`.
pub fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    if parts.len() < 3 || parts.len() > 4 {
        return false;
    }
    let (first, rest) = (parts[0], &parts[1..]);
    let last = rest[rest.len() - 1];
    first.len() == 2
        && first.bytes().all(|b| b.is_ascii_lowercase())
        && rest[..rest.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && !last.is_empty()
        && last.len() <= 2
        && last.bytes().all(|b| b.is_ascii_digit())
}

fn is_lower_alnum(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn org_id_ok(s: &str) -> bool {
    s.strip_prefix("o-")
        .is_some_and(|r| is_lower_alnum(r, 10, 32))
}

/// The parts of `arn:<partition>:organizations::<account>:<resource>`.
fn org_arn_resource(arn: &str) -> Option<&str> {
    let mut it = arn.splitn(6, ':');
    let (arn_, partition, service, region, account, resource) = (
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
    );
    (arn_ == "arn"
        && partition.starts_with("aws")
        && service == "organizations"
        && region.is_empty()
        && is_account_id(account))
    .then_some(resource)
}

/// `arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5` → `o-a1b2c3d4e5`.
pub fn parse_org_arn(arn: &str) -> Option<&str> {
    let org = org_arn_resource(arn)?.strip_prefix("organization/")?;
    org_id_ok(org).then_some(org)
}

/// `arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456` →
/// (`o-a1b2c3d4e5`, `ou-ab12-cdef3456`).
pub fn parse_ou_arn(arn: &str) -> Option<(&str, &str)> {
    let rest = org_arn_resource(arn)?.strip_prefix("ou/")?;
    let (org, ou) = rest.split_once('/')?;
    let (root, id) = ou.strip_prefix("ou-")?.split_once('-')?;
    (org_id_ok(org) && is_lower_alnum(root, 4, 32) && is_lower_alnum(id, 8, 32))
        .then_some((org, ou))
}

/// A reference to a KMS key as a user may write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef<'a> {
    /// The Region, when the reference is an ARN.
    pub region: Option<&'a str>,
    pub is_alias: bool,
}

/// Key id (`1234abcd-…` or `mrk-…`), key ARN, `alias/name`, or alias ARN.
pub fn parse_key_ref(s: &str) -> Option<KeyRef<'_>> {
    fn key_id_ok(id: &str) -> bool {
        let uuid = |u: &str| {
            u.len() == 36
                && u.char_indices().all(|(i, c)| {
                    if matches!(i, 8 | 13 | 18 | 23) {
                        c == '-'
                    } else {
                        c.is_ascii_hexdigit()
                    }
                })
        };
        uuid(id)
            || id
                .strip_prefix("mrk-")
                .is_some_and(|m| m.len() == 32 && m.bytes().all(|b| b.is_ascii_hexdigit()))
    }
    fn alias_ok(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 250
            && !name.starts_with("aws/")
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-'))
    }
    if let Some(name) = s.strip_prefix("alias/") {
        return alias_ok(name).then_some(KeyRef {
            region: None,
            is_alias: true,
        });
    }
    if let Some(rest) = s.strip_prefix("arn:") {
        let mut it = rest.splitn(5, ':');
        let (partition, service, region, account, resource) =
            (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
        if !partition.starts_with("aws")
            || service != "kms"
            || !is_region(region)
            || !is_account_id(account)
        {
            return None;
        }
        if let Some(id) = resource.strip_prefix("key/") {
            return key_id_ok(id).then_some(KeyRef {
                region: Some(region),
                is_alias: false,
            });
        }
        if let Some(name) = resource.strip_prefix("alias/") {
            return alias_ok(name).then_some(KeyRef {
                region: Some(region),
                is_alias: true,
            });
        }
        return None;
    }
    key_id_ok(s).then_some(KeyRef {
        region: None,
        is_alias: false,
    })
}

/// The glob dialect of `match.name` (`*`, `?`, `[abc]`, `{a,b}`; `/` is an ordinary character).
/// The policy validates with it; the matching decisions compile with it.
pub fn compile_glob(pattern: &str) -> Result<globset::Glob, globset::Error> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
}

/// The JSON Schema of the policy, as published in `docs/policy.schema.json`.
pub fn policy_schema() -> Value {
    let schema = schemars::schema_for!(Policy);
    serde_json::to_value(schema).unwrap_or(Value::Null)
}
