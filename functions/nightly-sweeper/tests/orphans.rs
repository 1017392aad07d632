//! The adversarial corpus: every snapshot here looks deletable to a naive cleaner, and each test
//! is named after the rule that protects it. Every run is in delete mode with the snapshot
//! already marked long ago, so that only the rule stands between it and deletion; and every run
//! also holds a true orphan marked long ago, which must be deleted, so a sweep that deletes
//! nothing cannot pass.

// Test set-up and assertions: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use amishare::config::SweepMode;
use amishare::deps::Deps;
use amishare::ports::{ImageState, Images};
use amishare::sweep::inventory::{SnapshotState, KEEP_TAG, ORPHANED_SINCE_TAG};
use amishare::Policy;
use amishare_testkit::inventory::{FakeTemplateVersion, SnapshotSpec};
use amishare_testkit::{FakeAws, ImageSpec, OWN_ACCOUNT};
use chrono::{DateTime, TimeZone, Utc};
use nightly_sweeper::{handle, Run, SweepReport};
use serde_json::{json, Value};

const R: &str = "us-east-1";
// After the double's snapshots start (2026-01-01): a mark before that would be tampering.
const LONG_AGO: &str = "2026-02-01";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 3, 30, 0).unwrap()
}

fn policy(sweeper: Value) -> Policy {
    let p = json!({
        "rules": [{"name": "golden", "match": {"name": "golden-*"}, "share_with": {"accounts": ["111122223333"]}}],
        "sweeper": sweeper,
    });
    Policy::from_json(&p.to_string()).unwrap()
}

fn deps(fake: FakeAws, sweeper: Value) -> Deps<FakeAws> {
    Deps::new(fake, policy(sweeper), OWN_ACCOUNT)
}

/// An image built, then deregistered without its snapshot: the snapshot it leaves.
fn leftover(fake: &FakeAws, name: &str) -> (String, String) {
    let img = fake.create_image(ImageSpec::new(R, name));
    fake.deregister_image(R, &img.id);
    (img.volumes[0].snapshot_id.clone(), img.id)
}

fn marked(fake: &FakeAws, snapshot: &str, since: &str) {
    let mark = fake.signed_mark(amishare::marks::ORPHANED_SINCE, snapshot, since);
    fake.tag_snapshot_directly(R, snapshot, ORPHANED_SINCE_TAG, &mark);
}

/// The control: a true orphan marked long ago.
fn control(fake: &FakeAws) -> String {
    let (s, _) = leftover(fake, "old-build");
    marked(fake, &s, LONG_AGO);
    s
}

/// A run that re-runs failed listings at once (production waits between attempts).
fn run() -> Run {
    Run::new(R, now(), None).with_listing_retry_delays(vec![Duration::ZERO; 3])
}

async fn sweep(d: &Deps<FakeAws>, input: Value) -> SweepReport {
    handle(d, input, &run()).await.unwrap()
}

/// Delete mode, grace 7, min age 7: the protected snapshot survives, the control does not.
async fn assert_protected(fake: FakeAws, protected: &str, reason: &str) -> SweepReport {
    let c = control(&fake);
    marked(&fake, protected, LONG_AGO);
    let d = deps(fake, json!({"mode": "delete"}));
    let r = sweep(&d, json!({})).await;
    assert!(
        d.aws.snapshot_exists(R, protected),
        "{protected} was deleted: {r:#?}"
    );
    assert_eq!(r.orphans.deleted, vec![c.clone()], "{r:#?}");
    assert!(!d.aws.snapshot_exists(R, &c));
    assert!(
        r.orphans.kept.get(reason).copied().unwrap_or(0) >= 1,
        "kept for {reason}? {:?}",
        r.orphans.kept
    );
    assert!(r.orphans.orphans.iter().all(|o| o.snapshot_id != protected));
    r
}

#[tokio::test]
async fn live_image_keeps_its_snapshot_and_a_stale_mark_is_removed() {
    let fake = FakeAws::new();
    let img = fake.create_image(ImageSpec::new(R, "golden-1"));
    let s = img.volumes[0].snapshot_id.clone();
    let r = assert_protected(fake, &s, "image_exists").await;
    assert_eq!(r.orphans.unmarked, 1);
}

#[tokio::test]
async fn disabled_image_keeps_its_snapshot() {
    let fake = FakeAws::new();
    let img = fake.create_image(ImageSpec::new(R, "golden-1").state(ImageState::Disabled));
    assert_protected(fake, &img.volumes[0].snapshot_id, "image_exists").await;
}

