//! The copies' waiting line, in memory (the double enforces EC2's copy cap per destination
//! Region and models the SQS FIFO line): copies past the cap wait, and start as soon as a
//! copy into their Region ends (its `available` or `failed` event) or on the line's timer,
//! oldest first, never past the cap, each started once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::time::Duration;

use amishare::copy::WaitingCopy;
use amishare::deps::{Deps, Settings};
use amishare::distribute::Response;
use amishare::ports::{CopyLine, ImageState};
use amishare::report::Outcome;
use amishare::Policy;
use amishare_testkit::{ami_event, FakeAws, Fixture, ImageSpec, OWN_ACCOUNT};
use serde_json::{json, Value};

const HOME: &str = "us-east-1";
const DEST: &str = "us-west-2";

fn event(file: &str, region: &str, image_id: &str) -> Value {
    let fixture = match file {
        "failed" => Fixture::CopyFailed,
        "available" => Fixture::CopyAvailable,
        _ => Fixture::ImageAvailable,
    };
    ami_event(fixture, region, image_id)
}

/// A policy copying `golden-*` to us-west-2 (shared with one account), the double's copy cap
/// at `cap`, and `n` source images of `snapshots` snapshots each.
fn world(cap: usize, n: usize, snapshots: usize) -> (Deps<FakeAws>, Vec<String>) {
    let fake = FakeAws::new();
    fake.set_copy_cap(cap);
    let ids = (0..n)
        .map(|i| {
            fake.create_image(ImageSpec::new(HOME, &format!("golden-{i}")).snapshots(snapshots))
                .id
        })
        .collect();
    let policy = json!({"rate_limits": {"copies_in_flight": cap}, "rules": [{
        "name": "golden", "match": {"name": "golden-*"},
        "share_with": {"accounts": ["111122223333"]},
        "copy_to": [{"region": DEST}]}]});
    let mut d = Deps::new(
        fake,
        Policy::from_json(&policy.to_string()).unwrap(),
        OWN_ACCOUNT,
    );
    d.settings = Settings {
        visibility_retry_delays: vec![Duration::from_millis(1); 3],
        ..Settings::default()
    };
    (d, ids)
}

/// Each source's event, in order; the status of its copy.
async fn release(d: &Deps<FakeAws>, ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids {
        let s = on_image_available::handle(d, event("image", HOME, id))
            .await
            .unwrap();
        assert_eq!(s.outcome, Outcome::Shared, "{s:?}");
        out.push(s.copies[0].status.clone());
    }
    out
}

/// The sources of the copies in the destination Region, in the order started (the double's
/// image ids grow).
fn copied_sources(d: &Deps<FakeAws>) -> Vec<String> {
    let w = d.aws.world();
    let mut c: Vec<_> = w
        .images
        .values()
        .filter(|i| i.image.region == DEST)
        .map(|i| (i.image.id.clone(), i.image.source_image_id.clone().unwrap()))
        .collect();
    c.sort();
    c.into_iter().map(|(_, s)| s).collect()
}

fn copy_of(d: &Deps<FakeAws>, source: &str) -> String {
    let w = d.aws.world();
    w.images
        .values()
        .find(|i| i.image.region == DEST && i.image.source_image_id.as_deref() == Some(source))
        .map(|i| i.image.id.clone())
        .unwrap()
}

fn copy_image_calls(d: &Deps<FakeAws>) -> usize {
    d.aws
        .call_counts()
        .get("ec2:CopyImage")
        .copied()
        .unwrap_or(0)
}

/// While nothing waits and a slot is free, a copy starts at once (no round through the line).
#[tokio::test]
async fn a_copy_with_a_free_slot_and_nothing_waiting_starts_at_once() {
    let (d, ids) = world(2, 1, 1);
    assert_eq!(release(&d, &ids).await, ["started"]);
    let c = d.aws.call_counts();
    assert_eq!(c.get("sqs:SendMessage"), None, "{c:#?}");
    assert_eq!(c.get("sqs:GetQueueAttributes"), Some(&1));
}

/// Once something waits, every new copy joins the line behind it (oldest first), even when
/// a slot freed meanwhile.
#[tokio::test]
async fn once_copies_wait_a_new_copy_queues_behind_them() {
    let (d, ids) = world(1, 3, 1);
    release(&d, &ids[..2]).await; // the second waits
    let first = copy_of(&d, &ids[0]);
    d.aws.complete_copy(DEST, &first); // a slot frees, its event not handled yet
    let s = on_image_available::handle(&d, event("image", HOME, &ids[2]))
        .await
        .unwrap();
    assert_eq!(
        s.copies[0].status, "waiting",
        "behind the older waiting copy"
    );
    assert_eq!(copied_sources(&d), ids[..2], "the older one started first");
}

