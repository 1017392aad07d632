//! Who consumes a rule's images, and whether their Allowed AMIs let them see an image of ours
//! (issue 30). An account's settings are read once: the organization's effective EC2
//! declarative policy for it (`DescribeEffectivePolicy`, through the organization read role),
//! or a `copy_into` target's own setting through the target role (`GetAllowedImagesSettings`),
//! then remembered by the warm Lambda ([`Deps::allowed_cell`]): concurrent events wait for
//! one read instead of making their own. Nothing is ever held back for a verdict: it is said.
//!
//! - the night judges each rule's newest image in every consumer ([`crate::sweep::consumers`]);
//! - an event judges the image it shared in as many consumers as
//!   `rate_limits.consumer_reads_per_invocation` lets it read ([`judge_event`]), and its summary
//!   warns of each that would not see the image.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::allowed::{declarative::read_for, judge, Verdict};
use crate::config::Rule;
use crate::deps::{AllowedReading, Deps};
use crate::error::Result;
use crate::plan::SharePlan;
use crate::ports::{Aws, Image};
use crate::target_copies::TargetAccounts;

/// Warnings listed in an event's summary (all are counted).
pub const LISTED: usize = 50;

/// Accounts read at once (the rate limiter paces them: Organizations' rate is low).
pub const READ_CONCURRENCY: usize = 8;

/// A consumer account, and whether it is a `copy_into` target (`true`: its own setting is read
/// through the target role).
pub type Consumer = (String, bool);

/// Rule name → its consumer accounts (never the publisher itself).
pub type Consumers = BTreeMap<String, BTreeSet<Consumer>>;

/// Whether [`of_rules`] lists organizations and OUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Every one (the night).
    Always,
    /// Only those this warm Lambda listed lately (an event: its calls never grow with the
    /// organization's size for this look).
    IfListed,
}

/// The consumer accounts of each rule: its plain accounts, the members of its organizations
/// and OUs, and its `copy_into` targets; and how many organizations and OUs were not listed
/// (`Listing::IfListed`).
pub async fn of_rules<'r, P: Aws>(
    deps: &Deps<P>,
    rules: impl IntoIterator<Item = &'r Rule>,
    listing: Listing,
) -> Result<(Consumers, usize)> {
    let mut out = BTreeMap::new();
    let mut unlisted = BTreeSet::new();
    for rule in rules {
        let plan = SharePlan::from_rules(deps.policy.kms_access, std::iter::once(rule));
        let groups: BTreeSet<&String> = plan
            .launch
            .organizations
            .iter()
            .chain(&plan.launch.organizational_units)
            .chain(plan.into.iter().flat_map(|i| i.targets.groups()))
            .collect();
        let members = match listing {
            Listing::Always => deps.members_of(groups).await?,
            Listing::IfListed => {
                let listed = deps.members_listed(groups.iter().copied());
                unlisted.extend(
                    groups
                        .into_iter()
                        .filter(|g| !listed.contains_key(*g))
                        .cloned(),
                );
                listed
            }
        };
        let targets: BTreeSet<String> = plan
            .into
            .iter()
            .flat_map(|i| i.targets.accounts(&members, &deps.account_id))
            .collect();
        let mut accounts: BTreeSet<Consumer> = BTreeSet::new();
        for a in plan.launch.accounts.iter().chain(
            plan.launch
                .organizations
                .iter()
                .chain(&plan.launch.organizational_units)
                .flat_map(|g| members.get(g).into_iter().flatten()),
        ) {
            if a != &deps.account_id && !targets.contains(a) {
                accounts.insert((a.clone(), false));
            }
        }
        accounts.extend(targets.into_iter().map(|a| (a, true)));
        out.insert(rule.name.clone(), accounts);
    }
    Ok((out, unlisted.len()))
}