#[tokio::test]
async fn deprecated_image_keeps_its_snapshot() {
    let fake = FakeAws::new();
    let img = fake.create_image(ImageSpec::new(R, "golden-1"));
    fake.enable_deprecation(R, &img.id, "2030-01-01T00:00:00Z")
        .await
        .unwrap();
    assert_protected(fake, &img.volumes[0].snapshot_id, "image_exists").await;
}

#[tokio::test]
async fn image_in_recycle_bin_keeps_its_snapshot() {
    let fake = FakeAws::new();
    let img = fake.create_image(ImageSpec::new(R, "golden-1"));
    fake.recycle_image(R, &img.id);
    assert_protected(fake, &img.volumes[0].snapshot_id, "image_in_recycle_bin").await;
}

#[tokio::test]
async fn launch_template_version_1_of_5_keeps_the_snapshot() {
    let fake = FakeAws::new();
    let (s, _) = leftover(&fake, "golden-1");
    let mut versions = vec![FakeTemplateVersion {
        snapshot_ids: BTreeSet::from([s.clone()]),
        image_id: None,
    }];
    versions.extend((0..4).map(|_| FakeTemplateVersion::default()));
    fake.add_launch_template(R, "lt-0123456789abcdef0", versions);
    let r = assert_protected(fake, &s, "referenced").await;
    assert_eq!(r.orphans.kept["referenced"], 1);
}

#[tokio::test]
async fn launch_template_naming_the_deregistered_image_keeps_its_snapshot() {
    let fake = FakeAws::new();
    let (s, image) = leftover(&fake, "golden-1");
    let mut versions: Vec<FakeTemplateVersion> =
        (0..4).map(|_| FakeTemplateVersion::default()).collect();
    versions.push(FakeTemplateVersion {
        snapshot_ids: BTreeSet::new(),
        image_id: Some(image),
    });
    fake.add_launch_template(R, "lt-0123456789abcdef0", versions);
    assert_protected(fake, &s, "image_referenced").await;
}

#[tokio::test]
async fn launch_configuration_keeps_the_snapshot() {
    let fake = FakeAws::new();
    let (s, _) = leftover(&fake, "golden-1");
    fake.add_launch_configuration(
        R,
        "web-v1",
        FakeTemplateVersion {
            snapshot_ids: BTreeSet::from([s.clone()]),
            image_id: None,
        },
    );
    assert_protected(fake, &s, "referenced").await;
}

#[tokio::test]
async fn pending_copy_keeps_the_snapshot_made_for_it() {
    let fake = FakeAws::new();
    let pending = fake.create_image(
        ImageSpec::new(R, "golden-1--copy-of-eu-west-1-ami-0123456789abcdef0")
            .state(ImageState::Pending)
            .snapshots(0),
    );
    let s = fake.add_snapshot(SnapshotSpec::new(
        R,
        &format!("Copied for DestinationAmi {} from SourceAmi ami-0123456789abcdef0 for SourceSnapshot snap-0aaa", pending.id),
    ));
    assert_protected(fake, &s, "image_exists").await;
}

#[tokio::test]
async fn pending_snapshot_is_kept() {
    let fake = FakeAws::new();
    let s = fake.add_snapshot(
        SnapshotSpec::made_for(R, "ami-0000000000000dead").state(SnapshotState::Pending),
    );
    assert_protected(fake, &s, "not_completed").await;
}

#[tokio::test]
async fn backup_managed_snapshot_is_kept() {
    let fake = FakeAws::new();
    let (s, _) = leftover(&fake, "golden-1");
    fake.tag_snapshot_directly(
        R,
        &s,
        "aws:backup:source-resource",
        "arn:aws:ec2:us-east-1::image/ami-1",
    );
    assert_protected(fake, &s, "backup_managed").await;
}

#[tokio::test]
async fn dlm_managed_snapshot_is_kept() {
    let fake = FakeAws::new();
    let (s, _) = leftover(&fake, "golden-1");
    fake.tag_snapshot_directly(
        R,
        &s,
        "aws:dlm:lifecycle-policy-id",
        "policy-0123456789abcdef0",
    );
    assert_protected(fake, &s, "dlm_managed").await;
}

#[tokio::test]
async fn keep_tag_is_respected() {
    let fake = FakeAws::new();
    let (s, _) = leftover(&fake, "golden-1");
    fake.tag_snapshot_directly(R, &s, KEEP_TAG, "");
    assert_protected(fake, &s, "keep_tag").await;
}

