//! `ami-share status` against the double: the image is first distributed by the product's own
//! night (sweeper) in both Regions, then one piece at a time is taken away; each reason code
//! comes from a case here, with the exit code and the JSON.

// Test set-up and assertions: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ami_share::{run_status, AwsArgs, StatusArgs, ERROR, NOT_SERVED, OK};
use amishare::deps::Deps;
use amishare::names::{copy_name, CopyKind};
use amishare::ports::{ImageState, KeyManager, Snapshots};
use amishare::status::{Silent, REASONS};
use amishare::Policy;
use amishare_testkit::{FakeAws, ImageSpec, OWN_ACCOUNT};
use chrono::{DateTime, TimeZone, Utc};
use nightly_sweeper::{handle, Run};
use serde_json::{json, Value};

const R: &str = "us-east-1";
const R2: &str = "eu-west-1";
const OU: &str = "ou-ab12-cdef3456";
const OU_ARN: &str = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456";
const ACCOUNT: &str = "111122223333";
const IN_OU: [&str; 2] = ["200000000001", "200000000002"];
const PARAM: &str = "/golden/al2023/latest";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 6, 3, 30, 0).unwrap()
}

fn policy(rule: Value) -> Policy {
    let mut r = json!({"name": "golden", "match": {"name": "golden-*"},
        "share_with": {"accounts": [ACCOUNT], "organizational_units": [OU_ARN]},
        "grant_kms": true,
        "copy_to": [{"region": R2}],
        "publish": {"parameter": PARAM}});
    r.as_object_mut()
        .unwrap()
        .extend(rule.as_object().unwrap().clone());
    Policy::from_json(&json!({"rules": [r]}).to_string()).unwrap()
}

fn fake_org() -> FakeAws {
    let fake = FakeAws::new();
    let root = fake.create_org("o-a1b2c3d4e5");
    fake.add_ou(&root, OU);
    for a in IN_OU {
        fake.add_account(OU, a, "ACTIVE");
    }
    fake.add_account(&root, ACCOUNT, "ACTIVE");
    fake
}

async fn night(d: &Deps<FakeAws>, region: &str) {
    let r = handle(d, json!({}), &Run::new(region, now(), None))
        .await
        .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
}

/// An encrypted image distributed by the night: shared, copied, the copy shared, published.
async fn distributed(rule: Value) -> (Deps<FakeAws>, String, String) {
    let fake = fake_org();
    let key = fake.create_key(R, KeyManager::Customer);
    let key2 = fake.create_key(R2, KeyManager::Customer);
    let img = fake.create_image(
        ImageSpec::new(R, "golden-1")
            .created("2026-11-01T10:00:00.000Z")
            .snapshots(2)
            .encrypted_with(&[&key]),
    );
    let mut rule = rule;
    rule.as_object_mut().unwrap().insert(
        "copy_to".into(),
        json!([{"region": R2, "kms_key_id": key2}]),
    );
    let d = Deps::new(fake, policy(rule), OWN_ACCOUNT);
    night(&d, R).await;
    let copy = copy_of(&d, &img.id).expect("the night started the copy");
    d.aws.complete_copy(R2, &copy);
    night(&d, R2).await;
    night(&d, R).await;
    (d, img.id, key)
}

fn copy_of(d: &Deps<FakeAws>, source: &str) -> Option<String> {
    d.aws
        .world()
        .images
        .values()
        .find(|i| i.image.region == R2 && i.image.source_image_id.as_deref() == Some(source))
        .map(|i| i.image.id.clone())
}

fn args(image: &str, accounts: bool) -> StatusArgs {
    StatusArgs {
        image_id: Some(image.to_string()),
        rule: None,
        accounts,
        aws: AwsArgs {
            region: None,
            profile: None,
            policy: "policy.json".into(),
            json: true,
        },
    }
}

/// The status as JSON, with the exit code.
async fn status(d: &Deps<FakeAws>, region: &str, image: &str, accounts: bool) -> (Value, u8) {
    let a = run_status(d, region, &args(image, accounts), now(), &Silent).await;
    let v = if a.stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&a.stdout).unwrap()
    };
    (v, a.code)
}

