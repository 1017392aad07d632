//! The policy: what to share with whom, where to copy, how to sweep.
//!
//! Parsed and validated once, at start ([`Policy::from_json`]), before any AWS call. Every
//! problem is reported at once, each with its JSON path, in one error message.

//!
//! One file per section of the policy: [`rule`] (what a rule matches, whom it shares with,
//! where it copies), [`publish`] (the newest-image parameter and its events), [`retire`] (the
//! retirement of older images), [`sweeper`] (the nightly run), [`rates`] (the EC2 request
//! rates), and [`ids`] (the account, Region, ARN and key syntax every section checks).

mod copy_into;
mod ids;
mod install;
mod publish;
mod rates;
mod retire;
mod rule;
mod sweeper;

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use ids::check_key;

pub use copy_into::{CopyInto, CopyIntoRegion};
pub use ids::{is_account_id, is_region, parse_key_ref, parse_org_arn, parse_ou_arn, KeyRef};
pub use install::InstallPlan;
pub use publish::{parse_event_bus_arn, AllowedAmisConfig, EventsConfig, Publish};
pub use rates::RateLimitConfig;
pub use retire::{Retire, RetireMode};
pub use rule::{compile_glob, CopyTarget, KmsAccess, Match, Rule, ShareWith};
pub use sweeper::{OrphanScope, SweepMode, SweeperConfig};

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
/// The name of the role in each target account that `copy_into` assumes (the template's
/// `TargetAccountRoleName`; the role is `templates/target-account-role.yaml`). Unset: rules
/// with `copy_into` report each target copy `failed`, naming this variable.
pub const TARGET_ROLE_ENV: &str = "AMI_SHARE_TARGET_ROLE_NAME";
/// The KMS HMAC key the sweeper signs its marks with (the stack's `MarkKey`); unset (a local
/// run): `alias/ami-share-marks`.
pub const MARK_KEY_ENV: &str = "AMI_SHARE_MARK_KEY_ID";
/// The copies' waiting line: the name of the FIFO queue the stack has in each Region.
pub const COPY_LINE_ENV: &str = "AMI_SHARE_COPY_LINE";
/// The target line: the queue of copies into target accounts to start and follow.
pub const TARGET_LINE_ENV: &str = "AMI_SHARE_TARGET_LINE";
/// The event functions' concurrency bound (their queue's maximum concurrency, the template's
/// `EventConcurrency`): each invocation paces itself to its part of `rate_limits.events_share`.
/// Unset (a local run): 1.
pub const EVENT_CONCURRENCY_ENV: &str = "AMI_SHARE_EVENT_CONCURRENCY";

/// Most type errors reported in one message (each costs one more pass over the policy).
pub const MAX_TYPE_PROBLEMS: usize = 50;

