//! The night's part of `copy_into`: each rule's newest source image in the Region followed
//! into every target account and Region ([`TargetCopier::finish`]): started where every event
//! was lost, finished where the copy is available. A few calls per target account and
//! Region, none per image.

use crate::deps::Deps;
use crate::night::{Ledger, Run};
use crate::plan::{classify, matching_rules, ImageKind, SharePlan};
use crate::ports::{Aws, Image, ImageState};
use crate::publish::decide::publication_order;
use crate::sweep::SweepReport;
use crate::target_copies::{TargetAccounts, TargetCopier};

/// Tag on a rule's newest image: `<rule>/<account>`, the target account a night's pass cut at
/// its deadline stopped before (empty: from the first). Only the order of the next pass
/// depends on it.
pub const TARGETS_CURSOR_TAG: &str = "ami-share:targets-cursor";

/// Where the last pass of `rule` stopped, from its cursor on the image.
fn cursor_of(image: &Image, rule: &str) -> Option<String> {
    let (r, account) = image.tags.get(TARGETS_CURSOR_TAG)?.split_once('/')?;
    (r == rule).then(|| account.to_string())
}

/// The newest available source image of `rule` owned by this account in the Region.
fn newest_source<'i>(deps: &Deps<impl Aws>, rule: &str, images: &'i [Image]) -> Option<&'i Image> {
    images
        .iter()
        .filter(|i| {
            i.state == ImageState::Available
                && i.owner_id == deps.account_id
                && matches!(
                    classify(i),
                    ImageKind::Source {
                        is_foreign_copy: false
                    }
                )
                && matching_rules(&deps.policy, i, &deps.account_id)
                    .is_ok_and(|rules| rules.iter().any(|r| r.name == rule))
        })
        .max_by_key(|i| publication_order(i))
}

/// Follow each `copy_into` rule's newest image into its targets; counted in
/// `report.target_copies`, errors (an organization listing) in the report's errors.
pub async fn finish_target_copies<P: Aws + TargetAccounts>(
    deps: &Deps<P>,
    run: &Run,
    images: &[Image],
    report: &mut SweepReport,
) {
    let copier = TargetCopier::new(deps);
    for rule in deps.policy.rules.iter().filter(|r| r.copy_into.is_some()) {
        if !run.may_start() {
            report.left_for_next(format!(
                "copies into the target accounts of rule {}",
                rule.name
            ));
            return;
        }
        let Some(newest) = newest_source(deps, &rule.name, images) else {
            continue;
        };
        let plan = SharePlan::from_rules(deps.policy.kms_access, [rule]);
        for into in &plan.into {
            // Every step is idempotent; a pass cut at the deadline leaves a cursor on the
            // image (the account it stopped before), and the follow-up invocation goes on from
            // there: a pass longer than one invocation still finishes; the next starts from
            // the first account again.
            let from = cursor_of(newest, &rule.name);
            let pass = copier
                .finish_from(newest, into, from.as_deref().unwrap_or(""), || {
                    run.may_start()
                })
                .await;
            match pass {
                Ok((reports, stopped_at)) => {
                    report.target_copies.rules += 1;
                    for r in reports {
                        report.target_copies.add(r);
                    }
                    let next = stopped_at.clone().unwrap_or_default();
                    if from.as_deref().unwrap_or("") != next {
                        let tags = [(
                            TARGETS_CURSOR_TAG.to_string(),
                            format!("{}/{next}", rule.name),
                        )]
                        .into();
                        if let Err(e) = deps
                            .aws
                            .tag_resources(&newest.region, std::slice::from_ref(&newest.id), &tags)
                            .await
                        {
                            report.error(
                                &format!("the target pass's cursor on {}", newest.id),
                                &e.into(),
                            );
                        }
                    }
                    if let Some(at) = stopped_at {
                        report.left_for_next(format!(
                            "copies into the target accounts of rule {}: cut at the deadline, going on from account {at}",
                            rule.name
                        ));
                        return;
                    }
                }
                Err(e) => report.error(
                    &format!("copies into the target accounts of rule {}", rule.name),
                    &e,
                ),
            }
        }
    }
}
