//! `copy_into` on the event path, against the double: the source is opened to the target
//! accounts (and to no one else), then `CopyImage` runs *in* each target account and Region,
//! with the target's key, provenance tags and a deterministic client token; a redelivered
//! event gets the same copies back; a role that cannot be assumed, a target whose default
//! key is `aws/ebs` and a copy limit are that target's own outcome, metered.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::collections::BTreeSet;
use std::time::Duration;

use amishare::deps::{Deps, Settings};
use amishare::distribute::Response;
use amishare::metrics::event_record;
use amishare::names::{
    COPIED_BY_RULE_TAG, COPIED_FROM_ACCOUNT_TAG, COPIED_FROM_IMAGE_TAG, SOURCE_CREATED_TAG,
};
use amishare::ports::{ImageState, KeyManager};
use amishare::report::{Outcome, Summary};
use amishare::target_copies::TargetStatus;
use amishare::target_copies::FOLLOW_DELAY_SECONDS;
use amishare::Policy;
use amishare_testkit::{FakeAws, ImageSpec, OWN_ACCOUNT};
use chrono::Utc;
use on_image_available::{handle, handle_invocation};
use serde_json::{json, Value};

const R: &str = "us-east-1";
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
const OU: &str = "ou-ab12-cdef3456";
const OU_ARN: &str = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456";
const LONE: &str = "111122223333";
const IN_OU: [&str; 2] = ["200000000001", "200000000002"];

fn event(image_id: &str) -> Value {
    let mut e: Value =
        serde_json::from_str(include_str!("../../../events/image-available.json")).unwrap();
    e["region"] = json!(R);
    e["detail"]["ImageId"] = json!(image_id);
    e
}

fn policy(extra: Value) -> Policy {
    let mut rule = json!({"name": "golden", "match": {"name": "golden-*"},
        "copy_into": {"accounts": [LONE], "organizational_units": [OU_ARN],
            "regions": [{"region": REGIONS[0]}, {"region": REGIONS[1], "kms_key_id": "alias/consumer-ami"}]}});
    if let (Some(r), Some(e)) = (rule.as_object_mut(), extra.as_object()) {
        r.extend(e.clone());
    }
    Policy::from_json(&json!({"rules": [rule]}).to_string()).unwrap()
}

/// An OU of two accounts, one more account, each a target account in both Regions; a source
/// image with 2 snapshots encrypted with a customer managed key.
fn world(extra: Value) -> (Deps<FakeAws>, String) {
    let fake = FakeAws::new();
    let root = fake.create_org("o-a1b2c3d4e5");
    fake.add_ou(&root, OU);
    for a in IN_OU {
        fake.add_account(OU, a, "ACTIVE");
    }
    fake.add_account(&root, LONE, "ACTIVE");
    for a in targets() {
        fake.add_target_account(&a, &REGIONS);
    }
    let key = fake.create_key(R, KeyManager::Customer);
    let img = fake.create_image(
        ImageSpec::new(R, "golden-2026")
            .snapshots(2)
            .encrypted_with(&[&key]),
    );
    let mut d = Deps::new(fake, policy(extra), OWN_ACCOUNT);
    d.settings = Settings {
        visibility_retry_delays: vec![Duration::from_millis(1); 3],
        ..Settings::default()
    };
    (d, img.id)
}

