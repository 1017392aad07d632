//! The night's look at the consumers' Allowed AMIs (issue 30): each rule's newest image in the
//! Region, judged in every consumer account the product can read. An account is read at most
//! once a night: the organization's effective EC2 declarative policy (`DescribeEffectivePolicy`,
//! through the organization read role), or, for a `copy_into` target, the account's own setting
//! through the target role. Shares are never held back for it: it is reported.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::allowed::{judge, State, Verdict};
use crate::config::Rule;
use crate::consumers::{
    of_rules, read_settings, refused, Consumer, ConsumerItem, Listing, Reading,
};
use crate::deps::{AllowedReading, Deps};
use crate::lineage::CopyChecks;
use crate::night::{Ledger, Run, LISTED};
use crate::plan::{classify, matching_rules, ImageKind};
use crate::ports::{Aws, Image, ImageState};
use crate::publish::publication_order;
use crate::sweep::report::SweepReport;
use crate::target_copies::TargetAccounts;

/// What the night found of the consumers' Allowed AMIs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConsumerReport {
    /// `complete`, `partial` (the deadline came first), `skipped` (no rule shares).
    pub status: String,
    pub accounts_read: usize,
    /// Accounts whose settings could not be read (each judged `unknown`).
    pub accounts_unreadable: usize,
    /// Rule → verdict (`allowed`, `not-allowed`, `audit-mode`, `unknown`) → accounts.
    pub per_rule: BTreeMap<String, BTreeMap<&'static str, usize>>,
    /// Images of ours not allowed in a consumer account (or refused there once audit mode
    /// is turned on): the first of them, and how many.
    pub not_allowed: Vec<ConsumerItem>,
    pub not_allowed_total: usize,
}

/// Judge each rule's newest image here in each consumer account that can be read.
pub async fn judge_consumers<P: Aws + TargetAccounts>(
    deps: &Deps<P>,
    run: &Run,
    images: &[Image],
    checks: &CopyChecks,
    report: &mut SweepReport,
) {
    let newest = newest_per_rule(deps, images, checks);
    if newest.is_empty() {
        report.consumers.status = "skipped".into();
        return;
    }
    let Some(newest) = as_they_are_now(deps, run, newest, report).await else {
        return;
    };
    let consumers = match of_rules(deps, newest.iter().map(|(r, _)| *r), Listing::Always).await {
        Ok((c, _)) => c,
        Err(e) => {
            report.consumers.status = "aborted".into();
            report.error(
                "consumers' Allowed AMIs: listing the rules' organizations and OUs",
                &e,
            );
            return;
        }
    };
    let accounts: BTreeSet<Consumer> = consumers.values().flatten().cloned().collect();
    let accounts: Vec<Consumer> = accounts.into_iter().collect();
    let how = Reading {
        region: &run.region,
        roles: Some(&deps.aws),
        budget: None,
        may_start: &|| run.may_start(),
        // Tonight's word, not what the warm Lambda read earlier (once a night: the carry).
        reuse: false,
        through_role: deps.policy.allowed_amis.read_through_role,
    };
    let read = read_settings(deps, &accounts, &how).await;
    let r = &mut report.consumers;
    r.accounts_read = read.values().filter(|s| s.is_ok()).count();
    r.accounts_unreadable = read.len() - r.accounts_read;
    if read.len() < accounts.len() {
        // Said, not continued: a report is no reason for another invocation (each account
        // is read at most once a night).
        r.status = "partial".into();
        report.not_reached.push(format!(
            "reading the Allowed AMIs of {} consumer accounts (the deadline came first)",
            accounts.len() - read.len()
        ));
    } else {
        r.status = "complete".into();
    }
    for (rule, image) in &newest {
        for (account, _) in consumers.get(rule.name.as_str()).into_iter().flatten() {
            let Some(settings) = read.get(account.as_str()) else {
                continue;
            };
            let verdict = judge(image, account, settings.as_ref().ok(), run.now);
            count(&mut report.consumers, rule, image, account, verdict);
        }
        let sooner = &mut report.retirement.consumers_refuse_sooner;
        lookahead(sooner, rule, consumers.get(rule.name.as_str()), &read);
    }
}

