//! Publishing against moto in three Regions: the source's Region, then each copy's. Parameter
//! Store and EventBridge are moto's; AWS RAM is the harness's (moto's RAM refuses to share
//! parameters), and so is a consumer account's read of the shared parameter by its ARN.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use amishare::publish::PublishStatus;
use amishare::report::Outcome;
use amishare::Policy;
use aws_sdk_ram::types::{ResourceOwner, ResourceShareAssociationType};
use aws_sdk_ssm::types::{ParameterStringFilter, ParameterTier};
use integration_tests::moto::Moto;
use integration_tests::seed;

const PARAM: &str = "/golden/al2023/latest";
const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];

fn ssm(config: &aws_config::SdkConfig, region: &str) -> aws_sdk_ssm::Client {
    aws_sdk_ssm::Client::from_conf(
        aws_sdk_ssm::config::Builder::from(config)
            .region(aws_config::Region::new(region.to_string()))
            .build(),
    )
}

fn ram(config: &aws_config::SdkConfig, region: &str) -> aws_sdk_ram::Client {
    aws_sdk_ram::Client::from_conf(
        aws_sdk_ram::config::Builder::from(config)
            .region(aws_config::Region::new(region.to_string()))
            .build(),
    )
}

/// What a consumer's launch template does with `resolve:ssm:<ARN>`: GetParameter by ARN, as
/// the consumer account.
async fn resolve_as(
    config: &aws_config::SdkConfig,
    region: &str,
    account: &str,
    arn: &str,
) -> Result<String, String> {
    let account = account.to_string();
    ssm(config, region)
        .get_parameter()
        .name(arn)
        .customize()
        .mutate_request(move |r| {
            r.headers_mut().insert("x-moto-account-id", account.clone());
        })
        .send()
        .await
        .map(|o| {
            o.parameter()
                .and_then(|p| p.value())
                .unwrap_or_default()
                .to_string()
        })
        .map_err(|e| format!("{:?}", aws_sdk_ssm::error::ProvideErrorMetadata::code(&e)))
}

