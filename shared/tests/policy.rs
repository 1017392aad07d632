//! Policy parsing and validation: every rule of the issue, with the exact message.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use amishare::config::{parse_key_ref, parse_org_arn, parse_ou_arn, SweepMode};
use amishare::{Error, Policy};

const EXAMPLE: &str = r#"{
  "rules": [
    {
      "name": "golden",
      "match": { "name": "golden-*", "tags": { "Share": "org" } },
      "share_with": {
        "accounts": ["111122223333"],
        "organizations": ["arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5"],
        "organizational_units": ["arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456"],
        "public": false
      },
      "share_snapshots": true,
      "grant_kms": true,
      "copy_to": [ { "region": "us-west-2", "kms_key_id": "arn:aws:kms:us-west-2:123456789012:alias/ami-share" }, { "region": "eu-west-1" } ]
    }
  ],
  "allow_public": false,
  "reencrypt_with": { "us-east-1": "arn:aws:kms:us-east-1:123456789012:alias/ami-share" },
  "sweeper": { "mode": "report", "min_age_days": 7, "grace_days": 7, "prune_unlisted_shares": false }
}"#;

fn problems(json: &str) -> String {
    match Policy::from_json(json) {
        Err(Error::Config(msg)) => msg,
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

fn with_rule(rule: &str) -> String {
    format!(r#"{{"rules": [{rule}]}}"#)
}

#[test]
fn the_issue_example_parses_with_its_values() {
    let p = Policy::from_json(EXAMPLE).unwrap();
    assert_eq!(p.rules.len(), 1);
    let r = &p.rules[0];
    assert_eq!(r.name, "golden");
    assert_eq!(r.matcher.name.as_deref(), Some("golden-*"));
    assert_eq!(r.share_with.organizational_units.len(), 1);
    assert_eq!(r.copy_to.len(), 2);
    assert_eq!(r.copy_to[1].kms_key_id, None);
    assert_eq!(p.sweeper.mode, SweepMode::Report);
    assert_eq!(p.sweeper.max_deletions, 100);
}

#[test]
fn share_snapshots_and_grant_kms_default_to_true() {
    let p = Policy::from_json(&with_rule(
        r#"{"name":"a","match":{"name":"x-*"},"share_with":{"accounts":["111122223333"]}}"#,
    ))
    .unwrap();
    assert!(p.rules[0].share_snapshots);
    assert!(p.rules[0].grant_kms);
    assert!(p.rules[0].copy_to.is_empty());
}

#[test]
fn kms_access_defaults_to_grants_and_a_rule_overrides_the_policy() {
    use amishare::config::KmsAccess;
    let p = Policy::from_json(&with_rule(
        r#"{"name":"a","match":{"name":"x-*"},"share_with":{"accounts":["111122223333"]}}"#,
    ))
    .unwrap();
    assert_eq!(p.kms_access, KmsAccess::Grants);
    assert_eq!(p.rules[0].kms_access_or(p.kms_access), KmsAccess::Grants);
    let p = Policy::from_json(
        r#"{"kms_access":"key_policy","rules":[
            {"name":"a","match":{"name":"x-*"},"share_with":{"accounts":["111122223333"]}},
            {"name":"b","match":{"name":"y-*"},"share_with":{"accounts":["111122223333"]},"kms_access":"grants"}]}"#,
    )
    .unwrap();
    assert_eq!(p.rules[0].kms_access_or(p.kms_access), KmsAccess::KeyPolicy);
    assert_eq!(p.rules[1].kms_access_or(p.kms_access), KmsAccess::Grants);
    let msg = problems(&with_rule(
        r#"{"name":"a","match":{"name":"x"},"share_with":{"accounts":["111122223333"]},"grant_kms":false,"kms_access":"key_policy"}"#,
    ));
    assert!(msg.contains("rules[0].kms_access: has no effect"), "{msg}");
    let msg = problems(r#"{"kms_access":"policy","rules":[]}"#);
    assert!(msg.contains("kms_access"), "{msg}");
}

#[test]
fn events_share_is_a_share() {
    let p = Policy::from_json(r#"{"rules":[]}"#).unwrap();
    assert_eq!(p.rate_limits.events_share, 0.8);
    let msg = problems(r#"{"rate_limits":{"events_share":1.5},"rules":[]}"#);
    assert!(
        msg.contains("rate_limits.events_share: 1.5 is not a share"),
        "{msg}"
    );
}

#[test]
fn bad_account_id_is_reported_with_its_json_path() {
    let msg = problems(&with_rule(
        r#"{"name":"a","match":{"name":"x"},"share_with":{"accounts":["111122223333","12345"]}}"#,
    ));
    assert!(
        msg.contains(r#"rules[0].share_with.accounts[1]: "12345" is not a 12-digit account id"#),
        "{msg}"
    );
}

#[test]
fn every_problem_is_listed_in_one_message() {
    let msg = problems(
        r#"{"rules": [
            {"name":"dup","match":{},"share_with":{"accounts":["1"],"organizations":["o-a1b2c3d4e5"],
              "organizational_units":["ou-ab12-cdef3456"],"public":true},
             "copy_to":[{"region":"mars-1"},{"region":"us-west-2","kms_key_id":"arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"}]},
            {"name":"dup","match":{"name":"[x"},"share_with":{"accounts":["111122223333"]},"colour":"red"}
          ],
          "reencrypt_with": {"us-east-1": "not-a-key"},
          "sweeper": {"max_deletions": 0},
          "extra": 1}"#,
    );
    let expected = [
        "extra: unknown field",
        "rules[0].match: is empty, which would share every image",
        "rules[0].share_with.accounts[0]: \"1\" is not a 12-digit account id",
        "rules[0].share_with.organizations[0]: \"o-a1b2c3d4e5\" is not an organization ARN",
        "rules[0].share_with.organizational_units[0]: \"ou-ab12-cdef3456\" is not an OU ARN",
        "rules[0].share_with.public: public sharing is refused unless \"allow_public\": true",
        "rules[0].copy_to[0].region: \"mars-1\" is not a Region code",
        "rules[0].copy_to[1].kms_key_id: \"arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab\" is in Region eu-west-1 but is used for us-west-2",
        "rules[1].colour: unknown field",
        "rules[1].match.name: \"[x\" is not a valid glob",
        "rules[1].name: \"dup\" is used by an earlier rule",
        "reencrypt_with.us-east-1: \"not-a-key\" is not a KMS key id",
        "sweeper.max_deletions: must be at least 1",
    ];
    for e in expected {
        assert!(msg.contains(e), "missing {e:?} in:\n{msg}");
    }
    assert!(
        msg.starts_with("AMI_SHARE_POLICY has 13 problems:"),
        "{msg}"
    );
}

#[test]
fn empty_match_is_refused_but_explicit_all_is_allowed() {
    let msg = problems(&with_rule(
        r#"{"name":"a","match":{},"share_with":{"accounts":["111122223333"]}}"#,
    ));
    assert!(msg.contains(r#"rules[0].match: is empty, which would share every image; give "name" and/or "tags", or say "all": true explicitly"#), "{msg}");
    Policy::from_json(&with_rule(
        r#"{"name":"a","match":{"all":true},"share_with":{"accounts":["111122223333"]}}"#,
    ))
    .unwrap();
    let msg = problems(&with_rule(
        r#"{"name":"a","match":{"all":true,"name":"x"},"share_with":{"accounts":["111122223333"]}}"#,
    ));
    assert!(
        msg.contains(r#"rules[0].match: "all": true cannot be combined with "name" or "tags""#),
        "{msg}"
    );
}

#[test]
fn public_needs_allow_public_at_the_top() {
    let rule = r#"{"name":"pub","match":{"name":"x"},"share_with":{"public":true}}"#;
    let msg = problems(&with_rule(rule));
    assert!(msg.contains(r#"rules[0].share_with.public: public sharing is refused unless "allow_public": true is set at the top of the policy"#));
    Policy::from_json(&format!(r#"{{"allow_public": true, "rules": [{rule}]}}"#)).unwrap();
}

#[test]
fn a_rule_that_would_do_nothing_is_refused() {
    let msg = problems(&with_rule(r#"{"name":"a","match":{"name":"x"}}"#));
    assert!(msg.contains("rules[0].share_with: names no account, organization, OU or public, and the rule has no copy_to"), "{msg}");
    // copy_to alone is a valid rule
    Policy::from_json(&with_rule(
        r#"{"name":"a","match":{"name":"x"},"copy_to":[{"region":"eu-west-1"}]}"#,
    ))
    .unwrap();
}

#[test]
fn wrong_types_name_the_path() {
    let msg = problems(
        r#"{"rules":[{"name":"a","match":{"name":"x"},"share_with":{"accounts":"111122223333"}}]}"#,
    );
    assert!(
        msg.contains("rules[0].share_with.accounts: invalid type: string"),
        "{msg}"
    );
    let msg = problems(r#"{"sweeper":{"mode":"purge"}}"#);
    assert!(
        msg.contains("sweeper.mode: unknown variant `purge`"),
        "{msg}"
    );
    let msg = problems("not json");
    assert!(
        msg.contains("policy: expected ident at line 1 column 2"),
        "{msg}"
    );
}

#[test]
fn duplicate_copy_regions_in_a_rule_are_refused() {
    let msg = problems(&with_rule(
        r#"{"name":"a","match":{"name":"x"},"copy_to":[{"region":"eu-west-1"},{"region":"eu-west-1"}]}"#,
    ));
    assert!(
        msg.contains(r#"rules[0].copy_to[1].region: "eu-west-1" is listed twice in this rule"#),
        "{msg}"
    );
}

#[test]
fn rule_names_are_restricted_to_tag_safe_characters() {
    let msg = problems(&with_rule(
        r#"{"name":"a,b","match":{"name":"x"},"share_with":{"accounts":["111122223333"]}}"#,
    ));
    assert!(
        msg.contains(r#"rules[0].name: "a,b" is not a valid rule name"#),
        "{msg}"
    );
}

#[test]
fn arn_and_key_forms() {
    // (input, valid?)
    let orgs = [
        (
            "arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5",
            true,
        ),
        (
            "arn:aws-us-gov:organizations::123456789012:organization/o-a1b2c3d4e5",
            true,
        ),
        (
            "arn:aws:organizations::123456789012:organization/o-A1",
            false,
        ),
        (
            "arn:aws:organizations:us-east-1:123456789012:organization/o-a1b2c3d4e5",
            false,
        ),
        ("o-a1b2c3d4e5", false),
        (
            "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456",
            false,
        ),
    ];
    for (arn, ok) in orgs {
        assert_eq!(parse_org_arn(arn).is_some(), ok, "{arn}");
    }
    let ous = [
        (
            "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456",
            true,
        ),
        (
            "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12",
            false,
        ),
        (
            "arn:aws:organizations::123456789012:ou/ou-ab12-cdef3456",
            false,
        ),
        ("ou-ab12-cdef3456", false),
    ];
    for (arn, ok) in ous {
        assert_eq!(parse_ou_arn(arn).is_some(), ok, "{arn}");
    }
    assert_eq!(
        parse_ou_arn("arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456")
            .map(|x| x.1),
        Some("ou-ab12-cdef3456")
    );
    let keys = [
        ("1234abcd-12ab-34cd-56ef-1234567890ab", true),
        ("mrk-1234abcd12ab34cd56ef1234567890ab", true),
        (
            "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            true,
        ),
        ("alias/ami-share", true),
        ("arn:aws:kms:us-east-1:123456789012:alias/ami-share", true),
        ("alias/aws/ebs", false),
        ("arn:aws:kms:us-east-1:123456789012:alias/aws/ebs", false),
        ("1234", false),
        ("arn:aws:kms:us-east-1:123456789012:key/nope", false),
    ];
    for (k, ok) in keys {
        assert_eq!(parse_key_ref(k).is_some(), ok, "{k}");
    }
}

#[test]
fn region_codes() {
    use amishare::config::is_region;
    for r in [
        "us-east-1",
        "eu-central-2",
        "us-gov-west-1",
        "ap-southeast-4",
        "cn-north-1",
        "il-central-1",
    ] {
        assert!(is_region(r), "{r}");
    }
    for r in [
        "us-east",
        "US-EAST-1",
        "useast1",
        "mars-1",
        "us-east-1a",
        "",
    ] {
        assert!(!is_region(r), "{r}");
    }
}

#[test]
fn published_schema_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/policy.schema.json");
    let generated =
        serde_json::to_string_pretty(&amishare::config::policy_schema()).unwrap() + "\n";
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let published = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        published == generated,
        "docs/policy.schema.json is out of date; regenerate it with: UPDATE_SCHEMA=1 cargo test -p amishare --test policy published_schema_is_current"
    );
}

#[test]
fn schema_rejects_unknown_fields_and_names_every_documented_field() {
    let schema = amishare::config::policy_schema();
    let text = schema.to_string();
    assert!(
        !text.contains("\"unknown\""),
        "the catch-all field must not appear in the schema"
    );
    for field in [
        "rules",
        "allow_public",
        "reencrypt_with",
        "sweeper",
        "share_with",
        "organizational_units",
        "copy_to",
        "kms_key_id",
        "min_age_days",
        "grace_days",
        "prune_unlisted_shares",
        "max_deletions",
        "copy_into",
        "deprecate_superseded",
        "in_target_accounts",
    ] {
        assert!(
            text.contains(&format!("\"{field}\"")),
            "{field} missing from the schema"
        );
    }
    assert_eq!(
        schema["additionalProperties"],
        serde_json::Value::Bool(false),
        "{schema}"
    );
}

#[test]
fn example_policies_in_docs_are_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/examples");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            Policy::from_json(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 2, "expected example policies in docs/examples");
}

#[test]
fn publish_parameters_are_paths_unique_across_rules_and_need_principals() {
    let rule = |name: &str, param: &str, share: &str| {
        format!(
            r#"{{"name":"{name}","match":{{"name":"x-*"}},"share_with":{share},"publish":{{"parameter":"{param}"}}}}"#
        )
    };
    let acct = r#"{"accounts":["111122223333"]}"#;
    let p = Policy::from_json(&with_rule(&rule("a", "/golden/al2023/latest", acct))).unwrap();
    assert_eq!(
        p.rules[0].publish.as_ref().unwrap().parameter,
        "/golden/al2023/latest"
    );
    let msg = problems(&format!(
        r#"{{"rules":[{},{},{},{},{},{}]}}"#,
        rule("a", "golden/latest", acct),
        rule("b", "/golden/al 2023", acct),
        rule("c", "/aws/service/x", acct),
        rule("d", "/golden/latest", acct),
        rule("e", "/golden/latest", acct),
        rule("f", "/golden/pub", r#"{"public":true}"#),
    ));
    for want in [
        "rules[0].publish.parameter: \"golden/latest\" must be a path starting with '/'",
        "rules[1].publish.parameter: \"/golden/al 2023\" may hold only letters, digits",
        "rules[2].publish.parameter: \"/aws/service/x\" may not start with \"aws\" or \"ssm\"",
        "rules[4].publish.parameter: \"/golden/latest\" is published by rule \"d\" already",
        "rules[5].publish: the rule shares with no account, organization or OU",
    ] {
        assert!(msg.contains(want), "missing {want:?} in:\n{msg}");
    }
}

#[test]
fn the_event_bus_must_be_an_event_bus_arn() {
    let ok = r#"{"events":{"event_bus_arn":"arn:aws:events:us-east-1:444455556666:event-bus/org-images"}}"#;
    let p = Policy::from_json(ok).unwrap();
    assert!(p.events.event_bus_arn.is_some());
    let msg =
        problems(r#"{"events":{"event_bus_arn":"arn:aws:sns:us-east-1:444455556666:topic"}}"#);
    assert!(
        msg.contains("events.event_bus_arn: \"arn:aws:sns:us-east-1:444455556666:topic\" is not an event bus ARN"),
        "{msg}"
    );
    let msg = problems(r#"{"events":{"bus":"x"}}"#);
    assert!(msg.contains("events"), "{msg}");
}

#[test]
fn parameters_outside_the_deployments_prefix_are_named() {
    let p = Policy::from_json(&with_rule(
        r#"{"name":"a","match":{"name":"x-*"},"share_with":{"accounts":["111122223333"]},"publish":{"parameter":"/other/latest"}}"#,
    ))
    .unwrap();
    assert!(p.parameters_outside("/other/").is_empty());
    let out = p.parameters_outside("/golden/");
    assert_eq!(out.len(), 1);
    assert!(out[0].starts_with("rules[0].publish.parameter: \"/other/latest\" is not under the deployment's parameter path prefix \"/golden/\""), "{}", out[0]);
}

#[test]
fn retire_needs_a_selection_and_a_stage_and_defaults_to_report() {
    use amishare::config::RetireMode;
    let rule = |retire: &str| {
        with_rule(&format!(
            r#"{{"name":"a","match":{{"name":"x-*"}},"share_with":{{"accounts":["111122223333"]}},"retire":{retire}}}"#
        ))
    };
    let p = Policy::from_json(&rule(r#"{"keep":3,"disable_after_days":14}"#)).unwrap();
    let r = p.rules[0].retire.as_ref().unwrap();
    assert_eq!(r.mode, RetireMode::Report);
    assert!(r.deprecate);
    assert_eq!(r.protect_if_launched_within_days, 30);
    assert_eq!(p.sweeper.max_retirements, 20);
    for (retire, want) in [
        (
            r#"{}"#,
            "rules[0].retire: names neither \"keep\" nor \"max_age_days\"",
        ),
        (r#"{"keep":0}"#, "rules[0].retire.keep: must be at least 1"),
        (
            r#"{"keep":2,"deprecate":false}"#,
            "rules[0].retire: has no stage",
        ),
        (r#"{"keep":2,"mode":"delete"}"#, "rules[0].retire.mode"),
        (r#"{"keep":2,"after":3}"#, "after"),
    ] {
        let msg = problems(&rule(retire));
        assert!(msg.contains(want), "{retire}: missing {want:?} in:\n{msg}");
    }
}

#[test]
fn copy_into_is_checked_path_by_path() {
    let ok = Policy::from_json(&with_rule(
        r#"{"name": "r", "match": {"name": "a-*"},
            "copy_into": {"organizational_units": ["arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456"],
                "regions": [{"region": "eu-west-1", "kms_key_id": "alias/consumer-ami"}, {"region": "us-east-1"}]},
            "publish": {"parameter": "/golden/latest", "in_target_accounts": true}}"#,
    ))
    .unwrap();
    let ci = ok.rules[0].copy_into.as_ref().unwrap();
    assert!(!ci.deprecate_superseded, "opt-in");
    assert_eq!(
        ci.region_keys().collect::<Vec<_>>(),
        [
            ("eu-west-1", Some("alias/consumer-ami")),
            ("us-east-1", None)
        ]
    );

    let msg = problems(&with_rule(
        r#"{"name": "r", "match": {"name": "a-*"},
            "copy_into": {"accounts": ["12345"], "regions": [{"region": "eu-west-1"}, {"region": "eu-west-1"}], "color": 1}}"#,
    ));
    assert!(msg.contains("rules[0].copy_into.accounts[0]"), "{msg}");
    assert!(
        msg.contains("rules[0].copy_into.regions[1].region"),
        "{msg}"
    );
    assert!(msg.contains("rules[0].copy_into.color"), "{msg}");

    let msg = problems(&with_rule(
        r#"{"name": "r", "match": {"name": "a-*"}, "copy_into": {"regions": []}}"#,
    ));
    assert!(msg.contains("names no account and no OU"), "{msg}");
    assert!(msg.contains("rules[0].copy_into.regions"), "{msg}");

    // One account's key id cannot name the key of several accounts.
    let msg = problems(&with_rule(
        r#"{"name": "r", "match": {"name": "a-*"},
            "copy_into": {"accounts": ["111122223333", "444455556666"],
                "regions": [{"region": "eu-west-1", "kms_key_id": "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"}]}}"#,
    ));
    assert!(
        msg.contains("rules[0].copy_into.regions[0].kms_key_id") && msg.contains("alias"),
        "{msg}"
    );
    Policy::from_json(&with_rule(
        r#"{"name": "r", "match": {"name": "a-*"},
            "copy_into": {"accounts": ["111122223333"],
                "regions": [{"region": "eu-west-1", "kms_key_id": "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"}]}}"#,
    ))
    .unwrap();

    // A target parameter needs copies to publish.
    let msg = problems(&with_rule(
        r#"{"name": "r", "match": {"name": "a-*"}, "share_with": {"accounts": ["111122223333"]},
            "publish": {"parameter": "/golden/latest", "in_target_accounts": true}}"#,
    ));
    assert!(msg.contains("rules[0].publish.in_target_accounts"), "{msg}");
}

/// Issue 27 (1): every problem of a policy in one message, type errors and checks alike (the
/// same message `ami-share check` prints).
#[test]
fn every_problem_of_every_kind_in_one_message() {
    let text = r#"{"rules":[
        {"name":"golden","match":{"name":"golden-*"},"share_with":{"accounts":["111122223333"]},
         "retire":{"keep":-1,"mode":"sometimes"}},
        {"name":"golden","match":{"name":"x-*"},"share_with":{"accounts":["1234"]}}],
        "sweeper":{"grace_days":"seven"}}"#;
    let msg = Policy::from_json(text).unwrap_err().to_string();
    for want in [
        "rules[0].retire.keep: invalid value: integer `-1`",
        "rules[0].retire.mode: unknown variant `sometimes`",
        "sweeper.grace_days: invalid type: string \"seven\"",
        "rules[1].name: \"golden\" is used by an earlier rule",
        "rules[1].share_with.accounts[0]",
    ] {
        assert!(msg.contains(want), "{want:?} missing from:\n{msg}");
    }
    assert!(msg.contains("has 5 problems"), "{msg}");
    // Not an artefact of leaving the bad values out: retire's keep was given.
    assert!(!msg.contains("names neither"), "{msg}");
    // A required value of the wrong type is reported once, not again as missing.
    let msg = Policy::from_json(
        r#"{"rules":[{"name":7,"match":{"all":true},"share_with":{"accounts":["111122223333"]}}]}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("rules[0].name: invalid type"), "{msg}");
    assert!(!msg.contains("missing field"), "{msg}");
}

/// Issue 26: time-based copies (`completion_minutes`, 15 to 2,880 in steps of 15) and the copy
/// cap (`rate_limits.copies_in_flight`, 1 to 1,000) are refused with their JSON path.
#[test]
fn completion_minutes_and_copies_in_flight_are_validated_with_their_path() {
    let ok = Policy::from_json(
        r#"{"rate_limits": {"copies_in_flight": 10}, "rules": [{"name":"a","match":{"name":"x-*"},
            "copy_to": [{"region": "us-west-2", "completion_minutes": 120}],
            "copy_into": {"accounts": ["111122223333"],
                          "regions": [{"region": "eu-west-1", "completion_minutes": 2880}]}}]}"#,
    )
    .unwrap();
    assert_eq!(ok.rules[0].copy_to[0].completion_minutes, Some(120));
    assert_eq!(ok.rate_limits.copies_in_flight, 10);
    assert_eq!(
        Policy::from_json(&with_rule(
            r#"{"name":"b","match":{"name":"x-*"},"copy_to":[{"region":"us-west-2"}]}"#
        ))
        .unwrap()
        .rate_limits
        .copies_in_flight,
        20
    );
    let msg = problems(
        r#"{"rate_limits": {"copies_in_flight": 0}, "rules": [{"name":"a","match":{"name":"x-*"},
            "copy_to": [{"region": "us-west-2", "completion_minutes": 20},
                        {"region": "eu-west-1", "completion_minutes": 3000}],
            "copy_into": {"accounts": ["111122223333"],
                          "regions": [{"region": "eu-west-1", "completion_minutes": 10}]}}]}"#,
    );
    for path in [
        "rules[0].copy_to[0].completion_minutes",
        "rules[0].copy_to[1].completion_minutes",
        "rules[0].copy_into.regions[0].completion_minutes",
        "rate_limits.copies_in_flight",
    ] {
        assert!(msg.contains(path), "{path} in {msg}");
    }
    assert!(msg.contains("steps of 15"), "{msg}");
}
