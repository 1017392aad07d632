//! `rate_limits`: the request rates the functions allow themselves against EC2.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Problems;

/// The request rates the functions allow themselves against EC2's per-API token buckets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// The share of each API's refill rate the functions may use; the rest is left for the
    /// account's other tools. Between 0 (exclusive) and 1. Default 0.8.
    #[serde(default = "default_share")]
    pub share: f64,
    /// The share of each API's refill rate that all event invocations together may use
    /// (on-image-available and on-copy-complete, each divided by its queue's concurrency bound,
    /// the template's `EventConcurrency`). Between 0 (exclusive) and 1. Default 0.8.
    #[serde(default = "default_share")]
    pub events_share: f64,
    /// EC2 action → the account's sustained rate (requests a second) where it was raised
    /// through Service Quotas, e.g. `{"DeleteSnapshot": 20}`. Unlisted actions use EC2's
    /// documented rates: 20 a second for `Describe*`/`List*`/`Get*`, 5 for the mutating ones.
    #[serde(default)]
    pub requests_per_second: BTreeMap<String, f64>,
    /// Most snapshot copies in flight into one destination Region (each account's own, in
    /// `copy_into` target accounts): an image of two snapshots takes two. EBS allows 20
    /// concurrent snapshot copies per destination Region; copies past this wait in the
    /// Region's line and start as slots free. 1 to 1000. Default 20.
    #[serde(default = "default_copies_in_flight")]
    #[schemars(range(min = 1, max = 1000))]
    pub copies_in_flight: usize,
    /// Most consumer accounts whose Allowed AMIs one invocation of an event function reads,
    /// for all the events of its batch (`DescribeEffectivePolicy`, or
    /// `GetAllowedImagesSettings` through a `copy_into` role), to warn in their summaries that
    /// the image shared is not allowed there. Accounts read in the last 15 minutes by the
    /// same warm Lambda are judged without a read and do not count; the night judges every
    /// account. 0 turns the events' look off. 0 to 1000. Default 10.
    #[serde(default = "default_consumer_reads_per_invocation")]
    #[schemars(range(min = 0, max = 1000))]
    pub consumer_reads_per_invocation: usize,
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: BTreeMap<String, Value>,
}

fn default_share() -> f64 {
    0.8
}

fn default_copies_in_flight() -> usize {
    20
}

fn default_consumer_reads_per_invocation() -> usize {
    10
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            share: default_share(),
            events_share: default_share(),
            requests_per_second: BTreeMap::new(),
            copies_in_flight: default_copies_in_flight(),
            consumer_reads_per_invocation: default_consumer_reads_per_invocation(),
            unknown: BTreeMap::new(),
        }
    }
}

impl RateLimitConfig {
    pub(crate) fn check(&self, p: &mut Problems) {
        let r = self;
        p.unknown("rate_limits", &r.unknown);
        if !(r.share > 0.0 && r.share <= 1.0) {
            p.add(
                "rate_limits.share",
                format!("{} is not a share between 0 (exclusive) and 1", r.share),
            );
        }
        if !(r.events_share > 0.0 && r.events_share <= 1.0) {
            p.add(
                "rate_limits.events_share",
                format!(
                    "{} is not a share between 0 (exclusive) and 1",
                    r.events_share
                ),
            );
        }
        if !(1..=1000).contains(&r.copies_in_flight) {
            p.add(
                "rate_limits.copies_in_flight",
                format!(
                    "{} is not a number of copies in flight per Region from 1 to 1000 (EBS allows 20)",
                    r.copies_in_flight
                ),
            );
        }
        if r.consumer_reads_per_invocation > 1000 {
            p.add(
                "rate_limits.consumer_reads_per_invocation",
                format!(
                    "{} is not a number of consumer accounts from 0 to 1000 (0 turns the events' look off)",
                    r.consumer_reads_per_invocation
                ),
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
    }
}
