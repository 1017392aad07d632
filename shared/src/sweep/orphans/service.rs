//! Orphaned snapshots: judge every snapshot of ours against the complete inventory, then mark,
//! unmark and (in delete mode, after the grace period, at most `max_deletions`) delete.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::stream::{self, StreamExt};

use super::judge::{decide, in_scope, judge, mark_value, Action, InUse, KeepReason, Verdict};
use crate::config::SweepMode;
use crate::deps::Deps;
use crate::error::Error;
use crate::marks as mark;
use crate::night::{Ledger, Run};
use crate::ports::{Aws, MAX_TAG_RESOURCES};
use crate::sweep::inventory::{Inventory, OwnSnapshot, ORPHANED_SINCE_TAG};
use crate::sweep::listings::Listings;
use crate::sweep::report::{OrphanEntry, OrphanReport, SweepReport, LISTED_ORPHANS};

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
    let Some((snapshots, in_use)) = complete_inventory(run, l, report) else {
        return;
    };
    let Some(key) = marks_key(deps, run, report).await else {
        return;
    };
    let decided = judge_all(
        deps,
        run,
        mode,
        snapshots,
        &in_use,
        &key,
        &mut report.orphans,
    );
    write_marks(deps, run, &key, &decided.marks, report).await;
    remove_marks(deps, run, &decided.unmarks, report).await;
    if mode != SweepMode::Delete {
        report.orphans.status = "complete".into();
        return; // never delete anything in report mode (decide() gives no Delete there either)
    }
    let due = longest_marked_first(decided.due, deps.policy.sweeper.max_deletions, report);
    let outcomes = delete_due(deps, run, &due).await;
    record_deletions(run, outcomes, report);
    report.orphans.status = "complete".into();
}

/// The snapshots and what is in use, when every listing is complete. A partial inventory is
/// not an inventory: any failed listing aborts all marking and deleting, said in the report.
fn complete_inventory<'l>(
    run: &Run,
    l: &'l Listings,
    report: &mut SweepReport,
) -> Option<(&'l [OwnSnapshot], InUse)> {
    if let (Ok(images), Ok(snapshots), Ok(recycled), Ok(templates), Ok(configurations)) = (
        &l.images,
        &l.snapshots,
        &l.recycled,
        &l.launch_templates,
        &l.launch_configurations,
    ) {
        let references: Vec<_> = templates
            .iter()
            .chain(configurations.iter())
            .cloned()
            .collect();
        return Some((snapshots, InUse::new(images, recycled, &references)));
    }
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
    let r = &mut report.orphans;
    r.status = "aborted".into();
    r.aborted_because = Some(format!(
        "the listing of {} failed, so the inventory is incomplete: nothing was marked, unmarked or deleted",
        failed.iter().map(|(w, _)| *w).collect::<Vec<_>>().join(", ")
    ));
    tracing::error!(region = %run.region, reason = r.aborted_because.as_deref().unwrap_or(""), "orphan sweep aborted");
    for (what, e) in failed {
        report.error(&format!("listing {what}"), &Error::from(e));
    }
    None
}

/// The key the marks are signed with: without it nothing is marked, unmarked or deleted.
async fn marks_key<P: Aws + Inventory>(
    deps: &Deps<P>,
    run: &Run,
    report: &mut SweepReport,
) -> Option<mark::MarkKey> {
    match deps.mark_key(&run.region).await {
        Ok(k) => Some(k),
        Err(e) => {
            let r = &mut report.orphans;
            r.status = "aborted".into();
            r.aborted_because = Some(format!(
                "the marks' key could not be read ({e}): nothing was marked, unmarked or deleted"
            ));
            report.error("the orphan marks' key", &e);
            None
        }
    }
}

/// What the night will write, snapshot by snapshot.
struct Decided<'a> {
    marks: Vec<&'a OwnSnapshot>,
    unmarks: Vec<&'a OwnSnapshot>,
    /// Due for deletion, with the date of the mark.
    due: Vec<(chrono::NaiveDate, &'a OwnSnapshot)>,
}

/// Every snapshot judged (orphan or kept, and why) and its action decided from its trusted
/// mark; the orphans and the kept counted in the report.
fn judge_all<'a, P: Aws + Inventory>(
    deps: &Deps<P>,
    run: &Run,
    mode: SweepMode,
    snapshots: &'a [OwnSnapshot],
    in_use: &InUse,
    key: &mark::MarkKey,
    r: &mut OrphanReport,
) -> Decided<'a> {
    let cfg = &deps.policy.sweeper;
    let today = run.now.date_naive();
    let mut decided = Decided {
        marks: Vec::new(),
        unmarks: Vec::new(),
        due: Vec::new(),
    };
    r.snapshots_checked = snapshots.len();
    for s in snapshots {
        let verdict = if in_scope(s, cfg.orphan_scope) {
            judge(s, in_use, run.now, cfg.min_age_days)
        } else {
            Verdict::Keep(KeepReason::NotManaged)
        };
        let since = trusted_mark(key, s, run, r);
        let action = decide(
            matches!(verdict, Verdict::Orphan(_)),
            since.as_deref(),
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
            Action::Mark => decided.marks.push(s),
            Action::Unmark => decided.unmarks.push(s),
            Action::Wait { .. } => r.waiting += 1,
            Action::Delete { since } => decided.due.push((since, s)),
        }
    }
    decided
}

