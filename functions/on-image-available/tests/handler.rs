//! on-image-available against the in-memory double of the ports.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::collections::BTreeSet;
use std::time::Duration;

use amishare::deps::{Deps, Settings};
use amishare::names::grant_name;
use amishare::ports::{ImageState, KeyManager};
use amishare::report::Outcome;
use amishare::Policy;
use amishare_testkit::{FakeAws, ImageSpec, OWN_ACCOUNT};
use on_image_available::handle;
use serde_json::{json, Value};

const ORG: &str = "o-a1b2c3d4e5";
const OU: &str = "ou-ab12-cdef3456";
const OU_ARN: &str = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456";
const ORG_ARN: &str = "arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5";
const ACCOUNT: &str = "111122223333";

fn event(region: &str, image_id: &str, state: &str) -> Value {
    let mut e: Value =
        serde_json::from_str(include_str!("../../../events/image-available.json")).unwrap();
    e["region"] = json!(region);
    e["detail"]["ImageId"] = json!(image_id);
    e["detail"]["State"] = json!(state);
    e
}

fn policy(extra: &str) -> Policy {
    Policy::from_json(&format!(
        r#"{{"rules":[{{"name":"golden","match":{{"name":"golden-*"}},
            "share_with":{{"accounts":["{ACCOUNT}"],"organizational_units":["{OU_ARN}"]}}}}]{extra}}}"#
    ))
    .unwrap()
}

fn deps(fake: FakeAws, policy: Policy) -> Deps<FakeAws> {
    let mut d = Deps::new(fake, policy, OWN_ACCOUNT);
    d.settings = Settings {
        visibility_retry_delays: vec![Duration::from_millis(1); 3],
        ..Settings::default()
    };
    d
}

/// An organization: OU with 5 active accounts and a suspended one directly in it.
fn org(fake: &FakeAws) {
    let root = fake.create_org(ORG);
    fake.add_ou(&root, OU);
    for i in 1..=5 {
        fake.add_account(OU, &format!("20000000000{i}"), "ACTIVE");
    }
    fake.add_account(OU, "299999999999", "SUSPENDED");
    fake.add_account(&root, "300000000001", "ACTIVE");
}

fn ou_accounts() -> BTreeSet<String> {
    (1..=5).map(|i| format!("20000000000{i}")).collect()
}

fn all_targets() -> BTreeSet<String> {
    let mut s = ou_accounts();
    s.insert(ACCOUNT.into());
    s
}

/// The representative case of the issue: 1 image, 3 snapshots, 2 keys, 1 account + 1 OU of 5.
fn representative() -> (Deps<FakeAws>, String, [String; 2]) {
    let fake = FakeAws::new();
    fake.world().page_size = 20; // ListAccountsForParent's default page size
    org(&fake);
    let k1 = fake.create_key("us-east-1", KeyManager::Customer);
    let k2 = fake.create_key("us-east-1", KeyManager::Customer);
    let img = fake.create_image(
        ImageSpec::new("us-east-1", "golden-2026")
            .snapshots(3)
            .encrypted_with(&[&k1, &k2]),
    );
    (deps(fake, policy("")), img.id, [k1, k2])
}