#[tokio::test]
async fn plain_snapshot_without_proof_of_origin_is_never_touched() {
    let fake = FakeAws::new();
    let s = fake.add_snapshot(SnapshotSpec::new(R, "database backup before the migration"));
    let r = assert_protected(fake, &s, "no_proof_of_origin").await;
    assert_eq!(r.orphans.unmarked, 1, "even our own stale mark is removed");
}

#[tokio::test]
async fn orphan_younger_than_min_age_is_not_an_orphan_yet() {
    let fake = FakeAws::new();
    let s = fake.add_snapshot(
        SnapshotSpec::made_for(R, "ami-0000000000000dead")
            .started(now() - chrono::Duration::days(3)),
    );
    assert_protected(fake, &s, "too_young").await;
}

#[tokio::test]
async fn orphan_marked_yesterday_waits_out_its_grace_days() {
    let fake = FakeAws::new();
    let c = control(&fake);
    let (s, _) = leftover(&fake, "golden-1");
    marked(&fake, &s, "2026-11-20");
    let d = deps(fake, json!({"mode": "delete", "grace_days": 7}));
    let r = sweep(&d, json!({})).await;
    assert!(d.aws.snapshot_exists(R, &s));
    assert_eq!(r.orphans.deleted, vec![c]);
    assert_eq!(r.orphans.waiting, 1);
    let entry = r
        .orphans
        .orphans
        .iter()
        .find(|o| o.snapshot_id == s)
        .unwrap();
    assert_eq!(serde_json::to_value(entry).unwrap()["days_left"], json!(6));
    assert_eq!(
        d.aws.snapshot_tags(R, &s)[ORPHANED_SINCE_TAG],
        d.aws
            .signed_mark(amishare::marks::ORPHANED_SINCE, &s, "2026-11-20"),
        "the mark is not moved"
    );
}

#[tokio::test]
async fn orphan_marked_long_ago_is_the_only_one_deleted_from_the_whole_corpus() {
    let fake = FakeAws::new();
    let mut protected = Vec::new();
    let live = fake.create_image(ImageSpec::new(R, "golden-live"));
    protected.push(live.volumes[0].snapshot_id.clone());
    let disabled =
        fake.create_image(ImageSpec::new(R, "golden-disabled").state(ImageState::Disabled));
    protected.push(disabled.volumes[0].snapshot_id.clone());
    let binned = fake.create_image(ImageSpec::new(R, "golden-binned"));
    fake.recycle_image(R, &binned.id);
    protected.push(binned.volumes[0].snapshot_id.clone());
    let (in_lt, _) = leftover(&fake, "golden-lt");
    fake.add_launch_template(
        R,
        "lt-1",
        vec![
            FakeTemplateVersion {
                snapshot_ids: BTreeSet::from([in_lt.clone()]),
                image_id: None,
            },
            FakeTemplateVersion::default(),
        ],
    );
    protected.push(in_lt);
    for tag in [
        "aws:backup:source-resource",
        "aws:dlm:lifecycle-policy-id",
        KEEP_TAG,
    ] {
        let (s, _) = leftover(&fake, "golden-tagged");
        fake.tag_snapshot_directly(R, &s, tag, "x");
        protected.push(s);
    }
    protected.push(fake.add_snapshot(SnapshotSpec::new(R, "")));
    protected
        .push(fake.add_snapshot(SnapshotSpec::made_for(R, "ami-0000000000000dead").started(now())));
    for s in &protected {
        marked(&fake, s, LONG_AGO);
    }
    let (yesterday, _) = leftover(&fake, "golden-yesterday");
    marked(&fake, &yesterday, "2026-11-20");
    let (unmarked, _) = leftover(&fake, "golden-new");
    let c = control(&fake);

    let d = deps(
        fake,
        json!({"mode": "delete", "grace_days": 7, "min_age_days": 7}),
    );
    let r = sweep(&d, json!({})).await;
    assert_eq!(r.orphans.status, "complete");
    assert_eq!(r.orphans.deleted, vec![c]);
    assert_eq!(r.orphans.deleted_gib, 8);
    assert_eq!(d.aws.world().inventory.deleted.len(), 1);
    assert_eq!(r.orphans.orphans_found, 3, "{:#?}", r.orphans.orphans);
    assert_eq!(r.orphans.marked, 1);
    assert_eq!(
        d.aws.snapshot_tags(R, &unmarked)[ORPHANED_SINCE_TAG],
        d.aws
            .signed_mark(amishare::marks::ORPHANED_SINCE, &unmarked, "2026-11-21")
    );
    assert!(d.aws.snapshot_exists(R, &yesterday));
    for s in &protected {
        assert!(d.aws.snapshot_exists(R, s), "{s}");
    }
    assert!(r.errors.is_empty(), "{:?}", r.errors);
}

