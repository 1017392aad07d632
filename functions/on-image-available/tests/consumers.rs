//! The event's look at the consumers' Allowed AMIs (issue 30): after everything is shared, the
//! image is judged in its rules' consumer accounts, and the summary warns of each where it is
//! shared but cannot be seen. Never a failure; at most `rate_limits.consumer_reads_per_invocation`
//! accounts read an invocation (all the events of its batch), each account read once while the warm Lambda remembers it, and no
//! listing made for it.

// Test set-up and assertions: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use amishare::allowed::State;
use amishare::deps::{Deps, Settings};
use amishare::metrics::{event_record, NOT_ALLOWED_IN_CONSUMERS};
use amishare::report::Outcome;
use amishare::Policy;
use amishare_testkit::{
    ami_event, declarative_allowed_amis, own_allowed_amis, FakeAws, Fixture, ImageSpec, OWN_ACCOUNT,
};
use chrono::Utc;
use on_image_available::{handle, handle_invocation};
use serde_json::{json, Value};

const R: &str = "us-east-1";
const OU: &str = "ou-ab12-cdef3456";
const OU_ARN: &str = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456";
const PLAIN: &str = "111122223333";
const AMAZON_ONLY: &str = "200000000001";
const BY_WATERMARK: &str = "200000000002";
const NO_POLICY: &str = "200000000003";
const TARGET: &str = "300000000001";

fn policy(extra: Value) -> Policy {
    let mut rule = json!({"name": "golden", "match": {"name": "golden-*"},
        "share_with": {"accounts": [PLAIN], "organizational_units": [OU_ARN]},
        "watermark": "golden-approved",
        "copy_into": {"accounts": [TARGET], "regions": [{"region": R}]}});
    let mut doc = json!({"rules": []});
    if let Some(r) = extra.get("rule") {
        for (k, v) in r.as_object().unwrap() {
            rule[k] = v.clone();
        }
    }
    if let Some(limits) = extra.get("rate_limits") {
        doc["rate_limits"] = limits.clone();
    }
    doc["rules"] = json!([rule]);
    Policy::from_json(&doc.to_string()).unwrap()
}

fn world(extra: Value) -> Deps<FakeAws> {
    let fake = FakeAws::new();
    let root = fake.create_org("o-a1b2c3d4e5");
    fake.add_ou(&root, OU);
    for a in [AMAZON_ONLY, BY_WATERMARK, NO_POLICY] {
        fake.add_account(OU, a, "ACTIVE");
    }
    fake.add_account(&root, PLAIN, "ACTIVE");
    fake.add_account(&root, TARGET, "ACTIVE");
    fake.add_target_account(TARGET, &[R]);
    {
        let mut w = fake.world();
        w.declarative_policies.insert(
            AMAZON_ONLY.into(),
            declarative_allowed_amis(
                json!({"criteria_1": {"allowed_image_providers": {"@@assign": ["amazon"]}}}),
            ),
        );
        w.declarative_policies.insert(
            BY_WATERMARK.into(),
            declarative_allowed_amis(json!({"criteria_1": {"image_watermarks": {"@@assign": ["123456789012:golden-*"]}}})),
        );
        w.allowed_images.insert(
            (TARGET.into(), R.into()),
            own_allowed_amis(State::AuditMode, &["amazon"]),
        );
    }
    let mut d = Deps::new(fake, policy(extra), OWN_ACCOUNT);
    d.settings = Settings {
        visibility_retry_delays: vec![Duration::from_millis(1); 3],
        ..Settings::default()
    };
    d
}

fn image(d: &Deps<FakeAws>, name: &str) -> String {
    d.aws.create_image(ImageSpec::new(R, name).snapshots(1)).id
}

fn event(image_id: &str) -> Value {
    ami_event(Fixture::ImageAvailable, R, image_id)
}

fn reads(d: &Deps<FakeAws>) -> (usize, usize) {
    let c = d.aws.call_counts();
    (
        c.get("organizations:DescribeEffectivePolicy")
            .copied()
            .unwrap_or(0),
        c.get("target:GetAllowedImagesSettings")
            .copied()
            .unwrap_or(0),
    )
}