fn codes(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["reasons"].as_array().unwrap().iter())
        .chain(v["problems"].as_array().into_iter().flatten())
        .map(|x| x["code"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out.dedup();
    out
}

fn row<'a>(v: &'a Value, target: &str, region: &str) -> &'a Value {
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["target"] == target && r["region"] == region && r["kind"] != "target-account")
        .unwrap_or_else(|| panic!("no row {target} {region}: {v:#}"))
}

fn target_row<'a>(v: &'a Value, target: &str, region: &str) -> &'a Value {
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["target"] == target && r["region"] == region && r["kind"] == "target-account")
        .unwrap_or_else(|| panic!("no target row {target} {region}: {v:#}"))
}

#[tokio::test]
async fn a_fully_distributed_image_is_served_everywhere_and_its_copy_answers_the_same() {
    let (d, id, _) = distributed(json!({})).await;
    let (v, code) = status(&d, R, &id, false).await;
    assert_eq!(code, OK, "{v:#}");
    assert_eq!(v["served"], true);
    assert_eq!(codes(&v), Vec::<String>::new());
    // The account and the OU, in both Regions.
    assert_eq!(v["rows"].as_array().unwrap().len(), 4);
    let acc = row(&v, ACCOUNT, R);
    for cell in ["launch", "snapshots", "key", "parameter"] {
        assert_eq!(acc[cell], "ok", "{cell}: {acc:#}");
    }
    let ou = row(&v, OU_ARN, R2);
    assert_eq!(ou["copy"], "ok");
    assert_eq!(ou["launch"], "ok");
    assert_eq!(ou["snapshots"], "ok", "both member accounts: {ou:#}");
    // Asked by its copy's id, the answer is about the source.
    let copy = copy_of(&d, &id).unwrap();
    let (v2, code2) = status(&d, R2, &copy, false).await;
    assert_eq!(code2, OK);
    assert_eq!(v2["source_image_id"], id.as_str());
    assert_eq!(v2["rows"], v["rows"]);
}

#[tokio::test]
async fn each_missing_share_has_its_reason_and_fails_the_exit_code() {
    let (d, id, key) = distributed(json!({})).await;
    let snapshot = d.aws.image(R, &id).unwrap().image.volumes[1]
        .snapshot_id
        .clone();
    d.aws
        .world()
        .images
        .get_mut(&(R.to_string(), id.clone()))
        .unwrap()
        .launch
        .accounts
        .clear();
    d.aws
        .remove_create_volume_permission(R, &snapshot, &[IN_OU[1].to_string()])
        .await
        .unwrap();
    d.aws.revoke_by_hand(&key, ACCOUNT);
    let (v, code) = status(&d, R, &id, false).await;
    assert_eq!(code, NOT_SERVED);
    assert_eq!(v["served"], false);
    assert_eq!(
        codes(&v),
        ["no-key-access", "not-shared", "snapshot-not-shared"]
    );
    let acc = row(&v, ACCOUNT, R);
    assert_eq!(acc["launch"], "missing");
    assert_eq!(acc["key"], "missing");
    let ou = row(&v, OU_ARN, R);
    assert_eq!(ou["launch"], "ok");
    assert_eq!(ou["snapshots"], "missing");
    let why = &ou["reasons"][0];
    assert!(
        why["detail"].as_str().unwrap().contains(IN_OU[1]),
        "{why:#}"
    );
    assert!(!why["fix"].as_str().unwrap().is_empty());
    // The other Region is untouched.
    assert!(row(&v, ACCOUNT, R2)["reasons"]
        .as_array()
        .unwrap()
        .is_empty());

    // --accounts: one row per member account; only the one that lost its snapshot fails.
    let (v, _) = status(&d, R, &id, true).await;
    let lost = row(&v, IN_OU[1], R);
    assert_eq!(lost["kind"], "account-in-group");
    assert_eq!(lost["snapshots"], "missing");
    assert_eq!(row(&v, IN_OU[0], R)["snapshots"], "ok");
}

