//! Watermarks (issue 30): a rule's `watermark` is attached to its images before they are first
//! shared, carried by EC2 to every copy (attached where a copy lacks it), covered by the
//! fingerprint (a rule that gains one makes its images stale), and never attached twice.

// Test set-up and assertions: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use amishare::deps::{Deps, Settings};
use amishare::Policy;
use amishare_testkit::{ami_event, FakeAws, Fixture, ImageSpec, OWN_ACCOUNT};
use chrono::{TimeZone, Utc};
use nightly_sweeper::{handle as night, Run};
use serde_json::{json, Value};

const R: &str = "us-east-1";
const R2: &str = "eu-west-1";
const KEY: &str = "123456789012:golden-approved";

fn policy(extra_rule: Value, extra: Value) -> Policy {
    let mut rule = json!({"name": "golden", "match": {"name": "golden-*"},
        "share_with": {"accounts": ["111122223333"]}, "copy_to": [{"region": R2}]});
    rule.as_object_mut()
        .unwrap()
        .extend(extra_rule.as_object().unwrap().clone());
    let mut p = json!({"rules": [rule]});
    p.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    Policy::from_json(&p.to_string()).unwrap()
}

fn deps(fake: FakeAws, policy: Policy) -> Deps<FakeAws> {
    let mut d = Deps::new(fake, policy, OWN_ACCOUNT);
    d.settings = Settings {
        visibility_retry_delays: vec![Duration::from_millis(1); 3],
        ..Settings::default()
    };
    d
}

fn event(file: &str, region: &str, image_id: &str) -> Value {
    let fixture = match file {
        "copy" => Fixture::CopyAvailable,
        _ => Fixture::ImageAvailable,
    };
    ami_event(fixture, region, image_id)
}

fn watermarks(d: &Deps<FakeAws>, region: &str, id: &str) -> Vec<String> {
    d.aws.image(region, id).unwrap().image.watermarks
}

fn calls(d: &Deps<FakeAws>) -> Vec<String> {
    d.aws.world().calls.clone()
}

fn copy_of(d: &Deps<FakeAws>, source: &str) -> String {
    d.aws
        .world()
        .images
        .values()
        .find(|i| i.image.region == R2 && i.image.source_image_id.as_deref() == Some(source))
        .map(|i| i.image.id.clone())
        .unwrap()
}

#[tokio::test]
async fn the_watermark_is_attached_before_the_first_share_and_the_copy_carries_it() {
    let fake = FakeAws::new();
    let img = fake.create_image(ImageSpec::new(R, "golden-1"));
    let d = deps(
        fake,
        policy(json!({"watermark": "golden-approved"}), json!({})),
    );
    let s = on_image_available::handle(&d, event("image", R, &img.id))
        .await
        .unwrap();
    assert_eq!(s.watermarks_attached, [KEY]);
    assert_eq!(watermarks(&d, R, &img.id), [KEY]);
    // On the wire: the watermark before any share, and before the copy (which carries it).
    let c = calls(&d);
    let at = |op: &str| {
        c.iter()
            .position(|x| x == op)
            .unwrap_or_else(|| panic!("{op}: {c:?}"))
    };
    assert!(
        at("ec2:AttachImageWatermark") < at("ec2:ModifySnapshotAttribute"),
        "{c:?}"
    );
    assert!(
        at("ec2:AttachImageWatermark") < at("ec2:ModifyImageAttribute"),
        "{c:?}"
    );
    assert!(
        at("ec2:AttachImageWatermark") < at("ec2:CopyImage"),
        "{c:?}"
    );
    assert_eq!(
        c.iter()
            .filter(|x| *x == "ec2:AttachImageWatermark")
            .count(),
        1
    );

    // The copy carries it (EC2's propagation): on-copy-complete checks and attaches nothing.
    let copy = copy_of(&d, &img.id);
    d.aws.complete_copy(R2, &copy);
    assert_eq!(watermarks(&d, R2, &copy), [KEY]);
    d.aws.reset_calls();
    let s = on_copy_complete::handle(&d, event("copy", R2, &copy))
        .await
        .unwrap();
    assert!(s.watermarks_attached.is_empty());
    assert_eq!(d.aws.call_counts().get("ec2:AttachImageWatermark"), None);

    // A redelivered event: the image carries it, nothing is attached again.
    d.aws.reset_calls();
    on_image_available::handle(&d, event("image", R, &img.id))
        .await
        .unwrap();
    assert_eq!(d.aws.call_counts().get("ec2:AttachImageWatermark"), None);
}