#[tokio::test]
async fn representative_case_shares_everything_with_the_minimum_of_calls() {
    let (d, id, keys) = representative();
    let s = handle(&d, event("us-east-1", &id, "available"))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Shared, "{s:?}");

    let img = d.aws.image("us-east-1", &id).unwrap();
    assert_eq!(img.launch.accounts, BTreeSet::from([ACCOUNT.to_string()]));
    assert_eq!(
        img.launch.organizational_units,
        BTreeSet::from([OU_ARN.to_string()])
    );
    for v in &img.image.volumes {
        assert_eq!(
            d.aws.snapshot_permissions("us-east-1", &v.snapshot_id),
            all_targets(),
            "{}",
            v.snapshot_id
        );
    }
    for k in &keys {
        let grants = d.aws.grants(k);
        assert_eq!(grants.len(), 6, "{k}");
        for (name, account) in grants {
            assert_eq!(name, Some(grant_name(&account)));
            assert!(all_targets().contains(&account));
        }
    }
    assert_eq!(
        img.image.tags.get("ami-share:managed").map(String::as_str),
        Some("golden")
    );
    // Its snapshots carry the mark too, in the same CreateTags call (what
    // sweeper.orphan_scope: managed recognises once the image is gone).
    for v in &img.image.volumes {
        assert_eq!(
            d.aws
                .snapshot_tags("us-east-1", &v.snapshot_id)
                .get("ami-share:managed")
                .map(String::as_str),
            Some("golden"),
            "{}",
            v.snapshot_id
        );
    }

    let counts = d.aws.call_counts();
    let expected = [
        ("ec2:DescribeImages", 1),
        ("ec2:DescribeSnapshots", 1), // keys of the encrypted snapshots
        ("ec2:DescribeImageAttribute", 1), // no duplicate adds
        ("ec2:DescribeSnapshotAttribute", 3), // only missing accounts are added
        ("ec2:ModifySnapshotAttribute", 3), // one per snapshot (6 accounts < 500)
        ("ec2:ModifyImageAttribute", 1), // everything in one call
        ("ec2:CreateTags", 1),        // ami-share:managed + plan fingerprint + converged-at
        ("kms:DescribeKey", 2),       // aws/ebs or customer managed?
        ("kms:ListResourceTags", 2),  // a receipt for these accounts? (none yet)
        ("kms:ListGrants", 2),        // which grants exist already
        ("kms:CreateGrant", 12),      // 2 keys x 6 accounts
        ("kms:TagResource", 2),       // the receipt: these accounts hold their grants
        ("organizations:ListAccountsForParent", 1),
        ("organizations:ListChildren", 1),
        ("organizations:DescribeAccount", 1), // the plain account is a member
        // each consumer's Allowed AMIs, for the summary's warnings (6 <= consumer_reads_per_invocation)
        ("organizations:DescribeEffectivePolicy", 6),
    ];
    assert_eq!(
        counts,
        expected.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        "{counts:#?}"
    );
    assert_eq!(
        d.aws.calls_to("ec2") + d.aws.calls_to("kms") + d.aws.calls_to("organizations"),
        40
    );
}

#[tokio::test]
async fn redelivery_makes_no_new_grant_or_launch_permission_and_reuses_caches() {
    let (d, id, keys) = representative();
    handle(&d, event("us-east-1", &id, "available"))
        .await
        .unwrap();
    d.aws.reset_calls();
    let s = handle(&d, event("us-east-1", &id, "available"))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Shared);
    let share = s.share.unwrap();
    assert!(share.launch_permissions_added.is_empty());
    assert!(share.grants_created.is_empty());
    assert_eq!(share.grants_existing, 12);
    for k in &keys {
        assert_eq!(d.aws.grants(k).len(), 6);
    }
    let counts = d.aws.call_counts();
    assert_eq!(counts.get("kms:CreateGrant"), None);
    assert_eq!(
        counts.get("kms:DescribeKey"),
        None,
        "key metadata is cached"
    );
    assert_eq!(counts.get("ec2:ModifyImageAttribute"), None);
    assert_eq!(counts.get("ec2:CreateTags"), None);
    assert_eq!(
        d.aws.calls_to("organizations"),
        0,
        "org listings are cached"
    );
}

#[tokio::test]
async fn concurrent_deliveries_leave_one_grant_per_key_and_account() {
    let (d, id, keys) = representative();
    let (a, b) = tokio::join!(
        handle(&d, event("us-east-1", &id, "available")),
        handle(&d, event("us-east-1", &id, "available"))
    );
    assert_eq!(a.unwrap().outcome, Outcome::Shared);
    assert_eq!(b.unwrap().outcome, Outcome::Shared);
    for k in &keys {
        assert_eq!(d.aws.grants(k).len(), 6);
    }
}

