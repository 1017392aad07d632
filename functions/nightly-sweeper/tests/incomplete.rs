//! The night's report names every image whose distribution is still incomplete after its work,
//! with the reason codes of `ami-share status` (issue 29).

// Test set-up and assertions: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use amishare::deps::Deps;
use amishare::ports::KeyManager;
use amishare::Policy;
use amishare_testkit::{FakeAws, ImageSpec, OWN_ACCOUNT};
use chrono::{TimeZone, Utc};
use nightly_sweeper::{handle, Run, SweepReport};
use serde_json::{json, Value};

const R: &str = "us-east-1";
const OU_ARN: &str = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456";

async fn night(d: &Deps<FakeAws>) -> SweepReport {
    let now = Utc.with_ymd_and_hms(2026, 12, 6, 3, 30, 0).unwrap();
    handle(d, json!({}), &Run::new(R, now, None)).await.unwrap()
}

fn codes(r: &SweepReport, image: &str) -> Vec<&'static str> {
    r.drift
        .incomplete
        .iter()
        .find(|i| i.image_id == image)
        .map(|i| i.reasons.iter().map(|x| x.code).collect())
        .unwrap_or_default()
}

fn policy(rule: Value) -> Policy {
    let mut r = json!({"name": "golden", "match": {"name": "golden-*"},
        "share_with": {"accounts": ["111122223333"]}});
    r.as_object_mut()
        .unwrap()
        .extend(rule.as_object().unwrap().clone());
    Policy::from_json(&json!({"rules": [r]}).to_string()).unwrap()
}

#[tokio::test]
async fn copies_in_flight_and_waiting_are_reported_with_their_reason_codes() {
    let fake = FakeAws::new();
    fake.set_copy_cap(1);
    let a = fake.create_image(ImageSpec::new(R, "golden-1"));
    let b = fake.create_image(ImageSpec::new(R, "golden-2"));
    let d = Deps::new(
        fake,
        policy(json!({"copy_to": [{"region": "eu-west-1"}]})),
        OWN_ACCOUNT,
    );
    let r = night(&d).await;
    let seen = [codes(&r, &a.id), codes(&r, &b.id)];
    assert!(
        seen.contains(&vec!["copy-pending"]),
        "{:?}",
        r.drift.incomplete
    );
    assert!(
        seen.contains(&vec!["copy-waiting"]),
        "{:?}",
        r.drift.incomplete
    );
    assert!(r.drift.incomplete_total >= 2);
    let pending = &r.drift.incomplete[0].reasons[0];
    assert!(pending.detail.contains("eu-west-1"), "{pending:?}");
    assert!(!pending.fix.is_empty());
}

#[tokio::test]
async fn a_key_policy_that_refuses_the_ou_is_reported_as_such() {
    let fake = FakeAws::new();
    let root = fake.create_org("o-a1b2c3d4e5");
    fake.add_ou(&root, "ou-ab12-cdef3456");
    fake.add_account("ou-ab12-cdef3456", "200000000001", "ACTIVE");
    let key = fake.create_key(R, KeyManager::Customer);
    let img = fake.create_image(ImageSpec::new(R, "golden-1").encrypted_with(&[&key]));
    let rule = json!({"share_with": {"organizational_units": [OU_ARN]}, "grant_kms": true,
        "kms_access": "key_policy"});
    let d = Deps::new(fake, policy(rule), OWN_ACCOUNT);
    let r = night(&d).await;
    assert_eq!(
        codes(&r, &img.id),
        ["key-policy-refuses"],
        "{:?} {:?}",
        r.drift.incomplete,
        r.errors
    );
}

#[tokio::test]
async fn a_fully_shared_image_is_not_listed() {
    let fake = FakeAws::new();
    fake.create_image(ImageSpec::new(R, "golden-1"));
    let d = Deps::new(fake, policy(json!({})), OWN_ACCOUNT);
    let r = night(&d).await;
    assert_eq!(r.drift.converged, 1);
    assert_eq!((r.drift.incomplete_total, r.drift.incomplete.len()), (0, 0));
}
