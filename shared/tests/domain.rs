//! Pure decisions, table-driven: matching, classification, names and tokens, planning.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::collections::BTreeMap;

use amishare::names::*;
use amishare::plan::{batches, SharePlan};
use amishare::plan::{classify, matching_rules, ImageKind, SkipReason};
use amishare::ports::{Image, ImageState};
use amishare::Policy;

fn image(name: &str, tags: &[(&str, &str)]) -> Image {
    Image {
        id: "ami-0abcdef1234567890".into(),
        region: "us-east-1".into(),
        name: name.into(),
        owner_id: "123456789012".into(),
        state: ImageState::Available,
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        volumes: vec![],
        source_image_id: None,
        source_image_region: None,
        deprecation_time: None,
        creation_date: None,
        last_launched_time: None,
        deregistration_protection: None,
        verified_source_created: None,
        watermarks: Vec::new(),
    }
}

fn policy(json: &str) -> Policy {
    Policy::from_json(json).unwrap()
}

#[test]
fn match_conditions_all_must_hold() {
    let p = policy(
        r#"{"rules":[{"name":"g","match":{"name":"golden-*","tags":{"Share":"org","Team":"*"}},"share_with":{"accounts":["111122223333"]}}]}"#,
    );
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);
    let cases: [Case; 6] = [
        ("golden-2026", &[("Share", "org"), ("Team", "x")], true),
        ("golden-2026", &[("Share", "org"), ("Team", "")], true), // "*": present, any value
        ("golden-2026", &[("Share", "org")], false),              // Team missing
        ("golden-2026", &[("Share", "ORG"), ("Team", "x")], false), // values are exact
        ("silver-2026", &[("Share", "org"), ("Team", "x")], false),
        ("golden/2026/x", &[("Share", "org"), ("Team", "x")], false),
    ];
    for (name, tags, expected) in cases {
        let got = matching_rules(&p, &image(name, tags), "123456789012").is_ok();
        assert_eq!(got, expected, "{name} {tags:?}");
    }
}

#[test]
fn glob_star_crosses_slashes_in_names() {
    let p = policy(
        r#"{"rules":[{"name":"g","match":{"name":"team/*"},"share_with":{"accounts":["111122223333"]}}]}"#,
    );
    assert!(matching_rules(&p, &image("team/a/b", &[]), "123456789012").is_ok());
}

#[test]
fn skip_reasons() {
    let p = policy(
        r#"{"rules":[{"name":"g","match":{"all":true},"share_with":{"accounts":["111122223333"]}}]}"#,
    );
    let mut other = image("x", &[]);
    other.owner_id = "999999999999".into();
    assert_eq!(
        matching_rules(&p, &other, "123456789012").unwrap_err(),
        SkipReason::NotOwned {
            owner: "999999999999".into()
        }
    );
    let mut pending = image("x", &[]);
    pending.state = ImageState::Pending;
    assert_eq!(
        matching_rules(&p, &pending, "123456789012").unwrap_err(),
        SkipReason::NotAvailable {
            state: "pending".into()
        }
    );
    for v in ["true", "TRUE", "True"] {
        assert_eq!(
            matching_rules(&p, &image("x", &[("ami-share:skip", v)]), "123456789012").unwrap_err(),
            SkipReason::SkipTag
        );
    }
    assert!(matching_rules(
        &p,
        &image("x", &[("ami-share:skip", "false")]),
        "123456789012"
    )
    .is_ok());
    let none = policy(
        r#"{"rules":[{"name":"g","match":{"name":"nope"},"share_with":{"accounts":["111122223333"]}}]}"#,
    );
    assert_eq!(
        matching_rules(&none, &image("x", &[]), "123456789012").unwrap_err(),
        SkipReason::NoRuleMatches
    );
}

