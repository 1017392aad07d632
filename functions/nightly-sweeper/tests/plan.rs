//! The plan (`{"mode": "plan"}`, `ami-share plan`): the next night's writes, computed by the
//! night's own decisions over a recording port. Nothing is written, and the night that follows
//! makes exactly the writes the plan listed, action by action.

// Test set-up and assertions: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use amishare::deps::Deps;
use amishare::names::MANAGED_TAG;
use amishare::night_plan::{Change, NightPlan};
use amishare::ports::{Images, LaunchPermissions, Snapshots};
use amishare::sweep::inventory::ORPHANED_SINCE_TAG;
use amishare::Policy;
use amishare_testkit::{FakeAws, ImageSpec, OWN_ACCOUNT};
use chrono::{DateTime, TimeZone, Utc};
use nightly_sweeper::{handle, invoke, plan, Run};
use serde_json::{json, Value};

const R: &str = "us-east-1";
const ORG: &str = "o-a1b2c3d4e5";
const OU: &str = "ou-ab12-cdef3456";
const OU_ARN: &str = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456";
const ACCOUNT: &str = "111122223333";
const OU_ACCOUNTS: [&str; 2] = ["200000000001", "200000000002"];

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 3, 30, 0).unwrap()
}

fn run() -> Run {
    Run::new(R, now(), None)
}

fn policy(share_with: Value, extra_rule: Value, sweeper: Value) -> Policy {
    let mut rule =
        json!({"name": "golden", "match": {"name": "golden-*"}, "share_with": share_with});
    if let (Some(r), Some(e)) = (rule.as_object_mut(), extra_rule.as_object()) {
        r.extend(e.clone());
    }
    Policy::from_json(&json!({"rules": [rule], "sweeper": sweeper}).to_string()).unwrap()
}

fn org(fake: &FakeAws) {
    let root = fake.create_org(ORG);
    fake.add_ou(&root, OU);
    for a in OU_ACCOUNTS {
        fake.add_account(OU, a, "ACTIVE");
    }
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A managed image shared with the account and the OU (launch permissions, snapshots).
async fn shared_with_ou(fake: &FakeAws) -> amishare::ports::Image {
    let img = fake.create_image(
        ImageSpec::new(R, "golden-1")
            .tag(MANAGED_TAG, "golden")
            .snapshots(2),
    );
    let lp = LaunchPermissions {
        accounts: set(&[ACCOUNT]),
        organizational_units: set(&[OU_ARN]),
        ..Default::default()
    };
    fake.add_launch_permissions(R, &img.id, &lp).await.unwrap();
    let mut all: Vec<String> = OU_ACCOUNTS.iter().map(|a| a.to_string()).collect();
    all.push(ACCOUNT.to_string());
    for v in &img.volumes {
        fake.add_create_volume_permission(R, &v.snapshot_id, &all)
            .await
            .unwrap();
    }
    img
}

/// An AWS action that changes something (anything but reads, MACs and queue lookups).
fn is_write(op: &str) -> bool {
    let name = op.split(':').nth(1).unwrap_or(op);
    !["Describe", "List", "Get", "Receive"]
        .iter()
        .any(|p| name.starts_with(p))
        && op != "kms:GenerateMac"
}

fn writes_made(fake: &FakeAws) -> BTreeMap<String, usize> {
    fake.call_counts()
        .into_iter()
        .filter(|(op, _)| is_write(op))
        .collect()
}

fn writes_planned(plan: &NightPlan) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for s in plan.sections.values() {
        for w in &s.items {
            *m.entry(w.action.to_string()).or_insert(0) += 1;
        }
    }
    m
}

/// Plan, check that nothing was written, then run the night and check it made exactly the
/// planned writes.
async fn plan_then_night(d: &Deps<FakeAws>) -> NightPlan {
    d.aws.reset_calls();
    let planned = plan(d, &run()).await;
    assert_eq!(writes_made(&d.aws), BTreeMap::new(), "the plan wrote");
    assert!(
        planned.night.errors.is_empty(),
        "{:?}",
        planned.night.errors
    );
    d.aws.reset_calls();
    let night = handle(d, json!({}), &run()).await.unwrap();
    assert!(night.errors.is_empty(), "{:?}", night.errors);
    assert_eq!(
        writes_planned(&planned.plan),
        writes_made(&d.aws),
        "the night did other than planned"
    );
    planned.plan
}