/// The rules' newest images as they are now, after tonight's repair (a watermark attached
/// tonight counts): those listed without their rule's watermark read again, one
/// `DescribeImages` per 200. `None` when that read failed (said in the report).
async fn as_they_are_now<'r, P: Aws>(
    deps: &Deps<P>,
    run: &Run,
    newest: Vec<(&'r Rule, &Image)>,
    report: &mut SweepReport,
) -> Option<Vec<(&'r Rule, Image)>> {
    let ids: Vec<String> = newest
        .iter()
        .filter(|(rule, i)| {
            rule.watermark
                .as_ref()
                .is_some_and(|w| !i.watermarks.contains(&format!("{}:{w}", deps.account_id)))
        })
        .map(|(_, i)| i.id.clone())
        .collect();
    let fresh = if ids.is_empty() {
        Vec::new()
    } else {
        match deps.aws.describe_images(&run.region, &ids).await {
            Ok(f) => f,
            Err(e) => {
                report.consumers.status = "aborted".into();
                let e = crate::error::Error::from(e);
                report.error(
                    "consumers' Allowed AMIs: reading the rules' newest images",
                    &e,
                );
                return None;
            }
        }
    };
    Some(
        newest
            .into_iter()
            .map(|(rule, old)| {
                let now = fresh.iter().find(|f| f.id == old.id).cloned();
                (rule, now.unwrap_or_else(|| old.clone()))
            })
            .collect(),
    )
}

/// Each rule (that shares with anyone) and its newest available image of the Region: a source
/// the rule selects now, or one of our copies whose verified source it selects.
fn newest_per_rule<'a, P: Aws>(
    deps: &'a Deps<P>,
    images: &'a [Image],
    checks: &CopyChecks,
) -> Vec<(&'a Rule, &'a Image)> {
    let mut out = Vec::new();
    for rule in &deps.policy.rules {
        let newest = images
            .iter()
            .filter(|i| i.state == ImageState::Available && i.owner_id == deps.account_id)
            .filter(|i| {
                let source = match classify(i) {
                    ImageKind::Source { .. } => Some(*i),
                    ImageKind::OurCopy(p) if !checks.refused.contains_key(&i.id) => {
                        checks.source_of(&p)
                    }
                    _ => None,
                };
                source.is_some_and(|s| {
                    matching_rules(&deps.policy, s, &deps.account_id)
                        .is_ok_and(|rs| rs.iter().any(|r| r.name == rule.name))
                })
            })
            .max_by_key(|i| publication_order(i));
        if let Some(image) = newest {
            out.push((rule, image));
        }
    }
    out
}

fn count(r: &mut ConsumerReport, rule: &Rule, image: &Image, account: &str, verdict: Verdict) {
    *r.per_rule
        .entry(rule.name.clone())
        .or_default()
        .entry(verdict.code())
        .or_insert(0) += 1;
    if refused(&verdict) {
        if matches!(verdict, Verdict::NotAllowed { .. }) {
            r.not_allowed_total += 1;
        }
        if r.not_allowed.len() < LISTED {
            r.not_allowed
                .push(ConsumerItem::warned(rule, image, account, verdict));
        }
    }
}

/// Consumers whose criteria refuse images deprecated for longer than the rule's retirement
/// waits before disabling them: the image stops being usable there first.
fn lookahead(
    out: &mut Vec<String>,
    rule: &Rule,
    consumers: Option<&BTreeSet<(String, bool)>>,
    read: &BTreeMap<String, AllowedReading>,
) {
    let Some(retire) = rule.retire.as_ref().filter(|r| r.deprecate) else {
        return;
    };
    let disable = retire.disable_after_days;
    for (account, _) in consumers.into_iter().flatten() {
        let Some(Ok(s)) = read.get(account.as_str()) else {
            continue;
        };
        if s.state == State::Disabled {
            continue;
        }
        let strictest = s
            .criteria
            .iter()
            .filter_map(|c| c.max_days_since_deprecated)
            .min();
        if let Some(days) = strictest.filter(|d| disable.is_none_or(|x| i64::from(x) > *d)) {
            if out.len() < LISTED {
                out.push(format!(
                    "rule {}: account {account} refuses images deprecated more than {days} days ago; the rule disables them {}",
                    rule.name,
                    disable.map_or("never".to_string(), |d| format!("after {d} days"))
                ));
            }
        }
    }
}
