//! The night keeps each rule's latest-image parameter and its RAM share true, like any other
//! drift: a few calls per rule, none per image.

// Test set-up and assertions: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use amishare::deps::Deps;
use amishare::ports::Image;
use amishare::publish::PublishStatus;
use amishare::Policy;
use amishare_testkit::{FakeAws, ImageSpec, OWN_ACCOUNT};
use chrono::{TimeZone, Utc};
use nightly_sweeper::{handle, Run, SweepReport};
use serde_json::{json, Value};

const R: &str = "us-east-1";
const OU_ARN: &str = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456";
const ACCOUNT: &str = "111122223333";
const NEW_ACCOUNT: &str = "444455556666";
const PARAM: &str = "/golden/al2023/latest";
const SHARE: &str = "ami-share-golden";

fn policy(share_with: Value, prune: bool) -> Policy {
    Policy::from_json(
        &json!({"rules": [{"name": "golden", "match": {"name": "golden-*"},
            "share_with": share_with, "publish": {"parameter": PARAM}}],
            "sweeper": {"prune_unlisted_shares": prune}})
        .to_string(),
    )
    .unwrap()
}

fn world() -> (FakeAws, [Image; 3]) {
    let fake = FakeAws::new();
    fake.world().page_size = 50;
    let root = fake.create_org("o-a1b2c3d4e5");
    fake.add_ou(&root, "ou-ab12-cdef3456");
    fake.add_account("ou-ab12-cdef3456", "200000000001", "ACTIVE");
    let imgs = [
        "2026-11-01T10:00:00.000Z",
        "2026-11-15T10:00:00.000Z",
        "2026-11-08T10:00:00.000Z",
    ]
    .map(|d| fake.create_image(ImageSpec::new(R, &format!("golden-{d}")).created(d)));
    (fake, imgs)
}

async fn sweep(d: &Deps<FakeAws>) -> SweepReport {
    let now = Utc.with_ymd_and_hms(2026, 11, 21, 3, 30, 0).unwrap();
    handle(d, json!({}), &Run::new(R, now, None)).await.unwrap()
}

fn principals(d: &Deps<FakeAws>) -> BTreeSet<String> {
    let [share] = d.aws.shares_named(R, SHARE).try_into().unwrap();
    share.principals
}

