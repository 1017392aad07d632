//! KMS access by key policy (`kms_access: key_policy`) on the event path, against the double:
//! organizations and OUs reach the key through its policy (checked, one `GetKeyPolicy` per
//! key), plain accounts still through grants; a key whose policy does not admit them refuses
//! the image before anything is written, printing the statement to add.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::collections::BTreeSet;
use std::time::Duration;

use amishare::deps::{Deps, Settings};
use amishare::ports::KeyManager;
use amishare::report::Outcome;
use amishare::Policy;
use amishare_testkit::{key_policy_admitting, FakeAws, ImageSpec, OWN_ACCOUNT};
use on_image_available::handle;
use serde_json::{json, Value};

const ORG: &str = "o-a1b2c3d4e5";
const OU: &str = "ou-ab12-cdef3456";
const OU_ARN: &str = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456";
const ACCOUNT: &str = "111122223333";
const R: &str = "us-east-1";

fn event(image_id: &str) -> Value {
    let mut e: Value =
        serde_json::from_str(include_str!("../../../events/image-available.json")).unwrap();
    e["region"] = json!(R);
    e["detail"]["ImageId"] = json!(image_id);
    e
}

fn policy(rule_extra: Value) -> Policy {
    let mut rule = json!({"name": "golden", "match": {"name": "golden-*"},
        "share_with": {"accounts": [ACCOUNT], "organizational_units": [OU_ARN]}});
    if let (Some(r), Some(e)) = (rule.as_object_mut(), rule_extra.as_object()) {
        r.extend(e.clone());
    }
    Policy::from_json(&json!({"kms_access": "key_policy", "rules": [rule]}).to_string()).unwrap()
}

/// An OU of `n` active accounts; two customer managed keys whose policies admit the OU when
/// `admitted`; an image with 2 snapshots encrypted with them.
fn world(n: usize, admitted: bool, rule_extra: Value) -> (Deps<FakeAws>, String, [String; 2]) {
    let fake = FakeAws::new();
    fake.world().page_size = 20; // ListAccountsForParent's default page size
    let root = fake.create_org(ORG);
    fake.add_ou(&root, OU);
    for i in 0..n {
        fake.add_account(OU, &format!("2{i:011}"), "ACTIVE");
    }
    let keys = [
        fake.create_key(R, KeyManager::Customer),
        fake.create_key(R, KeyManager::Customer),
    ];
    if admitted {
        for k in &keys {
            fake.set_key_policy(k, &admitting_policy());
        }
    }
    let img = fake.create_image(
        ImageSpec::new(R, "golden-2026")
            .snapshots(2)
            .encrypted_with(&[&keys[0], &keys[1]]),
    );
    let mut d = Deps::new(fake, policy(rule_extra), OWN_ACCOUNT);
    d.settings = Settings {
        visibility_retry_delays: vec![Duration::from_millis(1); 3],
        ..Settings::default()
    };
    (d, img.id, keys)
}

/// The default key policy plus the statement the product prints for the OU.
fn admitting_policy() -> String {
    key_policy_admitting(&[OU_ARN])
}

fn writes(d: &Deps<FakeAws>) -> usize {
    let c = d.aws.call_counts();
    [
        "ec2:ModifyImageAttribute",
        "ec2:ModifySnapshotAttribute",
        "ec2:CreateTags",
        "kms:CreateGrant",
    ]
    .iter()
    .map(|op| c.get(*op).copied().unwrap_or(0))
    .sum()
}

#[tokio::test]
async fn organizations_and_ous_reach_the_key_by_policy_and_only_plain_accounts_get_grants() {
    let (d, id, keys) = world(5, true, json!({}));
    let s = handle(&d, event(&id)).await.unwrap();
    assert_eq!(s.outcome, Outcome::Shared, "{s:?}");
    for k in &keys {
        let grants = d.aws.grants(k);
        assert_eq!(
            grants.iter().map(|(_, a)| a.as_str()).collect::<Vec<_>>(),
            [ACCOUNT],
            "only the plain account holds a grant on {k}"
        );
    }
    // The snapshots are still shared with every account of the OU (no OU principal there).
    let img = d.aws.image(R, &id).unwrap();
    for v in &img.image.volumes {
        assert_eq!(d.aws.snapshot_permissions(R, &v.snapshot_id).len(), 6);
    }
    let c = d.aws.call_counts();
    assert_eq!(c.get("kms:GetKeyPolicy"), Some(&2), "one per key: {c:#?}");
    assert_eq!(
        c.get("kms:CreateGrant"),
        Some(&2),
        "the plain account, per key"
    );
    assert_eq!(c.get("kms:ListGrants"), Some(&2));
}

#[tokio::test]
async fn without_snapshot_shares_the_calls_do_not_depend_on_the_number_of_accounts() {
    let mut counts = Vec::new();
    for n in [5, 500] {
        let (d, id, keys) = world(n, true, json!({"share_snapshots": false}));
        let s = handle(&d, event(&id)).await.unwrap();
        assert_eq!(s.outcome, Outcome::Shared, "{s:?}");
        assert_eq!(d.aws.grants(&keys[0]).len(), 1);
        let calls = d.aws.call_counts();
        assert!(
            !calls.keys().any(|op| op.starts_with("organizations:List")),
            "no account is listed: {calls:?}"
        );
        assert_eq!(
            calls.get("organizations:DescribeAccount"),
            Some(&1),
            "the one plain account's membership"
        );
        counts.push(d.aws.call_counts());
    }
    assert_eq!(
        counts[0], counts[1],
        "the same calls at 5 and at 500 accounts"
    );
}

