//! The target line: copies into target accounts that one event did not start (past
//! [`Settings::target_copies_per_event`], or refused by the target account's own copy cap,
//! `ResourceLimitExceeded`), and every copy an event started, wait in the function's own
//! Region's SQS queue and are followed until they are finished: each message is delivered to
//! on-image-available after its delay; [`TargetCopier::follow`] runs the night's step for that
//! one target — start the copy when none is alive (its first attempt's name and token), or,
//! once it is available, its deprecation, the target's parameter and `superseded-by` — and a
//! copy not finished yet is followed again a few minutes later ([`FOLLOW_DELAY_SECONDS`]).
//! The consumer's parameter then moves within minutes of the copy, not at night.
//!
//! [`Settings::target_copies_per_event`]: crate::deps::Settings::target_copies_per_event

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ports::TargetAccounts;
use super::report::{TargetCopyReport, TargetStatus};
use super::service::{Target, TargetCopier};
use crate::error::Result;
use crate::plan::{matching_rules, SharePlan};
use crate::ports::{Aws, Image};

/// How long a copy still in flight waits before it is looked at again (a copy of a few GiB
/// takes 10 to 30 minutes).
pub const FOLLOW_DELAY_SECONDS: u32 = 120;
/// A copy the follower had to start again this many times is left to the night (its copies
/// keep failing: the night's report names it).
pub const MAX_RESTARTS: u32 = 2;

/// One target copy to start and follow: the message body (`{"follow": …}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Follow {
    pub source_region: String,
    pub source_image_id: String,
    pub rule: String,
    pub account: String,
    pub region: String,
    /// When the event asked for it.
    pub since: DateTime<Utc>,
    /// Whether a copy was started (by the event or an earlier step).
    #[serde(default)]
    pub started: bool,
    /// Times the follower found no live copy of a started one and started it again.
    #[serde(default)]
    pub restarts: u32,
}

/// The target line's message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowMessage {
    pub follow: Follow,
}

impl Follow {
    pub fn body(&self) -> String {
        serde_json::to_string(&FollowMessage {
            follow: self.clone(),
        })
        .unwrap_or_default()
    }
}

/// What following one target copy came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    /// Nothing more to do: finished, or failed / refused (reported; the night tries again).
    Done(TargetCopyReport),
    /// Started or still in flight: follow again after [`FOLLOW_DELAY_SECONDS`].
    Again(TargetCopyReport, Follow),
    /// No longer asked for (the source is gone, no rule copies it there), or restarted too
    /// often: dropped, with why.
    Dropped(String),
}

impl<P: Aws + TargetAccounts> TargetCopier<'_, P> {
    /// Put `follows` in the target line, each after `delay` seconds.
    pub async fn send_follows(&self, follows: &[Follow], delay: u32) -> Result<()> {
        if follows.is_empty() {
            return Ok(());
        }
        let entries: Vec<(String, u32)> = follows.iter().map(|f| (f.body(), delay)).collect();
        self.deps().aws.follow_send(&entries).await?;
        Ok(())
    }

    /// After an event: every target it started, or that waits for a slot in its account,
    /// is looked at again in a few minutes; those past the event's bound are started by the
    /// line at once.
    pub(super) async fn follow_all(
        &self,
        source: &Image,
        now: &[Target<'_>],
        reports: &[TargetCopyReport],
        later: &[Target<'_>],
    ) -> Result<()> {
        let since = Utc::now();
        let follow = |t: &Target<'_>, started: bool| Follow {
            source_region: source.region.clone(),
            source_image_id: source.id.clone(),
            rule: t.into.rule.clone(),
            account: t.account.clone(),
            region: t.region.to_string(),
            since,
            started,
            restarts: 0,
        };
        let started: Vec<Follow> = now
            .iter()
            .zip(reports)
            .filter(|(_, r)| matches!(r.status, TargetStatus::Started | TargetStatus::Waiting))
            .map(|(t, r)| follow(t, r.status == TargetStatus::Started))
            .collect();
        let unstarted: Vec<Follow> = later.iter().map(|t| follow(t, false)).collect();
        self.send_follows(&started, FOLLOW_DELAY_SECONDS).await?;
        self.send_follows(&unstarted, 0).await
    }

    /// One step of one target copy (the night's step for that target, under the policy as it
    /// is now).
    pub async fn follow(&self, f: &Follow) -> Result<Followed> {
        let deps = self.deps();
        let Some(source) = deps
            .aws
            .describe_image(&f.source_region, &f.source_image_id)
            .await?
        else {
            return Ok(Followed::Dropped(format!(
                "the source {}/{} is gone",
                f.source_region, f.source_image_id
            )));
        };
        let rules = matching_rules(&deps.policy, &source, &deps.account_id).unwrap_or_default();
        let plan = SharePlan::from_rules(
            deps.policy.kms_access,
            rules.into_iter().filter(|r| r.name == f.rule),
        );
        let Some(into) = plan.into.iter().find(|i| i.rule == f.rule) else {
            return Ok(Followed::Dropped(format!(
                "rule {} no longer copies {} into target accounts",
                f.rule, source.id
            )));
        };
        let Some((region, key)) = into.regions.iter().find(|(r, _)| *r == f.region) else {
            return Ok(Followed::Dropped(format!(
                "rule {} no longer copies into {}",
                f.rule, f.region
            )));
        };
        let t = Target {
            into,
            account: f.account.clone(),
            region,
            key: key.as_deref(),
        };
        let report = self.finish_one(&source, &t).await;
        let mut next = f.clone();
        match report.status {
            TargetStatus::Finished | TargetStatus::Failed | TargetStatus::Refused => {
                Ok(Followed::Done(report))
            }
            TargetStatus::Started if f.restarts >= MAX_RESTARTS => Ok(Followed::Dropped(format!(
                "account {}'s copy in {} was started again {} times; the nightly sweeper follows it from now",
                f.account, f.region, f.restarts
            ))),
            TargetStatus::Started => {
                // The first attempt, started now (it waited), or a dead copy replaced.
                next.restarts += u32::from(f.started);
                next.started = true;
                Ok(Followed::Again(report, next))
            }
            TargetStatus::Pending | TargetStatus::Waiting => Ok(Followed::Again(report, next)),
        }
    }
}