#[tokio::test]
async fn a_copy_that_lacks_it_gets_it_and_the_policy_default_applies() {
    let fake = FakeAws::new();
    let img = fake.create_image(ImageSpec::new(R, "golden-1"));
    let d = deps(
        fake,
        policy(json!({}), json!({"watermark": "golden-approved"})),
    );
    on_image_available::handle(&d, event("image", R, &img.id))
        .await
        .unwrap();
    let copy = copy_of(&d, &img.id);
    d.aws.complete_copy(R2, &copy);
    d.aws
        .world()
        .images
        .get_mut(&(R2.to_string(), copy.clone()))
        .unwrap()
        .image
        .watermarks
        .clear();
    let s = on_copy_complete::handle(&d, event("copy", R2, &copy))
        .await
        .unwrap();
    assert_eq!(s.watermarks_attached, [KEY], "{s:?}");
    assert_eq!(watermarks(&d, R2, &copy), [KEY]);
}

#[tokio::test]
async fn a_rule_that_gains_a_watermark_makes_its_images_stale_and_the_night_attaches_it() {
    let fake = FakeAws::new();
    let img = fake.create_image(ImageSpec::new(R, "golden-1"));
    let now = Utc.with_ymd_and_hms(2026, 12, 6, 3, 30, 0).unwrap();
    let before = deps(fake, policy(json!({"copy_to": []}), json!({})));
    let r = night(&before, json!({}), &Run::new(R, now, None))
        .await
        .unwrap();
    assert_eq!(r.drift.converged, 1);
    let fake = before.aws;
    let after = deps(
        fake,
        policy(
            json!({"copy_to": [], "watermark": "golden-approved"}),
            json!({}),
        ),
    );
    let r = night(&after, json!({}), &Run::new(R, now, None))
        .await
        .unwrap();
    assert_eq!(
        r.drift.stale.get("fingerprint differs"),
        Some(&1),
        "{:?}",
        r.drift
    );
    assert_eq!(watermarks(&after, R, &img.id), [KEY]);
    // In sync again: the next night attaches nothing.
    after.aws.reset_calls();
    let r = night(&after, json!({}), &Run::new(R, now, None))
        .await
        .unwrap();
    assert_eq!(r.drift.in_sync, 1);
    assert_eq!(
        after.aws.call_counts().get("ec2:AttachImageWatermark"),
        None
    );
}

#[test]
fn the_watermark_is_validated_with_its_json_path_and_refused_with_a_public_share() {
    let bad = |rule: Value, extra: Value| {
        let mut r = json!({"name": "golden", "match": {"name": "golden-*"},
            "share_with": {"accounts": ["111122223333"]}});
        r.as_object_mut()
            .unwrap()
            .extend(rule.as_object().unwrap().clone());
        let mut p = json!({"rules": [r]});
        p.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        Policy::from_json(&p.to_string()).unwrap_err().to_string()
    };
    let e = bad(json!({"watermark": "ab"}), json!({}));
    assert!(
        e.contains("rules[0].watermark: \"ab\" is not a valid watermark name"),
        "{e}"
    );
    let e = bad(json!({"watermark": "golden#1"}), json!({}));
    assert!(e.contains("not \"#\""), "{e}");
    let e = bad(json!({}), json!({"watermark": "x".repeat(129)}));
    assert!(e.contains("watermark: ") && e.contains("3 to 128"), "{e}");
    let e = bad(
        json!({"share_with": {"public": true}}),
        json!({"allow_public": true, "watermark": "golden-approved"}),
    );
    assert!(
        e.contains("rules[0].share_with.public")
            && e.contains("EC2 refuses to make a watermarked image public"),
        "{e}"
    );
    assert!(Policy::from_json(
        &json!({"rules": [{"name": "g", "match": {"name": "g-*"}, "share_with": {"accounts": ["111122223333"]},
            "watermark": "Golden (approved) [v2] ./-'@_ ok"}]})
        .to_string()
    )
    .is_ok());
}

