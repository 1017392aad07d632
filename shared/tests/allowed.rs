//! The Allowed AMIs evaluator, criterion by criterion, from the EC2 User Guide's rules: an image
//! is allowed when it matches any one criterion; a criterion matches when every field it gives
//! matches; the account's own images are always allowed; audit mode allows and says what would
//! be refused; what cannot be judged is `unknown`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::collections::BTreeMap;

use amishare::allowed::declarative::from_effective_policy;
use amishare::allowed::{judge, Criterion, Settings, Source, State, Verdict, WatermarkFilter};
use amishare::ports::{Image, ImageState};
use chrono::{TimeZone, Utc};

const PUBLISHER: &str = "444455556666";
const CONSUMER: &str = "111122223333";

fn image() -> Image {
    Image {
        id: "ami-0123456789abcdef0".into(),
        region: "us-east-1".into(),
        name: "golden-al2023-2026-12-01".into(),
        owner_id: PUBLISHER.into(),
        state: ImageState::Available,
        tags: BTreeMap::new(),
        volumes: Vec::new(),
        source_image_id: None,
        source_image_region: None,
        deprecation_time: None,
        creation_date: Some("2026-12-01T00:00:00.000Z".into()),
        last_launched_time: None,
        deregistration_protection: None,
        verified_source_created: None,
        watermarks: vec![format!("{PUBLISHER}:golden-approved")],
    }
}

fn settings(state: State, criteria: Vec<Criterion>) -> Settings {
    Settings {
        state,
        criteria,
        source: Source::Account,
    }
}

fn verdict(c: Criterion, img: &Image) -> Verdict {
    let now = Utc.with_ymd_and_hms(2026, 12, 6, 0, 0, 0).unwrap();
    judge(img, CONSUMER, Some(&settings(State::Enabled, vec![c])), now)
}

