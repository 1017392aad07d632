//! Retirement decisions, without AWS: which of a rule's images in a Region are retired, which
//! stage each has reached (recorded in tags, so a cut-short run resumes), and which is next.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::Serialize;

use crate::config::Retire;
use crate::ports::{Image, ImageState};
use crate::publish::publication_order;

/// Tag on a retiring image: the last stage reached (`selected`, `deprecated`, `disabled`).
pub const STAGE_TAG: &str = "ami-share:retire-stage";
/// Tag on a retiring image: when that stage was reached (RFC 3339, UTC).
pub const STAGE_AT_TAG: &str = "ami-share:retire-stage-at";
/// Tag on the usage reports the sweeper requests: the image they are about.
pub const USAGE_REPORT_TAG: &str = "ami-share:retire";

/// The stages of retirement, in the only order they are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Chosen for retirement, with no deprecation stage: the clock of the next stage starts.
    Selected,
    Deprecated,
    Disabled,
    Deregistered,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Selected => "selected",
            Stage::Deprecated => "deprecated",
            Stage::Disabled => "disabled",
            Stage::Deregistered => "deregistered",
        }
    }
    pub fn parse(s: &str) -> Option<Stage> {
        match s {
            "selected" => Some(Stage::Selected),
            "deprecated" => Some(Stage::Deprecated),
            "disabled" => Some(Stage::Disabled),
            "deregistered" => Some(Stage::Deregistered),
            _ => None,
        }
    }
    /// Whether the stage needs proof that nothing uses the image.
    pub fn needs_protection_check(self) -> bool {
        matches!(self, Stage::Disabled | Stage::Deregistered)
    }
}

/// The stage an image has reached: its tags, or its state where a run stopped between the
/// action and the tag (`at` then unknown).
pub fn reached(image: &Image) -> Option<(Stage, Option<DateTime<Utc>>)> {
    let tagged = image
        .tags
        .get(STAGE_TAG)
        .and_then(|s| Stage::parse(s))
        .map(|s| {
            let at = image
                .tags
                .get(STAGE_AT_TAG)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc));
            (s, at)
        });
    if image.state == ImageState::Disabled && tagged.is_none_or(|(s, _)| s < Stage::Disabled) {
        return Some((Stage::Disabled, None));
    }
    tagged
}

/// The stages a rule runs, each with the days it waits after the previous one.
pub fn stages(r: &Retire) -> Vec<(Stage, u32)> {
    let mut out = vec![if r.deprecate {
        (Stage::Deprecated, 0)
    } else {
        (Stage::Selected, 0)
    }];
    if let Some(d) = r.disable_after_days {
        out.push((Stage::Disabled, d));
    }
    if let Some(d) = r.deregister_after_days {
        out.push((Stage::Deregistered, d));
    }
    out
}

/// What comes next for an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "next", rename_all = "kebab-case")]
pub enum Next {
    /// Every stage the rule runs is done.
    Done,
    /// This stage is due now.
    Due { stage: Stage },
    /// This stage is due at this time.
    Waiting { stage: Stage, due_at: String },
    /// The stage reached has no time recorded (a run stopped between the action and its
    /// tag): record it now; the next stage's wait starts from here.
    Record { stage: Stage },
}

/// The next step of an image that has reached `reached` under `r`, at `now`.
pub fn next_step(
    r: &Retire,
    reached: Option<(Stage, Option<DateTime<Utc>>)>,
    now: DateTime<Utc>,
) -> Next {
    let plan = stages(r);
    let Some((stage, at)) = reached else {
        return Next::Due { stage: plan[0].0 };
    };
    let Some(at) = at else {
        return Next::Record { stage };
    };
    match plan.into_iter().find(|(s, _)| *s > stage) {
        None => Next::Done,
        Some((next, days)) => {
            let due = at + Duration::days(i64::from(days));
            if due <= now {
                Next::Due { stage: next }
            } else {
                Next::Waiting {
                    stage: next,
                    due_at: due.to_rfc3339_opts(SecondsFormat::Secs, true),
                }
            }
        }
    }
}

/// The images of one rule in one Region that `r` retires, newest first, each with why. The
/// newest image is never retired.
pub fn select<'a>(
    r: &Retire,
    images: &[&'a Image],
    now: DateTime<Utc>,
) -> Vec<(&'a Image, String)> {
    let mut sorted: Vec<&Image> = images.to_vec();
    sorted.sort_by_key(|i| std::cmp::Reverse(publication_order(i)));
    sorted
        .into_iter()
        .enumerate()
        .skip(1)
        .filter_map(|(i, image)| {
            let created = publication_order(image).0;
            let age_days = DateTime::parse_from_rfc3339(&created)
                .ok()
                .map(|c| (now - c.with_timezone(&Utc)).num_days());
            let beyond_keep = r.keep.map(|k| i >= k as usize);
            let too_old = r
                .max_age_days
                .map(|d| age_days.is_some_and(|a| a > i64::from(d)));
            if beyond_keep == Some(false) || too_old == Some(false) {
                return None;
            }
            let mut why = Vec::new();
            if let Some(k) = r.keep {
                why.push(format!(
                    "number {} of the rule's images here, beyond the newest {k}",
                    i + 1
                ));
            }
            if let Some(d) = r.max_age_days {
                why.push(format!(
                    "created {} days ago, more than {d}",
                    age_days.unwrap_or_default()
                ));
            }
            Some((image, why.join("; ")))
        })
        .collect()
}
