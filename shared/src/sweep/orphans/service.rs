//! Orphaned snapshots: judge every snapshot of ours against the complete inventory, then mark,
//! unmark and (in delete mode, after the grace period, at most `max_deletions`) delete.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::stream::{self, StreamExt};

use super::judge::{decide, in_scope, judge, mark_value, Action, InUse, KeepReason, Verdict};
use crate::config::SweepMode;
use crate::deps::Deps;
use crate::error::Error;
use crate::night::{Ledger, Run};
use crate::ports::{Aws, MAX_TAG_RESOURCES};
use crate::sweep::inventory::{Inventory, OwnSnapshot, ORPHANED_SINCE_TAG};
use crate::sweep::listings::Listings;
use crate::sweep::report::{OrphanEntry, SweepReport, LISTED_ORPHANS};

/// The error code that means a snapshot we proved unused is in use after all.
pub const IN_USE_CODE: &str = "InvalidSnapshot.InUse";
/// Deletions in flight at once; the DeleteSnapshot rate limit paces them.
pub const DELETE_CONCURRENCY: usize = 8;

/// What became of one deletion due.
enum Deletion<'a> {
    /// Not started: the deadline was near (the next run takes it first).
    NotReached,
    /// Not started: an earlier deletion was refused as in use.
    Stopped,
    Done(
        &'a chrono::NaiveDate,
        &'a OwnSnapshot,
        Result<(), crate::error::AwsError>,
    ),
}

