//! Nightly work proportional to change, against the in-memory double: the fingerprint skip,
//! the audit rotation, the order of work, and copies managed from their creation.

// Test set-up and assertions: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use amishare::deps::Deps;
use amishare::names::{
    copy_name, grant_name, CopyKind, MANAGED_TAG, SOURCE_IMAGE_TAG, SOURCE_RULE_TAG,
};
use amishare::ports::{GrantRequest, Images, KeyManager, Keys, LaunchPermissions, Snapshots};
use amishare::share::{CONVERGED_AT_TAG, PLAN_TAG};
use amishare::Policy;
use amishare_testkit::{FakeAws, ImageSpec, OWN_ACCOUNT};
use chrono::{DateTime, Duration, TimeZone, Utc};
use nightly_sweeper::{handle, Run, SweepReport};
use serde_json::{json, Value};

const R: &str = "us-east-1";
const ACCOUNT: &str = "111122223333";
const REMOVED: &str = "999988887777";

fn policy(sweeper: Value) -> Policy {
    Policy::from_json(
        &json!({"rules": [{"name": "golden", "match": {"name": "golden-*"},
            "share_with": {"accounts": [ACCOUNT]}}], "sweeper": sweeper})
        .to_string(),
    )
    .unwrap()
}

/// The golden rule, also copying to us-west-2.
fn policy_copying_to_us_west_2() -> Policy {
    Policy::from_json(
        &json!({"rules": [{"name": "golden", "match": {"name": "golden-*"},
            "share_with": {"accounts": [ACCOUNT]}, "copy_to": [{"region": "us-west-2"}]}]})
        .to_string(),
    )
    .unwrap()
}

fn night(n: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 3, 30, 0).unwrap() + Duration::days(n)
}

async fn sweep_at(d: &Deps<FakeAws>, now: DateTime<Utc>) -> SweepReport {
    handle(d, json!({}), &Run::new(R, now, None)).await.unwrap()
}

fn images(fake: &FakeAws, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            fake.create_image(ImageSpec::new(R, &format!("golden-{i}")).tag(MANAGED_TAG, "golden"))
                .id
        })
        .collect()
}

