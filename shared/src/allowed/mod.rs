//! Allowed AMIs (issue 30): a consumer account's criteria, and whether an image of ours is
//! allowed there. Since December 2024 an account, or the organization through an EC2
//! declarative policy, can make only images matching its criteria discoverable and launchable;
//! sharing an image succeeds all the same. (aws-facts §10; the EC2 User Guide's "How Allowed
//! AMIs works".)
//!
//! - [`judge`]: the pure evaluator: `allowed`, `not-allowed` with the criterion that excludes
//!   the image, `unknown` where it cannot be told, and audit mode said as such;
//! - [`declarative`]: the criteria from an effective EC2 declarative policy.

pub mod declarative;
pub mod judge;

use serde::Serialize;

pub use judge::{judge, Verdict};

/// `disabled` (every image allowed), `audit-mode` (every image allowed; EC2 says which would
/// not be) or `enabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Disabled,
    AuditMode,
    Enabled,
}

impl State {
    pub fn parse(s: &str) -> Option<State> {
        match s.replace('_', "-").as_str() {
            "disabled" => Some(State::Disabled),
            "audit-mode" => Some(State::AuditMode),
            "enabled" => Some(State::Enabled),
            _ => None,
        }
    }
}

/// Where the criteria come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The account's own setting (`GetAllowedImagesSettings`).
    Account,
    /// The organization's EC2 declarative policy (`DescribeEffectivePolicy`).
    DeclarativePolicy,
}

/// A watermark filter: the key (`account:name`, wildcards `*` `?`) and conditions the product
/// cannot judge from `DescribeImages` alone (`unknown` when given).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WatermarkFilter {
    pub key: Option<String>,
    /// The Region or age conditions of the filter, when any is given.
    pub other_conditions: bool,
}

/// One criterion: every field given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Criterion {
    pub providers: Option<Vec<String>>,
    pub names: Option<Vec<String>>,
    pub product_codes: Option<Vec<String>>,
    pub max_days_since_created: Option<i64>,
    pub max_days_since_deprecated: Option<i64>,
    pub watermarks: Option<Vec<WatermarkFilter>>,
    /// An Amazon Inspector scan-result condition (never judged here: `unknown`).
    pub scan_result: bool,
    /// Fields this version does not know (the criterion is then `unknown`).
    pub unknown_fields: Vec<String>,
}

/// An account's Allowed AMIs settings in a Region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settings {
    pub state: State,
    pub criteria: Vec<Criterion>,
    pub source: Source,
}
