//! Work that outlives one invocation: each invocation stops starting work at its deadline and
//! says `more`; the continuation engine (the template's state machine) invokes it again, and
//! the next invocation resumes where the last stopped, repeating no write.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use amishare::deps::Deps;
use amishare::names::MANAGED_TAG;
use amishare::share::PLAN_TAG;
use amishare::sweep::inventory::ORPHANED_SINCE_TAG;
use amishare::Policy;
use amishare_testkit::{FakeAws, ImageSpec, OWN_ACCOUNT};
use chrono::{DateTime, TimeZone, Utc};
use nightly_sweeper::{handle, Clock, Run, DEFAULT_MARGIN};
use serde_json::json;

const R: &str = "us-east-1";

/// A clock that moves one second every time it is read: an invocation with a deadline `n`
/// seconds past its margin starts about `n` pieces of work, whatever the machine's speed.
fn ticking_clock() -> Clock {
    let t = Arc::new(Mutex::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    ));
    Clock(Arc::new(move || {
        let mut t = t.lock().unwrap();
        *t += Duration::from_secs(1);
        *t
    }))
}

#[tokio::test]
async fn a_continued_run_resumes_where_the_last_stopped_without_repeating_a_write() {
    let fake = FakeAws::new();
    let mut images = Vec::new();
    for i in 0..8 {
        images.push(
            fake.create_image(ImageSpec::new(R, &format!("golden-{i}")).tag(MANAGED_TAG, "golden")),
        );
    }
    let mut orphans = Vec::new();
    for i in 0..8 {
        let img = fake.create_image(ImageSpec::new(R, &format!("old-{i}")));
        fake.deregister_image(R, &img.id);
        let s = img.volumes[0].snapshot_id.clone();
        let mark = fake.signed_mark(amishare::marks::ORPHANED_SINCE, &s, "2026-02-01");
        fake.tag_snapshot_directly(R, &s, ORPHANED_SINCE_TAG, &mark);
        orphans.push(s);
    }
    let policy = Policy::from_json(
        &json!({"rules": [{"name": "golden", "match": {"name": "golden-*"},
            "share_with": {"accounts": ["111122223333"]}}],
            "sweeper": {"mode": "delete", "grace_days": 0, "max_deletions": 1000}})
        .to_string(),
    )
    .unwrap();
    let d = Deps::new(fake, policy, OWN_ACCOUNT);
    let now = Utc.with_ymd_and_hms(2026, 11, 21, 3, 30, 0).unwrap();

    let mut rounds = 0;
    let mut writes_before = 0;
    loop {
        rounds += 1;
        assert!(rounds <= 20, "the continuation never finished");
        let clock = ticking_clock();
        let deadline = clock.now() + DEFAULT_MARGIN + Duration::from_secs(6);
        let run = Run::new(R, now, Some(deadline)).with_clock(clock);
        let r = handle(&d, json!({}), &run).await.unwrap();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        let counts = d.aws.call_counts();
        let writes: usize = ["ec2:ModifyImageAttribute", "ec2:DeleteSnapshot"]
            .iter()
            .map(|w| counts.get(*w).copied().unwrap_or(0))
            .sum();
        assert!(
            writes > writes_before || !r.more,
            "round {rounds} made no progress: {r:?}"
        );
        writes_before = writes;
        if !r.more {
            break;
        }
        assert!(!r.not_reached.is_empty());
    }
    assert!(
        rounds > 2,
        "the deadline should have cut the work into rounds ({rounds})"
    );

    // Everything done, every write made exactly once.
    let counts: BTreeMap<String, usize> = d.aws.call_counts();
    assert_eq!(
        counts["ec2:ModifyImageAttribute"], 8,
        "one launch-permission write per image"
    );
    assert_eq!(counts["ec2:DeleteSnapshot"], 8, "one deletion per orphan");
    for img in &images {
        assert!(d
            .aws
            .image(R, &img.id)
            .unwrap()
            .image
            .tags
            .contains_key(PLAN_TAG));
    }
    for s in &orphans {
        assert!(!d.aws.snapshot_exists(R, s), "{s}");
    }
}