fn targets() -> Vec<String> {
    let mut t: Vec<String> = IN_OU.iter().map(|s| s.to_string()).collect();
    t.push(LONE.into());
    t
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn copies_into_every_target_account_and_region_with_the_targets_key_tags_and_token() {
    let (d, id) = world(json!({}));
    let s = handle(&d, event(&id)).await.unwrap();
    assert_eq!(s.outcome, Outcome::Shared, "{s:?}");
    assert_eq!(s.target_copies.len(), 6, "{:?}", s.target_copies);
    assert!(s
        .target_copies
        .iter()
        .all(|t| t.status == TargetStatus::Started));

    // The source was opened to the targets, and to no one else.
    let src = d.aws.image(R, &id).unwrap();
    assert_eq!(src.launch.accounts, set(&[LONE]));
    assert_eq!(src.launch.organizational_units, set(&[OU_ARN]));
    assert!(!src.launch.public && src.launch.organizations.is_empty());
    for v in &src.image.volumes {
        let mut want = set(&IN_OU);
        want.insert(LONE.into());
        assert_eq!(d.aws.snapshot_permissions(R, &v.snapshot_id), want);
    }

    for account in targets() {
        for region in REGIONS {
            let [copy] = d.aws.target_images(&account, region).try_into().unwrap();
            assert_eq!(copy.owner_id, account, "owned by the target");
            assert_eq!(copy.state, ImageState::Pending);
            assert_eq!(copy.tags[COPIED_FROM_IMAGE_TAG], format!("{R}/{id}"));
            assert_eq!(copy.tags[COPIED_FROM_ACCOUNT_TAG], OWN_ACCOUNT);
            assert_eq!(copy.tags[COPIED_BY_RULE_TAG], "golden");
            assert!(copy.tags.contains_key(SOURCE_CREATED_TAG));
            assert!(copy.volumes.iter().all(|v| v.encrypted));
        }
    }
    // The target's own key: its default EBS key in us-east-1, the named alias in eu-west-1
    // (both resolve to the target account's key ARN, which CopyImage gets).
    let w = d.aws.world();
    for ((account, region), images) in &w.targets.images {
        let want = format!("arn:aws:kms:{region}:{account}:key/target-{account}-{region}");
        assert_eq!(images[0].kms_key_id.as_deref(), Some(want.as_str()));
    }
}

#[tokio::test]
async fn a_redelivered_event_gets_the_same_copies_back() {
    let (d, id) = world(json!({}));
    let first = handle(&d, event(&id)).await.unwrap();
    let again = handle(&d, event(&id)).await.unwrap();
    let ids = |s: &Summary| -> BTreeSet<String> {
        s.target_copies
            .iter()
            .filter_map(|t| t.image_id.clone())
            .collect()
    };
    assert_eq!(ids(&first), ids(&again));
    assert_eq!(ids(&first).len(), 6);
    for account in targets() {
        for region in REGIONS {
            assert_eq!(d.aws.target_images(&account, region).len(), 1);
        }
    }
}

#[tokio::test]
async fn the_targets_need_the_shares_the_source_side_makes() {
    // Without the launch permission and snapshot shares, the target's CopyImage fails: the
    // double applies AWS's rule, so the test above proves the source side opened the image.
    let (d, id) = world(json!({}));
    let src = d.aws.image(R, &id).unwrap().image;
    let into =
        amishare::plan::SharePlan::from_rules(d.policy.kms_access, d.policy.rules.iter()).into;
    let reports = amishare::target_copies::TargetCopier::new(&d)
        .start(&src, &into)
        .await
        .unwrap();
    assert!(reports.iter().all(|r| r.status == TargetStatus::Failed));
    assert_eq!(
        reports[0].error_code.as_deref(),
        Some("InvalidAMIID.NotFound")
    );
}

#[tokio::test]
async fn a_role_that_cannot_be_assumed_fails_that_target_only_and_names_the_fix() {
    let (d, id) = world(json!({}));
    d.aws.deny_target_role(IN_OU[1]);
    let s = handle(&d, event(&id)).await.unwrap();
    assert_eq!(s.outcome, Outcome::Shared);
    let (bad, good): (Vec<_>, Vec<_>) = s.target_copies.iter().partition(|t| t.account == IN_OU[1]);
    assert_eq!(bad.len(), 2);
    assert_eq!(good.len(), 4);
    assert!(good.iter().all(|t| t.status == TargetStatus::Started));
    for t in bad {
        assert_eq!(t.status, TargetStatus::Failed);
        assert_eq!(t.error_code.as_deref(), Some("AccessDenied"));
        let detail = t.detail.as_deref().unwrap();
        assert!(
            detail.contains(IN_OU[1]) && detail.contains("sts AssumeRole"),
            "{detail}"
        );
        assert!(
            detail.contains("templates/target-account-role.yaml"),
            "{detail}"
        );
    }
    let record = event_record(
        "on-image-available",
        Some(&s),
        Duration::from_millis(5),
        Utc::now(),
    );
    assert_eq!(record["TargetCopiesFailed"], json!(2.0));
    assert_eq!(record["TargetCopiesStarted"], json!(4.0));
    assert_eq!(
        record["Undistributed"],
        json!(1.0),
        "a target left without its copy is undistributed"
    );
}

#[tokio::test]
async fn a_default_ebs_key_that_is_aws_managed_is_refused_with_the_fix() {
    let (d, id) = world(json!({}));
    d.aws.target_default_key_aws_managed(LONE, REGIONS[0]);
    let s = handle(&d, event(&id)).await.unwrap();
    let t = s
        .target_copies
        .iter()
        .find(|t| t.account == LONE && t.region == REGIONS[0])
        .unwrap();
    assert_eq!(t.status, TargetStatus::Refused);
    let detail = t.detail.as_deref().unwrap();
    assert!(
        detail.contains("aws/ebs") && detail.contains("kms_key_id"),
        "{detail}"
    );
    assert!(d.aws.target_images(LONE, REGIONS[0]).is_empty());
    // Its other Region (a named key) is copied.
    assert_eq!(d.aws.target_images(LONE, REGIONS[1]).len(), 1);
}

#[tokio::test]
async fn a_target_without_the_named_key_fails_naming_the_account_and_key() {
    let (d, id) = world(json!({}));
    d.aws
        .world()
        .targets
        .keys
        .remove(&(LONE.to_string(), REGIONS[1].to_string()));
    let s = handle(&d, event(&id)).await.unwrap();
    let t = s
        .target_copies
        .iter()
        .find(|t| t.account == LONE && t.region == REGIONS[1])
        .unwrap();
    assert_eq!(t.status, TargetStatus::Failed);
    assert_eq!(t.error_code.as_deref(), Some("NotFoundException"));
    let detail = t.detail.as_deref().unwrap();
    assert!(
        detail.contains("alias/consumer-ami") && detail.contains(LONE),
        "{detail}"
    );
}

/// Issue 26: a target account's own copy cap makes its copy wait in the target line, which
/// starts it when a slot frees (not the night).
#[tokio::test]
async fn a_copy_limit_makes_the_target_wait_in_the_target_line() {
    let (d, id) = world(json!({}));
    d.aws
        .fail("target:CopyImage", "ResourceLimitExceeded", 0, 1);
    let s = handle(&d, event(&id)).await.unwrap();
    let waiting: Vec<_> = s
        .target_copies
        .iter()
        .filter(|t| t.status == TargetStatus::Waiting)
        .collect();
    assert_eq!(waiting.len(), 1);
    assert!(waiting[0]
        .detail
        .as_deref()
        .unwrap()
        .contains("target line"));
    let (account, region) = (waiting[0].account.clone(), waiting[0].region.clone());
    assert!(d.aws.target_images(&account, &region).is_empty());
    // Every target is followed: the line's batch (after its delay) starts the waiting one.
    assert_eq!(d.aws.follows_waiting(), 6);
    let Response::Batch(r) = handle_invocation(&d, d.aws.take_follows()).await.unwrap() else {
        panic!("a batch's answer");
    };
    assert!(r.batch_item_failures.is_empty());
    assert_eq!(
        d.aws.target_images(&account, &region).len(),
        1,
        "started by the line"
    );
    assert_eq!(
        d.aws.follows_waiting(),
        6,
        "each followed again: none finished yet"
    );
}

#[tokio::test]
async fn a_copy_of_ours_or_someone_elses_is_never_copied_into_targets() {
    let (d, _) = world(json!({}));
    let foreign = d.aws.create_image(
        ImageSpec::new(R, "golden-copied-by-packer")
            .copied_from("us-west-2", "ami-0aaaabbbbccccdddd"),
    );
    let s = handle(&d, event(&foreign.id)).await.unwrap();
    assert!(s.target_copies.is_empty(), "{s:?}");
    assert!(d
        .aws
        .image(R, &foreign.id)
        .unwrap()
        .launch
        .organizational_units
        .is_empty());
}

/// Issue 26: past the event's bound, target copies wait in the target line, which starts
/// them at once (no night), and every copy is followed until it is finished: its deprecation
/// and the target's parameter within minutes of the copy, not the next night.
#[tokio::test]
async fn an_event_starts_a_bounded_number_of_target_copies_and_the_line_starts_and_finishes_them_all(
) {
    let (mut d, id) = world(json!({
        "publish": {"parameter": "/golden/latest", "in_target_accounts": true}}));
    d.settings.target_copies_per_event = 4;
    let s = handle(&d, event(&id)).await.unwrap();
    let started = s
        .target_copies
        .iter()
        .filter(|t| t.status == TargetStatus::Started)
        .count();
    let waiting: Vec<_> = s
        .target_copies
        .iter()
        .filter(|t| t.status == TargetStatus::Waiting)
        .collect();
    assert_eq!((started, waiting.len()), (4, 2));
    assert!(waiting[0].detail.as_deref().unwrap().contains("at most 4"));
    let made = |d: &Deps<FakeAws>| -> usize {
        targets()
            .iter()
            .flat_map(|a| REGIONS.map(|r| d.aws.target_images(a, r).len()))
            .sum()
    };
    assert_eq!(
        made(&d),
        4,
        "the waiting targets are not started by the event"
    );
    let sent: Vec<u32> = d
        .aws
        .world()
        .lines
        .follows
        .iter()
        .map(|(_, delay)| *delay)
        .collect();
    assert_eq!(
        sent.iter().filter(|d| **d == 0).count(),
        2,
        "the unstarted ones at once: {sent:?}"
    );
    assert_eq!(
        sent.iter().filter(|d| **d == FOLLOW_DELAY_SECONDS).count(),
        4,
        "the started ones in a few minutes"
    );

    // The line's first batch starts the two; all six are followed again.
    handle_invocation(&d, d.aws.take_follows()).await.unwrap();
    assert_eq!(made(&d), 6);
    assert_eq!(d.aws.follows_waiting(), 6);
    // The copies become available; the next batch finishes each: the target's parameter.
    d.aws.finish_target_copies();
    handle_invocation(&d, d.aws.take_follows()).await.unwrap();
    assert_eq!(
        d.aws.follows_waiting(),
        0,
        "all finished: nothing left to follow"
    );
    for a in targets() {
        for r in REGIONS {
            let [copy] = d.aws.target_images(&a, r).try_into().unwrap();
            let versions = d.aws.target_parameter(&a, r, "/golden/latest");
            assert_eq!(
                versions.last().map(|v| v.0.as_str()),
                Some(copy.id.as_str()),
                "{a} {r}"
            );
        }
    }
}

/// Issue 26: a follow whose source was deregistered meanwhile is dropped, said so.
#[tokio::test]
async fn a_follow_whose_source_is_gone_is_dropped() {
    let (mut d, id) = world(json!({}));
    d.settings.target_copies_per_event = 0;
    handle(&d, event(&id)).await.unwrap();
    d.aws.deregister_image(R, &id);
    let Response::Batch(r) = handle_invocation(&d, d.aws.take_follows()).await.unwrap() else {
        panic!("a batch's answer");
    };
    assert!(r.batch_item_failures.is_empty());
    assert_eq!(d.aws.follows_waiting(), 0);
    assert!(targets()
        .iter()
        .all(|a| REGIONS.iter().all(|r| d.aws.target_images(a, r).is_empty())));
}

/// Issue 27 (8): an event reaching many targets keeps its summary small: the first 50 target
/// copies listed, every one counted (by status); the metrics count them all.
#[tokio::test]
async fn an_event_summary_lists_the_first_targets_and_counts_them_all() {
    let fake = FakeAws::new();
    let root = fake.create_org("o-a1b2c3d4e5");
    fake.add_ou(&root, OU);
    let accounts: Vec<String> = (0..120).map(|i| format!("3{:011}", i)).collect();
    for a in &accounts {
        fake.add_account(OU, a, "ACTIVE");
        fake.add_target_account(a, &REGIONS[..1]);
    }
    let img = fake.create_image(ImageSpec::new(R, "golden-2026"));
    let policy = Policy::from_json(
        &json!({"rules": [{"name": "golden", "match": {"name": "golden-*"},
            "copy_into": {"organizational_units": [OU_ARN], "regions": [{"region": REGIONS[0]}]}}]})
        .to_string(),
    )
    .unwrap();
    let d = Deps::new(fake, policy, OWN_ACCOUNT);
    let s = handle(&d, event(&img.id)).await.unwrap();
    assert_eq!(s.target_copies.len(), 120, "all of them, in the process");
    let counts = s.target_copy_counts.as_ref().unwrap();
    assert_eq!((counts.total, counts.listed), (120, 50));
    assert_eq!(counts.by_status.get("started"), Some(&120));
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["target_copies"].as_array().unwrap().len(), 50);
    assert_eq!(json["target_copy_counts"]["total"], json!(120));
    let record = event_record("on-image-available", Some(&s), Duration::ZERO, Utc::now());
    assert_eq!(record["TargetCopiesStarted"], json!(120.0));
    assert!(serde_json::to_string(&s).unwrap().len() < 32 * 1024);
}