#[test]
fn several_rules_are_united() {
    let p = policy(
        r#"{"rules":[
        {"name":"a","match":{"name":"g-*"},"share_with":{"accounts":["111111111111"]},"copy_to":[{"region":"us-west-2","kms_key_id":"alias/k"}]},
        {"name":"b","match":{"tags":{"T":"*"}},"share_with":{"accounts":["222222222222"],"organizational_units":["arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456"]},
         "share_snapshots":false,"grant_kms":false,"copy_to":[{"region":"us-west-2"},{"region":"eu-west-1"}]}
    ]}"#,
    );
    let img = image("g-1", &[("T", "1")]);
    let rules = matching_rules(&p, &img, "123456789012").unwrap();
    let plan = SharePlan::from_rules(p.kms_access, rules);
    assert_eq!(plan.rules, ["a", "b"]);
    assert_eq!(
        plan.launch.accounts.iter().collect::<Vec<_>>(),
        ["111111111111", "222222222222"]
    );
    assert_eq!(plan.launch.organizational_units.len(), 1);
    // snapshot and KMS targets come only from rules that ask for them
    assert_eq!(
        plan.snapshots.accounts.iter().collect::<Vec<_>>(),
        ["111111111111"]
    );
    assert!(plan.snapshots.organizational_units.is_empty());
    assert_eq!(
        plan.kms.accounts.iter().collect::<Vec<_>>(),
        ["111111111111"]
    );
    assert_eq!(
        plan.copies.keys().collect::<Vec<_>>(),
        ["eu-west-1", "us-west-2"]
    );
    assert_eq!(
        plan.copies["us-west-2"].kms_key_id.as_deref(),
        Some("alias/k")
    );
    assert_eq!(plan.copies["us-west-2"].rules, ["a", "b"]);
    assert!(plan.key_conflicts.is_empty());
}

#[test]
fn image_tags_never_widen_the_policy() {
    let p = policy(
        r#"{"rules":[{"name":"a","match":{"name":"g-*"},"share_with":{"accounts":["111111111111"]}}]}"#,
    );
    let img = image(
        "g-1",
        &[
            ("ami-share:accounts", "999999999999"),
            ("share_with", "public"),
        ],
    );
    let plan = SharePlan::from_rules(
        p.kms_access,
        matching_rules(&p, &img, "123456789012").unwrap(),
    );
    assert_eq!(plan.launch.accounts.len(), 1);
    assert!(!plan.launch.public);
}

#[test]
fn conflicting_copy_keys_are_recorded() {
    let p = policy(
        r#"{"rules":[
        {"name":"a","match":{"name":"g-*"},"copy_to":[{"region":"us-west-2","kms_key_id":"alias/one"}]},
        {"name":"b","match":{"name":"g-*"},"copy_to":[{"region":"us-west-2","kms_key_id":"alias/two"}]}]}"#,
    );
    let plan = SharePlan::from_rules(
        p.kms_access,
        matching_rules(&p, &image("g-1", &[]), "123456789012").unwrap(),
    );
    assert_eq!(
        plan.key_conflicts,
        [(
            "us-west-2".to_string(),
            "b".to_string(),
            "alias/two".to_string()
        )]
    );
}

#[test]
fn batches_of_at_most_500() {
    let accounts = (0..1201).map(|i| format!("{i:012}")).collect();
    let b = batches(&accounts, 500);
    assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [500, 500, 201]);
    assert!(batches(&Default::default(), 500).is_empty());
}

#[test]
fn copy_names_are_deterministic_bounded_and_parse_back() {
    let n = copy_name(
        "golden-2026.11 build#7",
        "us-east-1",
        "ami-0abcdef1234567890",
        CopyKind::RegionCopy,
        0,
    );
    assert_eq!(
        n,
        "golden-2026.11 build-7--copy-of-us-east-1-ami-0abcdef1234567890"
    );
    let p = provenance_from_name(&n).unwrap();
    assert_eq!(
        (p.source_region.as_str(), p.source_image_id.as_str(), p.kind),
        ("us-east-1", "ami-0abcdef1234567890", CopyKind::RegionCopy)
    );
    let long = copy_name(
        &"x".repeat(300),
        "ap-southeast-4",
        "ami-0abcdef1234567890",
        CopyKind::Reencrypt,
        3,
    );
    assert_eq!(long.len(), 128);
    let p = provenance_from_name(&long).unwrap();
    assert_eq!(
        (p.source_region.as_str(), p.source_image_id.as_str(), p.kind),
        (
            "ap-southeast-4",
            "ami-0abcdef1234567890",
            CopyKind::Reencrypt
        )
    );
    assert!(provenance_from_name("golden-2026").is_none());
    assert!(provenance_from_name("x--copy-of-nowhere-ami-zz").is_none());
}