fn providers(p: &[&str]) -> Criterion {
    Criterion {
        providers: Some(p.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}

#[test]
fn each_criterion_alone() {
    let img = image();
    let wm = |k: &str| Criterion {
        watermarks: Some(vec![WatermarkFilter {
            key: Some(k.into()),
            other_conditions: false,
        }]),
        ..Default::default()
    };
    let names = |n: &[&str]| Criterion {
        names: Some(n.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    };
    let created = |d: i64| Criterion {
        max_days_since_created: Some(d),
        ..Default::default()
    };
    let deprecated = |d: i64| Criterion {
        max_days_since_deprecated: Some(d),
        ..Default::default()
    };
    let cases: Vec<(&str, Criterion, &str)> = vec![
        (
            "provider: the publisher",
            providers(&[PUBLISHER]),
            "allowed",
        ),
        (
            "provider: amazon only",
            providers(&["amazon", "aws-marketplace"]),
            "not-allowed",
        ),
        (
            "provider: none (own images) does not admit the publisher's",
            providers(&["none"]),
            "not-allowed",
        ),
        ("name: wildcard", names(&["golden-al2023-*"]), "allowed"),
        (
            "name: ? is one character",
            names(&["golden-al2023-2026-12-0?"]),
            "allowed",
        ),
        (
            "name: another line",
            names(&["golden-ubuntu-*"]),
            "not-allowed",
        ),
        ("age: 5 days ≤ 30", created(30), "allowed"),
        ("age: 5 days > 3", created(3), "not-allowed"),
        ("deprecation: not deprecated", deprecated(0), "allowed"),
        (
            "watermark: exact",
            wm(&format!("{PUBLISHER}:golden-approved")),
            "allowed",
        ),
        (
            "watermark: wildcard",
            wm(&format!("{PUBLISHER}:golden-*")),
            "allowed",
        ),
        (
            "watermark: another",
            wm(&format!("{PUBLISHER}:other")),
            "not-allowed",
        ),
        (
            "product codes: ours have none",
            Criterion {
                product_codes: Some(vec!["abc".into()]),
                ..Default::default()
            },
            "not-allowed",
        ),
        (
            "scan result: not read",
            Criterion {
                scan_result: true,
                ..Default::default()
            },
            "unknown",
        ),
        (
            "a field not known",
            Criterion {
                unknown_fields: vec!["future_field".into()],
                ..Default::default()
            },
            "unknown",
        ),
        (
            "watermark filter with a Region condition",
            Criterion {
                watermarks: Some(vec![WatermarkFilter {
                    key: Some(format!("{PUBLISHER}:golden-approved")),
                    other_conditions: true,
                }]),
                ..Default::default()
            },
            "unknown",
        ),
    ];
    for (what, c, expected) in cases {
        assert_eq!(verdict(c, &img).code(), expected, "{what}");
    }
}

#[test]
fn deprecation_counts_the_days_since() {
    let mut img = image();
    img.deprecation_time = Some("2026-11-26T00:00:00Z".into()); // 10 days before now
    let c = |d: i64| Criterion {
        max_days_since_deprecated: Some(d),
        ..Default::default()
    };
    assert_eq!(verdict(c(30), &img), Verdict::Allowed);
    let v = verdict(c(7), &img);
    assert_eq!(v.code(), "not-allowed");
    assert!(
        matches!(&v, Verdict::NotAllowed { why } if why.contains("deprecated 10 days ago, more than the 7 allowed")),
        "{v:?}"
    );
    // A deprecation still to come has not started the clock.
    img.deprecation_time = Some("2027-01-01T00:00:00Z".into());
    assert_eq!(verdict(c(0), &img), Verdict::Allowed);
}

#[test]
fn every_field_of_a_criterion_must_match_and_any_criterion_suffices() {
    let img = image();
    let both = Criterion {
        providers: Some(vec![PUBLISHER.into()]),
        names: Some(vec!["other-*".into()]),
        ..Default::default()
    };
    let v = verdict(both.clone(), &img);
    assert!(
        matches!(&v, Verdict::NotAllowed { why } if why.contains("criterion 1: name")),
        "{v:?}"
    );
    let now = Utc.with_ymd_and_hms(2026, 12, 6, 0, 0, 0).unwrap();
    let s = settings(State::Enabled, vec![both, providers(&[PUBLISHER])]);
    assert_eq!(judge(&img, CONSUMER, Some(&s), now), Verdict::Allowed);
    // No criterion at all: nothing of another account is allowed.
    let s = settings(State::Enabled, vec![]);
    assert_eq!(judge(&img, CONSUMER, Some(&s), now).code(), "not-allowed");
}

#[test]
fn own_images_disabled_audit_mode_and_nothing_read() {
    let now = Utc.with_ymd_and_hms(2026, 12, 6, 0, 0, 0).unwrap();
    let mut own = image();
    own.owner_id = CONSUMER.into();
    let amazon_only = settings(State::Enabled, vec![providers(&["amazon"])]);
    assert_eq!(
        judge(&own, CONSUMER, Some(&amazon_only), now),
        Verdict::Allowed,
        "own images are never restricted"
    );
    let off = settings(State::Disabled, vec![providers(&["amazon"])]);
    assert_eq!(judge(&image(), CONSUMER, Some(&off), now), Verdict::Allowed);
    let audit = settings(State::AuditMode, vec![providers(&["amazon"])]);
    assert_eq!(
        judge(&image(), CONSUMER, Some(&audit), now).code(),
        "audit-mode"
    );
    assert_eq!(judge(&image(), CONSUMER, None, now).code(), "unknown");
}

#[test]
fn the_declarative_policy_is_read_with_or_without_assign_operators() {
    let doc = r#"{"ec2_attributes": {"allowed_images_settings": {
        "state": {"@@assign": "enabled"},
        "image_criteria": {
            "criteria_1": {"allowed_image_providers": {"@@assign": ["amazon"]}},
            "criteria_2": {"image_watermarks": {"@@assign": ["444455556666:golden-*"]},
                           "deprecation_time_condition": {"maximum_days_since_deprecated": {"@@assign": 30}}}
        }}}}"#;
    let s = from_effective_policy(doc).unwrap().unwrap();
    assert_eq!(
        (s.state, s.source, s.criteria.len()),
        (State::Enabled, Source::DeclarativePolicy, 2)
    );
    assert_eq!(s.criteria[0].providers, Some(vec!["amazon".to_string()]));
    assert_eq!(s.criteria[1].max_days_since_deprecated, Some(30));
    let now = Utc.with_ymd_and_hms(2026, 12, 6, 0, 0, 0).unwrap();
    assert_eq!(
        judge(&image(), CONSUMER, Some(&s), now),
        Verdict::Allowed,
        "admitted by watermark"
    );
    let plain = r#"{"ec2_attributes": {"allowed_images_settings": {"state": "audit_mode",
        "image_criteria": {"criteria_1": {"image_providers": ["amazon"]}}}}}"#;
    let s = from_effective_policy(plain).unwrap().unwrap();
    assert_eq!(s.state, State::AuditMode);
    assert_eq!(
        judge(&image(), CONSUMER, Some(&s), now).code(),
        "audit-mode"
    );
    // The Organizations User Guide's own example appends the providers.
    let appended = r#"{"ec2_attributes": {"allowed_images_settings": {"state": {"@@assign": "enabled"},
        "image_criteria": {"criteria_1": {"allowed_image_providers": {"@@append": ["amazon"]}}}}}}"#;
    let s = from_effective_policy(appended).unwrap().unwrap();
    assert_eq!(s.criteria[0].providers, Some(vec!["amazon".to_string()]));
    assert_eq!(
        judge(&image(), CONSUMER, Some(&s), now).code(),
        "not-allowed"
    );
    // A policy without Allowed AMIs says nothing; a broken one is an error.
    assert_eq!(
        from_effective_policy(r#"{"ec2_attributes": {"image_block_public_access": {}}}"#).unwrap(),
        None
    );
    assert!(from_effective_policy("{").is_err());
}