#[tokio::test]
async fn report_mode_never_deletes_even_what_is_due() {
    let fake = FakeAws::new();
    let c = control(&fake);
    let (fresh, _) = leftover(&fake, "golden-new");
    let d = deps(fake, json!({"mode": "delete", "grace_days": 0}));
    let r = sweep(&d, json!({"mode": "report"})).await;
    assert_eq!(r.mode, SweepMode::Report);
    assert_eq!(r.mode_from, "input");
    assert!(r.orphans.deleted.is_empty());
    assert!(d.aws.snapshot_exists(R, &c));
    assert_eq!(d.aws.call_counts().get("ec2:DeleteSnapshot"), None);
    assert_eq!(r.orphans.marked, 1);
    assert_eq!(
        d.aws.snapshot_tags(R, &fresh)[ORPHANED_SINCE_TAG],
        d.aws
            .signed_mark(amishare::marks::ORPHANED_SINCE, &fresh, "2026-11-21")
    );
}

#[tokio::test]
async fn default_mode_is_report() {
    let fake = FakeAws::new();
    let c = control(&fake);
    let d = deps(fake, json!({"grace_days": 0}));
    let r = sweep(&d, json!({})).await;
    assert_eq!((r.mode, r.mode_from), (SweepMode::Report, "policy"));
    assert!(d.aws.snapshot_exists(R, &c));
}

#[tokio::test]
async fn input_may_not_raise_the_policys_mode() {
    let fake = FakeAws::new();
    let c = control(&fake);
    let d = deps(fake, json!({"grace_days": 0}));
    let input: serde_json::Value =
        serde_json::from_str(include_str!("../../../events/sweeper-delete.json")).unwrap();
    let err = nightly_sweeper::sweep(&d, input.clone(), &run())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("never raise it"), "{err}");
    assert!(d.aws.snapshot_exists(R, &c));
    assert_eq!(d.aws.call_counts().get("ec2:DeleteSnapshot"), None);
    assert_eq!(
        d.aws.call_counts().get("ec2:CreateTags"),
        None,
        "nothing written"
    );
    // Under a delete policy the same input is the policy's own mode.
    let d = deps(FakeAws::new(), json!({"mode": "delete", "grace_days": 0}));
    let c = control(&d.aws);
    let r = sweep(&d, input).await;
    assert_eq!((r.mode, r.mode_from), (SweepMode::Delete, "input"));
    assert_eq!(r.orphans.deleted, vec![c]);
}

#[tokio::test]
async fn orphans_are_marked_only_once() {
    let fake = FakeAws::new();
    let (s, _) = leftover(&fake, "golden-1");
    let d = deps(fake, json!({}));
    assert_eq!(sweep(&d, json!({})).await.orphans.marked, 1);
    d.aws.reset_calls();
    let r = sweep(&d, json!({})).await;
    assert_eq!(r.orphans.marked, 0);
    assert_eq!(r.orphans.waiting, 1);
    assert_eq!(d.aws.call_counts().get("ec2:CreateTags"), None);
    assert_eq!(
        d.aws.snapshot_tags(R, &s)[ORPHANED_SINCE_TAG],
        d.aws
            .signed_mark(amishare::marks::ORPHANED_SINCE, &s, "2026-11-21")
    );
}

