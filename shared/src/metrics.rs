//! CloudWatch embedded metric format (EMF): each invocation of an event function writes one
//! record to its log, which CloudWatch turns into metrics — the outcome, the rules, what was
//! shared, and how long it took. The alarm on [`UNDISTRIBUTED`] (failed or refused images)
//! and the dashboard in `template.yaml` read these metrics.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::publish::PublishStatus;
use crate::report::{Outcome, Summary};
use crate::target_copies::TargetStatus;

/// The CloudWatch namespace of every ami-share metric.
pub const NAMESPACE: &str = "AmiShare";
/// Images that did not reach their consumers: `failed` or `refused` outcomes. The template's
/// `UndistributedImagesAlarm` watches it.
pub const UNDISTRIBUTED: &str = "Undistributed";
/// Images refused because they carry the product's copy tags or name without EC2's lineage
/// to back them (`forged-provenance`): someone should look.
pub const FORGED_PROVENANCE: &str = "ForgedProvenance";
/// Consumer accounts whose Allowed AMIs do not let them see an image of ours (the night: each
/// rule's newest image in every consumer read; an event: its image in the consumers it read).
pub const NOT_ALLOWED_IN_CONSUMERS: &str = "NotAllowedInConsumers";
const FORGED_PROVENANCE_CODE: &str = "forged-provenance";
/// Marks of the sweeper (orphaned-since, retirement stage) whose proof did not hold: someone
/// wrote or changed them (the night's record, dimension `Region`).
pub const MARKS_TAMPERED: &str = "MarksTampered";
/// Copies waiting in a destination Region's line after a drain (dimension `Region`).
pub const COPIES_WAITING: &str = "CopiesWaiting";
/// How long the oldest waiting copy of a Region has waited: the template's
/// `CopyWaitingAlarm` fires past `CopyWaitAlarmSeconds` (6 h by default).
pub const OLDEST_COPY_WAIT: &str = "OldestCopyWaitSeconds";
/// How long each copy the line started had waited.
pub const COPY_WAIT: &str = "CopyWaitSeconds";
/// The dimension naming the destination Region of the copy line metrics.
pub const REGION_DIMENSION: &str = "Region";

/// The dimension naming the function (its physical name, unique per account and Region).
pub const FUNCTION_DIMENSION: &str = "Function";

/// The function's name as Lambda knows it (`AWS_LAMBDA_FUNCTION_NAME`), else `fallback`.
pub fn function_name(fallback: &str) -> String {
    std::env::var("AWS_LAMBDA_FUNCTION_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| fallback.to_string())
}

/// The outcome as the metric dimension spells it (`shared`, `refused`, `transient_error`…).
pub fn outcome_name(outcome: Outcome) -> String {
    serde_json::to_value(outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{outcome:?}").to_lowercase())
}

/// The EMF record of one event invocation. `summary` is `None` when the invocation returned a
/// transient error (Lambda retries it): outcome `transient_error`.
pub fn event_record(
    function: &str,
    summary: Option<&Summary>,
    duration: Duration,
    now: DateTime<Utc>,
) -> Value {
    let outcome = summary
        .map(|s| outcome_name(s.outcome))
        .unwrap_or_else(|| "transient_error".into());
    let metrics = event_metrics(summary, duration);
    let mut record = json!({
        "_aws": {
            "Timestamp": now.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[FUNCTION_DIMENSION, "Outcome"], [FUNCTION_DIMENSION]],
                "Metrics": metrics.iter().map(|(n, u, _)| json!({"Name": n, "Unit": u})).collect::<Vec<_>>(),
            }],
        },
        FUNCTION_DIMENSION: function,
        "Outcome": outcome,
        "rules": summary.map(|s| s.rules.join(",")).unwrap_or_default(),
        "image_id": summary.and_then(|s| s.image_id.clone()),
        "region": summary.and_then(|s| s.region.clone()),
    });
    if let Some(e) = summary.and_then(|s| s.error.as_ref()) {
        record["error_type"] = json!(e.error_type);
    }
    for (name, _, value) in metrics {
        record[name] = json!(value);
    }
    record
}

/// The metrics of one event invocation: (name, unit, value).
fn event_metrics(
    summary: Option<&Summary>,
    duration: Duration,
) -> [(&'static str, &'static str, f64); 12] {
    let targets = summary
        .map(|s| s.target_copies.as_slice())
        .unwrap_or_default();
    let target_failures = targets.iter().filter(|t| t.is_failure()).count();
    // A target account left without its copy is undistributed too.
    let undistributed = summary
        .map(|s| matches!(s.outcome, Outcome::Failed | Outcome::Refused))
        .unwrap_or(false)
        || target_failures > 0;
    let share = summary.and_then(|s| s.share.as_ref());
    let copies = summary.map(|s| s.copies.as_slice()).unwrap_or_default();
    let published = summary
        .map(|s| {
            s.published
                .iter()
                .filter(|p| matches!(p.status, PublishStatus::Published | PublishStatus::Finished))
                .count()
        })
        .unwrap_or(0);
    let forged = summary.is_some_and(|s| s.reason_code == Some(FORGED_PROVENANCE_CODE));
    let not_allowed = summary
        .and_then(|s| s.consumers.as_ref())
        .and_then(|c| c.verdicts.get("not-allowed").copied())
        .unwrap_or(0);
    let count = |n: usize| n as f64;
    [
        ("Invocations", "Count", 1.0),
        (UNDISTRIBUTED, "Count", f64::from(u8::from(undistributed))),
        (
            "LaunchPermissionsAdded",
            "Count",
            count(share.map_or(0, |s| s.launch_permissions_added.len())),
        ),
        (
            "SnapshotPermissionsAdded",
            "Count",
            count(share.map_or(0, |s| s.snapshot_permissions_added)),
        ),
        (
            "GrantsCreated",
            "Count",
            count(share.map_or(0, |s| s.grants_created.len())),
        ),
        (
            "CopiesStarted",
            "Count",
            count(copies.iter().filter(|c| c.status == "started").count()),
        ),
        ("ParametersPublished", "Count", count(published)),
        (
            "TargetCopiesStarted",
            "Count",
            count(
                targets
                    .iter()
                    .filter(|t| t.status == TargetStatus::Started)
                    .count(),
            ),
        ),
        ("TargetCopiesFailed", "Count", count(target_failures)),
        (FORGED_PROVENANCE, "Count", f64::from(u8::from(forged))),
        (NOT_ALLOWED_IN_CONSUMERS, "Count", count(not_allowed)),
        ("Duration", "Milliseconds", duration.as_secs_f64() * 1000.0),
    ]
}

/// Write a record to the log as its own line (CloudWatch Logs extracts the metrics).
pub fn emit(record: &Value) {
    println!("{record}");
}