#[tokio::test]
async fn copies_pending_failed_missing_and_waiting() {
    let fake = fake_org();
    let img = fake.create_image(ImageSpec::new(R, "golden-1").created("2026-11-01T10:00:00.000Z"));
    let d = Deps::new(fake, policy(json!({})), OWN_ACCOUNT);
    // Before any night: no copy, nothing waits.
    let (v, code) = status(&d, R, &img.id, false).await;
    assert_eq!(code, NOT_SERVED);
    assert!(codes(&v).contains(&"copy-missing".to_string()), "{v:#}");
    assert_eq!(row(&v, ACCOUNT, R2)["launch"], "blocked");
    // The night started it: pending.
    night(&d, R).await;
    let (v, _) = status(&d, R, &img.id, false).await;
    assert_eq!(row(&v, ACCOUNT, R2)["reasons"][0]["code"], "copy-pending");
    // It failed.
    let copy = copy_of(&d, &img.id).unwrap();
    d.aws
        .world()
        .images
        .get_mut(&(R2.to_string(), copy))
        .unwrap()
        .image
        .state = ImageState::Failed;
    let (v, _) = status(&d, R, &img.id, false).await;
    assert_eq!(row(&v, OU_ARN, R2)["reasons"][0]["code"], "copy-failed");
}

#[tokio::test]
async fn a_copy_in_the_line_is_waiting() {
    let fake = fake_org();
    fake.set_copy_cap(1);
    let a = fake.create_image(ImageSpec::new(R, "golden-1").created("2026-11-01T10:00:00.000Z"));
    let b = fake.create_image(ImageSpec::new(R, "golden-2").created("2026-11-02T10:00:00.000Z"));
    let d = Deps::new(fake, policy(json!({})), OWN_ACCOUNT);
    night(&d, R).await;
    assert_eq!(
        d.aws.line(R2).len(),
        1,
        "one copy started, the other waits in the line"
    );
    let (started, waiting) = match copy_of(&d, &a.id) {
        Some(_) => (a.id, b.id),
        None => (b.id, a.id),
    };
    let (v, _) = status(&d, R, &waiting, false).await;
    let r = &row(&v, ACCOUNT, R2)["reasons"][0];
    assert_eq!(r["code"], "copy-waiting");
    assert!(
        r["detail"].as_str().unwrap().contains("1 copies wait"),
        "{r:#}"
    );
    let (v, _) = status(&d, R, &started, false).await;
    assert_eq!(row(&v, ACCOUNT, R2)["reasons"][0]["code"], "copy-pending");
}