/// Marks: one `CreateTags` per snapshot (each mark is signed for its own snapshot, so no two
/// carry the same value), paced by CreateTags' rate; none started once the deadline is near.
async fn write_marks<P: Aws + Inventory>(
    deps: &Deps<P>,
    run: &Run,
    key: &mark::MarkKey,
    marks: &[&OwnSnapshot],
    report: &mut SweepReport,
) {
    let value = mark_value(run.now);
    let stop = AtomicBool::new(false);
    let marked: Vec<Option<Result<(), crate::error::AwsError>>> = stream::iter(marks.iter())
        .map(|s| {
            let (value, stop) = (&value, &stop);
            async move {
                if stop.load(Ordering::Relaxed) || !run.may_start() {
                    stop.store(true, Ordering::Relaxed);
                    return None;
                }
                let tags = BTreeMap::from([(
                    ORPHANED_SINCE_TAG.to_string(),
                    key.sign(mark::ORPHANED_SINCE, &s.id, value),
                )]);
                Some(
                    deps.aws
                        .tag_resources(&run.region, &[s.id.to_string()], &tags)
                        .await,
                )
            }
        })
        .buffered(DELETE_CONCURRENCY)
        .collect()
        .await;
    let not_reached = marked.iter().filter(|m| m.is_none()).count();
    if not_reached > 0 {
        report.left_for_next(format!("marking {not_reached} orphans"));
    }
    for (s, m) in marks.iter().zip(marked) {
        match m {
            Some(Ok(())) => report.orphans.marked += 1,
            Some(Err(e)) => {
                report.push_error(error_summary(&format!("marking orphan {}", s.id), e))
            }
            None => {}
        }
    }
}

/// Unmarks: one `DeleteTags` per 1,000 snapshots that are no longer orphans.
async fn remove_marks<P: Aws + Inventory>(
    deps: &Deps<P>,
    run: &Run,
    unmarks: &[&OwnSnapshot],
    report: &mut SweepReport,
) {
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
}

/// The deletions due, the longest-marked first, at most `max_deletions` (the rest counted).
fn longest_marked_first<'a>(
    mut due: Vec<(chrono::NaiveDate, &'a OwnSnapshot)>,
    max_deletions: u32,
    report: &mut SweepReport,
) -> Vec<(chrono::NaiveDate, &'a OwnSnapshot)> {
    due.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    let max = usize::try_from(max_deletions).unwrap_or(usize::MAX);
    report.orphans.over_max_deletions = due.len().saturating_sub(max);
    due.truncate(max);
    due
}

/// Several deletions in flight (the rate limit paces them): at 100 ms a call, one at a time
/// could not use a raised DeleteSnapshot quota. No deletion starts once one was refused as in
/// use, or once the deadline is near.
async fn delete_due<'a, P: Aws + Inventory>(
    deps: &Deps<P>,
    run: &Run,
    due: &'a [(chrono::NaiveDate, &'a OwnSnapshot)],
) -> Vec<Deletion<'a>> {
    let stop = AtomicBool::new(false);
    stream::iter(due.iter())
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
        .await
}

/// Each deletion's outcome in the report and the log: deleted, already gone, refused as in
/// use (the proof was wrong: deletions stopped, a person must look), failed, or not reached.
fn record_deletions(run: &Run, outcomes: Vec<Deletion>, report: &mut SweepReport) {
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
}

fn error_summary(context: &str, e: crate::error::AwsError) -> crate::report::ErrorSummary {
    let e = Error::from(e);
    crate::report::ErrorSummary {
        error_type: e.error_type(),
        message: format!("{context}: {e}"),
    }
}

/// The date of a snapshot's orphan mark when its proof holds: signed for this snapshot, not
/// before the snapshot started, not in the future. Otherwise `None` (an orphan is marked
/// again from now), with the mark counted: unsigned (an earlier version's) or tampered
/// (logged at WARN, naming the snapshot). A mark on a snapshot that is no orphan any more is
/// returned as it is, so it is removed whatever it says.
fn trusted_mark(
    key: &mark::MarkKey,
    s: &OwnSnapshot,
    run: &Run,
    r: &mut OrphanReport,
) -> Option<String> {
    let raw = s.tags.orphaned_since.as_deref()?;
    let why = match key.verify(mark::ORPHANED_SINCE, &s.id, raw) {
        Ok(value) => match super::judge::parse_mark(value) {
            Some(date) if date > run.now.date_naive() => "dated in the future".to_string(),
            Some(date)
                if s.start_time
                    .is_some_and(|started| date < started.date_naive()) =>
            {
                "dated before the snapshot was made".to_string()
            }
            Some(_) => return Some(value.to_string()),
            None => "not a date".to_string(),
        },
        Err(mark::MarkProblem::Unsigned) => {
            r.marks_unsigned += 1;
            return untrusted(raw);
        }
        Err(problem) => format!("its proof does not hold ({})", problem.code()),
    };
    r.marks_tampered += 1;
    if r.tampered.len() < LISTED_ORPHANS {
        tracing::warn!(snapshot_id = %s.id, region = %run.region, mark = raw,
            "tampered orphan mark: {why}; ignored, the grace period starts again from now");
        r.tampered.push(format!("{}: {raw}: {why}", s.id));
    }
    untrusted(raw)
}

/// An untrusted mark: for an orphan, as if unmarked (marked again from now); for a snapshot
/// that is no orphan, still there to remove. `decide` gets a value it cannot parse as a date
/// only in the second case.
fn untrusted(raw: &str) -> Option<String> {
    Some(format!("untrusted:{raw}"))
}
