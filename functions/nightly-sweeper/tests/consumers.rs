//! The night judges each rule's newest image in its consumers' Allowed AMIs (issue 30): the
//! organization's EC2 declarative policy per account (read once a night), a copy_into target's
//! own setting through its role; reported per rule, with the first images not allowed and why,
//! the metric, and retirement's look-ahead. Nothing is held back: the shares are made.

// Test set-up and assertions: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use amishare::allowed::State;
use amishare::deps::Deps;
use amishare::Policy;
use amishare_testkit::{
    declarative_allowed_amis, own_allowed_amis, FakeAws, ImageSpec, OWN_ACCOUNT,
};
use chrono::{TimeZone, Utc};
use nightly_sweeper::{handle, Run, SweepReport};
use serde_json::json;

const R: &str = "us-east-1";
const OU: &str = "ou-ab12-cdef3456";
const OU_ARN: &str = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456";
const AMAZON_ONLY: &str = "200000000001";
const BY_WATERMARK: &str = "200000000002";
const NO_POLICY: &str = "200000000003";
const STRICT_DEPRECATION: &str = "200000000004";
const TARGET: &str = "300000000001";

fn policy() -> Policy {
    Policy::from_json(
        &json!({"rules": [{"name": "golden", "match": {"name": "golden-*"},
            "share_with": {"organizational_units": [OU_ARN]},
            "watermark": "golden-approved",
            "copy_into": {"accounts": [TARGET], "regions": [{"region": R}]},
            "retire": {"keep": 1, "disable_after_days": 30, "mode": "report"}}]})
        .to_string(),
    )
    .unwrap()
}

async fn night(d: &Deps<FakeAws>) -> SweepReport {
    let now = Utc.with_ymd_and_hms(2026, 12, 6, 3, 30, 0).unwrap();
    handle(d, json!({}), &Run::new(R, now, None)).await.unwrap()
}

fn world() -> Deps<FakeAws> {
    let fake = FakeAws::new();
    let root = fake.create_org("o-a1b2c3d4e5");
    fake.add_ou(&root, OU);
    for a in [AMAZON_ONLY, BY_WATERMARK, NO_POLICY, STRICT_DEPRECATION] {
        fake.add_account(OU, a, "ACTIVE");
    }
    fake.add_account(&root, TARGET, "ACTIVE");
    fake.add_target_account(TARGET, &[R]);
    {
        let mut w = fake.world();
        w.declarative_policies.insert(
            AMAZON_ONLY.into(),
            declarative_allowed_amis(
                json!({"criteria_1": {"allowed_image_providers": {"@@assign": ["amazon"]}}}),
            ),
        );
        w.declarative_policies.insert(
            BY_WATERMARK.into(),
            declarative_allowed_amis(json!({"criteria_1": {"image_watermarks": {"@@assign": ["123456789012:golden-*"]}}})),
        );
        w.declarative_policies.insert(
            STRICT_DEPRECATION.into(),
            declarative_allowed_amis(
                json!({"criteria_1": {"allowed_image_providers": {"@@assign": ["123456789012"]},
                "deprecation_time_condition": {"maximum_days_since_deprecated": {"@@assign": 7}}}}),
            ),
        );
        w.allowed_images.insert(
            (TARGET.into(), R.into()),
            own_allowed_amis(State::AuditMode, &["amazon"]),
        );
    }
    fake.create_image(ImageSpec::new(R, "golden-1").created("2026-11-01T10:00:00.000Z"));
    Deps::new(fake, policy(), OWN_ACCOUNT)
}

