//! A copy shared in its Region is judged in the consumers' Allowed AMIs there (issue 30), and
//! the summary warns of each account that cannot see it. This function has no target role: a
//! `copy_into` target is judged by its organization's policy.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::time::Duration;

use amishare::deps::{Deps, Settings};
use amishare::report::Outcome;
use amishare::Policy;
use amishare_testkit::{
    ami_event, declarative_allowed_amis, FakeAws, Fixture, ImageSpec, OWN_ACCOUNT,
};
use serde_json::{json, Value};

const OU: &str = "ou-ab12-cdef3456";
const OU_ARN: &str = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456";
const AMAZON_ONLY: &str = "200000000001";
const NO_POLICY: &str = "200000000002";
const TARGET: &str = "300000000001";

fn event(file: &str, region: &str, image_id: &str) -> Value {
    let fixture = match file {
        "copy" => Fixture::CopyAvailable,
        _ => Fixture::ImageAvailable,
    };
    ami_event(fixture, region, image_id)
}

fn amazon_only() -> String {
    declarative_allowed_amis(json!({"criteria_1": {"allowed_image_providers": ["amazon"]}}))
}

#[tokio::test]
async fn the_copy_summary_warns_of_consumers_that_cannot_see_it() {
    let fake = FakeAws::new();
    let root = fake.create_org("o-a1b2c3d4e5");
    fake.add_ou(&root, OU);
    fake.add_account(OU, AMAZON_ONLY, "ACTIVE");
    fake.add_account(OU, NO_POLICY, "ACTIVE");
    fake.add_account(&root, TARGET, "ACTIVE");
    fake.add_target_account(TARGET, &["us-west-2"]);
    {
        let mut w = fake.world();
        w.declarative_policies
            .insert(AMAZON_ONLY.into(), amazon_only());
        w.declarative_policies.insert(TARGET.into(), amazon_only());
    }
    let source = fake.create_image(ImageSpec::new("us-east-1", "golden-7").snapshots(1));
    let policy = Policy::from_json(
        &json!({"rules": [{"name": "golden", "match": {"name": "golden-*"},
            "share_with": {"organizational_units": [OU_ARN]},
            "copy_to": [{"region": "us-west-2"}],
            "copy_into": {"accounts": [TARGET], "regions": [{"region": "us-west-2"}]}}]})
        .to_string(),
    )
    .unwrap();
    let mut d = Deps::new(fake, policy, OWN_ACCOUNT);
    d.settings = Settings {
        visibility_retry_delays: vec![Duration::from_millis(1); 2],
        // Another Lambda in production: nothing on-image-available read is reused here.
        consumer_cache_ttl: Duration::ZERO,
        ..Settings::default()
    };
    let s = on_image_available::handle(&d, event("image", "us-east-1", &source.id))
        .await
        .unwrap();
    let copy = s
        .copies
        .iter()
        .find(|c| c.region == "us-west-2")
        .and_then(|c| c.image_id.clone())
        .unwrap();
    d.aws.complete_copy("us-west-2", &copy);
    d.aws.reset_calls();
    let s = on_copy_complete::handle(&d, event("copy", "us-west-2", &copy))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Shared, "{s:?}");
    let c = s.consumers.expect("the consumers' look");
    assert_eq!((c.accounts, c.judged, c.not_read), (3, 3, 0), "{c:?}");
    let warned: Vec<(&str, &str, &str)> = c
        .warnings
        .iter()
        .map(|w| (w.account.as_str(), w.image_id.as_str(), w.verdict.code()))
        .collect();
    assert_eq!(
        warned,
        [
            (AMAZON_ONLY, copy.as_str(), "not-allowed"),
            (TARGET, copy.as_str(), "not-allowed")
        ]
    );
    assert_eq!(c.verdicts.get("unknown"), Some(&1), "{c:?}");
    let calls = d.aws.call_counts();
    assert_eq!(calls.get("organizations:DescribeEffectivePolicy"), Some(&3));
    assert_eq!(
        calls.get("target:GetAllowedImagesSettings"),
        None,
        "no target role here: {calls:?}"
    );
}