#[tokio::test]
async fn org_cache_expires() {
    let (mut d, id, _) = representative();
    d.settings.org_cache_ttl = Duration::ZERO;
    handle(&d, event("us-east-1", &id, "available"))
        .await
        .unwrap();
    d.aws.reset_calls();
    handle(&d, event("us-east-1", &id, "available"))
        .await
        .unwrap();
    // The OU's two listings, and the plain account's membership (DescribeAccount) again; the
    // consumers' Allowed AMIs are not read again (their own cache lasts 15 minutes), and the
    // consumers' look lists nothing of its own.
    assert_eq!(d.aws.calls_to("organizations"), 3);
    assert_eq!(
        d.aws
            .call_counts()
            .get("organizations:DescribeEffectivePolicy"),
        None
    );
}

#[tokio::test]
async fn nested_ous_and_pagination_are_followed_and_suspended_accounts_skipped() {
    let fake = FakeAws::new(); // page size 2: every listing takes several pages
    let root = fake.create_org(ORG);
    fake.add_ou(&root, OU);
    fake.add_ou(OU, "ou-ab12-child001");
    fake.add_ou("ou-ab12-child001", "ou-ab12-grandch1");
    for i in 1..=5 {
        fake.add_account(OU, &format!("20000000000{i}"), "ACTIVE");
    }
    fake.add_account("ou-ab12-child001", "400000000001", "ACTIVE");
    fake.add_account("ou-ab12-grandch1", "500000000001", "ACTIVE");
    fake.add_account("ou-ab12-grandch1", "500000000002", "SUSPENDED");
    fake.add_account("ou-ab12-grandch1", "500000000003", "PENDING_CLOSURE");
    let img = fake.create_image(ImageSpec::new("us-east-1", "golden-1").snapshots(2));
    let d = deps(fake, policy(""));
    handle(&d, event("us-east-1", &img.id, "available"))
        .await
        .unwrap();
    let mut want = all_targets();
    want.extend(["400000000001".to_string(), "500000000001".to_string()]);
    for v in &img.volumes {
        assert_eq!(
            d.aws.snapshot_permissions("us-east-1", &v.snapshot_id),
            want
        );
    }
    // 5 accounts at page size 2 = 3 pages
    assert_eq!(
        d.aws.call_counts()["organizations:ListAccountsForParent"],
        3 + 1 + 2
    );
}