/// Every listing, failing on its third page: nothing marked, unmarked or deleted.
#[tokio::test]
async fn a_listing_that_fails_on_its_third_page_aborts_all_marking_and_deleting() {
    for op in [
        "ec2:DescribeSnapshots",
        "ec2:DescribeImages",
        "ec2:ListImagesInRecycleBin",
        "ec2:DescribeLaunchTemplates",
        "ec2:DescribeLaunchTemplateVersions",
        "autoscaling:DescribeLaunchConfigurations",
    ] {
        let fake = FakeAws::new(); // 2 items per page
        let c = control(&fake);
        let (fresh, _) = leftover(&fake, "golden-new");
        let live = fake.create_image(ImageSpec::new(R, "golden-live"));
        marked(&fake, &live.volumes[0].snapshot_id, LONG_AGO); // would be unmarked
        for i in 0..6 {
            let (s, img) = leftover(&fake, &format!("golden-{i}"));
            fake.add_launch_configuration(
                R,
                &format!("lc-{i}"),
                FakeTemplateVersion {
                    snapshot_ids: BTreeSet::from([s.clone()]),
                    image_id: None,
                },
            );
            fake.world()
                .inventory
                .recycle_bin
                .insert((R.into(), format!("{img}0")), "x".into());
            let versions = (0..6).map(|_| FakeTemplateVersion::default()).collect();
            fake.add_launch_template(R, &format!("lt-{i}"), versions);
            fake.create_image(ImageSpec::new(R, &format!("other-{i}")));
        }
        // Failing on every attempt: the first and the three re-runs.
        fake.fail(op, "InternalError", 2, 1000);
        let d = deps(fake, json!({"mode": "delete", "grace_days": 0}));
        let r = nightly_sweeper::sweep(&d, json!({}), &run()).await.unwrap();
        assert!(
            r.retry.as_deref().unwrap_or("").contains("run again"),
            "{op}: {:?}",
            r.retry
        );
        assert_eq!(r.orphans.status, "aborted", "{op}");
        assert!(
            r.orphans
                .aborted_because
                .as_deref()
                .unwrap_or("")
                .contains("nothing was marked"),
            "{op}"
        );
        assert!(
            r.errors
                .iter()
                .any(|e| e.error_type == "Transient.InternalError"),
            "{op}: {:?}",
            r.errors
        );
        let counts = d.aws.call_counts();
        // (CreateTags may record drift fingerprints on images; no snapshot is marked: below.)
        for write in ["ec2:DeleteSnapshot", "ec2:DeleteTags"] {
            assert_eq!(counts.get(write), None, "{op}: {write} was called");
        }
        assert!(d.aws.snapshot_exists(R, &c), "{op}");
        assert!(
            !d.aws
                .snapshot_tags(R, &fresh)
                .contains_key(ORPHANED_SINCE_TAG),
            "{op}"
        );
        assert!(
            r.orphans.orphans.is_empty() && r.orphans.orphans_found == 0,
            "{op}: no verdicts from a partial inventory"
        );
    }
}

#[tokio::test]
async fn max_deletions_is_respected_oldest_marks_first() {
    let fake = FakeAws::new();
    let mut due = Vec::new();
    for (i, since) in ["2026-03-01", "2026-01-01", "2026-02-01", "2026-04-01"]
        .iter()
        .enumerate()
    {
        let (s, _) = leftover(&fake, &format!("b-{i}"));
        marked(&fake, &s, since);
        due.push(s);
    }
    let d = deps(fake, json!({"mode": "delete", "max_deletions": 2}));
    let r = sweep(&d, json!({})).await;
    assert_eq!(r.orphans.deleted, vec![due[1].clone(), due[2].clone()]);
    assert_eq!(r.orphans.over_max_deletions, 2);
    assert_eq!(d.aws.call_counts()["ec2:DeleteSnapshot"], 2);
}

#[tokio::test]
async fn in_use_on_delete_stops_all_further_deletions_and_is_reported_loudly() {
    let fake = FakeAws::new();
    let mut due = Vec::new();
    for i in 0..3 {
        let (s, _) = leftover(&fake, &format!("b-{i}"));
        marked(&fake, &s, LONG_AGO);
        due.push(s);
    }
    due.sort();
    fake.world().inventory.in_use_anyway.insert(due[0].clone());
    let d = deps(fake, json!({"mode": "delete"}));
    let r = sweep(&d, json!({})).await;
    assert!(r.orphans.deleted.is_empty(), "{r:#?}");
    assert_eq!(
        d.aws.call_counts()["ec2:DeleteSnapshot"],
        1,
        "no deletion after InvalidSnapshot.InUse"
    );
    assert!(r
        .orphans
        .deletions_stopped
        .as_deref()
        .unwrap_or("")
        .contains("InvalidSnapshot.InUse"));
    assert!(r
        .errors
        .iter()
        .any(|e| e.error_type == "Permanent.InvalidSnapshot.InUse"));
    assert_eq!(r.emf(now())["Errors"], json!(2));
    for s in &due {
        assert!(d.aws.snapshot_exists(R, s));
    }
}

#[tokio::test]
async fn a_deadline_too_near_starts_nothing_and_says_so() {
    let fake = FakeAws::new();
    let c = control(&fake);
    let d = deps(fake, json!({"mode": "delete"}));
    let run = Run::new(R, now(), Some(SystemTime::now() + Duration::from_secs(30))); // margin is 60 s
    let r = handle(&d, json!({}), &run).await.unwrap();
    assert_eq!(r.orphans.status, "not_reached");
    assert_eq!(r.drift.status, "not_reached");
    assert!(!r.not_reached.is_empty());
    assert!(d.aws.world().calls.is_empty());
    assert!(d.aws.snapshot_exists(R, &c));
}