/// Issue 27 (10): two rules copying the same image into the same account and Region with the
/// same key each get their copy (their own token and name); one token with the other rule's
/// tags would be refused by EC2 (IdempotentParameterMismatch), one name too.
#[tokio::test]
async fn two_rules_copying_one_image_into_one_account_each_get_their_copy() {
    let fake = FakeAws::new();
    fake.create_org("o-a1b2c3d4e5");
    fake.add_target_account(LONE, &REGIONS[..1]);
    let img = fake.create_image(ImageSpec::new(R, "golden-2026"));
    let rule = |name: &str| {
        json!({"name": name, "match": {"name": "golden-*"},
            "copy_into": {"accounts": [LONE], "regions": [{"region": REGIONS[0]}]}})
    };
    let policy =
        Policy::from_json(&json!({"rules": [rule("golden"), rule("silver")]}).to_string()).unwrap();
    let d = Deps::new(fake, policy, OWN_ACCOUNT);
    let s = handle(&d, event(&img.id)).await.unwrap();
    assert_eq!(s.target_copies.len(), 2, "{:?}", s.target_copies);
    assert!(
        s.target_copies
            .iter()
            .all(|t| t.status == TargetStatus::Started),
        "{:?}",
        s.target_copies
    );
    let ids: BTreeSet<_> = s.target_copies.iter().map(|t| t.image_id.clone()).collect();
    assert_eq!(ids.len(), 2, "two copies: {ids:?}");
}