#[tokio::test]
async fn organization_arn_expands_to_all_active_accounts_of_our_organization() {
    let fake = FakeAws::new();
    org(&fake);
    let img = fake.create_image(ImageSpec::new("us-east-1", "golden-1"));
    let p = Policy::from_json(&format!(r#"{{"rules":[{{"name":"all","match":{{"name":"golden-*"}},"share_with":{{"organizations":["{ORG_ARN}"]}}}}]}}"#)).unwrap();
    let d = deps(fake, p);
    handle(&d, event("us-east-1", &img.id, "available"))
        .await
        .unwrap();
    let mut want = ou_accounts();
    want.insert("300000000001".into());
    assert_eq!(
        d.aws
            .snapshot_permissions("us-east-1", &img.volumes[0].snapshot_id),
        want
    );
    assert_eq!(
        d.aws
            .image("us-east-1", &img.id)
            .unwrap()
            .launch
            .organizations,
        BTreeSet::from([ORG_ARN.to_string()])
    );
}

#[tokio::test]
async fn another_organization_cannot_be_expanded_and_nothing_is_shared() {
    let fake = FakeAws::new();
    fake.create_org("o-zzzzzzzzzz");
    let img = fake.create_image(ImageSpec::new("us-east-1", "golden-1"));
    let p = Policy::from_json(&format!(r#"{{"rules":[{{"name":"all","match":{{"name":"golden-*"}},"share_with":{{"organizations":["{ORG_ARN}"]}}}}]}}"#)).unwrap();
    let d = deps(fake, p);
    let s = handle(&d, event("us-east-1", &img.id, "available"))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Refused);
    let err = s.error.unwrap();
    assert_eq!(err.error_type, "Refused");
    assert!(
        err.message.contains("o-zzzzzzzzzz") && err.message.contains(ORG_ARN),
        "{}",
        err.message
    );
    assert!(d.aws.image("us-east-1", &img.id).unwrap().launch.is_empty());
}

#[tokio::test]
async fn throttled_grant_returns_a_transient_error_before_launch_permissions_and_retry_completes() {
    let (d, id, keys) = representative();
    d.aws.fail("kms:CreateGrant", "ThrottlingException", 3, 1);
    let err = handle(&d, event("us-east-1", &id, "available"))
        .await
        .unwrap_err();
    assert!(err.is_transient());
    assert_eq!(err.error_type(), "Transient.ThrottlingException");
    assert!(
        d.aws.image("us-east-1", &id).unwrap().launch.is_empty(),
        "launch permissions come last"
    );
    // Lambda's retry
    let s = handle(&d, event("us-east-1", &id, "available"))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Shared);
    for k in &keys {
        assert_eq!(d.aws.grants(k).len(), 6);
    }
    assert_eq!(
        d.aws.image("us-east-1", &id).unwrap().launch.accounts.len(),
        1
    );
}

#[tokio::test]
async fn throttled_listing_page_is_transient() {
    let fake = FakeAws::new();
    org(&fake); // 6 accounts in the OU: 3 pages at page size 2
    let img = fake.create_image(ImageSpec::new("us-east-1", "golden-1"));
    fake.fail(
        "organizations:ListAccountsForParent",
        "TooManyRequestsException",
        2,
        1,
    );
    let d = deps(fake, policy(""));
    let err = handle(&d, event("us-east-1", &img.id, "available"))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "Transient.TooManyRequestsException");
    assert!(d
        .aws
        .snapshot_permissions("us-east-1", &img.volumes[0].snapshot_id)
        .is_empty());
}

#[tokio::test]
async fn permanent_aws_errors_are_reported_not_retried_and_nothing_is_written() {
    for (op, code) in [
        (
            "organizations:ListAccountsForParent",
            "AccessDeniedException",
        ),
        (
            "organizations:ListChildren",
            "AWSOrganizationsNotInUseException",
        ),
        ("kms:DescribeKey", "NotFoundException"),
    ] {
        let (d, id, keys) = representative();
        d.aws.fail(op, code, 0, 1);
        let s = handle(&d, event("us-east-1", &id, "available"))
            .await
            .unwrap();
        assert_eq!(s.outcome, Outcome::Failed, "{op}");
        assert_eq!(
            s.error.as_ref().unwrap().error_type,
            format!("Permanent.{code}")
        );
        let counts = d.aws.call_counts();
        for write in [
            "ec2:ModifyImageAttribute",
            "ec2:ModifySnapshotAttribute",
            "kms:CreateGrant",
        ] {
            assert_eq!(counts.get(write), None, "{op}: {write} must not run");
        }
        assert!(d.aws.grants(&keys[0]).is_empty());
    }
}

#[tokio::test]
async fn aws_managed_key_without_reencrypt_is_refused_with_the_fix() {
    let fake = FakeAws::new();
    org(&fake);
    let ebs = fake.create_key("us-east-1", KeyManager::Aws);
    let img = fake.create_image(
        ImageSpec::new("us-east-1", "golden-1")
            .snapshots(2)
            .encrypted_with(&[&ebs]),
    );
    let d = deps(fake, policy(""));
    let s = handle(&d, event("us-east-1", &img.id, "available"))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Refused);
    let msg = s.error.unwrap().message;
    assert!(
        msg.contains("AWS managed key aws/ebs")
            && msg.contains("\"reencrypt_with\": {\"us-east-1\""),
        "{msg}"
    );
    assert!(d.aws.image("us-east-1", &img.id).unwrap().launch.is_empty());
    assert_eq!(d.aws.call_counts().get("ec2:ModifySnapshotAttribute"), None);
}

