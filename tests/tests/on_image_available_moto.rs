//! The real on-image-available handler, over HTTP, against moto server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::collections::BTreeSet;

use amishare::aws::AwsPorts;
use amishare::deps::Deps;
use amishare::report::Outcome;
use amishare::Policy;
use integration_tests::moto::Moto;
use integration_tests::seed;

fn set(v: impl IntoIterator<Item = impl Into<String>>) -> BTreeSet<String> {
    v.into_iter().map(Into::into).collect()
}

#[tokio::test]
async fn golden_image_is_shared_with_accounts_ous_snapshots_and_keys_and_others_are_left_alone() {
    let moto = Moto::start().expect("moto");
    let config = moto.sdk_config("us-east-1").await;
    let org = seed::organization(&config).await;
    moto.add_org_member("111122223333", None);
    let key = seed::key(&config, "alias/ami-share").await;
    let (golden, golden_snap) = seed::image(&config, "golden-2026-11", &[("Share", "org")]).await;
    let (other, other_snap) = seed::image(&config, "scratch-1", &[]).await;
    moto.encrypt_snapshots("us-east-1", &[(&golden_snap, &key)]);

    let policy = Policy::from_json(&format!(
        r#"{{"rules":[{{"name":"golden","match":{{"name":"golden-*","tags":{{"Share":"org"}}}},
            "share_with":{{"accounts":["111122223333"],"organizational_units":["{}"]}}}}]}}"#,
        org.workloads_ou_arn
    ))
    .unwrap();
    let account = "123456789012"; // moto's account
    let deps = Deps::new(
        AwsPorts::new(config.clone(), None, amishare::aws::RateLimits::unlimited()).await,
        policy,
        account,
    );

    let s = on_image_available::handle(
        &deps,
        seed::ami_event("image-available.json", "us-east-1", &golden),
    )
    .await
    .unwrap();
    assert_eq!(s.outcome, Outcome::Shared, "{s:#?}");
    let s2 = on_image_available::handle(
        &deps,
        seed::ami_event("image-available.json", "us-east-1", &other),
    )
    .await
    .unwrap();
    assert_eq!(s2.outcome, Outcome::Skipped);
    // redelivery is harmless
    let s3 = on_image_available::handle(
        &deps,
        seed::ami_event("image-available.json", "us-east-1", &golden),
    )
    .await
    .unwrap();
    assert_eq!(s3.outcome, Outcome::Shared);

    // read back from moto
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let lp = ec2
        .describe_image_attribute()
        .image_id(&golden)
        .attribute(aws_sdk_ec2::types::ImageAttributeName::LaunchPermission)
        .send()
        .await
        .unwrap();
    let accounts = set(lp.launch_permissions().iter().filter_map(|p| p.user_id()));
    let ous = set(lp
        .launch_permissions()
        .iter()
        .filter_map(|p| p.organizational_unit_arn()));
    assert_eq!(accounts, set(["111122223333"]));
    assert_eq!(ous, set([org.workloads_ou_arn.clone()]));

    let mut expected = set(org.workloads_active());
    expected.insert("111122223333".into());
    assert!(!expected.contains(&org.suspended_account));
    let perms = |snap: String| {
        let ec2 = ec2.clone();
        async move {
            let out = ec2
                .describe_snapshot_attribute()
                .snapshot_id(snap)
                .attribute(aws_sdk_ec2::types::SnapshotAttributeName::CreateVolumePermission)
                .send()
                .await
                .unwrap();
            set(out
                .create_volume_permissions()
                .iter()
                .filter_map(|p| p.user_id()))
        }
    };
    assert_eq!(perms(golden_snap.clone()).await, expected);
    assert!(perms(other_snap).await.is_empty());

    let kms = aws_sdk_kms::Client::new(&config);
    let grants = kms.list_grants().key_id(&key).send().await.unwrap();
    let mut grantees: Vec<String> = grants
        .grants()
        .iter()
        .filter_map(|g| g.grantee_principal())
        .map(str::to_string)
        .collect();
    grantees.sort();
    let want: Vec<String> = expected
        .iter()
        .map(|a| format!("arn:aws:iam::{a}:root"))
        .collect();
    assert_eq!(
        grantees, want,
        "one grant per account, none duplicated by the redelivery"
    );
    for g in grants.grants() {
        let principal = g.grantee_principal().unwrap();
        let acct = principal
            .trim_start_matches("arn:aws:iam::")
            .trim_end_matches(":root");
        assert_eq!(g.name(), Some(format!("ami-share-{acct}").as_str()));
    }

    let other_lp = ec2
        .describe_image_attribute()
        .image_id(&other)
        .attribute(aws_sdk_ec2::types::ImageAttributeName::LaunchPermission)
        .send()
        .await
        .unwrap();
    assert!(other_lp.launch_permissions().is_empty());
}

#[tokio::test]
async fn an_image_that_does_not_exist_is_skipped_after_the_visibility_retries() {
    let moto = Moto::start().expect("moto");
    let config = moto.sdk_config("us-east-1").await;
    let policy = Policy::from_json(r#"{"rules":[{"name":"g","match":{"all":true},"share_with":{"accounts":["111122223333"]}}]}"#).unwrap();
    let mut deps = Deps::new(
        AwsPorts::new(config, None, amishare::aws::RateLimits::unlimited()).await,
        policy,
        "123456789012",
    );
    deps.settings.visibility_retry_delays = vec![std::time::Duration::from_millis(10)];
    let s = on_image_available::handle(
        &deps,
        seed::ami_event("image-available.json", "us-east-1", "ami-0abcdef1234567890"),
    )
    .await
    .unwrap();
    assert_eq!(s.outcome, Outcome::Skipped, "{s:?}");
}
