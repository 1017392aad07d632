//! Drift repair against the in-memory double: the policy is the desired state, AWS the actual.

// Test set-up and assertions: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use amishare::deps::Deps;
use amishare::names::{copy_name, grant_name, CopyKind, MANAGED_TAG};
use amishare::ports::{
    GrantRequest, ImageState, Images, KeyManager, Keys, LaunchPermissions, Snapshots,
};
use amishare::Policy;
use amishare_testkit::{FakeAws, ImageSpec, OWN_ACCOUNT};
use chrono::{TimeZone, Utc};
use nightly_sweeper::{handle, Run, SweepReport};
use serde_json::{json, Value};

const R: &str = "us-east-1";
const ORG: &str = "o-a1b2c3d4e5";
const OU: &str = "ou-ab12-cdef3456";
const OU_ARN: &str = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456";
const ACCOUNT: &str = "111122223333";
const REMOVED: &str = "999988887777";

fn policy(rule_extra: Value, sweeper: Value) -> Policy {
    let mut rule = json!({"name": "golden", "match": {"name": "golden-*"},
        "share_with": {"accounts": [ACCOUNT], "organizational_units": [OU_ARN]}});
    if let (Some(r), Some(e)) = (rule.as_object_mut(), rule_extra.as_object()) {
        r.extend(e.clone());
    }
    Policy::from_json(&json!({"rules": [rule], "sweeper": sweeper}).to_string()).unwrap()
}

fn org(fake: &FakeAws, accounts: &[&str]) {
    let root = fake.create_org(ORG);
    fake.add_ou(&root, OU);
    for a in accounts {
        fake.add_account(OU, a, "ACTIVE");
    }
}