#[tokio::test]
async fn aws_managed_key_with_reencrypt_starts_one_reencrypted_copy() {
    let fake = FakeAws::new();
    org(&fake);
    let ebs = fake.create_key("us-east-1", KeyManager::Aws);
    let cmk = fake.create_key("us-east-1", KeyManager::Customer);
    fake.create_alias(&cmk, "alias/ami-share");
    let img = fake.create_image(ImageSpec::new("us-east-1", "golden-1").encrypted_with(&[&ebs]));
    let d = deps(
        fake,
        policy(r#","reencrypt_with":{"us-east-1":"alias/ami-share"}"#),
    );
    let s = handle(&d, event("us-east-1", &img.id, "available"))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::ReencryptStarted, "{s:?}");
    assert_eq!(s.copies[0].status, "started");
    let copy_id = s.copies[0].image_id.clone().unwrap();
    let copy = d.aws.image("us-east-1", &copy_id).unwrap();
    let req = copy.copied_from.unwrap();
    assert_eq!(
        (req.source_region.as_str(), req.destination_region.as_str()),
        ("us-east-1", "us-east-1")
    );
    assert_eq!(req.kms_key_id.as_deref(), Some("alias/ami-share"));
    assert_eq!(req.tags["ami-share:copy-kind"], "reencrypt");
    assert_eq!(
        req.tags["ami-share:source-image"],
        format!("us-east-1/{}", img.id)
    );
    assert_eq!(req.tags["ami-share:source-rule"], "golden");
    assert!(
        d.aws.image("us-east-1", &img.id).unwrap().launch.is_empty(),
        "the aws/ebs original is never shared"
    );
    // redelivery: the client token gives the same copy back, no second one
    let again = handle(&d, event("us-east-1", &img.id, "available"))
        .await
        .unwrap();
    assert_eq!(again.copies[0].image_id.as_deref(), Some(copy_id.as_str()));
    let reencrypted = d
        .aws
        .world()
        .images
        .values()
        .filter(|i| i.copied_from.is_some())
        .count();
    assert_eq!(reencrypted, 1);
}

#[tokio::test]
async fn image_not_visible_yet_is_retried_then_given_up() {
    let (d, id, _) = representative();
    d.aws.world().invisible_for.insert(id.clone(), 2);
    let s = handle(&d, event("us-east-1", &id, "available"))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Shared);
    assert_eq!(d.aws.call_counts()["ec2:DescribeImages"], 3);

    let (d, id, _) = representative();
    d.aws.world().invisible_for.insert(id.clone(), 10);
    let s = handle(&d, event("us-east-1", &id, "available"))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Skipped);
    assert_eq!(d.aws.call_counts()["ec2:DescribeImages"], 4);
}