#[test]
fn client_tokens_are_deterministic_and_distinct() {
    let t = |r: &str, i: &str, d: &str, k: Option<&str>, a| copy_client_token(r, i, d, k, a);
    let base = t("us-east-1", "ami-1", "us-west-2", None, 0);
    assert_eq!(base, t("us-east-1", "ami-1", "us-west-2", None, 0));
    assert!(base.len() <= 64 && base.is_ascii());
    for other in [
        t("us-east-1", "ami-2", "us-west-2", None, 0),
        t("us-east-1", "ami-1", "eu-west-1", None, 0),
        t("us-east-1", "ami-1", "us-west-2", Some("alias/k"), 0),
        t("us-east-1", "ami-1", "us-west-2", None, 1),
    ] {
        assert_ne!(base, other);
    }
}

#[test]
fn classification_of_every_kind_of_image() {
    let fresh = image("golden-1", &[]);
    assert_eq!(
        classify(&fresh),
        ImageKind::Source {
            is_foreign_copy: false
        }
    );

    let mut ours = image("golden-1--copy-of-us-east-1-ami-0abcdef1234567890", &[]);
    ours.region = "us-west-2".into();
    ours.source_image_id = Some("ami-0abcdef1234567890".into());
    ours.source_image_region = Some("us-east-1".into());
    ours.tags = BTreeMap::from([
        (
            SOURCE_IMAGE_TAG.to_string(),
            "us-east-1/ami-0abcdef1234567890".to_string(),
        ),
        (SOURCE_RULE_TAG.to_string(), "golden,extra".to_string()),
    ]);
    match classify(&ours) {
        ImageKind::OurCopy(p) => assert_eq!(p.rules, ["golden", "extra"]),
        other => panic!("{other:?}"),
    }

    let mut tags_dropped = ours.clone();
    tags_dropped.tags.clear();
    assert!(
        matches!(classify(&tags_dropped), ImageKind::OurCopy(p) if p.source_image_id == "ami-0abcdef1234567890" && p.rules.is_empty())
    );

    // Our tags or name without EC2's lineage behind them: forged, whatever they say.
    let mut no_lineage = ours.clone();
    no_lineage.source_image_id = None;
    no_lineage.source_image_region = None;
    assert!(
        matches!(classify(&no_lineage), ImageKind::Forged { ref why, .. } if why.contains("no source image")),
        "{:?}",
        classify(&no_lineage)
    );
    let mut other_lineage = ours.clone();
    other_lineage.source_image_id = Some("ami-0fffffffffffffff0".into());
    assert!(
        matches!(classify(&other_lineage), ImageKind::Forged { ref why, .. } if why.contains("ami-0fffffffffffffff0")),
        "{:?}",
        classify(&other_lineage)
    );
    let mut same_region = ours.clone();
    same_region.source_image_region = Some("us-west-2".into());
    same_region.tags.insert(
        SOURCE_IMAGE_TAG.to_string(),
        "us-west-2/ami-0abcdef1234567890".into(),
    );
    assert!(
        matches!(classify(&same_region), ImageKind::Forged { .. }),
        "a Region copy's source is in another Region: {:?}",
        classify(&same_region)
    );

    let mut packer_copy = image("golden-1", &[]);
    packer_copy.region = "us-west-2".into();
    packer_copy.source_image_id = Some("ami-0123".into());
    packer_copy.source_image_region = Some("us-east-1".into());
    assert_eq!(
        classify(&packer_copy),
        ImageKind::Source {
            is_foreign_copy: true
        }
    );

    let mut same_region_create = image("golden-1", &[]);
    same_region_create.source_image_id = Some("ami-0123".into());
    same_region_create.source_image_region = Some("us-east-1".into());
    assert_eq!(
        classify(&same_region_create),
        ImageKind::Source {
            is_foreign_copy: false
        }
    );

    let mut reenc = image("g--reenc-of-us-east-1-ami-0abcdef1234567890", &[]);
    reenc.id = "ami-0000000000000beef".into();
    assert!(matches!(classify(&reenc), ImageKind::Forged { .. }));
    reenc.source_image_id = Some("ami-0abcdef1234567890".into());
    reenc.source_image_region = Some("us-east-1".into());
    assert!(matches!(classify(&reenc), ImageKind::OurCopy(p) if p.kind == CopyKind::Reencrypt));
}