#[tokio::test]
async fn an_unpublished_parameter_and_a_suspended_account() {
    let fake = fake_org();
    fake.add_account(OU, ACCOUNT, "SUSPENDED");
    let img = fake.create_image(ImageSpec::new(R, "golden-1"));
    let d = Deps::new(fake, policy(json!({"copy_to": []})), OWN_ACCOUNT);
    let (v, _) = status(&d, R, &img.id, false).await;
    let acc = row(&v, ACCOUNT, R);
    assert_eq!(acc["parameter"], "missing");
    let c: Vec<&str> = acc["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert!(c.contains(&"account-suspended"), "{acc:#}");
    assert!(c.contains(&"not-published"), "{acc:#}");
}

#[tokio::test]
async fn a_key_policy_that_refuses_the_ou() {
    let fake = fake_org();
    let key = fake.create_key(R, KeyManager::Customer);
    let img = fake.create_image(ImageSpec::new(R, "golden-1").encrypted_with(&[&key]));
    let d = Deps::new(
        fake,
        policy(json!({"kms_access": "key_policy", "copy_to": []})),
        OWN_ACCOUNT,
    );
    let (v, _) = status(&d, R, &img.id, false).await;
    let ou = row(&v, OU_ARN, R);
    assert_eq!(ou["key"], "missing");
    assert_eq!(
        ou["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["code"] == "key-policy-refuses")
            .count(),
        1,
        "{ou:#}"
    );
}

#[tokio::test]
async fn target_copies_missing_pending_done_and_a_role_that_cannot_be_assumed() {
    let fake = fake_org();
    for a in [ACCOUNT, IN_OU[0], IN_OU[1]] {
        fake.add_target_account(a, &[R]);
    }
    let img = fake.create_image(ImageSpec::new(R, "golden-1").created("2026-11-01T10:00:00.000Z"));
    let rule = json!({"share_with": {}, "copy_to": [], "publish": null,
        "copy_into": {"accounts": [ACCOUNT], "regions": [{"region": R}]}});
    let d = Deps::new(fake, policy(rule), OWN_ACCOUNT);
    let (v, _) = status(&d, R, &img.id, false).await;
    assert_eq!(target_row(&v, ACCOUNT, R)["target_copy"], "missing");
    // The target copies the source: before the night it may not even launch it.
    assert_eq!(
        codes(&v),
        ["not-shared", "snapshot-not-shared", "target-copy-missing"]
    );
    night(&d, R).await;
    let (v, _) = status(&d, R, &img.id, false).await;
    assert_eq!(codes(&v), ["target-copy-pending"]);
    d.aws.finish_target_copies();
    let (v, code) = status(&d, R, &img.id, false).await;
    assert_eq!((codes(&v), code), (vec![], OK), "{v:#}");
    d.aws.deny_target_role(ACCOUNT);
    let (v, code) = status(&d, R, &img.id, false).await;
    assert_eq!(
        (codes(&v), code),
        (vec!["role-not-assumable".to_string()], NOT_SERVED)
    );
}

/// A target's copy made before its source carried the rule's watermark lacks it (EC2 carries
/// watermarks only to copies made since): said, with its fix.
#[tokio::test]
async fn a_target_copy_made_before_the_watermark_is_said() {
    let fake = fake_org();
    fake.add_target_account(ACCOUNT, &[R]);
    let img = fake.create_image(ImageSpec::new(R, "golden-1").created("2026-11-01T10:00:00.000Z"));
    let rule = json!({"share_with": {}, "copy_to": [], "publish": null,
        "copy_into": {"accounts": [ACCOUNT], "regions": [{"region": R}]}});
    let mut d = Deps::new(fake, policy(rule.clone()), OWN_ACCOUNT);
    night(&d, R).await;
    d.aws.finish_target_copies();
    let mut with = rule;
    with["watermark"] = json!("golden-approved");
    d.policy = policy(with);
    night(&d, R).await; // attaches the watermark to the source
    let (v, code) = status(&d, R, &img.id, false).await;
    assert_eq!(
        (codes(&v), code),
        (vec!["target-copy-unwatermarked".to_string()], NOT_SERVED),
        "{v:#}"
    );
    let row = target_row(&v, ACCOUNT, R);
    assert_eq!(row["target_copy"], "ok", "the copy is there");
    assert!(
        row["reasons"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("123456789012:golden-approved"),
        "{row:#}"
    );
}

#[tokio::test]
async fn images_the_policy_does_not_distribute_say_why() {
    let fake = fake_org();
    let other = fake.create_image(ImageSpec::new(R, "other-1"));
    let theirs = fake.create_image(ImageSpec::new(R, "golden-2").owner("444455556666"));
    let forged = fake.create_image(ImageSpec::new(
        R2,
        &copy_name(
            "golden-1",
            R,
            "ami-0123456789abcdef0",
            CopyKind::RegionCopy,
            0,
        ),
    ));
    let src = fake.create_image(ImageSpec::new(R, "golden-3"));
    let orphan_copy = fake.create_image(
        ImageSpec::new(
            R2,
            &copy_name("golden-3", R, &src.id, CopyKind::RegionCopy, 0),
        )
        .copied_from(R, &src.id),
    );
    fake.deregister_image(R, &src.id);
    let disabled = fake.create_image(ImageSpec::new(R, "golden-4").state(ImageState::Disabled));
    let deprecated = fake.create_image(ImageSpec::new(R, "golden-5"));
    fake.world()
        .images
        .get_mut(&(R.to_string(), deprecated.id.clone()))
        .unwrap()
        .image
        .deprecation_time = Some("2026-12-01T00:00:00Z".into());
    let d = Deps::new(fake, policy(json!({"copy_to": []})), OWN_ACCOUNT);
    for (region, id, code) in [
        (R, &other.id, "outside-rule"),
        (R, &theirs.id, "not-ours"),
        (R2, &forged.id, "forged-provenance"),
        (R2, &orphan_copy.id, "source-gone"),
        (R, &disabled.id, "retired"),
        (R, &deprecated.id, "retired"),
    ] {
        let (v, exit) = status(&d, region, id, false).await;
        assert_eq!(exit, NOT_SERVED, "{id}: {v:#}");
        assert!(codes(&v).contains(&code.to_string()), "{code}: {v:#}");
    }
    // An image that does not exist is an error (2), naming it.
    let a = run_status(&d, R, &args("ami-0000000000000dead", false), now(), &Silent).await;
    assert_eq!((a.code, a.stdout.as_str()), (ERROR, ""));
}

#[tokio::test]
async fn by_rule_reports_the_rules_newest_image_and_the_table_names_every_column() {
    let (d, id, _) = distributed(json!({})).await;
    d.aws
        .create_image(ImageSpec::new(R, "golden-0").created("2026-01-01T10:00:00.000Z"));
    let mut a = args("", false);
    (a.image_id, a.rule, a.aws.json) = (None, Some("golden".into()), false);
    let out = run_status(&d, R, &a, now(), &Silent).await;
    assert_eq!(out.code, OK, "{}", out.stdout);
    assert!(
        out.stdout
            .starts_with(&format!("{id} in {R}: served everywhere")),
        "{}",
        out.stdout
    );
    for col in [
        "TARGET",
        "REGION",
        "LAUNCH",
        "SNAPSHOTS",
        "KEY",
        "COPY",
        "PARAMETER",
        "TARGET-COPY",
        "REASONS",
    ] {
        assert!(out.stdout.contains(col), "{col}");
    }
    a.rule = Some("nope".into());
    assert_eq!(run_status(&d, R, &a, now(), &Silent).await.code, ERROR);
}

#[test]
fn every_reason_code_is_documented_with_its_fix() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/operations.md"
    ))
    .unwrap();
    for (code, fix) in REASONS {
        assert!(
            doc.contains(&format!("`{code}`")),
            "docs/operations.md lacks {code}"
        );
        assert!(!fix.is_empty());
    }
}

#[tokio::test]
async fn an_account_whose_allowed_amis_exclude_the_image_is_not_served_and_says_which_criterion() {
    let (d, id, _) = distributed(json!({})).await;
    d.aws.world().declarative_policies.insert(
        ACCOUNT.into(),
        json!({"ec2_attributes": {"allowed_images_settings": {"state": "enabled",
            "image_criteria": {"criteria_1": {"allowed_image_providers": ["amazon"]}}}}})
        .to_string(),
    );
    let (v, code) = status(&d, R, &id, false).await;
    assert_eq!(code, NOT_SERVED);
    let acc = row(&v, ACCOUNT, R);
    let r = acc["reasons"].as_array().unwrap();
    assert_eq!(r.len(), 1, "{acc:#}");
    assert_eq!(r[0]["code"], "not-allowed-in-consumer");
    assert!(
        r[0]["detail"]
            .as_str()
            .unwrap()
            .contains("provider 123456789012 is not among amazon"),
        "{r:?}"
    );
    // Its launch permission and everything else are there: shared, but invisible to it.
    assert_eq!(acc["launch"], "ok");
    // Admitted by the rule's watermark: served again.
    let (d, id, _) = distributed(json!({"watermark": "golden-approved"})).await;
    d.aws.world().declarative_policies.insert(
        ACCOUNT.into(),
        json!({"ec2_attributes": {"allowed_images_settings": {"state": "enabled",
            "image_criteria": {"criteria_1": {"image_watermarks": ["123456789012:golden-approved"]}}}}})
        .to_string(),
    );
    let (v, code) = status(&d, R, &id, false).await;
    assert_eq!(code, OK, "{v:#}");
}