#[tokio::test]
async fn images_that_are_not_ours_to_share_are_skipped_with_a_reason_and_no_writes() {
    let fake = FakeAws::new();
    org(&fake);
    let other = fake.create_image(ImageSpec::new("us-east-1", "golden-x").owner("999999999999"));
    let skip =
        fake.create_image(ImageSpec::new("us-east-1", "golden-y").tag("ami-share:skip", "true"));
    let nomatch = fake.create_image(ImageSpec::new("us-east-1", "silver-1"));
    let pending =
        fake.create_image(ImageSpec::new("us-east-1", "golden-z").state(ImageState::Pending));
    let copy = fake.create_image(
        ImageSpec::new(
            "us-east-1",
            "golden-1--copy-of-eu-west-1-ami-0abcdef1234567890",
        )
        .copied_from("eu-west-1", "ami-0abcdef1234567890"),
    );
    let d = deps(fake, policy(""));
    let cases = [
        (other.id, "owned by account 999999999999"),
        (skip.id, "tagged ami-share:skip=true"),
        (nomatch.id, "no rule of the policy matches it"),
        (pending.id, "image is pending, not available"),
        (copy.id, "a copy made by ami-share"),
    ];
    for (id, why) in cases {
        let s = handle(&d, event("us-east-1", &id, "available"))
            .await
            .unwrap();
        assert_eq!(s.outcome, Outcome::Skipped, "{id}");
        assert!(
            s.reason.as_deref().unwrap().contains(why),
            "{id}: {:?}",
            s.reason
        );
    }
    let counts = d.aws.call_counts();
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        ["ec2:DescribeImages"],
        "only reads: {counts:?}"
    );
}

#[tokio::test]
async fn other_states_detail_types_and_malformed_events_do_not_fail() {
    let d = deps(FakeAws::new(), policy(""));
    for state in ["failed", "deregistered", "disabled"] {
        let s = handle(&d, event("us-east-1", "ami-0abcdef1234567890", state))
            .await
            .unwrap();
        assert_eq!(s.outcome, Outcome::Ignored, "{state}");
    }
    let other: Value =
        serde_json::from_str(include_str!("../../../events/other-detail-type.json")).unwrap();
    assert_eq!(handle(&d, other).await.unwrap().outcome, Outcome::Ignored);
    let bad: Value =
        serde_json::from_str(include_str!("../../../events/malformed-no-image-id.json")).unwrap();
    let s = handle(&d, bad).await.unwrap();
    assert_eq!(s.outcome, Outcome::Failed);
    let e = s.error.unwrap();
    assert_eq!(e.error_type, "BadEvent");
    assert!(e.message.contains("detail.ImageId"), "{}", e.message);
    assert!(d.aws.world().calls.is_empty());
}

#[tokio::test]
async fn existing_launch_permissions_are_not_added_again() {
    let fake = FakeAws::new();
    org(&fake);
    let img = fake.create_image(ImageSpec::new("us-east-1", "golden-1"));
    fake.world()
        .images
        .get_mut(&("us-east-1".into(), img.id.clone()))
        .unwrap()
        .launch
        .accounts
        .insert(ACCOUNT.into());
    let d = deps(fake, policy(""));
    let s = handle(&d, event("us-east-1", &img.id, "available"))
        .await
        .unwrap();
    let added = s.share.unwrap().launch_permissions_added;
    assert!(added.accounts.is_empty());
    assert_eq!(
        added.organizational_units,
        BTreeSet::from([OU_ARN.to_string()])
    );
}

#[tokio::test]
async fn more_than_500_accounts_go_in_batches() {
    let fake = FakeAws::new();
    let root = fake.create_org(ORG);
    fake.add_ou(&root, OU);
    fake.world().page_size = 20;
    for i in 0..1200 {
        fake.add_account(OU, &format!("6{i:011}"), "ACTIVE");
    }
    let img = fake.create_image(ImageSpec::new("us-east-1", "golden-1").snapshots(2));
    let d = deps(fake, policy(""));
    let s = handle(&d, event("us-east-1", &img.id, "available"))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Shared, "{s:?}");
    assert_eq!(d.aws.call_counts()["ec2:ModifySnapshotAttribute"], 2 * 3); // 1201 accounts: 500+500+201
    assert_eq!(
        d.aws
            .snapshot_permissions("us-east-1", &img.volumes[1].snapshot_id)
            .len(),
        1201
    );
}

fn public_policy() -> Policy {
    Policy::from_json(&format!(
        r#"{{"rules":[{{"name":"pub","match":{{"name":"golden-*"}},"share_with":{{"public":true,"accounts":["{ACCOUNT}"]}}}}],"allow_public":true}}"#
    ))
    .unwrap()
}