/// How [`read_settings`] reads.
pub struct Reading<'a> {
    /// The Region a target's own setting is read in.
    pub region: &'a str,
    /// The target accounts' port; `None`: targets are read from their organization policy
    /// too (a function without the target role).
    pub roles: Option<&'a dyn TargetAccounts>,
    /// Every consumer is read through the role, not only the targets
    /// (`allowed_amis.read_through_role`); one where it cannot be assumed is read from its
    /// organization policy.
    pub through_role: bool,
    /// Most accounts the invocation reads (those read already do not count; see
    /// [`Deps::take_consumer_read`]); `None`: all.
    pub budget: Option<usize>,
    /// Whether another read may start (the night's deadline).
    pub may_start: &'a (dyn Fn() -> bool + Sync),
    /// Whether settings the warm Lambda read lately may answer (`false`: read every account
    /// now, as an operator's question asks).
    pub reuse: bool,
}

/// Each account's settings, taken in the order given: read (several at once, paced) or as
/// read already. Accounts past the budget, or not started before `may_start` said no, are
/// left out. `Err`: why an account's settings could not be read.
pub async fn read_settings<P: Aws>(
    deps: &Deps<P>,
    accounts: &[Consumer],
    how: &Reading<'_>,
) -> BTreeMap<String, AllowedReading> {
    let mut chosen = Vec::new();
    for (account, target) in accounts {
        let via_role = (*target || how.through_role) && how.roles.is_some();
        let cell = if how.reuse {
            deps.allowed_cell(account, via_role.then_some(how.region))
        } else {
            std::sync::Arc::new(crate::deps::AllowedCell::new())
        };
        if cell.initialized() || how.budget.is_none_or(|b| deps.take_consumer_read(b)) {
            chosen.push((account, via_role, cell));
        }
    }
    let read: Vec<Option<(String, AllowedReading)>> = stream::iter(chosen)
        .map(|(account, via_role, cell)| async move {
            if !cell.initialized() && !(how.may_start)() {
                return None;
            }
            let (_, reading) = cell
                .get_or_init(|| async {
                    let reading = match how.roles.filter(|_| via_role) {
                        Some(roles) => through_role(deps, roles, account, how.region).await,
                        None => read_for(&deps.aws, account).await,
                    };
                    (std::time::Instant::now(), reading)
                })
                .await;
            Some((account.clone(), reading.clone()))
        })
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await;
    read.into_iter().flatten().collect()
}

/// The account's own setting through its role (it shows a declarative policy's too); where
/// the role cannot be used, its organization policy.
async fn through_role<P: Aws>(
    deps: &Deps<P>,
    roles: &dyn TargetAccounts,
    account: &str,
    region: &str,
) -> AllowedReading {
    match roles.allowed_images_settings(account, region).await {
        Ok(settings) => Ok(settings),
        Err(e) => {
            let role = format!("{}: {}", e.code, e.message);
            tracing::info!(account, error = %role, "Allowed AMIs not readable through the role; reading the organization policy");
            read_for(&deps.aws, account)
                .await
                .map_err(|policy| format!("through the role: {role}; {policy}"))
        }
    }
}

/// A consumer account where an image of ours is not allowed (or would not be, were its audit
/// mode turned on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerItem {
    pub rule: String,
    pub image_id: String,
    pub account: String,
    #[serde(flatten)]
    pub verdict: Verdict,
}

impl ConsumerItem {
    /// The item, and its WARN line.
    pub fn warned(rule: &Rule, image: &Image, account: &str, verdict: Verdict) -> Self {
        tracing::warn!(rule = %rule.name, image_id = %image.id, account, verdict = verdict.code(), "the image is shared, but the consumer's Allowed AMIs do not let it be seen there");
        Self {
            rule: rule.name.clone(),
            image_id: image.id.clone(),
            account: account.to_string(),
            verdict,
        }
    }
}

/// Whether the verdict is worth a warning: the image is not seen there, or would not be.
pub fn refused(verdict: &Verdict) -> bool {
    matches!(
        verdict,
        Verdict::NotAllowed { .. } | Verdict::AuditWouldRefuse { .. }
    )
}