/// A target-owned copy (`copy_into`) carries the watermark by EC2's copy; one made before the
/// rule had a watermark lacks it. The night verifies each available target copy against its
/// source and says which lack it (it cannot attach it: the copy is the target's, its key would
/// be the target's own). A copy made after the watermark carries it, and nothing is said.
#[tokio::test]
async fn a_target_copy_that_lacks_the_watermark_is_said_and_one_made_after_carries_it() {
    const TARGET: &str = "300000000001";
    let fake = FakeAws::new();
    let root = fake.create_org("o-a1b2c3d4e5");
    fake.add_account(&root, TARGET, "ACTIVE");
    fake.add_target_account(TARGET, &[R]);
    let old = fake.create_image(ImageSpec::new(R, "golden-1").created("2026-11-01T10:00:00.000Z"));
    let into = json!({"copy_into": {"accounts": [TARGET], "regions": [{"region": R}]}});
    let mut d = deps(fake, policy(into.clone(), json!({})));
    let now = Utc.with_ymd_and_hms(2026, 12, 6, 3, 30, 0).unwrap();
    let run = Run::new(R, now, None);
    night(&d, json!({}), &run).await.unwrap();
    d.aws.finish_target_copies();
    let r = night(&d, json!({}), &run).await.unwrap();
    assert_eq!(r.target_copies.finished, 1, "{:?}", r.target_copies);
    assert_eq!(r.target_copies.watermarks_missing, 0);

    // The rule gains a watermark: the night attaches it to the source; the copy made before
    // lacks it, and the night after says so.
    let mut with = into.clone();
    with["watermark"] = json!("golden-approved");
    d.policy = policy(with, json!({}));
    night(&d, json!({}), &run).await.unwrap();
    assert_eq!(watermarks(&d, R, &old.id), [KEY]);
    let r = night(&d, json!({}), &run).await.unwrap();
    assert_eq!(
        r.target_copies.watermarks_missing, 1,
        "{:?}",
        r.target_copies
    );
    let problem = &r.target_copies.problems[0];
    assert_eq!(problem.account, TARGET);
    assert_eq!(problem.watermark_missing.as_deref(), Some(KEY));
    assert_eq!(
        problem.status,
        amishare::target_copies::TargetStatus::Finished
    );
    let in_target = d.aws.target_images(TARGET, R);
    assert!(
        in_target.iter().all(|i| i.watermarks.is_empty()),
        "never attached in the target"
    );

    // A newer image: watermarked before its first share, so its target copy carries it.
    let new = d
        .aws
        .create_image(ImageSpec::new(R, "golden-2").created("2026-12-01T10:00:00.000Z"));
    on_image_available::handle(&d, event("image", R, &new.id))
        .await
        .unwrap();
    d.aws.finish_target_copies();
    let r = night(&d, json!({}), &run).await.unwrap();
    let copy = d
        .aws
        .target_images(TARGET, R)
        .into_iter()
        .find(|i| i.source_image_id.as_deref() == Some(new.id.as_str()))
        .unwrap();
    assert_eq!(copy.watermarks, [KEY], "EC2 carried it");
    assert_eq!(
        r.target_copies.watermarks_missing, 0,
        "{:?}",
        r.target_copies
    );
}
