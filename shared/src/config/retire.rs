//! `retire`: how a rule's older images are retired.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{yes, Problems};

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

impl Retire {
    pub(crate) fn check(&self, rat: &str, p: &mut Problems) {
        let r = self;
        p.unknown(rat, &r.unknown);
        if r.keep.is_none() && r.max_age_days.is_none() {
            p.add(
                rat,
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
                rat,
                "has no stage: set \"deprecate\": true, \"disable_after_days\" or \"deregister_after_days\"",
            );
        }
    }
}
