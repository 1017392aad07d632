//! `copy_into` against moto in several accounts: the functions' real adapters assume the
//! target-account role (moto gives an assumed role's keys to the role's account), and the
//! harness carries out `CopyImage` of the publisher's image in the target account, with EC2's
//! rules (shared by launch permission and createVolumePermission; client tokens per account;
//! tags at creation). A copy into 3 target accounts in 2 Regions, a redelivered event, the
//! night finishing the copies (deprecation, the target's own parameter), a role that cannot be
//! assumed, a target leaving the OU, the source's retirement leaving the copies in place.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::collections::BTreeSet;

use amishare::aws::{AwsPorts, RateLimits};
use amishare::deps::Deps;
use amishare::names::{COPIED_BY_RULE_TAG, COPIED_FROM_ACCOUNT_TAG, COPIED_FROM_IMAGE_TAG};
use amishare::target_copies::TargetStatus;
use amishare::Policy;
use aws_config::SdkConfig;
use integration_tests::moto::{Moto, ACCOUNT_ID};
use integration_tests::seed;
use nightly_sweeper::Run;
use serde_json::json;

const R: &str = "us-east-1";
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
const ROLE: &str = "ami-share-target";
const PARAM: &str = "/golden/al2023/latest";

struct World {
    moto: Moto,
    config: SdkConfig,
    deps: Deps<AwsPorts>,
    targets: Vec<String>,
    org: seed::OrgSeed,
}

async fn world() -> World {
    let moto = Moto::start().unwrap();
    let config = moto.sdk_config(R).await;
    let org = seed::organization(&config).await;
    moto.add_org_member("111122223333", None);
    let mut targets = org.team_accounts.clone();
    targets.push(org.root_account.clone());
    for account in &targets {
        for region in REGIONS {
            let there = seed::as_account(&config, account, ROLE, region).await;
            let key = seed::key(&there, "alias/consumer-ami").await;
            moto.set_ebs_default_key(account, region, &key);
        }
    }
    let policy = Policy::from_json(
        &json!({"rules": [{"name": "golden", "match": {"name": "golden-*"},
            "copy_into": {"organizational_units": [org.team_ou_arn], "accounts": [org.root_account],
                "regions": [{"region": REGIONS[0]}, {"region": REGIONS[1], "kms_key_id": "alias/consumer-ami"}]},
            "publish": {"parameter": PARAM, "in_target_accounts": true}}]})
        .to_string(),
    )
    .unwrap();
    let aws = AwsPorts::new(config.clone(), None, RateLimits::unlimited())
        .await
        .with_target_role(Some(ROLE.into()));
    let deps = Deps::new(aws, policy, ACCOUNT_ID);
    World {
        moto,
        config,
        deps,
        targets,
        org,
    }
}

/// The images `account` owns in `region`, with their tags (DescribeImages as that account).
async fn owned_by(w: &World, account: &str, region: &str) -> Vec<aws_sdk_ec2::types::Image> {
    let there = seed::as_account(&w.config, account, ROLE, region).await;
    aws_sdk_ec2::Client::new(&there)
        .describe_images()
        .owners("self")
        .send()
        .await
        .unwrap()
        .images()
        .to_vec()
}

async fn parameter_in(w: &World, account: &str, region: &str) -> Option<String> {
    let there = seed::as_account(&w.config, account, ROLE, region).await;
    aws_sdk_ssm::Client::new(&there)
        .get_parameter()
        .name(PARAM)
        .send()
        .await
        .ok()
        .and_then(|o| o.parameter().and_then(|p| p.value()).map(str::to_string))
}

fn tag<'i>(image: &'i aws_sdk_ec2::types::Image, key: &str) -> Option<&'i str> {
    image
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

async fn night(w: &World) -> nightly_sweeper::SweepReport {
    nightly_sweeper::handle(&w.deps, json!({}), &Run::new(R, chrono::Utc::now(), None))
        .await
        .unwrap()
}