/// What an event found of its image in the consumers' Allowed AMIs: a warning list, never a
/// failure (the image is shared all the same).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EventConsumers {
    /// Consumer accounts of the image's rules.
    pub accounts: usize,
    /// Accounts judged: read now, or lately by this warm Lambda.
    pub judged: usize,
    /// Accounts this event did not read (past `rate_limits.consumer_reads_per_invocation`): the
    /// night judges them.
    pub not_read: usize,
    /// Organizations and OUs whose members this event did not list (the share did not need
    /// them: `share_snapshots` and grants off): the night judges their members.
    pub groups_not_listed: usize,
    /// Accounts whose settings could not be read (judged `unknown`).
    pub unreadable: usize,
    /// Verdict (`allowed`, `not-allowed`, `audit-mode`, `unknown`) → accounts.
    pub verdicts: BTreeMap<&'static str, usize>,
    /// The first accounts where the image is not allowed (or audit mode says it would not be).
    pub warnings: Vec<ConsumerItem>,
    pub warnings_total: usize,
    /// Why nothing could be judged (the rules' members could not be listed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Judge the image an event shared in its rules' consumer accounts, reading at most
/// `rate_limits.consumer_reads_per_invocation` of them (for all the events of a batch) (the plain accounts and targets first, then
/// the members of organizations and OUs the event listed for its share: no listing is made
/// for this); `None` when the policy turns this off or no rule has a consumer. `roles`: the
/// target accounts' port, where the function has the role.
pub async fn judge_event<P: Aws>(
    deps: &Deps<P>,
    image: &Image,
    rule_names: &[String],
    roles: Option<&dyn TargetAccounts>,
    now: DateTime<Utc>,
) -> Option<EventConsumers> {
    let budget = deps.policy.rate_limits.consumer_reads_per_invocation;
    let rules: Vec<&Rule> = deps
        .policy
        .rules
        .iter()
        .filter(|r| rule_names.contains(&r.name))
        .collect();
    if budget == 0 || rules.is_empty() {
        return None;
    }
    let (consumers, groups_not_listed) = match of_rules(
        deps,
        rules.iter().copied(),
        Listing::IfListed,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(image_id = %image.id, error = %e, "could not list the consumers to judge the image in their Allowed AMIs");
            return Some(EventConsumers {
                error: Some(format!("listing the rules' consumers: {e}")),
                ..EventConsumers::default()
            });
        }
    };
    let accounts = in_reading_order(deps, &rules, &consumers);
    if accounts.is_empty() && groups_not_listed == 0 {
        return None;
    }
    let how = Reading {
        region: &image.region,
        roles,
        budget: Some(budget),
        may_start: &|| true,
        reuse: true,
        through_role: deps.policy.allowed_amis.read_through_role,
    };
    let read = read_settings(deps, &accounts, &how).await;
    let mut out = EventConsumers {
        accounts: accounts.len(),
        judged: read.len(),
        not_read: accounts.len() - read.len(),
        groups_not_listed,
        unreadable: read.values().filter(|r| r.is_err()).count(),
        ..EventConsumers::default()
    };
    for rule in &rules {
        for (account, _) in consumers.get(&rule.name).into_iter().flatten() {
            let Some(settings) = read.get(account) else {
                continue;
            };
            let verdict = judge(image, account, settings.as_ref().ok(), now);
            *out.verdicts.entry(verdict.code()).or_insert(0) += 1;
            if refused(&verdict) {
                warn_of(&mut out, rule, image, account, verdict);
            }
        }
    }
    Some(out)
}

/// The rules' consumers, each once: targets and plain accounts first (named in the policy),
/// then the members of organizations and OUs.
fn in_reading_order<P>(deps: &Deps<P>, rules: &[&Rule], consumers: &Consumers) -> Vec<Consumer> {
    let named: BTreeSet<String> = rules
        .iter()
        .flat_map(|r| {
            SharePlan::from_rules(deps.policy.kms_access, std::iter::once(*r))
                .launch
                .accounts
        })
        .collect();
    let all: BTreeSet<&Consumer> = consumers.values().flatten().collect();
    let (first, rest): (Vec<&Consumer>, Vec<&Consumer>) = all
        .into_iter()
        .partition(|(a, target)| *target || named.contains(a));
    first.into_iter().chain(rest).cloned().collect()
}

fn warn_of(out: &mut EventConsumers, rule: &Rule, image: &Image, account: &str, verdict: Verdict) {
    out.warnings_total += 1;
    let item = ConsumerItem::warned(rule, image, account, verdict);
    if out.warnings.len() < LISTED {
        out.warnings.push(item);
    }
}
