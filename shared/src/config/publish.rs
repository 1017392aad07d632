//! `publish` (a rule's newest-image parameter) and `events` (where "AMI Distributed" goes).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ids::{is_account_id, is_region};
use super::{Problems, ShareWith};

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
    /// With the rule's `copy_into`: write the parameter in each target account and Region
    /// instead, naming the newest copy that account owns (never an older one; the version is
    /// labelled like the publisher's own). The publisher's own parameter (and its RAM share)
    /// is then written only when the rule also shares (`share_with`). Default `false`.
    #[serde(default)]
    pub in_target_accounts: bool,
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: BTreeMap<String, Value>,
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

impl Publish {
    /// `pat`: the path of the rule's `publish`; `sw`: the rule's targets, which the parameter is shared with.
    pub(crate) fn check(&self, pat: &str, sw: &ShareWith, copies_into: bool, p: &mut Problems) {
        let publish = self;
        p.unknown(pat, &publish.unknown);
        if let Some(why) = parameter_name_problem(&publish.parameter) {
            p.add(
                format!("{pat}.parameter"),
                format!("{:?} {why}", publish.parameter),
            );
        }
        if self.in_target_accounts && !copies_into {
            p.add(
                format!("{pat}.in_target_accounts"),
                "needs the rule's copy_into: there are no target-owned copies to publish",
            );
        }
        if !publish.shares_from_publisher(sw) && !self.in_target_accounts {
            p.add(
                pat,
                "the rule shares with no account, organization or OU, so there is no one to share the parameter with (AWS RAM cannot share publicly)",
            );
        }
    }
}

impl Publish {
    /// Whether the publisher's own parameter is written (and shared through RAM): the rule
    /// shares with someone.
    pub fn shares_from_publisher(&self, sw: &ShareWith) -> bool {
        !(sw.accounts.is_empty()
            && sw.organizations.is_empty()
            && sw.organizational_units.is_empty())
    }
}

/// How the consumers' Allowed AMIs are read (issue 30).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct AllowedAmisConfig {
    /// Read every consumer account's own setting (`GetAllowedImagesSettings`) through the
    /// target-account role, deployed read-only to the rules' OUs by a StackSet
    /// (`templates/target-account-role.yaml`, `Access=read-only`). An account where the role
    /// cannot be assumed is read from its organization policy instead. Default `false`: only
    /// `copy_into` targets are read through the role; other consumers from their organization
    /// policy (`DescribeEffectivePolicy`), which does not show an account's own setting.
    #[serde(default)]
    pub read_through_role: bool,
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: BTreeMap<String, Value>,
}

impl AllowedAmisConfig {
    pub(crate) fn check(&self, p: &mut Problems) {
        p.unknown("allowed_amis", &self.unknown);
    }
}

impl EventsConfig {
    pub(crate) fn check(&self, p: &mut Problems) {
        p.unknown("events", &self.unknown);
        if let Some(arn) = &self.event_bus_arn {
            if parse_event_bus_arn(arn).is_none() {
                p.add(
                    "events.event_bus_arn",
                    format!("{arn:?} is not an event bus ARN (arn:aws:events:<region>:<account-id>:event-bus/<name>)"),
                );
            }
        }
    }
}
