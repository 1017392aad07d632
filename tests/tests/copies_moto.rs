//! Copies against moto: on-image-available starts a copy per Region, on-copy-complete shares
//! each copy there; every copy ends with the source's launch and snapshot permissions.
//! (moto drops the copies' tags, so this also exercises the deterministic-name fallback.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::collections::BTreeSet;

use amishare::report::Outcome;
use amishare::Policy;
use aws_sdk_ec2::types::{ImageAttributeName, SnapshotAttributeName};
use integration_tests::moto::Moto;
use integration_tests::seed;

async fn permissions(
    config: &aws_config::SdkConfig,
    region: &str,
    image_id: &str,
) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
    let ec2 = aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::config::Builder::from(config)
            .region(aws_config::Region::new(region.to_string()))
            .build(),
    );
    let lp = ec2
        .describe_image_attribute()
        .image_id(image_id)
        .attribute(ImageAttributeName::LaunchPermission)
        .send()
        .await
        .unwrap();
    let accounts = lp
        .launch_permissions()
        .iter()
        .filter_map(|p| p.user_id().map(String::from))
        .collect();
    let ous = lp
        .launch_permissions()
        .iter()
        .filter_map(|p| p.organizational_unit_arn().map(String::from))
        .collect();
    let img = ec2
        .describe_images()
        .image_ids(image_id)
        .send()
        .await
        .unwrap();
    let snap = img.images()[0].block_device_mappings()[0]
        .ebs()
        .and_then(|e| e.snapshot_id())
        .unwrap()
        .to_string();
    let sp = ec2
        .describe_snapshot_attribute()
        .snapshot_id(snap)
        .attribute(SnapshotAttributeName::CreateVolumePermission)
        .send()
        .await
        .unwrap();
    let snaps = sp
        .create_volume_permissions()
        .iter()
        .filter_map(|p| p.user_id().map(String::from))
        .collect();
    (accounts, ous, snaps)
}

#[tokio::test]
async fn copies_to_two_regions_are_shared_there_like_the_source() {
    let moto = Moto::start().expect("moto");
    let config = moto.sdk_config("us-east-1").await;
    let org = seed::organization(&config).await;
    moto.add_org_member("111122223333", None);
    let (golden, _) = seed::image(&config, "golden-2026-11", &[]).await;
    let policy = Policy::from_json(&format!(
        r#"{{"rules":[{{"name":"golden","match":{{"name":"golden-*"}},
            "share_with":{{"accounts":["111122223333"],"organizational_units":["{}"]}},
            "copy_to":[{{"region":"us-west-2"}},{{"region":"eu-west-1"}}]}}]}}"#,
        org.workloads_ou_arn
    ))
    .unwrap();
    let deps = seed::deps(&config, policy).await;

    let s = on_image_available::handle(
        &deps,
        seed::ami_event("image-available.json", "us-east-1", &golden),
    )
    .await
    .unwrap();
    assert_eq!(s.outcome, Outcome::Shared, "{s:#?}");
    assert_eq!(
        s.copies.iter().filter(|c| c.status == "started").count(),
        2,
        "{:?}",
        s.copies
    );
    // A redelivered event gets the same copies back through CopyImage's client token; moto
    // does not model that token, so redelivery is proven on the in-memory double
    // (on-copy-complete's `redelivered_and_concurrent_events_start_exactly_one_copy_per_region`).

    let source = permissions(&config, "us-east-1", &golden).await;
    assert_eq!(source.0.len(), 1);
    assert_eq!(
        source.2.len(),
        5,
        "111122223333 + 4 active accounts under the OU"
    );
    for c in &s.copies {
        let id = c.image_id.clone().unwrap();
        // on-image-available in the destination sees the copy first and leaves it alone
        let skipped = on_image_available::handle(
            &deps,
            seed::ami_event("copy-available.json", &c.region, &id),
        )
        .await
        .unwrap();
        assert_eq!(skipped.outcome, Outcome::Skipped, "{skipped:#?}");
        let done = on_copy_complete::handle(
            &deps,
            seed::ami_event("copy-available.json", &c.region, &id),
        )
        .await
        .unwrap();
        assert_eq!(done.outcome, Outcome::Shared, "{done:#?}");
        assert_eq!(
            permissions(&config, &c.region, &id).await,
            source,
            "{}",
            c.region
        );
    }

    // The harness records EC2's lineage on copies, as EC2 does (moto leaves it empty).
    let west = &s.copies.iter().find(|c| c.region == "us-west-2").unwrap();
    let ec2_west = aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::config::Builder::from(&config)
            .region(aws_config::Region::new("us-west-2"))
            .build(),
    );
    let copy = ec2_west
        .describe_images()
        .image_ids(west.image_id.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(copy.images()[0].source_image_id(), Some(golden.as_str()));
    assert_eq!(copy.images()[0].source_image_region(), Some("us-east-1"));

    // An image made by CreateImage, named and tagged like a copy of the golden image: refused
    // as forged, nothing shared.
    let (forged, _) = seed::image(
        &config,
        &format!("golden-2026-11--copy-of-us-west-2-{golden}"),
        &[
            ("ami-share:source-image", &format!("us-west-2/{golden}")),
            ("ami-share:source-rule", "golden"),
        ],
    )
    .await;
    let refused = on_copy_complete::handle(
        &deps,
        seed::ami_event("copy-available.json", "us-east-1", &forged),
    )
    .await
    .unwrap();
    assert_eq!(refused.outcome, Outcome::Refused, "{refused:#?}");
    assert_eq!(refused.reason_code, Some("forged-provenance"));
    let (accounts, ous, snaps) = permissions(&config, "us-east-1", &forged).await;
    assert!(accounts.is_empty() && ous.is_empty() && snaps.is_empty());
}