#[tokio::test]
async fn the_summary_warns_of_each_consumer_that_cannot_see_the_shared_image() {
    let d = world(json!({}));
    let id = image(&d, "golden-1");
    let s = handle(&d, event(&id)).await.unwrap();
    // Never a failure: everything is shared, the account that cannot see it included.
    assert_eq!(s.outcome, Outcome::Shared, "{s:?}");
    let img = d.aws.image(R, &id).unwrap();
    assert!(img.launch.organizational_units.contains(OU_ARN));
    let snapshot = &img.image.volumes[0].snapshot_id;
    assert!(d
        .aws
        .snapshot_permissions(R, snapshot)
        .contains(AMAZON_ONLY));
    let c = s.consumers.as_ref().expect("the consumers' look");
    assert_eq!((c.accounts, c.judged, c.not_read), (5, 5, 0), "{c:?}");
    assert_eq!(c.groups_not_listed, 0);
    assert_eq!(
        c.verdicts,
        [
            // the watermark the event attached admits it; the plain account has no policy
            ("allowed", 1),
            ("audit-mode", 1),
            ("not-allowed", 1),
            ("unknown", 2),
        ]
        .into_iter()
        .collect(),
        "{c:?}"
    );
    let warned: Vec<(&str, &str)> = c
        .warnings
        .iter()
        .map(|w| (w.account.as_str(), w.verdict.code()))
        .collect();
    assert_eq!(
        warned,
        [(AMAZON_ONLY, "not-allowed"), (TARGET, "audit-mode")]
    );
    assert_eq!(c.warnings_total, 2);
    let why = serde_json::to_value(&c.warnings[0]).unwrap();
    assert_eq!(why["rule"], "golden");
    assert_eq!(why["image_id"], json!(id));
    assert!(
        why["why"].as_str().unwrap().contains("amazon"),
        "the criterion that excludes it: {why}"
    );
    // The organization's policy for the members and the plain account; the target's own
    // setting through its role.
    assert_eq!(reads(&d), (4, 1));
    // On the wire: the look comes after every share, the launch permission included.
    let calls = d.aws.world().calls.clone();
    let last_share = calls
        .iter()
        .rposition(|c| c == "ec2:ModifyImageAttribute" || c == "ec2:ModifySnapshotAttribute")
        .unwrap();
    let first_read = calls
        .iter()
        .position(|c| c == "organizations:DescribeEffectivePolicy")
        .unwrap();
    assert!(last_share < first_read, "{calls:?}");
    // The metric counts the accounts that cannot see it (audit mode is said, not counted).
    let record = event_record("on-image-available", Some(&s), Duration::ZERO, Utc::now());
    assert_eq!(record[NOT_ALLOWED_IN_CONSUMERS], json!(1.0));
    let names: Vec<&str> = record["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&NOT_ALLOWED_IN_CONSUMERS));
}

#[tokio::test]
async fn reads_are_bounded_per_invocation_and_each_account_is_read_once() {
    let d = world(json!({"rate_limits": {"consumer_reads_per_invocation": 2}}));
    let mut judged = Vec::new();
    for n in 1..=4 {
        let id = image(&d, &format!("golden-{n}"));
        let s = handle(&d, event(&id)).await.unwrap();
        assert_eq!(s.outcome, Outcome::Shared);
        let c = s.consumers.unwrap();
        judged.push((c.judged, c.not_read));
    }
    // Two new accounts an invocation (the target and the plain account first); those read
    // already are judged without a read.
    assert_eq!(judged, [(2, 3), (4, 1), (5, 0), (5, 0)]);
    assert_eq!(reads(&d), (4, 1), "each account once");
}

/// An SQS batch of three images' events, in one invocation.
fn batch_of_three(d: &Deps<FakeAws>) -> Value {
    let fixture: Value =
        serde_json::from_str(include_str!("../../../events/sqs-image-available.json")).unwrap();
    let template = fixture["Records"][0].clone();
    let records: Vec<Value> = (1..=3)
        .map(|n| {
            let id = image(d, &format!("golden-{n}"));
            let mut body: Value = serde_json::from_str(template["body"].as_str().unwrap()).unwrap();
            body["detail"]["ImageId"] = json!(id);
            let mut r = template.clone();
            r["messageId"] = json!(format!("m{n}"));
            r["body"] = json!(body.to_string());
            r
        })
        .collect();
    json!({ "Records": records })
}

#[tokio::test]
async fn the_events_of_one_batch_read_each_account_once() {
    let d = world(json!({}));
    handle_invocation(&d, batch_of_three(&d)).await.unwrap();
    assert_eq!(
        reads(&d),
        (4, 1),
        "three events at once, one read an account"
    );
}

#[tokio::test]
async fn the_bound_is_the_whole_batch_s_and_starts_afresh_each_invocation() {
    let d = world(json!({"rate_limits": {"consumer_reads_per_invocation": 2}}));
    handle_invocation(&d, batch_of_three(&d)).await.unwrap();
    assert_eq!(reads(&d), (1, 1), "two reads for the three events together");
    handle_invocation(&d, batch_of_three(&d)).await.unwrap();
    assert_eq!(reads(&d), (3, 1), "two more in the next invocation");
}

#[tokio::test]
async fn turned_off_it_reads_nothing() {
    let d = world(json!({"rate_limits": {"consumer_reads_per_invocation": 0}}));
    let id = image(&d, "golden-1");
    let s = handle(&d, event(&id)).await.unwrap();
    assert_eq!(s.outcome, Outcome::Shared);
    assert!(s.consumers.is_none());
    assert_eq!(reads(&d), (0, 0));
}

#[tokio::test]
async fn no_organization_is_listed_for_the_look_alone() {
    // Launch permissions only: the share names the OU, lists no member; neither does the look.
    let d = world(json!({"rule": {"share_snapshots": false, "grant_kms": false}}));
    let id = image(&d, "golden-1");
    let s = handle(&d, event(&id)).await.unwrap();
    assert_eq!(s.outcome, Outcome::Shared, "{s:?}");
    let c = s.consumers.unwrap();
    assert_eq!(c.groups_not_listed, 1, "{c:?}");
    assert_eq!(
        (c.accounts, c.judged),
        (2, 2),
        "the plain account and the target"
    );
    let calls = d.aws.call_counts();
    assert!(
        !calls.keys().any(|op| op.starts_with("organizations:List")),
        "{calls:?}"
    );
    assert_eq!(reads(&d), (1, 1));
}

#[tokio::test]
async fn an_unreadable_policy_is_unknown_never_a_failure() {
    let d = world(json!({}));
    d.aws.fail(
        "organizations:DescribeEffectivePolicy",
        "AccessDeniedException",
        0,
        99,
    );
    let id = image(&d, "golden-1");
    let s = handle(&d, event(&id)).await.unwrap();
    assert_eq!(s.outcome, Outcome::Shared, "{s:?}");
    let c = s.consumers.unwrap();
    assert_eq!(c.unreadable, 4, "{c:?}");
    assert_eq!(c.verdicts.get("unknown"), Some(&4));
    assert_eq!(
        c.warnings_total, 1,
        "the target's own setting was read: {c:?}"
    );
}