#[tokio::test]
async fn grants_mode_grants_every_account_of_the_ou() {
    // The contrast: the same world under `grants` gives each of the 6 accounts a grant.
    let (d, id, keys) = world(5, false, json!({"kms_access": "grants"}));
    let s = handle(&d, event(&id)).await.unwrap();
    assert_eq!(s.outcome, Outcome::Shared, "{s:?}");
    assert_eq!(d.aws.grants(&keys[0]).len(), 6);
    assert_eq!(d.aws.call_counts().get("kms:GetKeyPolicy"), None);
}

#[tokio::test]
async fn a_key_that_does_not_admit_the_ou_refuses_the_image_before_anything_is_written() {
    let (d, id, keys) = world(5, false, json!({}));
    d.aws.set_key_policy(&keys[1], &admitting_policy()); // only the first key lacks it
    let s = handle(&d, event(&id)).await.unwrap();
    assert_eq!(s.outcome, Outcome::Refused, "{s:?}");
    assert_eq!(writes(&d), 0, "{:#?}", d.aws.call_counts());
    let text = serde_json::to_string(&s).unwrap();
    assert!(text.contains(&keys[0]), "names the key: {text}");
    assert!(
        !text.contains(&format!("{} ", keys[1])),
        "not the other key: {text}"
    );
    assert!(
        text.contains("o-a1b2c3d4e5/*/ou-ab12-cdef3456/*"),
        "prints the statement: {text}"
    );
    assert!(text.contains("put-key-policy"), "{text}");

    // The key's administrators add the printed statement; the retry shares the image.
    d.aws.set_key_policy(&keys[0], &admitting_policy());
    let s = handle(&d, event(&id)).await.unwrap();
    assert_eq!(s.outcome, Outcome::Shared, "{s:?}");
    let img = d.aws.image(R, &id).unwrap();
    assert_eq!(
        img.launch.organizational_units,
        BTreeSet::from([OU_ARN.to_string()])
    );
}

#[tokio::test]
async fn an_unencrypted_image_needs_no_key_policy() {
    let (d, _, _) = world(5, false, json!({}));
    let img = d
        .aws
        .create_image(ImageSpec::new(R, "golden-plain").snapshots(1));
    let s = handle(&d, event(&img.id)).await.unwrap();
    assert_eq!(s.outcome, Outcome::Shared, "{s:?}");
    assert_eq!(d.aws.calls_to("kms"), 0);
}

/// Copies wait for every check (issue: a copy started ~60 ms before `GetKeyPolicy` refused the
/// source, and on-copy-complete then shared the copy with the OU in the other Region).
#[tokio::test]
async fn a_refused_key_policy_starts_no_copy_at_all() {
    let (d, id, keys) = world(
        5,
        false,
        json!({"copy_to": [{"region": "eu-west-1", "kms_key_id": "alias/golden-eu"}]}),
    );
    d.aws.set_key_policy(&keys[1], &admitting_policy()); // only the first key lacks it
    let s = handle(&d, event(&id)).await.unwrap();
    assert_eq!(s.outcome, Outcome::Refused, "{s:?}");
    let c = d.aws.call_counts();
    assert_eq!(c.get("ec2:CopyImage"), None, "no copy: {c:#?}");
    assert_eq!(writes(&d), 0, "{c:#?}");
}

/// The key a copy is encrypted with in its Region must admit the OU too: checked before the
/// source is shared or any copy starts.
#[tokio::test]
async fn a_copy_key_that_does_not_admit_the_ou_refuses_before_anything_is_written() {
    let (d, id, _) = world(5, true, json!({}));
    let eu_key = d.aws.create_key("eu-west-1", KeyManager::Customer);
    let rule = json!({"copy_to": [{"region": "eu-west-1", "kms_key_id": eu_key}]});
    let mut d = d;
    d.policy = policy(rule);
    let s = handle(&d, event(&id)).await.unwrap();
    assert_eq!(s.outcome, Outcome::Refused, "{s:?}");
    let text = serde_json::to_string(&s).unwrap();
    assert!(text.contains(&eu_key), "names the copy's key: {text}");
    let c = d.aws.call_counts();
    assert_eq!(c.get("ec2:CopyImage"), None, "no copy: {c:#?}");
    assert_eq!(writes(&d), 0, "nothing shared either: {c:#?}");

    // Once the copy's key admits the OU, the image is shared and copied.
    d.aws.set_key_policy(&eu_key, &admitting_policy());
    let s = handle(&d, event(&id)).await.unwrap();
    assert_eq!(s.outcome, Outcome::Shared, "{s:?}");
    assert_eq!(d.aws.call_counts().get("ec2:CopyImage"), Some(&1));
}