#[tokio::test]
async fn a_new_public_share_under_block_public_access_is_refused_alone() {
    let fake = FakeAws::new();
    let img = fake.create_image(ImageSpec::new("us-east-1", "golden-1"));
    fake.world().public_blocked.insert("us-east-1".into());
    let d = deps(fake, public_policy());
    let s = handle(&d, event("us-east-1", &img.id, "available"))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Refused, "{s:#?}");
    assert!(
        s.reason
            .as_deref()
            .unwrap()
            .contains("image block public access is on in us-east-1"),
        "{s:?}"
    );
    let now = d.aws.image("us-east-1", &img.id).unwrap();
    assert!(!now.launch.public, "no new public share");
    assert!(
        now.launch.accounts.contains(ACCOUNT),
        "the accounts are shared all the same"
    );
    assert!(d
        .aws
        .snapshot_permissions("us-east-1", &img.volumes[0].snapshot_id)
        .contains(ACCOUNT));
    assert!(
        !now.image.tags.contains_key("ami-share:plan"),
        "not converged: the night tries again"
    );
    assert!(
        now.image.tags.contains_key("ami-share:managed"),
        "but managed: what was shared is the product's"
    );

    d.aws.world().public_blocked.clear();
    let s = handle(&d, event("us-east-1", &img.id, "available"))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Shared);
    assert!(d.aws.image("us-east-1", &img.id).unwrap().launch.public);
    assert!(
        !d.aws
            .snapshot_permissions("us-east-1", &img.volumes[0].snapshot_id)
            .contains("all"),
        "snapshots never go public"
    );
}

#[tokio::test]
async fn an_image_already_public_under_block_new_sharing_stays_public_and_the_rest_is_shared() {
    let fake = FakeAws::new();
    let img = fake.create_image(ImageSpec::new("us-east-1", "golden-1"));
    fake.world()
        .images
        .get_mut(&("us-east-1".to_string(), img.id.clone()))
        .unwrap()
        .launch
        .public = true;
    fake.world().public_blocked.insert("us-east-1".into());
    let d = deps(fake, public_policy());
    let s = handle(&d, event("us-east-1", &img.id, "available"))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Shared, "{s:#?}");
    let now = d.aws.image("us-east-1", &img.id).unwrap();
    assert!(now.launch.public, "what is public stays public");
    assert!(now.launch.accounts.contains(ACCOUNT));
    assert!(
        now.image.tags.contains_key("ami-share:plan"),
        "fully converged: nothing left for the night"
    );
}

#[tokio::test]
async fn an_encrypted_image_is_never_made_public_but_its_accounts_are_shared() {
    let fake = FakeAws::new();
    let k = fake.create_key("us-east-1", KeyManager::Customer);
    let enc = fake.create_image(ImageSpec::new("us-east-1", "golden-2").encrypted_with(&[&k]));
    let d = deps(fake, public_policy());
    let s = handle(&d, event("us-east-1", &enc.id, "available"))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Refused);
    assert!(s
        .reason
        .unwrap()
        .contains("encrypted images cannot be made public"));
    let now = d.aws.image("us-east-1", &enc.id).unwrap();
    assert!(!now.launch.public);
    assert!(now.launch.accounts.contains(ACCOUNT));
}

#[tokio::test]
async fn share_snapshots_false_and_grant_kms_false_are_respected() {
    let fake = FakeAws::new();
    org(&fake);
    let k = fake.create_key("us-east-1", KeyManager::Customer);
    let img = fake.create_image(ImageSpec::new("us-east-1", "golden-1").encrypted_with(&[&k]));
    let p = Policy::from_json(&format!(
        r#"{{"rules":[{{"name":"g","match":{{"name":"golden-*"}},"share_with":{{"accounts":["{ACCOUNT}"]}},"share_snapshots":false,"grant_kms":false}}]}}"#
    ))
    .unwrap();
    let d = deps(fake, p);
    let s = handle(&d, event("us-east-1", &img.id, "available"))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Shared);
    assert!(d
        .aws
        .snapshot_permissions("us-east-1", &img.volumes[0].snapshot_id)
        .is_empty());
    assert!(d.aws.grants(&k).is_empty());
    assert_eq!(
        d.aws
            .image("us-east-1", &img.id)
            .unwrap()
            .launch
            .accounts
            .len(),
        1
    );
}