#[tokio::test]
async fn deadline_far_enough_lets_the_whole_sweep_run() {
    let fake = FakeAws::new();
    let c = control(&fake);
    let d = deps(fake, json!({"mode": "delete"}));
    let run = Run::new(R, now(), Some(SystemTime::now() + Duration::from_secs(600)));
    let r = handle(&d, json!({}), &run).await.unwrap();
    assert_eq!(r.orphans.deleted, vec![c]);
    assert!(r.not_reached.is_empty());
}

#[tokio::test]
async fn inputs_other_than_mode_report_or_delete_are_bad_events() {
    let d = deps(FakeAws::new(), json!({}));
    for bad in [
        json!({"mode": "purge"}),
        json!({"mode": 1}),
        json!({"dry_run": true}),
        json!([]),
        json!("report"),
        json!(null),
    ] {
        let e = handle(&d, bad.clone(), &Run::new(R, now(), None))
            .await
            .unwrap_err();
        assert_eq!(e.error_type(), "BadEvent", "{bad}");
    }
    assert!(d.aws.world().calls.is_empty());
    // Every fixture input is understood (under a delete policy, so that none raises the mode).
    let d = deps(FakeAws::new(), json!({"mode": "delete"}));
    for (file, mode) in [
        (
            include_str!("../../../events/sweeper-scheduled.json"),
            SweepMode::Delete,
        ),
        (
            include_str!("../../../events/sweeper-report-only.json"),
            SweepMode::Report,
        ),
        (
            include_str!("../../../events/sweeper-delete.json"),
            SweepMode::Delete,
        ),
    ] {
        let r = handle(
            &d,
            serde_json::from_str(file).unwrap(),
            &Run::new(R, now(), None),
        )
        .await
        .unwrap();
        assert_eq!(r.mode, mode, "{file}");
    }
}

