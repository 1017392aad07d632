//! Grants that scale on the event path (`kms_access: grants`): a key's grants are paged through
//! once for an account set, after which a receipt on the key (`ami-share:grants`) answers for
//! them; the next image of the same key and accounts reads one tag, no grant. A new account
//! set lists again and creates only what is missing; the night never trusts a receipt.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::time::Duration;

use amishare::deps::{Deps, Settings};
use amishare::names::{grant_name, grant_set_fingerprint, GRANTS_TAG, GRANT_RECEIPTS};
use amishare::ports::{GrantRequest, KeyManager, Keys};
use amishare::report::Outcome;
use amishare::Policy;
use amishare_testkit::{FakeAws, ImageSpec, OWN_ACCOUNT};
use on_image_available::handle;
use serde_json::{json, Value};

const ORG: &str = "o-a1b2c3d4e5";
const OU: &str = "ou-ab12-cdef3456";
const OU_ARN: &str = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456";
const R: &str = "us-east-1";

fn event(image_id: &str) -> Value {
    let mut e: Value =
        serde_json::from_str(include_str!("../../../events/image-available.json")).unwrap();
    e["detail"]["ImageId"] = json!(image_id);
    e
}

fn member(i: usize) -> String {
    format!("2{i:011}")
}

/// An OU of `n` accounts and one customer managed key.
fn world(n: usize) -> (FakeAws, String) {
    let fake = FakeAws::new();
    let root = fake.create_org(ORG);
    fake.add_ou(&root, OU);
    for i in 0..n {
        fake.add_account(OU, &member(i), "ACTIVE");
    }
    let key = fake.create_key(R, KeyManager::Customer);
    (fake, key)
}

async fn foreign_grants(fake: &FakeAws, key: &str, n: usize) {
    for i in 0..n {
        let g = GrantRequest {
            key_arn: key.into(),
            grantee_principal: format!(
                "arn:aws:iam::{:012}:role/other",
                900_000_000_000u64 + i as u64
            ),
            name: format!("other-tool-{i}"),
        };
        fake.create_grant(R, &g).await.unwrap();
    }
}

fn deps(fake: FakeAws) -> Deps<FakeAws> {
    let policy = Policy::from_json(
        &json!({"rules": [{"name": "golden", "match": {"name": "golden-*"},
            "share_with": {"organizational_units": [OU_ARN]}}]})
        .to_string(),
    )
    .unwrap();
    let mut d = Deps::new(fake, policy, OWN_ACCOUNT);
    d.settings = Settings {
        visibility_retry_delays: vec![Duration::from_millis(1); 3],
        // Every event lists the OU again: accounts join between the events of these tests.
        org_cache_ttl: Duration::ZERO,
        ..Settings::default()
    };
    d
}

fn image(fake: &FakeAws, key: &str, name: &str) -> String {
    fake.create_image(ImageSpec::new(R, name).snapshots(2).encrypted_with(&[key]))
        .id
}

fn count(d: &Deps<FakeAws>, op: &str) -> usize {
    d.aws.call_counts().get(op).copied().unwrap_or(0)
}

#[tokio::test]
async fn the_second_image_of_a_key_reads_the_receipt_not_the_grants() {
    let (fake, key) = world(250);
    foreign_grants(&fake, &key, 1000).await;
    let first = image(&fake, &key, "golden-1");
    let second = image(&fake, &key, "golden-2");
    let d = deps(fake);
    d.aws.reset_calls();

    let s = handle(&d, event(&first)).await.unwrap();
    assert_eq!(s.outcome, Outcome::Shared, "{s:?}");
    assert_eq!(count(&d, "kms:ListGrants"), 10, "1,000 grants, 100 a page");
    assert_eq!(count(&d, "kms:CreateGrant"), 250);
    let accounts: std::collections::BTreeSet<String> = (0..250).map(member).collect();
    assert_eq!(
        d.aws.key_tags(&key).get(GRANTS_TAG),
        Some(&grant_set_fingerprint(&accounts)),
        "the receipt, left once every grant was made"
    );

    d.aws.reset_calls();
    let s = handle(&d, event(&second)).await.unwrap();
    assert_eq!(s.outcome, Outcome::Shared, "{s:?}");
    assert_eq!(
        count(&d, "kms:ListGrants"),
        0,
        "the target: at most 2 pages"
    );
    assert_eq!(count(&d, "kms:CreateGrant"), 0);
    assert_eq!(count(&d, "kms:ListResourceTags"), 1);
    assert_eq!(count(&d, "kms:TagResource"), 0);
    assert_eq!(d.aws.grants(&key).len(), 1250, "no grant twice");
}

#[tokio::test]
async fn a_new_account_lists_again_creates_only_its_grant_and_keeps_the_old_receipt() {
    let (fake, key) = world(3);
    let first = image(&fake, &key, "golden-1");
    let second = image(&fake, &key, "golden-2");
    let d = deps(fake);
    handle(&d, event(&first)).await.unwrap();
    let old = d.aws.key_tags(&key)[GRANTS_TAG].clone();

    d.aws.add_account(OU, &member(3), "ACTIVE"); // joined
    d.aws.reset_calls();
    let s = handle(&d, event(&second)).await.unwrap();
    assert_eq!(s.outcome, Outcome::Shared, "{s:?}");
    assert_eq!(count(&d, "kms:ListGrants"), 1);
    assert_eq!(count(&d, "kms:CreateGrant"), 1, "only the new account's");
    let receipts = d.aws.key_tags(&key)[GRANTS_TAG].clone();
    let receipts: Vec<&str> = receipts.split(' ').collect();
    assert_eq!(receipts.len(), 2);
    assert_eq!(receipts[1], old, "the older set's receipt stays true");
    assert!(d
        .aws
        .grants(&key)
        .contains(&(Some(grant_name(&member(3))), member(3))));
}

#[tokio::test]
async fn receipts_are_capped_to_fit_a_tag_value() {
    let (fake, key) = world(1);
    let d = deps(fake);
    for i in 0..GRANT_RECEIPTS + 3 {
        // A new account each time: a new set, a new receipt.
        d.aws.add_account(OU, &member(i + 1), "ACTIVE");
        let id = image(&d.aws, &key, &format!("golden-{i}"));
        let s = handle(&d, event(&id)).await.unwrap();
        assert_eq!(s.outcome, Outcome::Shared, "{s:?}");
    }
    let value = d.aws.key_tags(&key)[GRANTS_TAG].clone();
    assert_eq!(value.split(' ').count(), GRANT_RECEIPTS);
    assert!(value.len() <= 256);
}

#[tokio::test]
async fn a_failed_grant_leaves_no_receipt() {
    let (fake, key) = world(5);
    let first = image(&fake, &key, "golden-1");
    let d = deps(fake);
    d.aws.fail("kms:CreateGrant", "AccessDeniedException", 2, 1);
    let s = handle(&d, event(&first)).await.unwrap();
    assert_eq!(s.outcome, Outcome::Failed, "{s:?}");
    assert_eq!(d.aws.key_tags(&key).get(GRANTS_TAG), None);
    // The next attempt lists again and finishes.
    let s = handle(&d, event(&first)).await.unwrap();
    assert_eq!(s.outcome, Outcome::Shared, "{s:?}");
    assert_eq!(d.aws.grants(&key).len(), 5);
    assert!(d.aws.key_tags(&key).contains_key(GRANTS_TAG));
}