#[tokio::test]
async fn events_forwarded_from_another_region_use_that_region() {
    let fake = FakeAws::new();
    org(&fake);
    let img = fake.create_image(ImageSpec::new("eu-west-1", "golden-1"));
    let d = deps(fake, policy(""));
    let s = handle(&d, event("eu-west-1", &img.id, "available"))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Shared);
    assert_eq!(s.region.as_deref(), Some("eu-west-1"));
    assert_eq!(
        d.aws
            .image("eu-west-1", &img.id)
            .unwrap()
            .launch
            .accounts
            .len(),
        1
    );
}

/// A refused image raises the metric the template's `UndistributedImagesAlarm` watches.
#[tokio::test]
async fn a_refused_image_raises_the_metric_the_alarm_watches() {
    use amishare::metrics::{event_record, FUNCTION_DIMENSION, NAMESPACE, UNDISTRIBUTED};
    let fake = FakeAws::new();
    org(&fake);
    let ebs = fake.create_key("us-east-1", KeyManager::Aws);
    let img = fake.create_image(ImageSpec::new("us-east-1", "golden-1").encrypted_with(&[&ebs]));
    let d = deps(fake, policy(""));
    let s = handle(&d, event("us-east-1", &img.id, "available"))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Refused, "{s:#?}");
    let rec = event_record(
        "stack-on-image-available",
        Some(&s),
        Duration::from_millis(42),
        chrono::Utc::now(),
    );
    let emf = &rec["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(emf["Namespace"], NAMESPACE);
    assert!(emf["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["Name"] == UNDISTRIBUTED));
    assert!(emf["Dimensions"]
        .as_array()
        .unwrap()
        .contains(&json!([FUNCTION_DIMENSION])));
    assert_eq!(rec[UNDISTRIBUTED], 1.0);
    assert_eq!(rec[FUNCTION_DIMENSION], "stack-on-image-available");
    assert_eq!(rec["Outcome"], "refused");
    assert_eq!(rec["Duration"], 42.0);
    assert_eq!(
        rec["rules"], "golden",
        "a refusal names the rules it was under"
    );

    // the alarm in the template watches exactly that metric, by that dimension
    let template =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml"))
            .unwrap();
    let alarm = &template[template.find("  UndistributedImagesAlarm:").unwrap()..];
    let alarm = &alarm[..alarm.find("\n\n").unwrap()];
    assert!(
        alarm.contains(&format!("Namespace: {NAMESPACE}")),
        "{alarm}"
    );
    assert!(
        alarm.contains(&format!("MetricName: {UNDISTRIBUTED}")),
        "{alarm}"
    );
    assert!(
        alarm.contains(&format!("- Name: {FUNCTION_DIMENSION}")),
        "{alarm}"
    );

    // a shared image counts once in Invocations and not in the alarm's metric
    let ok = amishare::report::Summary::new("on-image-available", Outcome::Shared);
    let rec = event_record("f", Some(&ok), Duration::ZERO, chrono::Utc::now());
    assert_eq!(rec[UNDISTRIBUTED], 0.0);
    assert_eq!(rec["Invocations"], 1.0);
    // a transient error (Lambda retries) is counted, not alarmed on
    let rec = event_record("f", None, Duration::ZERO, chrono::Utc::now());
    assert_eq!(rec["Outcome"], "transient_error");
    assert_eq!(rec[UNDISTRIBUTED], 0.0);
}