#[tokio::test]
async fn copies_past_the_cap_wait_in_the_line_without_asking_ec2() {
    let (d, ids) = world(2, 4, 1);
    let statuses = release(&d, &ids).await;
    assert_eq!(statuses, ["started", "started", "waiting", "waiting"]);
    assert_eq!(d.aws.copies_in_flight(DEST), 2, "never past the cap");
    assert_eq!(d.aws.line(DEST).len(), 2);
    assert_eq!(
        copy_image_calls(&d),
        2,
        "the slots are counted first: no CopyImage only to hear ResourceLimitExceeded"
    );
}

#[tokio::test]
async fn a_copy_that_ends_available_starts_the_oldest_waiting_one() {
    let (d, ids) = world(2, 4, 1);
    release(&d, &ids).await;
    let first = copy_of(&d, &ids[0]);
    d.aws.complete_copy(DEST, &first);
    let s = on_copy_complete::handle(&d, event("available", DEST, &first))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Shared, "{s:?}");
    let line = s.line.expect("the copy's end drains its Region's line");
    assert_eq!((line.started, line.waiting, line.in_flight), (1, 1, 2));
    // The oldest waiting copy (the third image's) started; the fourth still waits.
    assert_eq!(copied_sources(&d), ids[..3]);
    assert_eq!(d.aws.copies_in_flight(DEST), 2);
    assert_eq!(copy_image_calls(&d), 3);
}

#[tokio::test]
async fn a_copy_that_fails_frees_its_slot_too() {
    let (d, ids) = world(2, 3, 1);
    release(&d, &ids).await;
    let first = copy_of(&d, &ids[0]);
    d.aws
        .world()
        .images
        .get_mut(&(DEST.to_string(), first.clone()))
        .unwrap()
        .image
        .state = ImageState::Failed;
    let s = on_copy_complete::handle(&d, event("failed", DEST, &first))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::CopyFailed, "{s:?}");
    assert_eq!(s.line.unwrap().started, 1);
    assert!(d.aws.line(DEST).is_empty());
    assert_eq!(d.aws.copies_in_flight(DEST), 2);
}

#[tokio::test]
async fn an_image_of_two_snapshots_takes_two_slots() {
    let (d, ids) = world(3, 2, 2);
    let statuses = release(&d, &ids).await;
    assert_eq!(statuses, ["started", "waiting"], "2 + 2 > 3");
    assert_eq!(d.aws.copies_in_flight(DEST), 2);
}

#[tokio::test]
async fn an_entry_delivered_twice_starts_one_copy() {
    let (d, ids) = world(1, 2, 1);
    release(&d, &ids).await;
    // The second copy's entry arrives once more (SQS delivers at least once; a night joins it
    // again after the five-minute deduplication window).
    let body = d.aws.line(DEST)[0].clone();
    d.aws
        .line_send(DEST, "self", "another-deduplication-id", &body)
        .await
        .unwrap();
    let first = copy_of(&d, &ids[0]);
    d.aws.complete_copy(DEST, &first);
    let s = on_copy_complete::handle(&d, event("available", DEST, &first))
        .await
        .unwrap();
    let line = s.line.unwrap();
    assert_eq!(
        line.started, 2,
        "the copy, and its twin found pending by name"
    );
    assert!(d.aws.line(DEST).is_empty());
    assert_eq!(copy_image_calls(&d), 2, "one CopyImage per copy");
    let w: WaitingCopy = serde_json::from_str(&body).unwrap();
    assert_eq!(
        d.aws
            .world()
            .images
            .values()
            .filter(|i| i.image.name == w.request.name)
            .count(),
        1
    );
}

#[tokio::test]
async fn a_waiting_copy_whose_source_was_deregistered_is_dropped_and_said_so() {
    let (d, ids) = world(1, 2, 1);
    release(&d, &ids).await;
    d.aws.deregister_image(HOME, &ids[1]);
    let first = copy_of(&d, &ids[0]);
    d.aws.complete_copy(DEST, &first);
    let s = on_copy_complete::handle(&d, event("available", DEST, &first))
        .await
        .unwrap();
    let line = s.line.unwrap();
    assert_eq!(line.started, 0);
    assert_eq!(line.dropped.len(), 1);
    assert!(
        line.dropped[0].contains(&ids[1]) && line.dropped[0].contains("gone"),
        "{:?}",
        line.dropped
    );
    assert!(d.aws.line(DEST).is_empty());
}