#[tokio::test]
async fn report_counts_and_emf_metrics() {
    let fake = FakeAws::new();
    let c = control(&fake);
    fake.add_snapshot(SnapshotSpec::made_for(R, "ami-0000000000000dead").size(100));
    let d = deps(fake, json!({"mode": "delete"}));
    let r = sweep(&d, json!({})).await;
    assert_eq!(r.orphans.deleted, vec![c]);
    assert_eq!((r.orphans.orphans_found, r.orphans.orphans_gib), (2, 108));
    let emf = r.emf(now());
    assert_eq!(emf["_aws"]["CloudWatchMetrics"][0]["Namespace"], "AmiShare");
    assert_eq!(
        emf["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["Region"]])
    );
    assert_eq!(emf["_aws"]["Timestamp"], json!(now().timestamp_millis()));
    assert_eq!(emf["Region"], R);
    for (m, v) in [
        ("OrphanedSnapshots", 2),
        ("OrphanedGiB", 108),
        ("SnapshotsDeleted", 1),
        ("GiBReclaimed", 8),
        ("Errors", 0),
    ] {
        assert_eq!(emf[m], json!(v), "{m}");
        let declared = emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap();
        assert!(declared.iter().any(|d| d["Name"] == m), "{m} declared");
    }
    let as_json = serde_json::to_value(&r).unwrap();
    assert_eq!(
        as_json["orphans"]["orphans"][0]["description"]
            .as_str()
            .map(|d| d.starts_with("Created by CreateImage(")),
        Some(true)
    );
}

#[test]
fn a_deadline_already_past_at_start_is_ignored_and_a_future_one_kept() {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    let past = nightly_sweeper::Run::for_invocation(
        "us-east-1",
        chrono::Utc::now(),
        UNIX_EPOCH + Duration::from_millis(600_000),
    );
    assert_eq!(past.deadline, None);
    let future = SystemTime::now() + Duration::from_secs(900);
    let real = nightly_sweeper::Run::for_invocation("us-east-1", chrono::Utc::now(), future);
    assert_eq!(real.deadline, Some(future));
}

/// Defect: a listing throttled three times in a row (the SDK's default attempts) lost the
/// night. The sweeper runs the failed listing again within its run, so that night's marks and
/// deletions still happen.
#[tokio::test]
async fn a_listing_throttled_three_times_in_a_row_still_yields_the_nights_marks_and_deletions() {
    let fake = FakeAws::new();
    let c = control(&fake);
    fake.add_launch_template(R, "lt-1", vec![FakeTemplateVersion::default()]);
    fake.fail("ec2:DescribeLaunchTemplates", "RequestLimitExceeded", 0, 3);
    let d = deps(fake, json!({"mode": "delete", "grace_days": 0}));
    let r = handle(&d, json!({}), &run()).await.unwrap();
    assert_eq!(
        r.orphans.status, "complete",
        "{:?}",
        r.orphans.aborted_because
    );
    assert_eq!(r.inventory_retried, vec!["launch templates".to_string(); 3]);
    assert!(r.retry.is_none());
    assert!(
        !d.aws.snapshot_exists(R, &c),
        "the marked orphan is deleted"
    );
    assert_eq!(d.aws.call_counts()["ec2:DescribeLaunchTemplates"], 4);
}

/// Still incomplete after every re-run: the report is logged, then the invocation fails with a
/// transient error (so the retry policy runs the sweep again) and says so.
#[tokio::test]
async fn an_inventory_still_incomplete_after_the_reruns_fails_the_invocation_so_it_is_retried() {
    let fake = FakeAws::new();
    let c = control(&fake);
    fake.fail(
        "ec2:DescribeLaunchTemplates",
        "RequestLimitExceeded",
        0,
        1000,
    );
    let d = deps(fake, json!({"mode": "delete", "grace_days": 0}));
    let e = handle(&d, json!({}), &run()).await.unwrap_err();
    assert!(e.is_transient());
    assert_eq!(e.error_type(), "Transient.InventoryIncomplete");
    let msg = e.to_string();
    assert!(
        msg.contains("launch templates") && msg.contains("run again"),
        "{msg}"
    );
    assert!(!msg.contains("event will be retried"), "{msg}");
    assert!(
        d.aws.snapshot_exists(R, &c),
        "nothing deleted from a partial inventory"
    );
    assert_eq!(d.aws.call_counts()["ec2:DescribeLaunchTemplates"], 4);
}

/// Marks and unmarks are batched: at most 1,000 snapshot ids per `CreateTags`/`DeleteTags`.
#[tokio::test]
async fn each_mark_is_signed_for_its_own_snapshot_one_call_each() {
    // Issue 25: a mark is an HMAC over the snapshot, the kind and the date, so no two marks
    // are alike: one CreateTags per orphan (marking happens once per orphan; deleting it costs
    // one DeleteSnapshot as well). The report stays small however many.
    let fake = FakeAws::new();
    fake.world().page_size = 1000;
    for i in 0..2500 {
        fake.add_snapshot(
            SnapshotSpec::made_for(R, &format!("ami-{:017x}", 0xdead0000u64 + i))
                .started(now() - chrono::Duration::days(30)),
        );
    }
    let d = deps(fake, json!({"mode": "report"}));
    let r = sweep(&d, json!({})).await;
    assert_eq!(r.orphans.orphans_found, 2500);
    assert_eq!(r.orphans.marked, 2500);
    assert_eq!(d.aws.call_counts()["ec2:CreateTags"], 2500);
    assert_eq!(d.aws.world().largest_tag_batch, 1);
    let key = d.aws.mark_key();
    let ids: Vec<String> = d
        .aws
        .world()
        .snapshots
        .keys()
        .map(|(_, id)| id.clone())
        .take(20)
        .collect();
    for id in ids {
        let tag = d.aws.snapshot_tags(R, &id)[ORPHANED_SINCE_TAG].clone();
        assert_eq!(
            key.verify(amishare::marks::ORPHANED_SINCE, &id, &tag),
            Ok("2026-11-21"),
            "{id}: {tag}"
        );
    }
    assert!(r.orphans.orphans.len() <= nightly_sweeper::report::LISTED_ORPHANS);
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.len() < 64 * 1024, "report is {} bytes", json.len());
}