fn converged_at(d: &Deps<FakeAws>, ids: &[String]) -> BTreeMap<String, String> {
    ids.iter()
        .map(|id| {
            let img = d.aws.image(R, id).unwrap().image;
            (
                id.clone(),
                img.tags.get(CONVERGED_AT_TAG).cloned().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn images_in_sync_by_fingerprint_cost_no_call_but_the_audit_slice() {
    let fake = FakeAws::new();
    let ids = images(&fake, 10);
    let d = Deps::new(fake, policy(json!({"audit_days": 10})), OWN_ACCOUNT);

    let first = sweep_at(&d, night(0)).await;
    assert_eq!(first.drift.converged, 10);
    assert_eq!(first.drift.stale["no fingerprint"], 10);
    assert_eq!(first.drift.launch_permissions_added, 10);
    assert_eq!(
        first.drift.record_calls, 1,
        "one CreateTags records all ten"
    );
    for id in &ids {
        let tags = d.aws.image(R, id).unwrap().image.tags;
        assert_eq!(tags[PLAN_TAG].len(), 16);
    }

    d.aws.reset_calls();
    let second = sweep_at(&d, night(1)).await;
    assert_eq!(second.drift.in_sync, 10);
    assert_eq!(second.drift.converged, 0);
    assert!(second.drift.stale.is_empty());
    assert_eq!(second.drift.audited, 1, "ceil(10 / audit_days 10)");
    let counts = d.aws.call_counts();
    assert_eq!(counts["ec2:DescribeImageAttribute"], 1, "{counts:?}");
    assert_eq!(counts["ec2:DescribeSnapshotAttribute"], 1, "{counts:?}");
    assert_eq!(counts.get("ec2:ModifyImageAttribute"), None);
    assert_eq!(
        counts["ec2:CreateTags"], 1,
        "the audited image's converged-at"
    );
}

#[tokio::test]
async fn a_policy_change_makes_every_fingerprint_stale() {
    let fake = FakeAws::new();
    images(&fake, 3);
    let d = Deps::new(fake, policy(json!({})), OWN_ACCOUNT);
    sweep_at(&d, night(0)).await;
    let mut d = d;
    d.policy = Policy::from_json(
        &json!({"rules": [{"name": "golden", "match": {"name": "golden-*"},
            "share_with": {"accounts": [ACCOUNT, "222233334444"]}}]})
        .to_string(),
    )
    .unwrap();
    let r = sweep_at(&d, night(1)).await;
    assert_eq!(r.drift.stale["fingerprint differs"], 3);
    assert_eq!(r.drift.converged, 3);
    assert_eq!(r.drift.launch_permissions_added, 3);
}

#[tokio::test]
async fn the_audit_rotates_through_every_image_within_audit_days_and_repairs_hand_changes() {
    let fake = FakeAws::new();
    let ids = images(&fake, 10);
    let d = Deps::new(fake, policy(json!({"audit_days": 5})), OWN_ACCOUNT);
    sweep_at(&d, night(0)).await;
    // Someone removes a share by hand; the fingerprint cannot see it, the audit does.
    d.aws
        .world()
        .images
        .get_mut(&(R.to_string(), ids[7].clone()))
        .unwrap()
        .launch
        .accounts
        .clear();
    let mut audited: BTreeMap<String, usize> = BTreeMap::new();
    let mut repaired = 0;
    for n in 1..=5 {
        let before = converged_at(&d, &ids);
        let r = sweep_at(&d, night(n)).await;
        assert_eq!(r.drift.audited, 2, "night {n}");
        assert_eq!(r.drift.converged, 0, "night {n}");
        repaired += r.drift.audit_found_drift;
        let after = converged_at(&d, &ids);
        for id in &ids {
            if before[id] != after[id] {
                *audited.entry(id.clone()).or_default() += 1;
            }
        }
    }
    assert_eq!(
        audited.len(),
        10,
        "every image audited within 5 nights: {audited:?}"
    );
    assert!(audited.values().all(|n| *n == 1), "{audited:?}");
    assert_eq!(repaired, 1);
    assert!(d
        .aws
        .image(R, &ids[7])
        .unwrap()
        .launch
        .accounts
        .contains(ACCOUNT));
}

/// What a run did not reach goes first the next night: work is ordered by the time an image
/// was last converged (never first, then oldest). The first image touched fails here, so the
/// error names it.
#[tokio::test]
async fn work_starts_with_the_least_recently_converged_images() {
    let fake = FakeAws::new();
    let ids = images(&fake, 3);
    {
        let mut w = fake.world();
        for (id, at) in [
            (&ids[0], "2026-11-20T03:30:00Z"),
            (&ids[2], "2026-11-01T03:30:00Z"),
        ] {
            w.images
                .get_mut(&(R.to_string(), id.clone()))
                .unwrap()
                .image
                .tags
                .insert(CONVERGED_AT_TAG.into(), at.into());
        }
    }
    fake.fail("ec2:DescribeImageAttribute", "UnauthorizedOperation", 0, 2);
    let d = Deps::new(fake, policy(json!({})), OWN_ACCOUNT);
    let r = sweep_at(&d, night(0)).await;
    let failed: Vec<&str> = r
        .errors
        .iter()
        .map(|e| {
            if e.message.contains(&ids[1]) {
                "never"
            } else if e.message.contains(&ids[2]) {
                "oldest"
            } else {
                "newest"
            }
        })
        .collect();
    assert_eq!(failed, ["never", "oldest"], "{:?}", r.errors);
    // The one that succeeded is recorded; the failed ones keep their old time (first again).
    let at = converged_at(&d, &ids);
    assert_eq!(at[&ids[0]], "2026-11-21T03:30:00Z");
    assert_eq!(at[&ids[1]], "");
}

/// Defect: a copy whose `available` event was lost was shared by the sweeper but never
/// tagged managed, so pruning removed its grant and left its launch and snapshot permissions.
/// A copy is the product's from its creation: all three are pruned together.
#[tokio::test]
async fn a_copy_whose_event_was_lost_is_pruned_consistently() {
    let fake = FakeAws::new();
    let west = "us-west-2";
    let key = fake.create_key(west, KeyManager::Customer);
    let source = fake.create_image(ImageSpec::new(R, "golden-1"));
    let name = copy_name("golden-1", R, &source.id, CopyKind::RegionCopy, 0);
    // Tags at creation (provenance), but no managed tag and no fingerprint: the event was lost.
    let copy = fake.create_image(
        ImageSpec::new(west, &name)
            .copied_from(R, &source.id)
            .tag(SOURCE_IMAGE_TAG, &format!("{R}/{}", source.id))
            .tag(SOURCE_RULE_TAG, "golden")
            .snapshots(1)
            .encrypted_with(&[&key]),
    );
    let lp = LaunchPermissions {
        accounts: [ACCOUNT, REMOVED].map(String::from).into(),
        ..Default::default()
    };
    fake.add_launch_permissions(west, &copy.id, &lp)
        .await
        .unwrap();
    let snap = copy.volumes[0].snapshot_id.clone();
    fake.add_create_volume_permission(west, &snap, &[ACCOUNT.into(), REMOVED.into()])
        .await
        .unwrap();
    for a in [ACCOUNT, REMOVED] {
        let g = GrantRequest {
            key_arn: key.clone(),
            grantee_principal: format!("arn:aws:iam::{a}:root"),
            name: grant_name(a),
        };
        fake.create_grant(west, &g).await.unwrap();
    }
    let d = Deps::new(
        fake,
        policy(json!({"prune_unlisted_shares": true})),
        OWN_ACCOUNT,
    );
    let r = handle(&d, json!({}), &Run::new(west, night(0), None))
        .await
        .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let img = d.aws.image(west, &copy.id).unwrap();
    assert_eq!(img.launch.accounts, BTreeSet::from([ACCOUNT.to_string()]));
    assert_eq!(
        d.aws.snapshot_permissions(west, &snap),
        BTreeSet::from([ACCOUNT.to_string()])
    );
    let grantees: Vec<String> = d.aws.grants(&key).into_iter().map(|(_, a)| a).collect();
    assert_eq!(grantees, [ACCOUNT]);
    assert_eq!(r.drift.pruned_total, 3, "{:?}", r.drift.pruned);
    assert_eq!(
        img.image.tags.get(MANAGED_TAG).map(String::as_str),
        Some("golden")
    );
}

#[tokio::test]
async fn copies_the_sweeper_starts_are_managed_from_their_creation() {
    let fake = FakeAws::new();
    let src = fake.create_image(ImageSpec::new(R, "golden-1"));
    let p = policy_copying_to_us_west_2();
    let d = Deps::new(fake, p, OWN_ACCOUNT);
    let r = sweep_at(&d, night(0)).await;
    assert_eq!(r.drift.copies_started, 1);
    let copy_id = r.drift.copies[0].image_id.clone().unwrap();
    let req = d
        .aws
        .image("us-west-2", &copy_id)
        .unwrap()
        .copied_from
        .unwrap();
    assert_eq!(req.tags[MANAGED_TAG], "golden");
    assert_eq!(req.source_image_id, src.id);
    // The source's fingerprint includes the copy: recorded, so the next night skips it.
    assert!(d
        .aws
        .image(R, &src.id)
        .unwrap()
        .image
        .tags
        .contains_key(PLAN_TAG));
}

/// A copy that waits (too many in flight) is on its way: it waits in its Region's line (kept
/// durably), the source's fingerprint is recorded, and the line's next drain starts it (a
/// copy's end or the timer), not the next night.
#[tokio::test]
async fn a_waiting_copy_is_started_by_the_line_not_the_next_night() {
    let fake = FakeAws::new();
    let src = fake.create_image(ImageSpec::new(R, "golden-1"));
    // Another tool's copies fill us-west-2: the direct start and the line's are refused.
    fake.fail("ec2:CopyImage", "ResourceLimitExceeded", 0, 2);
    let p = policy_copying_to_us_west_2();
    let d = Deps::new(fake, p, OWN_ACCOUNT);
    let r = sweep_at(&d, night(0)).await;
    assert_eq!(r.drift.copies[0].status, "waiting");
    assert_eq!((r.drift.copies_started, r.drift.copies_waiting), (0, 1));
    assert_eq!(
        d.aws.line("us-west-2").len(),
        1,
        "it waits in us-west-2's line"
    );
    let tags = d.aws.image(R, &src.id).unwrap().image.tags;
    assert!(tags.contains_key(PLAN_TAG), "a waiting copy is on its way");
    d.aws.reset_calls();
    let drained = amishare::copy::Line::new(&d)
        .drain("us-west-2")
        .await
        .unwrap();
    assert_eq!(drained.started.len(), 1);
    assert_eq!(d.aws.call_counts().get("ec2:CopyImage"), Some(&1));
    assert!(d.aws.line("us-west-2").is_empty());
    let r = sweep_at(&d, night(1)).await;
    assert_eq!(r.drift.copies_started, 0, "nothing left for the night");
}

/// An image shared by its event needs no work at night.
#[tokio::test]
async fn an_image_shared_by_its_event_is_in_sync_at_night() {
    let fake = FakeAws::new();
    let img = fake.create_image(ImageSpec::new(R, "golden-1"));
    let d = Deps::new(fake, policy(json!({})), OWN_ACCOUNT);
    let mut e: Value =
        serde_json::from_str(include_str!("../../../events/image-available.json")).unwrap();
    e["region"] = json!(R);
    e["detail"]["ImageId"] = json!(img.id);
    on_image_available::handle(&d, e).await.unwrap();
    let r = sweep_at(&d, night(0)).await;
    assert_eq!(r.drift.in_sync, 1);
    assert_eq!(r.drift.converged, 0);
    assert!(r.drift.stale.is_empty());
}

#[tokio::test]
async fn snapshot_permissions_are_read_before_written_and_only_missing_ones_added() {
    let fake = FakeAws::new();
    let img = fake.create_image(ImageSpec::new(R, "golden-1").snapshots(2));
    for v in &img.volumes {
        fake.add_create_volume_permission(R, &v.snapshot_id, &[ACCOUNT.into()])
            .await
            .unwrap();
    }
    let d = Deps::new(fake, policy(json!({})), OWN_ACCOUNT);
    d.aws.reset_calls();
    let r = sweep_at(&d, night(0)).await;
    assert_eq!(r.drift.snapshot_permissions_added, 0);
    assert_eq!(d.aws.call_counts().get("ec2:ModifySnapshotAttribute"), None);
    assert!(d
        .aws
        .snapshot_permissions(R, &img.volumes[0].snapshot_id)
        .contains(ACCOUNT));
}

/// Image block public access (`block-new-sharing`) blocks only new public shares: the night
/// repairs an image that is public already like any other, and refuses only a new public share.
#[tokio::test]
async fn the_night_repairs_an_already_public_image_under_block_public_access() {
    let fake = FakeAws::new();
    let ids = images(&fake, 2);
    let set_public = |id: &str| {
        fake.world()
            .images
            .get_mut(&(R.to_string(), id.to_string()))
            .unwrap()
            .launch
            .public = true;
    };
    set_public(&ids[0]);
    fake.world().public_blocked.insert(R.into());
    let p = Policy::from_json(
        &json!({"rules": [{"name": "golden", "match": {"name": "golden-*"},
            "share_with": {"accounts": [ACCOUNT], "public": true}}], "allow_public": true})
        .to_string(),
    )
    .unwrap();
    let d = Deps::new(fake, p, OWN_ACCOUNT);
    let r = sweep_at(&d, night(0)).await;
    // the public one: converged, nothing refused
    let public = d.aws.image(R, &ids[0]).unwrap();
    assert!(public.launch.public && public.launch.accounts.contains(ACCOUNT));
    assert!(
        public.image.tags.contains_key(PLAN_TAG),
        "in sync from now on"
    );
    // the other: its account shared, its new public share refused and reported
    let other = d.aws.image(R, &ids[1]).unwrap();
    assert!(!other.launch.public && other.launch.accounts.contains(ACCOUNT));
    assert!(
        !other.image.tags.contains_key(PLAN_TAG),
        "tried again next night"
    );
    assert_eq!(r.errors_total, 1, "{:?}", r.errors);
    let e = serde_json::to_string(&r.errors).unwrap();
    assert!(
        e.contains(&ids[1]) && e.contains("block public access"),
        "{e}"
    );
}
