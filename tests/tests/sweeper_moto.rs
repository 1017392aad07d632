//! The real nightly-sweeper handler against moto: a deregistered image's snapshot is reported,
//! then deleted over two runs (grace 0); a snapshot referenced only by a launch template and
//! live images' snapshots are kept; launch permission drift is repaired.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use amishare::Policy;
use aws_sdk_ec2::types::{
    ImageAttributeName, LaunchTemplateBlockDeviceMappingRequest,
    LaunchTemplateEbsBlockDeviceRequest, RequestLaunchTemplateData,
};
use integration_tests::moto::Moto;
use integration_tests::seed;
use nightly_sweeper::{handle, Run};
use serde_json::json;

async fn snapshot_exists(ec2: &aws_sdk_ec2::Client, id: &str) -> bool {
    ec2.describe_snapshots()
        .snapshot_ids(id)
        .send()
        .await
        .map(|o| !o.snapshots().is_empty())
        .unwrap_or(false)
}

#[tokio::test]
async fn orphan_reported_then_deleted_template_snapshot_and_live_snapshots_kept_drift_repaired() {
    let moto = Moto::start().expect("moto");
    let config = moto.sdk_config("us-east-1").await;
    seed::organization(&config).await;
    moto.add_org_member("111122223333", None);
    seed::mark_key(&config).await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let (live, live_snap) = seed::image(&config, "golden-live", &[]).await;
    let (old, old_snap) = seed::image(&config, "golden-old", &[]).await;
    let (tmpl, tmpl_snap) = seed::image(&config, "golden-template", &[]).await;
    ec2.create_launch_template()
        .launch_template_name("uses-snapshot")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .block_device_mappings(
                    LaunchTemplateBlockDeviceMappingRequest::builder()
                        .device_name("/dev/sdf")
                        .ebs(
                            LaunchTemplateEbsBlockDeviceRequest::builder()
                                .snapshot_id(&tmpl_snap)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    ec2.deregister_image().image_id(&old).send().await.unwrap();
    ec2.deregister_image().image_id(&tmpl).send().await.unwrap();

    let policy = Policy::from_json(
        r#"{"rules":[{"name":"golden","match":{"name":"golden-*"},"share_with":{"accounts":["111122223333"]},"share_snapshots":false}],
            "sweeper":{"mode":"delete","min_age_days":0,"grace_days":0}}"#,
    )
    .unwrap();
    let deps = seed::deps(&config, policy).await;
    let run = || Run::new("us-east-1", chrono::Utc::now(), None);

    // The input lowers the policy's delete mode to report for this run.
    let report = handle(&deps, json!({"mode": "report"}), &run())
        .await
        .unwrap();
    let text = serde_json::to_string(&report).unwrap();
    assert_eq!(report.orphans.status, "complete", "{text}");
    assert_eq!(report.orphans.orphans_found, 1, "{text}");
    assert_eq!(report.orphans.orphans[0].snapshot_id, old_snap, "{text}");
    assert_eq!(report.orphans.marked, 1, "{text}");
    assert!(
        report.orphans.deleted.is_empty(),
        "report mode deletes nothing: {text}"
    );
    for s in [&live_snap, &old_snap, &tmpl_snap] {
        assert!(snapshot_exists(&ec2, s).await, "{s}");
    }
    let lp = ec2
        .describe_image_attribute()
        .image_id(&live)
        .attribute(ImageAttributeName::LaunchPermission)
        .send()
        .await
        .unwrap();
    assert_eq!(
        lp.launch_permissions()
            .iter()
            .filter_map(|p| p.user_id())
            .collect::<Vec<_>>(),
        ["111122223333"],
        "drift repaired: {text}"
    );

    let report = handle(&deps, json!({"mode": "delete"}), &run())
        .await
        .unwrap();
    let text = serde_json::to_string(&report).unwrap();
    assert_eq!(
        report.orphans.deleted,
        std::slice::from_ref(&old_snap),
        "{text}"
    );
    assert!(!snapshot_exists(&ec2, &old_snap).await);
    assert!(
        snapshot_exists(&ec2, &tmpl_snap).await,
        "referenced by a launch template"
    );
    assert!(snapshot_exists(&ec2, &live_snap).await, "live image");
}
