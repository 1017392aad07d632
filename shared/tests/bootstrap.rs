//! Start-up: where the policy comes from, and the account from the function's ARN.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use amishare::bootstrap::{account_of_function_arn, policy_from, Ready};

const POLICY: &str =
    r#"{"rules":[{"name":"a","match":{"name":"x-*"},"share_with":{"accounts":["111122223333"]}}]}"#;

#[test]
fn the_account_comes_from_the_function_arn() {
    assert_eq!(
        account_of_function_arn(
            "arn:aws:lambda:eu-west-1:123456789012:function:ami-share-on-image-available"
        ),
        Some("123456789012")
    );
    assert_eq!(
        account_of_function_arn("arn:aws-cn:lambda:cn-north-1:210987654321:function:f:live"),
        Some("210987654321")
    );
    assert_eq!(
        account_of_function_arn("arn:aws:iam::123456789012:role/x"),
        None
    );
    assert_eq!(account_of_function_arn("not an arn"), None);
    assert_eq!(account_of_function_arn(""), None);
}

#[test]
fn ready_takes_the_account_from_the_first_event_once() {
    let fake = amishare_testkit::FakeAws::new();
    let ready = Ready::new(fake, amishare::Policy::from_json(POLICY).unwrap());
    let err = ready.deps("").err().unwrap();
    assert!(err.to_string().contains("AMI_SHARE_ACCOUNT_ID"), "{err}");
    let d = ready
        .deps("arn:aws:lambda:us-east-1:123456789012:function:f")
        .unwrap();
    assert_eq!(d.account_id, "123456789012");
    // later events reuse it
    let again = ready.deps("").unwrap();
    assert_eq!(again.account_id, "123456789012");
}

#[test]
fn a_large_policy_is_read_from_its_file() {
    let dir = std::env::temp_dir().join(format!("ami-share-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // 50 rules with OU ARNs: about 20 KB, far over Lambda's 4 KB of environment
    let rules: Vec<String> = (0..50)
        .map(|i| {
            format!(
                r#"{{"name":"rule-{i:02}","match":{{"name":"golden-{i:02}-*","tags":{{"Team":"team-{i:02}"}}}},"share_with":{{"accounts":["1111222233{i:02}"],"organizational_units":["arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-{i:08}","arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-cd34-{i:08}","arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ef56-{i:08}"]}},"copy_to":[{{"region":"us-west-2"}},{{"region":"eu-west-1"}}]}}"#
            )
        })
        .collect();
    let text = format!(r#"{{"rules":[{}]}}"#, rules.join(","));
    assert!(text.len() > 20_000, "{}", text.len());
    let path = dir.join("policy.json");
    std::fs::write(&path, &text).unwrap();
    let p = policy_from(None, Some(path.display().to_string())).unwrap();
    assert_eq!(p.rules.len(), 50);

    // a bad file is refused naming the file and every problem
    std::fs::write(
        &path,
        text.replace("\"rule-07\"", "\"rule-06\"")
            .replace("111122223312", "12"),
    )
    .unwrap();
    let err = policy_from(None, Some(path.display().to_string()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("the policy file"), "{err}");
    assert!(
        err.contains("rules[7].name") && err.contains("rules[12].share_with.accounts[0]"),
        "{err}"
    );

    let missing = policy_from(None, Some(dir.join("nope.json").display().to_string()))
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("AMI_SHARE_POLICY_FILE") && missing.contains("nope.json"),
        "{missing}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn exactly_one_policy_source() {
    let both = policy_from(
        Some(POLICY.into()),
        Some("/opt/ami-share/policy.json".into()),
    )
    .unwrap_err()
    .to_string();
    assert!(both.contains("both"), "{both}");
    let none = policy_from(None, None).unwrap_err().to_string();
    assert!(
        none.contains("AMI_SHARE_POLICY") && none.contains("AMI_SHARE_POLICY_FILE"),
        "{none}"
    );
    assert_eq!(
        policy_from(Some(POLICY.into()), None).unwrap().rules.len(),
        1
    );
}

#[test]
fn the_event_concurrency_bound_divides_the_rates_and_the_grants_in_flight() {
    use amishare::bootstrap::{event_concurrency, event_settings};
    assert_eq!(
        event_concurrency(None).unwrap(),
        1,
        "a local run: one process"
    );
    assert_eq!(event_concurrency(Some("4")).unwrap(), 4);
    for bad in ["0", "-1", "two", "1001"] {
        let e = event_concurrency(Some(bad)).unwrap_err().to_string();
        assert!(e.contains("AMI_SHARE_EVENT_CONCURRENCY"), "{e}");
        assert!(e.contains("EventConcurrency"), "{e}");
    }
    // KMS's 50 CreateGrant a second, shared by the invocations that may run at once.
    assert_eq!(event_settings(1).grant_concurrency, 50);
    assert_eq!(event_settings(4).grant_concurrency, 12);
    assert_eq!(event_settings(100).grant_concurrency, 1);
}

#[test]
fn the_target_role_is_a_name_not_an_arn() {
    use amishare::bootstrap::target_role_name;
    assert_eq!(target_role_name(None).unwrap(), None);
    assert_eq!(
        target_role_name(Some("ami-share-target".into()))
            .unwrap()
            .as_deref(),
        Some("ami-share-target")
    );
    let e = target_role_name(Some("arn:aws:iam::111122223333:role/x".into()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("AMI_SHARE_TARGET_ROLE_NAME") && e.contains("not an ARN"),
        "{e}"
    );
}