#[tokio::test]
async fn copies_into_three_accounts_in_two_regions_owned_encrypted_tagged_and_published() {
    let w = world().await;
    let (image, _) = seed::image(&w.config, "golden-1", &[]).await;
    let event = seed::ami_event("image-available.json", R, &image);

    let s = on_image_available::handle(&w.deps, event.clone())
        .await
        .unwrap();
    assert_eq!(s.target_copies.len(), 6, "{s:?}");
    assert!(
        s.target_copies
            .iter()
            .all(|t| t.status == TargetStatus::Started),
        "{:?}",
        s.target_copies
    );
    // Redelivered: EC2 answers the same client tokens with the same copies.
    let again = on_image_available::handle(&w.deps, event).await.unwrap();
    let ids = |s: &amishare::report::Summary| -> BTreeSet<String> {
        s.target_copies
            .iter()
            .filter_map(|t| t.image_id.clone())
            .collect()
    };
    assert_eq!(ids(&s), ids(&again));
    let made = w.moto.target_copies();
    assert_eq!(made.len(), 6, "{made:?}");

    for account in &w.targets {
        for region in REGIONS {
            let [copy] = owned_by(&w, account, region).await.try_into().unwrap();
            assert_eq!(copy.owner_id(), Some(account.as_str()));
            assert_eq!(
                tag(&copy, COPIED_FROM_IMAGE_TAG),
                Some(format!("{R}/{image}").as_str())
            );
            assert_eq!(tag(&copy, COPIED_FROM_ACCOUNT_TAG), Some(ACCOUNT_ID));
            assert_eq!(tag(&copy, COPIED_BY_RULE_TAG), Some("golden"));
            let req = made
                .iter()
                .find(|m| m["image_id"] == json!(copy.image_id().unwrap()))
                .unwrap();
            assert_eq!(req["encrypted"], json!(true));
            let key = req["kms_key_id"].as_str().unwrap();
            assert!(
                key.starts_with(&format!("arn:aws:kms:{region}:{account}:key/")),
                "encrypted with the target's own key in {region}: {key}"
            );
        }
    }

    // The night finishes them: the target's own parameter names its own copy.
    let r = night(&w).await;
    assert_eq!(r.target_copies.finished, 6, "{:?}", r.target_copies);
    assert_eq!(r.target_copies.parameters_written, 6);
    for account in &w.targets {
        for region in REGIONS {
            let [copy] = owned_by(&w, account, region).await.try_into().unwrap();
            assert_eq!(
                parameter_in(&w, account, region).await.as_deref(),
                copy.image_id()
            );
        }
    }
    let r = night(&w).await;
    assert_eq!(
        (r.target_copies.finished, r.target_copies.parameters_written),
        (6, 0)
    );
}

#[tokio::test]
async fn every_event_lost_a_role_that_cannot_be_assumed_a_target_leaving_and_retirement() {
    let w = world().await;
    let (image, _) = seed::image(&w.config, "golden-1", &[]).await;
    let denied = w.org.root_account.clone();
    w.moto
        .deny_assume_role(&format!("arn:aws:iam::{denied}:role/{ROLE}"));

    // No event at all: the night shares the source with the targets and starts the copies.
    let r = night(&w).await;
    assert_eq!(r.target_copies.started, 4, "{:?}", r.target_copies);
    assert_eq!(r.target_copies.failed, 2);
    assert!(r.target_copies.problems.iter().all(|p| p.account == denied
        && p.error_code.as_deref() == Some("AccessDenied")
        && p.detail.as_deref().unwrap().contains("target-account role")));
    let r = night(&w).await;
    assert_eq!(r.target_copies.finished, 4);

    // team-b leaves the OU: it keeps its copies and is no longer followed.
    let leaving = w.org.team_accounts[1].clone();
    let org = aws_sdk_organizations::Client::new(&w.config);
    let parent = org
        .list_parents()
        .child_id(&leaving)
        .send()
        .await
        .unwrap()
        .parents()[0]
        .id()
        .unwrap()
        .to_string();
    org.move_account()
        .account_id(&leaving)
        .source_parent_id(parent)
        .destination_parent_id(&w.org.root_id)
        .send()
        .await
        .unwrap();
    let fresh = Deps::new(
        AwsPorts::new(w.config.clone(), None, RateLimits::unlimited())
            .await
            .with_target_role(Some(ROLE.into())),
        w.deps.policy.clone(),
        ACCOUNT_ID,
    );
    let r = nightly_sweeper::handle(&fresh, json!({}), &Run::new(R, chrono::Utc::now(), None))
        .await
        .unwrap();
    assert_eq!(
        r.target_copies.targets, 4,
        "team-a and the denied account, 2 Regions"
    );

    // The source retires (deregistered by the publisher): every target's copy stays.
    aws_sdk_ec2::Client::new(&w.config)
        .deregister_image()
        .image_id(&image)
        .send()
        .await
        .unwrap();
    let r = night(&w).await;
    assert_eq!(r.target_copies.targets, 0);
    for account in [&w.org.team_accounts[0], &leaving] {
        for region in REGIONS {
            let owned = owned_by(&w, account, region).await;
            assert_eq!(owned.len(), 1, "{account} {region}: {owned:?}");
            assert_eq!(owned[0].state().map(|s| s.as_str()), Some("available"));
        }
    }
}
