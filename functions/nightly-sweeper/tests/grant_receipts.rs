//! The night and the event path's grant receipts (`ami-share:grants` on a key): the night never
//! trusts one (it reads the grants and repairs a grant revoked by hand), and removes the
//! receipts of a key before revoking any of its grants.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::collections::BTreeSet;

use amishare::deps::Deps;
use amishare::names::{grant_name, grant_set_fingerprint, GRANTS_TAG, MANAGED_TAG};
use amishare::ports::{GrantRequest, KeyManager, Keys};
use amishare::Policy;
use amishare_testkit::{FakeAws, ImageSpec, OWN_ACCOUNT};
use chrono::{TimeZone, Utc};
use nightly_sweeper::{handle, Run, SweepReport};
use serde_json::json;

const R: &str = "us-east-1";
const ACCOUNTS: [&str; 2] = ["111122223333", "444455556666"];
const GONE: &str = "777788889999";

async fn night(d: &Deps<FakeAws>) -> SweepReport {
    let now = Utc.with_ymd_and_hms(2026, 11, 21, 3, 30, 0).unwrap();
    handle(d, json!({}), &Run::new(R, now, None)).await.unwrap()
}

async fn grant(fake: &FakeAws, key: &str, account: &str) {
    let g = GrantRequest {
        key_arn: key.into(),
        grantee_principal: format!("arn:aws:iam::{account}:root"),
        name: grant_name(account),
    };
    fake.create_grant(R, &g).await.unwrap();
}

/// A managed, not yet converged image on a key whose receipt says both accounts hold their
/// grants.
async fn world(prune: bool) -> (Deps<FakeAws>, String) {
    let fake = FakeAws::new();
    let key = fake.create_key(R, KeyManager::Customer);
    fake.create_image(
        ImageSpec::new(R, "golden-1")
            .tag(MANAGED_TAG, "golden")
            .snapshots(1)
            .encrypted_with(&[&key]),
    );
    for a in ACCOUNTS {
        grant(&fake, &key, a).await;
    }
    let set: BTreeSet<String> = ACCOUNTS.iter().map(|a| a.to_string()).collect();
    fake.set_key_tag(R, &key, GRANTS_TAG, &grant_set_fingerprint(&set))
        .await
        .unwrap();
    let policy = Policy::from_json(
        &json!({"sweeper": {"prune_unlisted_shares": prune},
            "rules": [{"name": "golden", "match": {"name": "golden-*"},
                "share_with": {"accounts": ACCOUNTS}}]})
        .to_string(),
    )
    .unwrap();
    (Deps::new(fake, policy, OWN_ACCOUNT), key)
}

#[tokio::test]
async fn the_night_reads_the_grants_and_repairs_one_revoked_by_hand_despite_the_receipt() {
    let (d, key) = world(false).await;
    d.aws.revoke_by_hand(&key, ACCOUNTS[1]);
    d.aws.reset_calls();
    let r = night(&d).await;
    assert_eq!(r.drift.grants_created, 1, "{r:#?}");
    let c = d.aws.call_counts();
    assert_eq!(c.get("kms:ListGrants"), Some(&1));
    assert_eq!(
        c.get("kms:ListResourceTags"),
        None,
        "the night does not read receipts"
    );
    assert_eq!(c.get("kms:TagResource"), None, "nor write them");
    assert_eq!(d.aws.grants(&key).len(), 2);
}

#[tokio::test]
async fn revoking_a_grant_removes_the_keys_receipts_first() {
    let (d, key) = world(true).await;
    grant(&d.aws, &key, GONE).await; // ours, needed by no image any more
    let r = night(&d).await;
    assert_eq!(r.drift.pruned.grants, [format!("{key}: {GONE}")], "{r:#?}");
    assert_eq!(d.aws.key_tags(&key).get(GRANTS_TAG), None);
    assert_eq!(d.aws.grants(&key).len(), 2);
}

#[tokio::test]
async fn a_night_that_revokes_nothing_leaves_the_receipts() {
    let (d, key) = world(true).await;
    night(&d).await;
    assert!(d.aws.key_tags(&key).contains_key(GRANTS_TAG));
}