#[test]
fn grant_names_and_principals() {
    assert_eq!(grant_name("111122223333"), "ami-share-111122223333");
    assert_eq!(
        account_principal("111122223333"),
        "arn:aws:iam::111122223333:root"
    );
    assert_eq!(
        account_of_principal("arn:aws:iam::111122223333:root"),
        Some("111122223333")
    );
    assert_eq!(
        account_of_principal("arn:aws:iam::111122223333:role/x"),
        None
    );
    // launching and copying need exactly these (aws-facts §4)
    for op in [
        "Decrypt",
        "DescribeKey",
        "CreateGrant",
        "ReEncryptFrom",
        "ReEncryptTo",
        "GenerateDataKeyWithoutPlaintext",
    ] {
        assert!(GRANT_OPERATIONS.contains(&op), "{op}");
    }
    assert!(!GRANT_OPERATIONS.contains(&"Encrypt"));
}

#[test]
fn copy_into_opens_a_source_to_its_targets_and_nothing_else() {
    const OU: &str = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456";
    let p = policy(&format!(
        r#"{{"kms_access": "key_policy", "rules": [{{"name": "r", "match": {{"name": "*"}},
            "share_with": {{"accounts": ["999988887777"]}}, "share_snapshots": false,
            "copy_into": {{"accounts": ["111122223333"], "organizational_units": ["{OU}"],
                          "regions": [{{"region": "eu-west-1"}}]}}}}]}}"#
    ));
    let plan = || SharePlan::from_rules(p.kms_access, p.rules.iter());
    let source = plan().for_source(true);
    assert_eq!(source.launch.accounts.len(), 2);
    assert!(source.launch.organizational_units.contains(OU));
    // share_snapshots: false is the rule's consumers' business; the targets still get the
    // snapshots, which a copy needs.
    assert_eq!(
        source.snapshots.accounts.iter().collect::<Vec<_>>(),
        ["111122223333"]
    );
    assert!(source.snapshots.organizational_units.contains(OU));
    // key_policy: the OU through the key policy, the plain account by grant.
    assert!(source.kms_policy.organizational_units.contains(OU));
    assert!(source.kms.accounts.contains("111122223333"));
    assert_eq!(source.into.len(), 1);

    // Any other image (a copy) is neither copied nor opened to the targets.
    let copy = plan().for_source(false);
    assert!(copy.into.is_empty() && copy.copies.is_empty());
    assert_eq!(
        copy.launch.accounts.iter().collect::<Vec<_>>(),
        ["999988887777"]
    );
    assert!(copy.launch.organizational_units.is_empty());
}

/// A copy of `source` in us-west-2 as the product makes it: lineage and provenance tags.
fn copy_of(source: &Image) -> Image {
    let mut c = image("golden-1--copy-of-us-east-1-ami-0abcdef1234567890", &[]);
    c.id = "ami-0000000000000c0py".into();
    c.region = "us-west-2".into();
    c.source_image_id = Some(source.id.clone());
    c.source_image_region = Some(source.region.clone());
    c.creation_date = Some("2026-12-02T00:00:00.000Z".into());
    c.tags.insert(
        SOURCE_IMAGE_TAG.into(),
        format!("{}/{}", source.region, source.id),
    );
    c
}