#[tokio::test]
async fn a_policy_that_drops_an_ou_is_planned_before_it_acts_and_the_night_does_just_that() {
    let fake = FakeAws::new();
    org(&fake);
    let img = shared_with_ou(&fake).await;
    // The deployed policy shared with the OU; the new one drops it, pruning what is unlisted.
    let dropped = policy(
        json!({"accounts": [ACCOUNT]}),
        json!({}),
        json!({"prune_unlisted_shares": true}),
    );
    let d = Deps::new(fake, dropped, OWN_ACCOUNT);
    let plan = plan_then_night(&d).await;

    let removed = &plan.sections[&Change::LaunchPermissionsRemoved];
    assert_eq!(removed.count, 1);
    assert_eq!(
        removed.by_principal,
        BTreeMap::from([(OU_ARN.to_string(), 1)])
    );
    assert_eq!(removed.by_rule, BTreeMap::from([("golden".to_string(), 1)]));
    assert_eq!(removed.items[0].resource, img.id);
    let snapshots = &plan.sections[&Change::SnapshotSharesRemoved];
    assert_eq!(snapshots.count, 2, "one call per snapshot");
    assert_eq!(
        snapshots.by_principal,
        BTreeMap::from([
            (OU_ACCOUNTS[0].to_string(), 2),
            (OU_ACCOUNTS[1].to_string(), 2)
        ])
    );
    assert_eq!(
        snapshots.by_rule,
        BTreeMap::from([("golden".to_string(), 2)])
    );
    assert_eq!(plan.count(Change::LaunchPermissionsAdded), 0);
    assert!(
        plan.text().contains("launch-permissions-removed: 1"),
        "{}",
        plan.text()
    );
    // …and the night removed it.
    assert_eq!(
        d.aws.image(R, &img.id).unwrap().launch.organizational_units,
        BTreeSet::new()
    );
}

#[tokio::test]
async fn orphans_copies_and_shares_are_planned_and_nothing_is_written() {
    let fake = FakeAws::new();
    org(&fake);
    // Not shared at all yet, and to be copied to a second Region.
    let img = fake.create_image(ImageSpec::new(R, "golden-2").tag(MANAGED_TAG, "golden"));
    // A snapshot left behind by a deregistered image: to be marked.
    let gone = fake.create_image(ImageSpec::new(R, "old-build"));
    fake.deregister_image(R, &gone.id);
    let p = policy(
        json!({"accounts": [ACCOUNT], "organizational_units": [OU_ARN]}),
        json!({"copy_to": [{"region": "eu-west-1"}]}),
        json!({"min_age_days": 0}),
    );
    let d = Deps::new(fake, p, OWN_ACCOUNT);
    let plan = plan_then_night(&d).await;

    let added = &plan.sections[&Change::LaunchPermissionsAdded];
    assert_eq!(added.items[0].resource, img.id);
    assert_eq!(
        added.by_principal,
        BTreeMap::from([(ACCOUNT.to_string(), 1), (OU_ARN.to_string(), 1)])
    );
    assert_eq!(plan.count(Change::CopiesStarted), 1);
    assert!(plan.sections[&Change::CopiesStarted].items[0]
        .resource
        .contains(&img.id));
    assert_eq!(plan.count(Change::OrphansMarked), 1);
    assert_eq!(
        plan.sections[&Change::OrphansMarked].items[0].resource,
        gone.volumes[0].snapshot_id
    );
    assert!(plan.count(Change::Fingerprints) >= 1);
    // The night that followed did it.
    let tags = d.aws.snapshot_tags(R, &gone.volumes[0].snapshot_id);
    assert!(tags.contains_key(ORPHANED_SINCE_TAG));
    assert_eq!(
        d.aws
            .create_volume_permissions(R, &img.volumes[0].snapshot_id)
            .await
            .unwrap(),
        set(&[ACCOUNT, OU_ACCOUNTS[0], OU_ACCOUNTS[1]])
    );
}

#[tokio::test]
async fn nothing_to_do_is_an_empty_plan() {
    let fake = FakeAws::new();
    org(&fake);
    shared_with_ou(&fake).await;
    let p = policy(
        json!({"accounts": [ACCOUNT], "organizational_units": [OU_ARN]}),
        json!({}),
        json!({}),
    );
    let d = Deps::new(fake, p, OWN_ACCOUNT);
    // The first night records the fingerprint; after it, the plan is empty.
    handle(&d, json!({}), &run()).await.unwrap();
    let plan = plan_then_night(&d).await;
    assert_eq!(plan.writes, 0, "{}", plan.text());
    assert!(plan.text().contains("nothing to do"));
}

#[tokio::test]
async fn the_function_answers_mode_plan_and_refuses_a_plan_with_other_fields() {
    let fake = FakeAws::new();
    org(&fake);
    fake.create_image(ImageSpec::new(R, "golden-3").tag(MANAGED_TAG, "golden"));
    let p = policy(json!({"accounts": [ACCOUNT]}), json!({}), json!({}));
    let d = Deps::new(fake, p, OWN_ACCOUNT);
    let out = invoke(&d, json!({"mode": "plan"}), &run()).await.unwrap();
    assert_eq!(out["mode"], "plan");
    assert_eq!(
        out["plan"]["sections"]["launch-permissions-added"]["count"],
        1
    );
    assert_eq!(out["night"]["function"], "nightly-sweeper");
    assert_eq!(writes_made(&d.aws), BTreeMap::new());

    let e = invoke(&d, json!({"mode": "plan", "dry": true}), &run())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("dry"), "{e}");
    // Any other input is the night, answered with its report.
    let out = invoke(&d, json!({}), &run()).await.unwrap();
    assert_eq!(out["drift"]["launch_permissions_added"], 1);
}