#[tokio::test]
async fn resource_limit_exceeded_from_ec2_means_wait_not_fail() {
    // Copies the drain cannot see (another tool's CopySnapshot) fill the Region.
    let (d, ids) = world(2, 2, 1);
    release(&d, &ids[..1]).await;
    // A slot is free as counted, so the copy is asked for at once, and again from the line:
    // EC2 refuses both.
    d.aws.fail("ec2:CopyImage", "ResourceLimitExceeded", 0, 2);
    let s = on_image_available::handle(&d, event("image", HOME, &ids[1]))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Shared);
    assert_eq!(s.copies[0].status, "waiting");
    assert_eq!(d.aws.line(DEST).len(), 1, "kept, at its place");
    assert_eq!(copy_image_calls(&d), 3);
}

#[tokio::test]
async fn the_timer_drains_the_line() {
    let (d, ids) = world(1, 2, 1);
    release(&d, &ids).await;
    // The first copy ends, but its event is lost: the one-minute timer starts the next.
    d.aws.complete_copy(DEST, &copy_of(&d, &ids[0]));
    let timer = json!({"version": "0", "id": "t", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": OWN_ACCOUNT, "time": "2026-12-06T10:00:00Z",
        "region": DEST, "resources": [], "detail": {}});
    let Response::Line(line) = on_copy_complete::handle_invocation(&d, timer)
        .await
        .unwrap()
    else {
        panic!("the timer's answer is the line's report");
    };
    assert_eq!(
        (line.region.as_str(), line.started, line.waiting),
        (DEST, 1, 0)
    );
    assert!(d.aws.line(DEST).is_empty());
    // Nothing waits: a tick costs one ReceiveMessage.
    d.aws.reset_calls();
    let timer = json!({"drain_copy_line": DEST});
    on_copy_complete::handle_invocation(&d, timer)
        .await
        .unwrap();
    assert_eq!(
        d.aws.call_counts().into_iter().collect::<Vec<_>>(),
        [("sqs:ReceiveMessage".to_string(), 1)]
    );
}

#[tokio::test]
async fn a_copy_ec2_refuses_for_good_is_dropped_and_its_source_looked_at_again() {
    let (d, ids) = world(1, 2, 1);
    release(&d, &ids).await;
    let tagged = |id: &str| {
        d.aws
            .image(HOME, id)
            .unwrap()
            .image
            .tags
            .contains_key("ami-share:plan")
    };
    assert!(tagged(&ids[1]), "recorded: its copy waits in the line");
    d.aws
        .fail("ec2:CopyImage", "InvalidParameterCombination", 0, 1);
    let first = copy_of(&d, &ids[0]);
    d.aws.complete_copy(DEST, &first);
    let s = on_copy_complete::handle(&d, event("available", DEST, &first))
        .await
        .unwrap();
    let line = s.line.unwrap();
    assert_eq!((line.started, line.dropped.len()), (0, 1));
    assert!(
        line.dropped[0].contains("InvalidParameterCombination"),
        "{:?}",
        line.dropped
    );
    assert!(d.aws.line(DEST).is_empty());
    assert!(
        !tagged(&ids[1]),
        "the source's fingerprint cleared: the night converges it again"
    );
}

/// A time-based copy carries the rule's completion duration (the shortest when two rules copy
/// to one Region), whether it starts at once or from the line.
#[tokio::test]
async fn a_time_based_copy_asks_for_the_shortest_duration_of_its_rules() {
    let fake = FakeAws::new();
    let src = fake.create_image(ImageSpec::new(HOME, "golden-1")).id;
    let rule = |name: &str, minutes: u32| {
        json!({"name": name, "match": {"name": "golden-*"},
               "copy_to": [{"region": DEST, "completion_minutes": minutes}]})
    };
    let policy = json!({"rules": [rule("a", 240), rule("b", 60)]});
    let d = Deps::new(
        fake,
        Policy::from_json(&policy.to_string()).unwrap(),
        OWN_ACCOUNT,
    );
    let s = on_image_available::handle(&d, event("image", HOME, &src))
        .await
        .unwrap();
    assert_eq!(s.copies[0].status, "started", "{s:?}");
    let copy = copy_of(&d, &src);
    let req = d.aws.image(DEST, &copy).unwrap().copied_from.unwrap();
    assert_eq!(req.completion_minutes, Some(60));
}