#[test]
fn a_copy_is_verified_against_its_source_never_its_tags() {
    use amishare::plan::{copy_rules, verify_copy};
    let p = policy(
        r#"{"rules":[
            {"name":"golden","match":{"name":"golden-*"},"share_with":{"accounts":["111122223333"]}},
            {"name":"wide","match":{"tags":{"Team":"other"}},"share_with":{"accounts":["444455556666"]}}]}"#,
    );
    let own = "123456789012";
    let mut source = image("golden-1", &[]);
    source.creation_date = Some("2026-12-01T00:00:00.000Z".into());
    let ImageKind::OurCopy(claim) = classify(&copy_of(&source)) else {
        panic!()
    };

    // Verified: the source's rules, the source's date.
    let mut copy = copy_of(&source);
    copy.tags.insert(SOURCE_RULE_TAG.into(), "wide".into());
    let rules = copy_rules(&p, &mut copy, &claim, Some(&source), own).unwrap();
    assert_eq!(
        rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["golden"]
    );
    assert_eq!(
        copy.verified_source_created.as_deref(),
        Some("2026-12-01T00:00:00.000Z")
    );

    // Table: what is read of the source decides.
    let mut foreign = source.clone();
    foreign.owner_id = "999999999999".into();
    let mut deregistered = source.clone();
    deregistered.state = ImageState::Deregistered;
    let mut disabled = source.clone();
    disabled.state = ImageState::Disabled;
    let mut unmatched = source.clone();
    unmatched.name = "silver-1".into();
    let mut skipped = source.clone();
    skipped.tags.insert("ami-share:skip".into(), "true".into());
    let cases: [(Option<&Image>, &str); 6] = [
        (None, "source-gone"),
        (Some(&deregistered), "source-gone"),
        (Some(&disabled), "source-gone"),
        (Some(&foreign), "forged-provenance"),
        (Some(&unmatched), "no-rule-matches"),
        (Some(&skipped), "skip-tag"),
    ];
    for (read, code) in cases {
        let mut copy = copy_of(&source);
        let got = copy_rules(&p, &mut copy, &claim, read, own).unwrap_err();
        assert_eq!(got.code(), code, "{read:?}");
    }
    // The copy's own skip tag is honoured.
    let mut copy = copy_of(&source);
    copy.tags.insert("ami-share:skip".into(), "true".into());
    assert_eq!(
        copy_rules(&p, &mut copy, &claim, Some(&source), own).unwrap_err(),
        SkipReason::SkipTag
    );
    // verify_copy alone: nothing is filled in when the check fails.
    let mut copy = copy_of(&source);
    assert!(verify_copy(&mut copy, &claim, Some(&foreign), own).is_err());
    assert_eq!(copy.verified_source_created, None);
}

#[test]
fn publication_order_reads_no_tag() {
    use amishare::publish::publication_order;
    let mut source = image(
        "golden-1",
        &[(SOURCE_CREATED_TAG, "2099-01-01T00:00:00.000Z")],
    );
    source.creation_date = Some("2026-12-01T00:00:00.000Z".into());
    assert_eq!(
        publication_order(&source),
        ("2026-12-01T00:00:00.000Z".to_string(), source.id.clone()),
        "a source's order is EC2's CreationDate"
    );
    let mut copy = copy_of(&source);
    copy.tags
        .insert(SOURCE_CREATED_TAG.into(), "2099-01-01T00:00:00.000Z".into());
    assert_eq!(
        publication_order(&copy),
        (String::new(), source.id.clone()),
        "an unverified copy is the oldest of all, whatever its tag says"
    );
    copy.verified_source_created = source.creation_date.clone();
    assert_eq!(
        publication_order(&copy),
        ("2026-12-01T00:00:00.000Z".to_string(), source.id.clone())
    );
    let mut forged = copy.clone();
    forged.source_image_id = None;
    assert_eq!(publication_order(&forged), (String::new(), String::new()));
}
