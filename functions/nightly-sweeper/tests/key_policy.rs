//! The night under `kms_access: key_policy`: each key's policy is checked once a night,
//! whatever the number of images; a key that does not admit the rule's OU is reported with the
//! statement to add and keeps its grants; once it does, the per-account grants the OU no longer
//! needs are pruned (with `prune_unlisted_shares`), the plain account's kept.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use amishare::deps::Deps;
use amishare::names::{grant_name, MANAGED_TAG};
use amishare::ports::{GrantRequest, KeyManager, Keys};
use amishare::Policy;
use amishare_testkit::{default_key_policy, key_policy_admitting, FakeAws, ImageSpec, OWN_ACCOUNT};
use chrono::{Duration, TimeZone, Utc};
use nightly_sweeper::{handle, Run, SweepReport};
use serde_json::json;

const R: &str = "us-east-1";
const ORG: &str = "o-a1b2c3d4e5";
const OU: &str = "ou-ab12-cdef3456";
const OU_ARN: &str = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456";
const ACCOUNT: &str = "111122223333";
const MEMBER: &str = "200000000001";

async fn night(d: &Deps<FakeAws>, n: i64) -> SweepReport {
    let now = Utc.with_ymd_and_hms(2026, 11, 21, 3, 30, 0).unwrap() + Duration::days(n);
    handle(d, json!({}), &Run::new(R, now, None)).await.unwrap()
}

fn admitting_policy() -> String {
    key_policy_admitting(&[OU_ARN])
}

/// Ten managed images on one key, shared under `grants` before: the OU's member and the plain
/// account hold grants.
async fn world() -> (Deps<FakeAws>, String) {
    let fake = FakeAws::new();
    let root = fake.create_org(ORG);
    fake.add_ou(&root, OU);
    fake.add_account(OU, MEMBER, "ACTIVE");
    let key = fake.create_key(R, KeyManager::Customer);
    for i in 0..10 {
        fake.create_image(
            ImageSpec::new(R, &format!("golden-{i}"))
                .tag(MANAGED_TAG, "golden")
                .snapshots(1)
                .encrypted_with(&[&key]),
        );
    }
    for a in [ACCOUNT, MEMBER] {
        let g = GrantRequest {
            key_arn: key.clone(),
            grantee_principal: format!("arn:aws:iam::{a}:root"),
            name: grant_name(a),
        };
        fake.create_grant(R, &g).await.unwrap();
    }
    let policy = Policy::from_json(
        &json!({"kms_access": "key_policy", "sweeper": {"prune_unlisted_shares": true},
            "rules": [{"name": "golden", "match": {"name": "golden-*"},
                "share_with": {"accounts": [ACCOUNT], "organizational_units": [OU_ARN]}}]})
        .to_string(),
    )
    .unwrap();
    (Deps::new(fake, policy, OWN_ACCOUNT), key)
}

fn grantees(d: &Deps<FakeAws>, key: &str) -> Vec<String> {
    let mut a: Vec<String> = d.aws.grants(key).into_iter().map(|(_, a)| a).collect();
    a.sort();
    a
}

#[tokio::test]
async fn a_key_that_does_not_admit_the_ou_is_reported_once_and_keeps_its_grants() {
    let (d, key) = world().await;
    let r = night(&d, 0).await;
    assert_eq!(r.drift.key_policies_refused, vec![key.clone()], "{r:#?}");
    assert_eq!(r.drift.key_policies_checked, 1);
    assert_eq!(
        d.aws.call_counts().get("kms:GetKeyPolicy"),
        Some(&1),
        "once per key and night, not per image"
    );
    let text = serde_json::to_string(&r).unwrap();
    assert!(text.contains("o-a1b2c3d4e5/*/ou-ab12-cdef3456/*"), "{text}");
    assert_eq!(
        grantees(&d, &key),
        [ACCOUNT, MEMBER],
        "no grant pruned while the policy does not admit the OU"
    );
}

#[tokio::test]
async fn once_the_policy_admits_the_ou_the_ou_grants_are_pruned_and_a_steady_night_reads_it_once() {
    let (d, key) = world().await;
    d.aws.set_key_policy(&key, &admitting_policy());
    let r = night(&d, 0).await;
    assert!(r.drift.key_policies_refused.is_empty(), "{r:#?}");
    assert_eq!(r.drift.converged, 10);
    assert_eq!(
        grantees(&d, &key),
        [ACCOUNT],
        "the OU member's grant pruned"
    );
    assert_eq!(d.aws.call_counts().get("kms:GetKeyPolicy"), Some(&1));

    // A steady night: every image in sync; the key policy is still verified, once.
    d.aws.reset_calls();
    let r = night(&d, 1).await;
    assert_eq!(r.drift.in_sync, 10, "{r:#?}");
    assert_eq!(r.drift.key_policies_checked, 1);
    assert_eq!(d.aws.call_counts().get("kms:GetKeyPolicy"), Some(&1));
    assert_eq!(d.aws.call_counts().get("kms:CreateGrant"), None);

    // The statement is removed by hand: the next night says so.
    d.aws.set_key_policy(&key, &default_key_policy());
    let r = night(&d, 2).await;
    assert_eq!(r.drift.key_policies_refused, vec![key.clone()]);
}