const CONSUMER: &str = "111122223333";

/// Eight images shared with one consumer account.
fn consumer_world() -> (Deps<FakeAws>, DateTime<Utc>) {
    let fake = FakeAws::new();
    let root = fake.create_org("o-a1b2c3d4e5");
    fake.add_account(&root, CONSUMER, "ACTIVE");
    for i in 0..8 {
        fake.create_image(ImageSpec::new(R, &format!("golden-{i}")).tag(MANAGED_TAG, "golden"));
    }
    let policy = Policy::from_json(
        &json!({"rules": [{"name": "golden", "match": {"name": "golden-*"},
            "share_with": {"accounts": [CONSUMER]}}]})
        .to_string(),
    )
    .unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 21, 3, 30, 0).unwrap();
    (Deps::new(fake, policy, OWN_ACCOUNT), now)
}

fn reads(d: &Deps<FakeAws>) -> usize {
    d.aws
        .call_counts()
        .get("organizations:DescribeEffectivePolicy")
        .copied()
        .unwrap_or(0)
}

/// The consumers' Allowed AMIs are read in the round that finished the images' work (their
/// watermarks attached), not in the rounds before it: once, however many rounds it takes.
#[tokio::test]
async fn the_consumers_are_read_in_the_round_that_finishes_the_images_work() {
    let (d, now) = consumer_world();
    let mut statuses = Vec::new();
    for round in 1.. {
        assert!(round <= 20, "the continuation never finished");
        let clock = ticking_clock();
        let deadline = clock.now() + DEFAULT_MARGIN + Duration::from_secs(6);
        let run = Run::new(R, now, Some(deadline)).with_clock(clock);
        let r = handle(&d, json!({}), &run).await.unwrap();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        statuses.push(r.consumers.status.clone());
        if !r.more {
            assert!(r.carry.consumers_judged);
            break;
        }
        assert!(!r.carry.consumers_judged, "{statuses:?}");
    }
    assert!(statuses.len() > 2, "several rounds: {statuses:?}");
    assert!(
        statuses[..statuses.len() - 1]
            .iter()
            .all(|s| s == "next-round"),
        "{statuses:?}"
    );
    assert_eq!(statuses.last().map(String::as_str), Some("complete"));
    assert_eq!(reads(&d), 1, "{statuses:?}");
}

/// A later round of the same night (the engine merged the report's `carry` into its input)
/// does not read the consumers again.
#[tokio::test]
async fn a_round_after_the_consumers_were_judged_does_not_read_them_again() {
    let (d, now) = consumer_world();
    let run = Run::new(R, now, None);
    let first = handle(&d, json!({}), &run).await.unwrap();
    assert_eq!(first.consumers.status, "complete");
    assert_eq!(reads(&d), 1);
    let carry = serde_json::to_value(&first.carry).unwrap();
    assert_eq!(carry, json!({"consumers_judged": true}));
    // The engine: States.JsonMerge($.input, $.result.carry, false).
    let later = handle(&d, carry, &run).await.unwrap();
    assert_eq!(later.consumers.status, "judged-earlier-tonight");
    assert!(
        later.carry.consumers_judged,
        "carried on to the rounds after"
    );
    assert_eq!(reads(&d), 1, "each account once a night");
    // The next night (a new execution: its input is the schedule's) reads them afresh.
    handle(&d, json!({}), &run).await.unwrap();
    assert_eq!(reads(&d), 2);
}

#[tokio::test]
async fn the_carry_is_refused_unless_a_boolean() {
    let d = Deps::new(
        FakeAws::new(),
        Policy::from_json(r#"{"rules": []}"#).unwrap(),
        OWN_ACCOUNT,
    );
    let run = Run::new(R, Utc::now(), None);
    let e = handle(&d, json!({"consumers_judged": "yes"}), &run)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("consumers_judged"), "{e}");
    let r = handle(&d, json!({"consumers_judged": true}), &run)
        .await
        .unwrap();
    assert!(r.carry.consumers_judged, "carried on to the next round");
}