#[tokio::test]
async fn each_consumer_is_judged_and_the_report_says_why() {
    let d = world();
    let r = night(&d).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let c = &r.consumers;
    assert_eq!(c.status, "complete");
    assert_eq!(
        c.per_rule["golden"],
        [
            ("allowed", 2),
            ("audit-mode", 1),
            ("not-allowed", 1),
            ("unknown", 1)
        ]
        .into_iter()
        .collect(),
        "{c:?}"
    );
    assert_eq!(c.not_allowed_total, 1);
    let refused: Vec<(&str, &str)> = c
        .not_allowed
        .iter()
        .map(|i| (i.account.as_str(), i.verdict.code()))
        .collect();
    assert_eq!(
        refused,
        [(AMAZON_ONLY, "not-allowed"), (TARGET, "audit-mode")]
    );
    let why = serde_json::to_value(&c.not_allowed[0]).unwrap();
    assert!(
        why["why"]
            .as_str()
            .unwrap()
            .contains("provider 123456789012 is not among amazon"),
        "{why}"
    );
    assert_eq!((c.accounts_read, c.accounts_unreadable), (4, 1));
    // The metric, and the shares were made all the same.
    assert_eq!(r.emf(Utc::now())["NotAllowedInConsumers"], 1);
    assert!(d
        .aws
        .world()
        .images
        .values()
        .any(|i| i.launch.organizational_units.contains(OU_ARN)));
}

#[tokio::test]
async fn each_account_is_read_once_a_night_and_retirement_looks_ahead() {
    let d = world();
    d.aws.reset_calls();
    let r = night(&d).await;
    let calls = d.aws.call_counts();
    assert_eq!(
        calls.get("organizations:DescribeEffectivePolicy"),
        Some(&4),
        "the OU's four accounts, once each"
    );
    assert_eq!(
        calls.get("target:GetAllowedImagesSettings"),
        Some(&1),
        "the target, through its role"
    );
    assert_eq!(
        r.retirement.consumers_refuse_sooner.len(),
        1,
        "{:?}",
        r.retirement.consumers_refuse_sooner
    );
    let line = &r.retirement.consumers_refuse_sooner[0];
    assert!(
        line.contains(STRICT_DEPRECATION)
            && line.contains("more than 7 days")
            && line.contains("after 30 days"),
        "{line}"
    );
}

#[tokio::test]
async fn an_organization_that_cannot_be_read_leaves_every_verdict_unknown_not_an_error() {
    let d = world();
    d.aws.fail(
        "organizations:DescribeEffectivePolicy",
        "AccessDeniedException",
        0,
        100,
    );
    let r = night(&d).await;
    assert_eq!(
        r.consumers.per_rule["golden"].get("unknown"),
        Some(&4),
        "{:?}",
        r.consumers
    );
    assert_eq!(r.consumers.not_allowed_total, 0);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
}

/// `allowed_amis.read_through_role`: every consumer's own setting is read through the role
/// (deployed read-only to the rules' OUs), which the organization policy does not show; an
/// account where the role cannot be assumed is read from its organization policy instead.
#[tokio::test]
async fn through_the_role_each_account_s_own_setting_is_read_and_the_policy_where_it_cannot_be() {
    let mut d = world();
    d.policy.allowed_amis.read_through_role = true;
    d.aws.deny_target_role(AMAZON_ONLY);
    d.aws.world().allowed_images.insert(
        (NO_POLICY.into(), R.into()),
        own_allowed_amis(State::Enabled, &["amazon"]),
    );
    let r = night(&d).await;
    let c = &r.consumers;
    assert_eq!(c.status, "complete", "{c:?}");
    let refused: Vec<(&str, &str)> = c
        .not_allowed
        .iter()
        .map(|i| (i.account.as_str(), i.verdict.code()))
        .collect();
    assert_eq!(
        refused,
        [
            (AMAZON_ONLY, "not-allowed"),
            (NO_POLICY, "not-allowed"),
            (TARGET, "audit-mode")
        ],
        "{c:?}"
    );
    let calls = d.aws.call_counts();
    assert_eq!(
        calls.get("target:GetAllowedImagesSettings"),
        Some(&5),
        "every consumer through the role: {calls:?}"
    );
    assert_eq!(
        calls.get("organizations:DescribeEffectivePolicy"),
        Some(&1),
        "only where the role was refused: {calls:?}"
    );
}
