//! The organization's boundary (issue 25): plain accounts in `share_with` and `copy_into` must
//! be members of the organization, unless the policy says `allow_external_accounts: true`;
//! refused before anything is written, naming the accounts; resource shares allow external
//! principals only for accounts outside the organization, when allowed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::time::Duration;

use amishare::deps::{Deps, Settings};
use amishare::ports::KeyManager;
use amishare::report::Outcome;
use amishare::Policy;
use amishare_testkit::{FakeAws, ImageSpec, OWN_ACCOUNT};
use on_image_available::handle;
use serde_json::{json, Value};

const R: &str = "us-east-1";
const MEMBER: &str = "111122223333";
const OUTSIDER: &str = "999988887777";
const PARAM: &str = "/golden/al2023/latest";

fn event(image_id: &str) -> Value {
    let mut e: Value =
        serde_json::from_str(include_str!("../../../events/image-available.json")).unwrap();
    e["region"] = json!(R);
    e["detail"]["ImageId"] = json!(image_id);
    e
}

/// An encrypted golden image; `OUTSIDER` is not a member of the organization.
fn world(policy: Value) -> (Deps<FakeAws>, String, String) {
    let fake = FakeAws::new();
    let root = fake.create_org("o-a1b2c3d4e5");
    fake.add_account(&root, MEMBER, "ACTIVE");
    fake.set_outside_organization(&[OUTSIDER]);
    let key = fake.create_key(R, KeyManager::Customer);
    fake.create_key("eu-west-1", KeyManager::Customer);
    let img = fake.create_image(
        ImageSpec::new(R, "golden-1")
            .snapshots(2)
            .encrypted_with(&[&key]),
    );
    let mut d = Deps::new(
        fake,
        Policy::from_json(&policy.to_string()).unwrap(),
        OWN_ACCOUNT,
    );
    d.settings = Settings {
        visibility_retry_delays: vec![Duration::from_millis(1); 2],
        ..Settings::default()
    };
    (d, img.id, key)
}

fn writes(d: &Deps<FakeAws>) -> Vec<String> {
    d.aws
        .world()
        .calls
        .iter()
        .filter(|c| {
            [
                "ec2:ModifyImageAttribute",
                "ec2:ModifySnapshotAttribute",
                "ec2:CopyImage",
                "ec2:CreateTags",
                "kms:CreateGrant",
                "ssm:PutParameter",
                "ram:CreateResourceShare",
                "sts:AssumeRole",
            ]
            .contains(&c.as_str())
                || c.starts_with("target:")
        })
        .cloned()
        .collect()
}

#[tokio::test]
async fn an_account_outside_the_organization_is_refused_before_anything_is_written() {
    let (d, id, _) = world(
        json!({"rules": [{"name": "golden", "match": {"name": "golden-*"},
        "share_with": {"accounts": [MEMBER, OUTSIDER]},
        "copy_to": [{"region": "eu-west-1", "kms_key_id": "alias/ami-share"}],
        "publish": {"parameter": PARAM}}]}),
    );
    let s = handle(&d, event(&id)).await.unwrap();
    assert_eq!(s.outcome, Outcome::Refused, "{s:#?}");
    let message = &s.error.as_ref().unwrap().message;
    assert!(message.contains(OUTSIDER), "{message}");
    assert!(
        !message.contains(MEMBER),
        "names only the outsider: {message}"
    );
    assert!(
        message.contains("allow_external_accounts"),
        "names the fix: {message}"
    );
    assert_eq!(
        writes(&d),
        Vec::<String>::new(),
        "nothing written, no copy started"
    );
    // Asked before anything else was written: the membership is the first check.
    let calls = d.aws.world().calls.clone();
    assert!(
        calls.contains(&"organizations:DescribeAccount".to_string()),
        "{calls:?}"
    );
}

#[tokio::test]
async fn a_copy_into_account_outside_the_organization_is_refused_too() {
    let (d, id, _) = world(
        json!({"rules": [{"name": "golden", "match": {"name": "golden-*"},
        "copy_into": {"accounts": [OUTSIDER], "regions": [{"region": R}]}}]}),
    );
    let s = handle(&d, event(&id)).await.unwrap();
    assert_eq!(s.outcome, Outcome::Refused, "{s:#?}");
    assert!(s.error.as_ref().unwrap().message.contains(OUTSIDER));
    assert_eq!(writes(&d), Vec::<String>::new());
}

#[tokio::test]
async fn allowed_external_accounts_are_shared_and_only_they_open_the_resource_share() {
    let rule = |accounts: Value| {
        json!({"allow_external_accounts": true,
            "rules": [{"name": "golden", "match": {"name": "golden-*"},
            "share_with": {"accounts": accounts}, "publish": {"parameter": PARAM}}]})
    };
    // Members only: the share stays closed to external principals.
    let (d, id, _) = world(rule(json!([MEMBER])));
    let s = handle(&d, event(&id)).await.unwrap();
    assert_eq!(s.outcome, Outcome::Shared, "{s:#?}");
    let [share] = d
        .aws
        .shares_named(R, "ami-share-golden")
        .try_into()
        .unwrap();
    assert!(!share.allow_external_principals);

    // An outsider, allowed: shared, and the resource share allows external principals.
    let (d, id, key) = world(rule(json!([MEMBER, OUTSIDER])));
    let s = handle(&d, event(&id)).await.unwrap();
    assert_eq!(s.outcome, Outcome::Shared, "{s:#?}");
    assert!(d
        .aws
        .image(R, &id)
        .unwrap()
        .launch
        .accounts
        .contains(OUTSIDER));
    assert!(d.aws.grants(&key).iter().any(|(_, a)| a == OUTSIDER));
    let [share] = d
        .aws
        .shares_named(R, "ami-share-golden")
        .try_into()
        .unwrap();
    assert!(share.allow_external_principals);
    assert!(share.principals.contains(OUTSIDER));
}