#[tokio::test]
async fn the_newest_image_is_published_shared_and_announced_in_three_regions() {
    let moto = Moto::start().expect("moto");
    let config = moto.sdk_config("us-east-1").await;
    let org = seed::organization(&config).await;
    moto.add_org_member("111122223333", None);
    let (golden, _) = seed::image(&config, "golden-2026-11", &[]).await;
    let policy = Policy::from_json(&format!(
        r#"{{"rules":[{{"name":"golden","match":{{"name":"golden-*"}},
            "share_with":{{"accounts":["111122223333"],"organizational_units":["{}"]}},
            "copy_to":[{{"region":"us-west-2"}},{{"region":"eu-west-1"}}],
            "publish":{{"parameter":"{PARAM}"}}}}]}}"#,
        org.workloads_ou_arn
    ))
    .unwrap();
    let deps = seed::deps(&config, policy).await;
    let event = |file: &str, region: &str, id: &str| seed::ami_event(file, region, id);

    ram(&config, "us-east-1")
        .enable_sharing_with_aws_organization()
        .send()
        .await
        .unwrap();
    let s = on_image_available::handle(&deps, event("image-available.json", "us-east-1", &golden))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Shared, "{s:#?}");
    assert_eq!(s.published[0].status, PublishStatus::Published, "{s:#?}");
    assert_eq!(s.copies.len(), 2, "{s:#?}");

    let mut images = vec![("us-east-1".to_string(), golden.clone())];
    for c in &s.copies {
        let id = c.image_id.clone().unwrap();
        let done = on_copy_complete::handle(&deps, event("copy-available.json", &c.region, &id))
            .await
            .unwrap();
        assert_eq!(done.outcome, Outcome::Shared, "{done:#?}");
        assert_eq!(
            done.published[0].status,
            PublishStatus::Published,
            "{done:#?}"
        );
        images.push((c.region.clone(), id));
    }

    let member = &org.workloads_accounts[0];
    for (region, image_id) in &images {
        let ssm = ssm(&config, region);
        let p = ssm.get_parameter().name(PARAM).send().await.unwrap();
        let p = p.parameter().unwrap();
        assert_eq!(p.value(), Some(image_id.as_str()), "{region}");
        assert_eq!(p.data_type(), Some("aws:ec2:image"), "{region}");
        let described = ssm
            .describe_parameters()
            .parameter_filters(
                ParameterStringFilter::builder()
                    .key("Name")
                    .values(PARAM)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            described.parameters()[0].tier(),
            Some(&ParameterTier::Advanced),
            "{region}"
        );
        let history = ssm
            .get_parameter_history()
            .name(PARAM)
            .send()
            .await
            .unwrap();
        let labels: Vec<&str> = history
            .parameters()
            .iter()
            .flat_map(|h| h.labels().iter().map(String::as_str))
            .collect();
        assert_eq!(labels.len(), 1, "{region}: {labels:?}");
        assert!(labels[0].starts_with("created-"), "{region}: {labels:?}");

        // One share per rule and Region, with the parameter and the rule's principals.
        let ram = ram(&config, region);
        let shares = ram
            .get_resource_shares()
            .resource_owner(ResourceOwner::SelfValue)
            .name("ami-share-golden")
            .send()
            .await
            .unwrap();
        assert_eq!(shares.resource_shares().len(), 1, "{region}");
        let arn = shares.resource_shares()[0].resource_share_arn().unwrap();
        let principals = ram
            .get_resource_share_associations()
            .association_type(ResourceShareAssociationType::Principal)
            .resource_share_arns(arn)
            .send()
            .await
            .unwrap();
        let mut got: Vec<&str> = principals
            .resource_share_associations()
            .iter()
            .filter_map(|a| a.associated_entity())
            .collect();
        got.sort();
        assert_eq!(
            got,
            ["111122223333", org.workloads_ou_arn.as_str()],
            "{region}"
        );

        // A consumer in the OU resolves it by ARN; an account outside the rule cannot.
        let param_arn = format!("arn:aws:ssm:{region}:123456789012:parameter{PARAM}");
        assert_eq!(
            resolve_as(&config, region, member, &param_arn)
                .await
                .as_deref(),
            Ok(image_id.as_str()),
            "{region}"
        );
        assert_eq!(
            resolve_as(&config, region, "999988887777", &param_arn).await,
            Err("Some(\"ParameterNotFound\")".to_string()),
            "{region}"
        );
    }

    // One "AMI Distributed" event per Region, on its default bus.
    let events = moto.events();
    let mut regions: Vec<&str> = events
        .iter()
        .map(|e| {
            assert_eq!(e["Source"], "ami-share");
            assert_eq!(e["DetailType"], "AMI Distributed");
            assert_eq!(e["EventBusName"], "default");
            e["region"].as_str().unwrap()
        })
        .collect();
    regions.sort();
    let mut want = REGIONS.to_vec();
    want.sort();
    assert_eq!(regions, want);
    let detail: serde_json::Value =
        serde_json::from_str(events[0]["Detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["image-id"], golden.as_str());
    assert_eq!(detail["rule"], "golden");

    // The night after: the sweeper finds everything true and writes nothing.
    let before = moto.events().len();
    for region in REGIONS {
        let now = chrono::Utc::now();
        let r = nightly_sweeper::handle(
            &deps,
            serde_json::json!({}),
            &nightly_sweeper::Run::new(region, now, None),
        )
        .await
        .unwrap();
        let p = &r.drift.publications;
        assert_eq!(p.len(), 1, "{region}: {p:?} {:?}", r.errors);
        assert_eq!(p[0].status, PublishStatus::Current, "{region}: {:#?}", p[0]);
    }
    assert_eq!(moto.events().len(), before);
}

/// RAM's organization sharing is off until enabled: the share is refused with the fix, the
/// image is shared all the same, and the retry once it is on finishes the publication.
#[tokio::test]
async fn organization_sharing_off_is_refused_with_the_fix_and_finished_once_on() {
    let moto = Moto::start().expect("moto");
    let config = moto.sdk_config("us-east-1").await;
    let org = seed::organization(&config).await;
    moto.add_org_member("111122223333", None);
    let (golden, _) = seed::image(&config, "golden-2026-11", &[]).await;
    let policy = Policy::from_json(&format!(
        r#"{{"rules":[{{"name":"golden","match":{{"name":"golden-*"}},
            "share_with":{{"organizational_units":["{}"]}},
            "publish":{{"parameter":"{PARAM}"}}}}]}}"#,
        org.workloads_ou_arn
    ))
    .unwrap();
    let deps = seed::deps(&config, policy).await;
    let event = || seed::ami_event("image-available.json", "us-east-1", &golden);
    let s = on_image_available::handle(&deps, event()).await.unwrap();
    assert_eq!(s.outcome, Outcome::Refused, "{s:#?}");
    let msg = &s.error.as_ref().unwrap().message;
    assert!(
        msg.contains("aws ram enable-sharing-with-aws-organization"),
        "{msg}"
    );
    assert!(msg.contains("OperationNotPermittedException"), "{msg}");
    assert!(
        moto.events().is_empty(),
        "not announced before it is shared"
    );

    ram(&config, "us-east-1")
        .enable_sharing_with_aws_organization()
        .send()
        .await
        .unwrap();
    let s = on_image_available::handle(&deps, event()).await.unwrap();
    assert_eq!(s.outcome, Outcome::Shared, "{s:#?}");
    assert_eq!(s.published[0].status, PublishStatus::Finished, "{s:#?}");
    assert_eq!(moto.events().len(), 1);
}