/// The world's deps under a rule sharing with the account and the OU.
fn account_and_ou(fake: FakeAws) -> Deps<FakeAws> {
    let share = json!({"accounts": [ACCOUNT], "organizational_units": [OU_ARN]});
    Deps::new(fake, policy(share, false), OWN_ACCOUNT)
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn the_night_publishes_each_rules_newest_image_then_only_reads() {
    let (fake, imgs) = world();
    let d = account_and_ou(fake);
    let r = sweep(&d).await;
    assert_eq!(r.errors_total, 0, "{:?}", r.errors);
    assert_eq!(d.aws.parameter(R, PARAM).unwrap().value, imgs[1].id);
    let [p] = r.drift.publications.as_slice() else {
        panic!("{:?}", r.drift.publications)
    };
    assert_eq!(p.status, PublishStatus::Published);
    assert_eq!(r.drift.publications_repaired, 1);
    assert_eq!(principals(&d), set(&[ACCOUNT, OU_ARN]));
    assert_eq!(d.aws.events().len(), 1);

    // The next night: everything is true; the parameter, its label and the share are read.
    d.aws.reset_calls();
    let r = sweep(&d).await;
    assert_eq!(r.drift.publications[0].status, PublishStatus::Current);
    assert_eq!(r.drift.publications_repaired, 0);
    let calls = d.aws.call_counts();
    let publishing: Vec<(&str, usize)> = calls
        .iter()
        .filter(|(k, _)| ["ssm:", "ram:", "events:"].iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        publishing,
        [
            ("ram:GetResourceShareAssociations", 2),
            ("ram:GetResourceShares", 1),
            ("ssm:GetParameters", 1),
        ]
    );
    assert_eq!(d.aws.events().len(), 1);
}

#[tokio::test]
async fn the_night_repairs_a_parameter_set_back_or_deleted_by_hand() {
    let (fake, imgs) = world();
    let d = Deps::new(
        fake,
        policy(json!({"accounts": [ACCOUNT]}), false),
        OWN_ACCOUNT,
    );
    sweep(&d).await;
    // Set back by hand to an older image.
    d.aws.set_parameter(R, PARAM, &imgs[0].id);
    let r = sweep(&d).await;
    assert_eq!(r.drift.publications[0].status, PublishStatus::Published);
    assert_eq!(
        r.drift.publications[0].previous_image_id.as_deref(),
        Some(imgs[0].id.as_str())
    );
    assert_eq!(d.aws.parameter(R, PARAM).unwrap().value, imgs[1].id);
    assert_eq!(r.drift.publications_repaired, 1);
    assert!(r.drift.repaired() >= 1);
    // Deleted by hand.
    d.aws.world().publishing.parameters.clear();
    sweep(&d).await;
    let p = d.aws.parameter(R, PARAM).unwrap();
    assert_eq!(p.value, imgs[1].id);
    assert!(p.labels.contains("created-2026-11-15T10-00-00.000Z"));
    assert_eq!(d.aws.events().len(), 3);
}

#[tokio::test]
async fn the_night_keeps_the_shares_principals_in_step_with_the_rule() {
    let (fake, _) = world();
    let d = account_and_ou(fake);
    sweep(&d).await;
    // The rule gains an account and drops the OU; pruning off: added, nothing removed.
    let changed = json!({"accounts": [ACCOUNT, NEW_ACCOUNT]});
    let d = Deps::new(d.aws, policy(changed.clone(), false), OWN_ACCOUNT);
    let r = sweep(&d).await;
    assert_eq!(principals(&d), set(&[ACCOUNT, NEW_ACCOUNT, OU_ARN]));
    let share = &r.drift.publications[0].share;
    assert_eq!(share.principals_added, [NEW_ACCOUNT.to_string()]);
    assert_eq!(share.would_remove, [OU_ARN.to_string()]);
    // Pruning on: the OU goes too.
    let d = Deps::new(d.aws, policy(changed, true), OWN_ACCOUNT);
    let r = sweep(&d).await;
    assert_eq!(principals(&d), set(&[ACCOUNT, NEW_ACCOUNT]));
    assert_eq!(
        r.drift.publications[0].share.principals_removed,
        [OU_ARN.to_string()]
    );
}

#[tokio::test]
async fn the_night_puts_the_parameter_back_in_a_share_it_was_taken_out_of() {
    let (fake, _) = world();
    let d = Deps::new(
        fake,
        policy(json!({"accounts": [ACCOUNT]}), false),
        OWN_ACCOUNT,
    );
    sweep(&d).await;
    for s in d.aws.world().publishing.shares.iter_mut() {
        s.resources.clear();
    }
    let r = sweep(&d).await;
    assert!(r.drift.publications[0].share.resource_added);
    let [share] = d.aws.shares_named(R, SHARE).try_into().unwrap();
    assert_eq!(
        share.resources,
        set(&[&format!("arn:aws:ssm:{R}:{OWN_ACCOUNT}:parameter{PARAM}")])
    );
}

#[tokio::test]
async fn a_failing_publication_is_reported_and_the_rest_of_the_night_goes_on() {
    let (fake, imgs) = world();
    let d = Deps::new(
        fake,
        policy(json!({"accounts": [ACCOUNT]}), false),
        OWN_ACCOUNT,
    );
    d.aws
        .fail("ssm:PutParameter", "AccessDeniedException", 0, 1);
    let r = sweep(&d).await;
    assert_eq!(r.errors_total, 1, "{:?}", r.errors);
    let e = format!("{:?}", r.errors);
    assert!(
        e.contains("publication of rule golden") && e.contains("AccessDeniedException"),
        "{e}"
    );
    // Every image was shared all the same.
    for i in &imgs {
        assert!(d
            .aws
            .image(R, &i.id)
            .unwrap()
            .launch
            .accounts
            .contains(ACCOUNT));
    }
}