/// Remove the value at `path` from the policy (a field of an object): what a type error names,
/// so the rest can be read. `false` when it cannot be (the root, or an element of a list: the
/// paths of the elements after it would move).
fn leave_out(value: &mut Value, path: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut at = value;
    for seg in parents {
        at = match seg {
            Segment::Map { key } => match at.get_mut(key.as_str()) {
                Some(v) => v,
                None => return false,
            },
            Segment::Seq { index } => match at.get_mut(*index) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match last {
        Segment::Map { key } => at
            .as_object_mut()
            .is_some_and(|o| o.remove(key.as_str()).is_some()),
        _ => false,
    }
}

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
    /// Must be `true` for `share_with.accounts` or `copy_into.accounts` to name accounts outside
    /// this account's organization. Without it such an account is refused before anything is
    /// shared (each plain account is checked with Organizations `DescribeAccount`), and the
    /// rules' resource shares never allow external principals.
    #[serde(default)]
    pub allow_external_accounts: bool,
    /// Region → customer managed KMS key. An image in that Region whose snapshots are
    /// encrypted with the AWS managed key `aws/ebs` (which cannot be shared) is copied in
    /// the same Region, re-encrypted with this key, and the copy is shared instead.
    #[serde(default)]
    pub reencrypt_with: BTreeMap<String, String>,
    /// How rules that do not say give consumers their customer managed keys: `grants`
    /// (default) or `key_policy`. See the rule's `kms_access` and docs/policy.md.
    #[serde(default)]
    pub kms_access: KmsAccess,
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
    /// The watermark of every rule that names none (see the rule's `watermark`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
    /// How the consumers' Allowed AMIs are read.
    #[serde(default)]
    pub allowed_amis: AllowedAmisConfig,
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: BTreeMap<String, Value>,
}

impl Policy {
    /// Parse and validate. On failure the error lists every problem found, one per line,
    /// each prefixed with its JSON path.
    pub fn from_json(text: &str) -> Result<Policy, Error> {
        Self::from_json_in(text, POLICY_ENV)
    }

    /// The same, naming `source` (the variable or file the policy came from) in the errors.
    ///
    /// Every problem of every kind is in the one message: a value of the wrong type is
    /// reported and left out, and the rest is read again (up to [`MAX_TYPE_PROBLEMS`]), so
    /// that further type errors and the checks of the rest are reported too.
    pub fn from_json_in(text: &str, source: &str) -> Result<Policy, Error> {
        let mut value: Value = serde_json::from_str(text).map_err(|e| {
            Error::Config(format!("{source} is not a valid policy:\n  policy: {e}"))
        })?;
        let mut problems: Vec<String> = Vec::new();
        let mut left_out: Vec<String> = Vec::new();
        let parsed = loop {
            match serde_path_to_error::deserialize::<_, Policy>(value.clone()) {
                Ok(policy) => break Some(policy),
                Err(e) => {
                    let path = e.path().to_string();
                    let message = e.inner().to_string();
                    // A required value left out is missing now: reported already.
                    let missing_left_out = message
                        .strip_prefix("missing field `")
                        .and_then(|m| m.split('`').next())
                        .is_some_and(|field| {
                            let at = if path == "." {
                                field.to_string()
                            } else {
                                format!("{path}.{field}")
                            };
                            left_out.contains(&at)
                        });
                    if missing_left_out {
                        break None;
                    }
                    let shown = if path == "." {
                        "policy".to_string()
                    } else {
                        path.clone()
                    };
                    problems.push(format!("{shown}: {message}"));
                    let removed = problems.len() < MAX_TYPE_PROBLEMS
                        && !left_out.contains(&path)
                        && leave_out(&mut value, e.path());
                    if !removed {
                        break None;
                    }
                    left_out.push(path);
                }
            }
        };
        if let Some(policy) = &parsed {
            // The checks of what could be read; a problem of a value left out (or of what holds
            // it) is an artefact of leaving it out.
            problems.extend(policy.problems().into_iter().filter(|p| {
                let at = p.split(": ").next().unwrap_or("");
                !left_out
                    .iter()
                    .any(|l| l == at || l.starts_with(&format!("{at}.")))
            }));
        }
        match parsed {
            Some(mut policy) if problems.is_empty() => {
                // The policy's watermark is every silent rule's: resolved once, here.
                if let Some(w) = &policy.watermark {
                    for rule in policy.rules.iter_mut().filter(|r| r.watermark.is_none()) {
                        rule.watermark = Some(w.clone());
                    }
                }
                Ok(policy)
            }
            _ => Err(Error::Config(format!(
                "{source} has {} problem{}:\n  {}",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" },
                problems.join("\n  ")
            ))),
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
            rule.check(&at, self.allow_public, self.watermark.as_deref(), &mut p);
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
        if let Some(w) = &self.watermark {
            rule::check_watermark("watermark", w, &mut p);
        }
        self.events.check(&mut p);
        self.allowed_amis.check(&mut p);
        self.sweeper.check(&mut p);
        self.rate_limits.check(&mut p);
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

/// The problems found so far, each as `path: message`.
#[derive(Default)]
pub(crate) struct Problems(Vec<String>);

impl Problems {
    pub(crate) fn add(&mut self, path: impl AsRef<str>, msg: impl AsRef<str>) {
        self.0.push(format!("{}: {}", path.as_ref(), msg.as_ref()));
    }
    pub(crate) fn unknown(&mut self, at: &str, fields: &BTreeMap<String, Value>) {
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

fn yes() -> bool {
    true
}

/// The JSON Schema of the policy, as published in `docs/policy.schema.json`.
pub fn policy_schema() -> Value {
    let schema = schemars::schema_for!(Policy);
    serde_json::to_value(schema).unwrap_or(Value::Null)
}