pub async fn sweep<P: Aws + Inventory>(
    deps: &Deps<P>,
    run: &Run,
    mode: SweepMode,
    l: &Listings,
    report: &mut SweepReport,
) {
    let r = &mut report.orphans;
    // A partial inventory is not an inventory: any failed listing aborts all marking and deleting.
    let failed: Vec<_> = [
        ("images", l.images.as_ref().err()),
        ("snapshots", l.snapshots.as_ref().err()),
        ("Recycle Bin", l.recycled.as_ref().err()),
        ("launch templates", l.launch_templates.as_ref().err()),
        (
            "launch configurations",
            l.launch_configurations.as_ref().err(),
        ),
    ]
    .into_iter()
    .filter_map(|(what, e)| e.map(|e| (what, e.clone())))
    .collect();
    let (Ok(images), Ok(snapshots), Ok(recycled), Ok(templates), Ok(configurations)) = (
        &l.images,
        &l.snapshots,
        &l.recycled,
        &l.launch_templates,
        &l.launch_configurations,
    ) else {
        r.status = "aborted".into();
        r.aborted_because = Some(format!(
            "the listing of {} failed, so the inventory is incomplete: nothing was marked, unmarked or deleted",
            failed.iter().map(|(w, _)| *w).collect::<Vec<_>>().join(", ")
        ));
        tracing::error!(region = %run.region, reason = r.aborted_because.as_deref().unwrap_or(""), "orphan sweep aborted");
        for (what, e) in failed {
            report.error(&format!("listing {what}"), &Error::from(e));
        }
        return;
    };

    let references: Vec<_> = templates
        .iter()
        .chain(configurations.iter())
        .cloned()
        .collect();
    let in_use = InUse::new(images, recycled, &references);
    let cfg = &deps.policy.sweeper;
    let today = run.now.date_naive();
    let mut marks: Vec<&OwnSnapshot> = Vec::new();
    let mut unmarks: Vec<&OwnSnapshot> = Vec::new();
    let mut due: Vec<(chrono::NaiveDate, &OwnSnapshot)> = Vec::new();
    r.snapshots_checked = snapshots.len();
    for s in snapshots {
        let verdict = if in_scope(s, cfg.orphan_scope) {
            judge(s, &in_use, run.now, cfg.min_age_days)
        } else {
            Verdict::Keep(KeepReason::NotManaged)
        };
        let action = decide(
            matches!(verdict, Verdict::Orphan(_)),
            s.tags.orphaned_since.as_deref(),
            today,
            mode,
            cfg.grace_days,
        );
        match verdict {
            Verdict::Orphan(proof) => {
                r.orphans_found += 1;
                r.orphans_gib += s.size_gib;
                if r.orphans.len() < LISTED_ORPHANS {
                    r.orphans.push(OrphanEntry {
                        snapshot_id: s.id.to_string(),
                        image_id: proof.image_id,
                        description: proof.description,
                        size_gib: s.size_gib,
                        action: action.clone(),
                    });
                }
            }
            Verdict::Keep(reason) => *r.kept.entry(reason.code().to_string()).or_insert(0) += 1,
        }
        match action {
            Action::None => {}
            Action::Mark => marks.push(s),
            Action::Unmark => unmarks.push(s),
            Action::Wait { .. } => r.waiting += 1,
            Action::Delete { since } => due.push((since, s)),
        }
    }

    // Marks and unmarks: one `CreateTags` / `DeleteTags` per 1,000 snapshots.
    let value = mark_value(run.now);
    let mark_tags = BTreeMap::from([(ORPHANED_SINCE_TAG.to_string(), value)]);
    for (i, chunk) in marks.chunks(MAX_TAG_RESOURCES).enumerate() {
        if !run.may_start() {
            report.left_for_next(format!(
                "marking {} orphans",
                marks.len() - i * MAX_TAG_RESOURCES
            ));
            break;
        }
        let ids: Vec<String> = chunk.iter().map(|s| s.id.to_string()).collect();
        match deps.aws.tag_resources(&run.region, &ids, &mark_tags).await {
            Ok(()) => report.orphans.marked += ids.len(),
            Err(e) => report.push_error(error_summary(
                &format!("marking {} orphans ({}…)", ids.len(), ids[0]),
                e,
            )),
        }
    }
    for (i, chunk) in unmarks.chunks(MAX_TAG_RESOURCES).enumerate() {
        if !run.may_start() {
            report.left_for_next(format!(
                "unmarking {} snapshots that are no longer orphans",
                unmarks.len() - i * MAX_TAG_RESOURCES
            ));
            break;
        }
        let ids: Vec<String> = chunk.iter().map(|s| s.id.to_string()).collect();
        match deps
            .aws
            .untag_resources(&run.region, &ids, &[ORPHANED_SINCE_TAG])
            .await
        {
            Ok(()) => report.orphans.unmarked += ids.len(),
            Err(e) => report.push_error(error_summary(
                &format!("unmarking {} snapshots ({}…)", ids.len(), ids[0]),
                e,
            )),
        }
    }
    let r = &mut report.orphans;

    // Deletions: the longest-marked first, at most max_deletions.
    if mode != SweepMode::Delete {
        r.status = "complete".into();
        return; // never delete anything in report mode (decide() gives no Delete there either)
    }
    due.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    let max = usize::try_from(cfg.max_deletions).unwrap_or(usize::MAX);
    r.over_max_deletions = due.len().saturating_sub(max);
    due.truncate(max);
    // Several deletions in flight (the rate limit paces them): at 100 ms a call, one at a time
    // could not use a raised DeleteSnapshot quota. No deletion starts once one was refused as
    // in use, or once the deadline is near.
    let stop = AtomicBool::new(false);
    let outcomes: Vec<Deletion> = stream::iter(due.iter())
        .map(|(since, s)| {
            let stop = &stop;
            async move {
                if stop.load(Ordering::SeqCst) {
                    return Deletion::Stopped;
                }
                if !run.may_start() {
                    return Deletion::NotReached;
                }
                let result = deps.aws.delete_snapshot(&run.region, &s.id).await;
                if matches!(&result, Err(e) if e.code == IN_USE_CODE) {
                    stop.store(true, Ordering::SeqCst);
                }
                Deletion::Done(since, s, result)
            }
        })
        .buffer_unordered(DELETE_CONCURRENCY)
        .collect()
        .await;
    let (mut not_reached, mut stopped) = (0usize, 0usize);
    for outcome in outcomes {
        let (since, s, result) = match outcome {
            Deletion::NotReached => {
                not_reached += 1;
                continue;
            }
            Deletion::Stopped => {
                stopped += 1;
                continue;
            }
            Deletion::Done(since, s, result) => (since, s, result),
        };
        match result {
            Ok(()) => {
                tracing::info!(region = %run.region, snapshot_id = %s.id, marked_since = %since, size_gib = s.size_gib, description = %s.description, "orphaned snapshot deleted");
                let r = &mut report.orphans;
                r.deleted_count += 1;
                if r.deleted.len() < LISTED_ORPHANS {
                    r.deleted.push(s.id.to_string());
                }
                r.deleted_gib += s.size_gib;
            }
            Err(e) if e.code == "InvalidSnapshot.NotFound" => {
                tracing::info!(snapshot_id = %s.id, "orphan already gone");
            }
            Err(e) if e.code == IN_USE_CODE => {
                let why = format!(
                    "{IN_USE_CODE} on {}: AWS says it is in use although the inventory proved it an orphan ({}); \
                     no further deletion was started. Find what uses it and report it as a bug",
                    s.id, s.description
                );
                tracing::error!(region = %run.region, snapshot_id = %s.id, error = %e, "{why}");
                report.push_error(error_summary(&format!("deleting {}", s.id), e));
                report.orphans.deletions_stopped = Some(why);
            }
            Err(e) => report.push_error(error_summary(&format!("deleting {}", s.id), e)),
        }
    }
    if stopped > 0 {
        // Not for a follow-up: our proof was wrong; a person must look first.
        report.not_reached.push(format!(
            "deleting {stopped} orphans: deletions stopped after {IN_USE_CODE}"
        ));
    }
    if not_reached > 0 {
        report.orphans.remaining = not_reached;
        report.left_for_next(format!(
            "deleting {not_reached} orphans due for deletion (the longest-marked first: the next run takes them first)"
        ));
    }
    report.orphans.status = "complete".into();
}

fn error_summary(context: &str, e: crate::error::AwsError) -> crate::report::ErrorSummary {
    let e = Error::from(e);
    crate::report::ErrorSummary {
        error_type: e.error_type(),
        message: format!("{context}: {e}"),
    }
}