async fn sweep(d: &Deps<FakeAws>) -> SweepReport {
    let now = Utc.with_ymd_and_hms(2026, 11, 21, 3, 30, 0).unwrap();
    handle(d, json!({}), &Run::new(R, now, None)).await.unwrap()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A managed image shared as the policy said when the OU had one account.
async fn shared_image(fake: &FakeAws, key: Option<&str>) -> amishare::ports::Image {
    let mut spec = ImageSpec::new(R, "golden-1")
        .tag(MANAGED_TAG, "golden")
        .snapshots(2);
    if let Some(k) = key {
        spec = spec.encrypted_with(&[k]);
    }
    let img = fake.create_image(spec);
    let lp = LaunchPermissions {
        accounts: set(&[ACCOUNT]),
        organizational_units: set(&[OU_ARN]),
        ..Default::default()
    };
    fake.add_launch_permissions(R, &img.id, &lp).await.unwrap();
    for v in &img.volumes {
        fake.add_create_volume_permission(
            R,
            &v.snapshot_id,
            &[ACCOUNT.to_string(), "200000000001".to_string()],
        )
        .await
        .unwrap();
    }
    if let Some(k) = key {
        for a in [ACCOUNT, "200000000001"] {
            let g = GrantRequest {
                key_arn: k.into(),
                grantee_principal: format!("arn:aws:iam::{a}:root"),
                name: grant_name(a),
            };
            fake.create_grant(R, &g).await.unwrap();
        }
    }
    img
}

#[tokio::test]
async fn account_added_to_an_ou_after_sharing_gets_snapshots_and_grants() {
    let fake = FakeAws::new();
    org(&fake, &["200000000001", "200000000002"]); // 200000000002 joined since
    let key = fake.create_key(R, KeyManager::Customer);
    let img = shared_image(&fake, Some(&key)).await;
    let d = Deps::new(fake, policy(json!({}), json!({})), OWN_ACCOUNT);
    let r = sweep(&d).await;
    for v in &img.volumes {
        assert_eq!(
            d.aws.snapshot_permissions(R, &v.snapshot_id),
            set(&[ACCOUNT, "200000000001", "200000000002"])
        );
    }
    assert!(d.aws.grants(&key).iter().any(|(_, a)| a == "200000000002"));
    assert_eq!(r.drift.snapshot_permissions_added, 2);
    assert_eq!(r.drift.grants_created, 1);
    assert_eq!(r.drift.launch_permissions_added, 0);
    assert_eq!(r.drift.status, "complete");
    assert!(r.errors.is_empty(), "{:?}", r.errors);

    // Repaired: the next night finds nothing to do and writes nothing.
    d.aws.reset_calls();
    let again = sweep(&d).await;
    assert_eq!(again.drift.repaired(), 0);
    let counts = d.aws.call_counts();
    for w in [
        "ec2:ModifySnapshotAttribute",
        "ec2:ModifyImageAttribute",
        "kms:CreateGrant",
    ] {
        assert_eq!(counts.get(w), None, "{w}");
    }
}

#[tokio::test]
async fn launch_permission_removed_by_hand_is_put_back() {
    let fake = FakeAws::new();
    org(&fake, &["200000000001"]);
    let img = shared_image(&fake, None).await;
    fake.world()
        .images
        .get_mut(&(R.to_string(), img.id.clone()))
        .unwrap()
        .launch
        .accounts
        .clear();
    let d = Deps::new(fake, policy(json!({}), json!({})), OWN_ACCOUNT);
    let r = sweep(&d).await;
    assert_eq!(r.drift.launch_permissions_added, 1);
    assert_eq!(
        d.aws.image(R, &img.id).unwrap().launch.accounts,
        set(&[ACCOUNT])
    );
}

#[tokio::test]
async fn copy_missing_in_one_region_is_started_and_the_other_left_alone() {
    let fake = FakeAws::new();
    org(&fake, &["200000000001"]);
    let img = shared_image(&fake, None).await;
    // The copy to us-west-2 exists; the one to eu-west-1 hit ResourceLimitExceeded back then.
    fake.create_image(ImageSpec::new(
        "us-west-2",
        &copy_name("golden-1", R, &img.id, CopyKind::RegionCopy, 0),
    ));
    let rule = json!({"copy_to": [{"region": "us-west-2"}, {"region": "eu-west-1"}]});
    let d = Deps::new(fake, policy(rule, json!({})), OWN_ACCOUNT);
    let r = sweep(&d).await;
    assert_eq!(r.drift.copies_started, 1, "{:?}", r.drift.copies);
    let statuses: Vec<(String, String)> = r
        .drift
        .copies
        .iter()
        .map(|c| (c.region.clone(), c.status.clone()))
        .collect();
    assert!(statuses.contains(&("eu-west-1".into(), "started".into())));
    assert!(statuses.contains(&("us-west-2".into(), "exists".into())));
    assert_eq!(d.aws.call_counts()["ec2:CopyImage"], 1);
}

#[tokio::test]
async fn copies_are_never_copied_again() {
    let fake = FakeAws::new();
    org(&fake, &["200000000001"]);
    let img = shared_image(&fake, None).await;
    fake.create_image(
        ImageSpec::new(
            R,
            &copy_name(
                "golden-1",
                "eu-west-1",
                "ami-0123456789abcdef0",
                CopyKind::RegionCopy,
                0,
            ),
        )
        .tag(MANAGED_TAG, "golden"),
    );
    let rule = json!({"copy_to": [{"region": "us-west-2"}]});
    let d = Deps::new(fake, policy(rule, json!({})), OWN_ACCOUNT);
    let r = sweep(&d).await;
    assert_eq!(
        r.drift.copies.len(),
        1,
        "only the source is copied: {:?}",
        r.drift.copies
    );
    assert!(d.aws.world().images.values().all(|i| i
        .copied_from
        .as_ref()
        .is_none_or(|c| c.source_image_id == img.id)));
}

fn with_unlisted_shares(fake: &FakeAws, img: &amishare::ports::Image, key: &str) {
    let mut w = fake.world();
    w.images
        .get_mut(&(R.to_string(), img.id.clone()))
        .unwrap()
        .launch
        .accounts
        .insert(REMOVED.into());
    for v in &img.volumes {
        w.snapshots
            .get_mut(&(R.to_string(), v.snapshot_id.clone()))
            .unwrap()
            .permissions
            .insert(REMOVED.into());
    }
    w.keys
        .get_mut(key)
        .unwrap()
        .grants
        .push(amishare::ports::Grant {
            grant_id: "grant-removed".into(),
            name: Some(grant_name(REMOVED)),
            grantee_principal: format!("arn:aws:iam::{REMOVED}:root"),
        });
    // Someone else's grant to the same account: never ours to revoke.
    w.keys
        .get_mut(key)
        .unwrap()
        .grants
        .push(amishare::ports::Grant {
            grant_id: "grant-foreign".into(),
            name: Some("backup-vault".into()),
            grantee_principal: format!("arn:aws:iam::{REMOVED}:root"),
        });
}

#[tokio::test]
async fn prune_off_reports_unlisted_shares_and_removes_nothing() {
    let fake = FakeAws::new();
    org(&fake, &["200000000001"]);
    let key = fake.create_key(R, KeyManager::Customer);
    let img = shared_image(&fake, Some(&key)).await;
    with_unlisted_shares(&fake, &img, &key);
    let d = Deps::new(fake, policy(json!({}), json!({})), OWN_ACCOUNT);
    let r = sweep(&d).await;
    let w = &r.drift.would_prune;
    assert_eq!(w.launch_permissions, vec![format!("{}: {REMOVED}", img.id)]);
    assert_eq!(w.snapshot_permissions.len(), 2);
    assert_eq!(w.grants, vec![format!("{key}: {REMOVED}")]);
    assert!(r.drift.pruned.is_empty());
    assert!(d
        .aws
        .image(R, &img.id)
        .unwrap()
        .launch
        .accounts
        .contains(REMOVED));
    assert!(d
        .aws
        .snapshot_permissions(R, &img.volumes[0].snapshot_id)
        .contains(REMOVED));
    assert_eq!(
        d.aws
            .grants(&key)
            .iter()
            .filter(|(_, a)| a == REMOVED)
            .count(),
        2
    );
    assert_eq!(d.aws.call_counts().get("kms:RevokeGrant"), None);
}

#[tokio::test]
async fn prune_on_removes_unlisted_shares_and_only_our_grants() {
    let fake = FakeAws::new();
    org(&fake, &["200000000001"]);
    let key = fake.create_key(R, KeyManager::Customer);
    let img = shared_image(&fake, Some(&key)).await;
    with_unlisted_shares(&fake, &img, &key);
    let d = Deps::new(
        fake,
        policy(json!({}), json!({"prune_unlisted_shares": true})),
        OWN_ACCOUNT,
    );
    let r = sweep(&d).await;
    assert_eq!(r.drift.pruned.len(), 1 + 2 + 1, "{:?}", r.drift.pruned);
    assert_eq!(
        d.aws.image(R, &img.id).unwrap().launch.accounts,
        set(&[ACCOUNT])
    );
    for v in &img.volumes {
        assert_eq!(
            d.aws.snapshot_permissions(R, &v.snapshot_id),
            set(&[ACCOUNT, "200000000001"])
        );
    }
    let left: Vec<(Option<String>, String)> = d
        .aws
        .grants(&key)
        .into_iter()
        .filter(|(_, a)| a == REMOVED)
        .collect();
    assert_eq!(
        left,
        vec![(Some("backup-vault".to_string()), REMOVED.to_string())]
    );
}

#[tokio::test]
async fn prune_never_touches_unmanaged_images() {
    let fake = FakeAws::new();
    org(&fake, &["200000000001"]);
    let img = fake.create_image(ImageSpec::new(R, "golden-hand-made"));
    let lp = LaunchPermissions {
        accounts: set(&[REMOVED]),
        ..Default::default()
    };
    fake.add_launch_permissions(R, &img.id, &lp).await.unwrap();
    let d = Deps::new(
        fake,
        policy(json!({}), json!({"prune_unlisted_shares": true})),
        OWN_ACCOUNT,
    );
    let r = sweep(&d).await;
    assert!(r.drift.pruned.is_empty() && r.drift.would_prune.is_empty());
    assert!(d
        .aws
        .image(R, &img.id)
        .unwrap()
        .launch
        .accounts
        .contains(REMOVED));
}

#[tokio::test]
async fn a_grant_still_needed_by_another_managed_image_on_the_same_key_is_kept() {
    let fake = FakeAws::new();
    org(&fake, &["200000000001"]);
    let key = fake.create_key(R, KeyManager::Customer);
    shared_image(&fake, Some(&key)).await;
    // A second managed image on the same key, matched by a rule that still names REMOVED.
    fake.create_image(
        ImageSpec::new(R, "legacy-1")
            .tag(MANAGED_TAG, "legacy")
            .encrypted_with(&[&key]),
    );
    fake.create_grant(
        R,
        &GrantRequest {
            key_arn: key.clone(),
            grantee_principal: format!("arn:aws:iam::{REMOVED}:root"),
            name: grant_name(REMOVED),
        },
    )
    .await
    .unwrap();
    let p = json!({"rules": [
        {"name": "golden", "match": {"name": "golden-*"}, "share_with": {"accounts": [ACCOUNT], "organizational_units": [OU_ARN]}},
        {"name": "legacy", "match": {"name": "legacy-*"}, "share_with": {"accounts": [REMOVED]}}],
        "sweeper": {"prune_unlisted_shares": true}});
    let d = Deps::new(
        fake,
        Policy::from_json(&p.to_string()).unwrap(),
        OWN_ACCOUNT,
    );
    let r = sweep(&d).await;
    assert!(r.drift.pruned.grants.is_empty(), "{:?}", r.drift.pruned);
    assert!(d.aws.grants(&key).iter().any(|(_, a)| a == REMOVED));
}

#[tokio::test]
async fn grants_only_a_disabled_image_used_are_reported() {
    let fake = FakeAws::new();
    org(&fake, &["200000000001"]);
    let key = fake.create_key(R, KeyManager::Customer);
    fake.create_image(
        ImageSpec::new(R, "golden-old")
            .tag(MANAGED_TAG, "golden")
            .encrypted_with(&[&key])
            .state(ImageState::Disabled),
    );
    fake.create_grant(
        R,
        &GrantRequest {
            key_arn: key.clone(),
            grantee_principal: format!("arn:aws:iam::{ACCOUNT}:root"),
            name: grant_name(ACCOUNT),
        },
    )
    .await
    .unwrap();
    let d = Deps::new(fake, policy(json!({}), json!({})), OWN_ACCOUNT);
    let r = sweep(&d).await;
    assert_eq!(
        r.drift.would_prune.grants,
        vec![format!("{key}: {ACCOUNT}")]
    );
    assert_eq!(d.aws.grants(&key).len(), 1);
}

#[tokio::test]
async fn a_failing_image_does_not_stop_the_others_and_is_reported() {
    let fake = FakeAws::new();
    org(&fake, &["200000000001", "200000000002"]);
    let a = shared_image(&fake, None).await;
    let b = fake.create_image(ImageSpec::new(R, "golden-2").tag(MANAGED_TAG, "golden"));
    fake.fail("ec2:DescribeImageAttribute", "UnauthorizedOperation", 0, 1);
    let d = Deps::new(fake, policy(json!({}), json!({})), OWN_ACCOUNT);
    let r = sweep(&d).await;
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    assert!(r.errors[0].error_type.contains("UnauthorizedOperation"));
    let shared: Vec<bool> = [&a, &b]
        .iter()
        .map(|i| {
            d.aws
                .image(R, &i.id)
                .unwrap()
                .launch
                .accounts
                .contains(ACCOUNT)
        })
        .collect();
    assert!(
        shared.iter().all(|s| *s),
        "the other image is still repaired"
    );
}

/// Issue 27 (3): with `prune_unlisted_shares`, an image shared by its event needs no work at
/// night. The fingerprint records the policy's pruning setting, not whether the image was
/// managed yet, so the event (image not managed before it) and the night (managed by then)
/// agree: no "fingerprint differs" and no re-convergence after every release. The first share
/// never prunes (the image was not the product's); a share made by hand before is removed by
/// the audit (within `audit_days` nights), as any change by hand is.
#[tokio::test]
async fn an_image_shared_by_its_event_is_in_sync_at_night_with_pruning_on() {
    use amishare::plan::{matching_rules, SharePlan};
    use amishare::share::{Convergence, KeyState};
    let fake = FakeAws::new();
    org(&fake, &["200000000001"]);
    let img = fake.create_image(ImageSpec::new(R, "golden-7"));
    let d = Deps::new(
        fake,
        policy(json!({}), json!({"prune_unlisted_shares": true})),
        OWN_ACCOUNT,
    );
    // The event's path (on-image-available's convergence and record).
    let rules = matching_rules(&d.policy, &img, OWN_ACCOUNT).unwrap();
    let plan = SharePlan::from_rules(d.policy.kms_access, rules).for_source(true);
    let now = Utc.with_ymd_and_hms(2026, 11, 20, 10, 0, 0).unwrap();
    let conv = Convergence::for_event(&d, now, std::sync::Arc::new(KeyState::default()));
    let done = conv.converge(&img, &plan, true, None).await.unwrap();
    conv.record(R, &[&done]).await.unwrap();
    // The night: in sync by its fingerprint, nothing to converge.
    d.aws.reset_calls();
    let r = sweep(&d).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.drift.stale, Default::default(), "{:#?}", r.drift);
    assert_eq!(r.drift.converged, 0);
    assert_eq!(r.drift.in_sync, 1);
    assert_eq!(
        d.aws.call_counts().get("ec2:ModifyImageAttribute"),
        None,
        "no work at night"
    );
}
