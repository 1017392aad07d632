//! The `ami-share` binary itself: its commands, arguments and exit codes (no AWS call).

// Test set-up and assertions: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn ami_share(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ami-share"))
        .args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap()
}

fn example(name: &str) -> String {
    format!("{}/../docs/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_accepts_a_valid_policy_and_refuses_a_bad_one_with_its_json_path() {
    let ok = ami_share(&["check", &example("minimal.json")]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("a valid policy"));

    let dir = std::env::temp_dir().join(format!("ami-share-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"rules": [{"name": "x", "match": {"name": 7}}]}"#).unwrap();
    let out = ami_share(&["check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rules[0]"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn usage_errors_exit_2_and_name_the_problem() {
    let none = ami_share(&["status"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("IMAGE_ID"));
    let both = ami_share(&["status", "ami-0123456789abcdef0", "--rule", "golden"]);
    assert_eq!(both.status.code(), Some(2));
    let unknown = ami_share(&["deploy"]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn a_policy_file_that_cannot_be_read_is_an_error_2_before_any_aws_call() {
    let out = ami_share(&[
        "plan",
        "--policy",
        "/nonexistent/policy.json",
        "--region",
        "us-east-1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/policy.json"));
}

#[test]
fn the_help_lists_every_command() {
    let out = ami_share(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["check", "event-bus", "install-plan", "status", "plan"] {
        assert!(text.contains(cmd), "{cmd}");
    }
}
