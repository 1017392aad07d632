//! `sweeper`: the nightly run (orphaned snapshots, drift repair, audits, retirement limits).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Problems;

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

/// Which snapshots the orphan sweep judges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrphanScope {
    /// Every snapshot of the account (the default): any snapshot whose description proves it
    /// was made for an image that no longer exists, whoever made that image.
    #[default]
    Account,
    /// Only snapshots of images the product made or shared: those carrying its mark
    /// (`ami-share:managed`, put on a source's snapshots when it is first shared) or its copy
    /// provenance (`ami-share:source-image`, put on a copy's snapshots at creation).
    Managed,
}

/// Settings of the nightly sweeper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SweeperConfig {
    #[serde(default)]
    pub mode: SweepMode,
    /// Which snapshots are judged: `account` (default) or `managed`.
    #[serde(default)]
    pub orphan_scope: OrphanScope,
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
            orphan_scope: OrphanScope::Account,
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

impl SweeperConfig {
    pub(crate) fn check(&self, p: &mut Problems) {
        let s = self;
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
    }
}