/// Issue 25: `sweeper.orphan_scope: managed` judges only the snapshots the product marked (a
/// source's, when it was first shared) or made (a copy's, tagged at creation); every other
/// team's leftovers are kept and counted `not_managed`. The default scope is the account.
#[tokio::test]
async fn orphan_scope_managed_judges_only_the_products_snapshots() {
    let fake = FakeAws::new();
    // Shared by the product (on-image-available marks its snapshots), then deregistered.
    let ours = fake.create_image(ImageSpec::new(R, "golden-1"));
    let d = deps(
        fake,
        json!({"orphan_scope": "managed", "mode": "delete", "grace_days": 0}),
    );
    on_image_available_like_share(&d, &ours.id).await;
    let our_snap = ours.volumes[0].snapshot_id.clone();
    assert!(
        d.aws
            .snapshot_tags(R, &our_snap)
            .contains_key("ami-share:managed"),
        "the first share marks the source's snapshots"
    );
    d.aws.deregister_image(R, &ours.id);
    // A copy's snapshot (provenance at creation), left behind.
    let copy_snap = d.aws.add_snapshot(
        SnapshotSpec::made_for(R, "ami-0000000000000c0de")
            .tag("ami-share:source-image", "us-west-2/ami-0000000000000beef"),
    );
    // Another team's leftover: a proven orphan, but never the product's.
    let (theirs, _) = leftover(&d.aws, "team-b-build");

    let r = sweep(&d, json!({})).await;
    let mut found: Vec<String> = r
        .orphans
        .orphans
        .iter()
        .map(|o| o.snapshot_id.clone())
        .collect();
    found.sort();
    let mut want = vec![our_snap.clone(), copy_snap.clone()];
    want.sort();
    assert_eq!(found, want, "{r:#?}");
    assert_eq!(
        r.orphans.kept.get("not_managed"),
        Some(&1),
        "{:?}",
        r.orphans.kept
    );
    assert!(d.aws.snapshot_exists(R, &theirs));
    assert!(!d
        .aws
        .snapshot_tags(R, &theirs)
        .contains_key(ORPHANED_SINCE_TAG));

    // The default scope is the account: the same leftover is an orphan there.
    let fake = FakeAws::new();
    let (theirs, _) = leftover(&fake, "team-b-build");
    let d = deps(fake, json!({}));
    let r = sweep(&d, json!({})).await;
    assert_eq!(r.orphans.orphans[0].snapshot_id, theirs);
}

/// The first share of `id` through the same convergence on-image-available runs (its record
/// marks the snapshots).
async fn on_image_available_like_share(d: &Deps<FakeAws>, id: &str) {
    use amishare::plan::SharePlan;
    use amishare::share::{Convergence, KeyState};
    let image = d.aws.image(R, id).unwrap().image;
    let rules: Vec<_> = d.policy.rules.iter().collect();
    let plan = SharePlan::from_rules(d.policy.kms_access, rules).for_source(false);
    let conv = Convergence::for_event(d, now(), std::sync::Arc::new(KeyState::default()));
    let done = conv.converge(&image, &plan, false, None).await.unwrap();
    conv.record(R, &[&done]).await.unwrap();
}

/// Issue 25: a mark that starts the grace period must carry the product's proof. A back-dated
/// mark without it (an earlier version's, or a forger's), one copied from another snapshot,
/// one dated before its snapshot or in the future: none deletes anything early; each is
/// reported (tampering: counted, listed, metric) and the grace period starts again from now.
#[tokio::test]
async fn forged_or_copied_orphan_marks_delete_nothing_early() {
    let fake = FakeAws::new();
    let (genuine, _) = leftover(&fake, "genuine"); // properly marked long ago: the control
    marked(&fake, &genuine, LONG_AGO);
    let (unsigned, _) = leftover(&fake, "unsigned");
    fake.tag_snapshot_directly(R, &unsigned, ORPHANED_SINCE_TAG, "2000-01-01");
    let (copied, _) = leftover(&fake, "copied");
    let genuine_mark = fake.snapshot_tags(R, &genuine)[ORPHANED_SINCE_TAG].clone();
    fake.tag_snapshot_directly(R, &copied, ORPHANED_SINCE_TAG, &genuine_mark);
    let (before, _) = leftover(&fake, "before-start");
    marked(&fake, &before, "2025-06-01"); // signed, but before the snapshot started (2026-01-01)
    let (future, _) = leftover(&fake, "future");
    marked(&fake, &future, "2027-01-01");
    let d = deps(fake, json!({"mode": "delete", "grace_days": 7}));

    let r = sweep(&d, json!({})).await;
    assert_eq!(r.orphans.deleted, vec![genuine.clone()], "{:#?}", r.orphans);
    for s in [&unsigned, &copied, &before, &future] {
        assert!(d.aws.snapshot_exists(R, s), "{s}");
        // Marked again from now, with the product's proof.
        assert_eq!(
            d.aws.snapshot_tags(R, s)[ORPHANED_SINCE_TAG],
            d.aws
                .signed_mark(amishare::marks::ORPHANED_SINCE, s, "2026-11-21"),
            "{s}"
        );
    }
    assert_eq!(r.orphans.marks_unsigned, 1);
    assert_eq!(r.orphans.marks_tampered, 3, "{:?}", r.orphans.tampered);
    let listed = r.orphans.tampered.join("\n");
    assert!(
        listed.contains(&copied) && listed.contains("bad-proof"),
        "{listed}"
    );
    assert!(
        listed.contains(&before) && listed.contains("before the snapshot"),
        "{listed}"
    );
    assert!(
        listed.contains(&future) && listed.contains("future"),
        "{listed}"
    );
    assert_eq!(r.emf(now())["MarksTampered"], json!(3));
    assert_eq!(r.orphans.marked, 4);
}
