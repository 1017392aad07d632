//! The copy line seen from the event functions: drain a Region's line and say what it did —
//! logged, returned in the summary (or the timer's answer), and counted (EMF, dimension
//! `Region`): `CopiesWaiting`, `OldestCopyWaitSeconds` (the template's `CopyWaitingAlarm`),
//! `CopyWaitSeconds` of each copy it started, `CopiesStartedFromLine`. on-copy-complete
//! drains when a copy ends and on the line's timer, which start nearly every waiting copy.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::copy::{Line, LineReport};
use crate::deps::Deps;
use crate::error::Error;
use crate::metrics;
use crate::ports::Aws;

/// Drain `region`'s line and say what it did: logged, and counted (EMF: `CopiesWaiting`,
/// `OldestCopyWaitSeconds`, `CopyWaitSeconds`, dimension `Region`) when anything started
/// or waits. The waiting count costs one `GetQueueAttributes`, only when something waits.
pub async fn drain_and_report<P: Aws>(deps: &Deps<P>, region: &str) -> Result<LineReport, Error> {
    let line = Line::new(deps);
    let d = line.drain(region).await?;
    let waiting = if d.held > 0 {
        deps.aws.line_length(region).await?
    } else {
        0
    };
    let report = LineReport {
        region: region.to_string(),
        started: d.started.len(),
        dropped: d.dropped.iter().take(10).map(|x| x.why.clone()).collect(),
        waiting,
        in_flight: d.in_flight,
        cap: line.cap(),
        oldest_wait_seconds: d.oldest_wait_seconds,
    };
    if !d.started.is_empty() || d.held > 0 || !d.dropped.is_empty() {
        tracing::info!(
            region,
            started = report.started,
            waiting,
            dropped = d.dropped.len(),
            in_flight = d.in_flight,
            cap = report.cap,
            oldest_wait_seconds = d.oldest_wait_seconds,
            "copy line drained"
        );
        let waits: Vec<i64> = d.started.iter().map(|s| s.waited_seconds).collect();
        metrics::emit(&line_record(&report, &waits, Utc::now()));
    }
    Ok(report)
}

/// The EMF record of one drain of a Region's copy line: `waits`, how long each copy it
/// started had waited (an EMF array: one value each).
fn line_record(report: &LineReport, waits: &[i64], now: DateTime<Utc>) -> Value {
    let mut metrics = vec![
        json!({"Name": metrics::COPIES_WAITING, "Unit": "Count"}),
        json!({"Name": metrics::OLDEST_COPY_WAIT, "Unit": "Seconds"}),
        json!({"Name": "CopiesStartedFromLine", "Unit": "Count"}),
    ];
    let mut record = json!({
        metrics::REGION_DIMENSION: report.region,
        metrics::COPIES_WAITING: report.waiting,
        metrics::OLDEST_COPY_WAIT: report.oldest_wait_seconds,
        "CopiesStartedFromLine": report.started,
        "in_flight": report.in_flight,
        "cap": report.cap,
    });
    if !waits.is_empty() {
        metrics.push(json!({"Name": metrics::COPY_WAIT, "Unit": "Seconds"}));
        record[metrics::COPY_WAIT] = json!(waits.iter().take(100).collect::<Vec<_>>());
    }
    record["_aws"] = json!({
        "Timestamp": now.timestamp_millis(),
        "CloudWatchMetrics": [{
            "Namespace": metrics::NAMESPACE,
            "Dimensions": [[metrics::REGION_DIMENSION]],
            "Metrics": metrics,
        }],
    });
    record
}
