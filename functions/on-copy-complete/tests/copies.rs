//! Copies across Regions, in memory: on-image-available starts them, on-copy-complete shares
//! them in their Region with that Region's keys.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::collections::BTreeSet;
use std::time::Duration;

use amishare::deps::{Deps, Settings};
use amishare::ports::{ImageState, KeyManager};
use amishare::report::Outcome;
use amishare::Policy;
use amishare_testkit::{ami_event, FakeAws, Fixture, ImageSpec, OWN_ACCOUNT};
use serde_json::Value;

const OU: &str = "ou-ab12-cdef3456";
const OU_ARN: &str = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456";

fn event(file: &str, region: &str, image_id: &str) -> Value {
    let fixture = match file {
        "failed" => Fixture::CopyFailed,
        _ => Fixture::CopyAvailable,
    };
    ami_event(fixture, region, image_id)
}

/// A world with an OU of 3 accounts, keys in three Regions, and a policy copying to two.
struct World {
    deps: Deps<FakeAws>,
    source: amishare::ports::Image,
    keys: [String; 3], // us-east-1, us-west-2, eu-west-1
}

fn world(encrypted: bool, copy_keys: bool) -> World {
    let fake = FakeAws::new();
    let root = fake.create_org("o-a1b2c3d4e5");
    fake.add_ou(&root, OU);
    for a in ["200000000001", "200000000002", "200000000003"] {
        fake.add_account(OU, a, "ACTIVE");
    }
    let keys = ["us-east-1", "us-west-2", "eu-west-1"].map(|r| {
        let k = fake.create_key(r, KeyManager::Customer);
        fake.create_alias(&k, "alias/ami-share");
        k
    });
    let spec = ImageSpec::new("us-east-1", "golden-7")
        .snapshots(2)
        .tag("Team", "platform");
    let spec = if encrypted {
        spec.encrypted_with(&[&keys[0]])
    } else {
        spec
    };
    let source = fake.create_image(spec);
    let key = |r: &str| {
        if copy_keys {
            format!(r#","kms_key_id":"arn:aws:kms:{r}:123456789012:alias/ami-share""#)
        } else {
            String::new()
        }
    };
    let policy = Policy::from_json(&format!(
        r#"{{"rules":[{{"name":"golden","match":{{"name":"golden-*"}},
            "share_with":{{"accounts":["111122223333"],"organizational_units":["{OU_ARN}"]}},
            "copy_to":[{{"region":"us-west-2"{}}},{{"region":"eu-west-1"{}}}]}}]}}"#,
        key("us-west-2"),
        key("eu-west-1")
    ))
    .unwrap();
    let mut deps = Deps::new(fake, policy, OWN_ACCOUNT);
    deps.settings = Settings {
        visibility_retry_delays: vec![Duration::from_millis(1); 2],
        ..Settings::default()
    };
    World { deps, source, keys }
}

/// Give the source a deprecation time.
fn deprecate_source(w: &World, at: &str) {
    w.deps
        .aws
        .world()
        .images
        .get_mut(&("us-east-1".into(), w.source.id.clone()))
        .unwrap()
        .image
        .deprecation_time = Some(at.into());
}

/// Share the source (on-image-available); the id of its copy to us-west-2.
async fn copy_to_us_west_2(w: &World) -> String {
    let s = on_image_available::handle(&w.deps, available("us-east-1", &w.source.id))
        .await
        .unwrap();
    s.copies
        .iter()
        .find(|c| c.region == "us-west-2")
        .unwrap()
        .image_id
        .clone()
        .unwrap()
}

/// The copies on-image-available reports for `ev`, by Region.
async fn copy_ids(deps: &Deps<FakeAws>, ev: Value) -> Vec<(String, Option<String>)> {
    let s = on_image_available::handle(deps, ev).await.unwrap();
    s.copies
        .into_iter()
        .map(|c| (c.region, c.image_id))
        .collect()
}

fn describe_images(deps: &Deps<FakeAws>) -> usize {
    deps.aws
        .call_counts()
        .get("ec2:DescribeImages")
        .copied()
        .unwrap_or(0)
}

fn available(region: &str, id: &str) -> Value {
    event("available", region, id)
}

fn targets() -> BTreeSet<String> {
    [
        "111122223333",
        "200000000001",
        "200000000002",
        "200000000003",
    ]
    .map(String::from)
    .into()
}

#[tokio::test]
async fn copies_start_with_token_tags_and_the_destination_key() {
    let w = world(true, true);
    let s = on_image_available::handle(&w.deps, available("us-east-1", &w.source.id))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Shared, "{s:#?}");
    assert_eq!(
        s.copies
            .iter()
            .map(|c| (c.region.as_str(), c.status.as_str()))
            .collect::<Vec<_>>(),
        [("eu-west-1", "started"), ("us-west-2", "started")]
    );
    for c in &s.copies {
        let copy = w
            .deps
            .aws
            .image(&c.region, c.image_id.as_ref().unwrap())
            .unwrap();
        let req = copy.copied_from.unwrap();
        assert_eq!(
            req.kms_key_id,
            Some(format!(
                "arn:aws:kms:{}:123456789012:alias/ami-share",
                c.region
            ))
        );
        assert_eq!(
            req.tags["ami-share:source-image"],
            format!("us-east-1/{}", w.source.id)
        );
        assert_eq!(req.tags["ami-share:source-rule"], "golden");
        assert_eq!(req.tags["ami-share:copy-kind"], "region-copy");
        assert!(req.copy_image_tags);
        assert_eq!(
            req.client_token,
            amishare::names::copy_client_token(
                "us-east-1",
                &w.source.id,
                &c.region,
                req.kms_key_id.as_deref(),
                0
            )
        );
        assert_eq!(
            copy.image.tags["Team"], "platform",
            "the source's tags travel"
        );
    }
}

#[tokio::test]
async fn redelivered_and_concurrent_events_start_exactly_one_copy_per_region() {
    let w = world(false, false);
    let ev = || available("us-east-1", &w.source.id);
    let (a, b) = tokio::join!(
        on_image_available::handle(&w.deps, ev()),
        on_image_available::handle(&w.deps, ev())
    );
    a.unwrap();
    b.unwrap();
    // A redelivered event makes the same requests: nothing waits in the lines, so each copy
    // is asked for again with its client token, which gives the same copy back (at the
    // default cap EC2 is the count: no DescribeImages of the pending images, no lookup by
    // name first).
    let first = copy_ids(&w.deps, ev()).await;
    let calls = describe_images(&w.deps);
    let again = copy_ids(&w.deps, ev()).await;
    assert_eq!(first, again);
    assert_eq!(describe_images(&w.deps), calls + 1, "the image itself");
    let world = w.deps.aws.world();
    for r in ["us-west-2", "eu-west-1"] {
        assert_eq!(
            world
                .images
                .values()
                .filter(|i| i.image.region == r)
                .count(),
            1,
            "{r}"
        );
    }
}

#[tokio::test]
async fn resource_limit_exceeded_makes_the_copy_wait_without_failing_the_image() {
    let w = world(false, false);
    // Copies of other tools hold every slot of eu-west-1 (20 snapshot copies pending).
    for i in 0..20 {
        w.deps.aws.create_image(
            ImageSpec::new("eu-west-1", &format!("other-{i}")).state(ImageState::Pending),
        );
    }
    let s = on_image_available::handle(&w.deps, available("us-east-1", &w.source.id))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Shared);
    let waiting: Vec<_> = s.copies.iter().filter(|c| c.status == "waiting").collect();
    assert_eq!(waiting.len(), 1);
    let detail = waiting[0].detail.as_deref().unwrap();
    assert!(
        detail.contains("waiting for a free copy slot") && detail.contains("in the line"),
        "{detail}"
    );
    assert_eq!(waiting[0].region, "eu-west-1");
    assert_eq!(w.deps.aws.line("eu-west-1").len(), 1);
    assert_eq!(s.copies.iter().filter(|c| c.status == "started").count(), 1);
    assert_eq!(
        w.deps
            .aws
            .image("us-east-1", &w.source.id)
            .unwrap()
            .launch
            .accounts
            .len(),
        1,
        "the image itself is shared"
    );
}

#[tokio::test]
async fn encrypted_source_without_destination_key_is_refused_before_any_copy() {
    let w = world(true, false);
    let s = on_image_available::handle(&w.deps, available("us-east-1", &w.source.id))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Refused);
    let msg = s.error.unwrap().message;
    assert!(
        msg.contains("eu-west-1") && msg.contains("kms_key_id"),
        "{msg}"
    );
    assert_eq!(w.deps.aws.call_counts().get("ec2:CopyImage"), None);
    assert!(
        w.deps
            .aws
            .image("us-east-1", &w.source.id)
            .unwrap()
            .launch
            .is_empty(),
        "nothing half-done"
    );
}

#[tokio::test]
async fn copies_are_never_copied_again() {
    let w = world(false, false);
    // someone else's copy (Packer ami_regions): shared, not re-copied
    let packer = w.deps.aws.create_image(
        ImageSpec::new("ap-south-1", "golden-packer")
            .copied_from("us-east-1", "ami-0123456789abcdef0"),
    );
    let s = on_image_available::handle(&w.deps, available("ap-south-1", &packer.id))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Shared);
    assert!(
        s.copies.iter().all(|c| c.status == "refused"),
        "{:?}",
        s.copies
    );
    assert_eq!(w.deps.aws.call_counts().get("ec2:CopyImage"), None);
    // our own copy arriving at on-image-available: skipped (on-copy-complete's job)
    let s = on_image_available::handle(&w.deps, available("us-east-1", &w.source.id))
        .await
        .unwrap();
    let copy = s.copies[0].image_id.clone().unwrap();
    w.deps.aws.complete_copy(&s.copies[0].region, &copy);
    let s = on_image_available::handle(&w.deps, available(&s.copies[0].region, &copy))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Skipped);
    assert_eq!(w.deps.aws.call_counts()["ec2:CopyImage"], 2);
}

#[tokio::test]
async fn a_completed_copy_is_shared_like_its_source_with_its_regions_key() {
    let w = world(true, true);
    let west = copy_to_us_west_2(&w).await;
    w.deps.aws.complete_copy("us-west-2", &west);
    let c = on_copy_complete::handle(&w.deps, available("us-west-2", &west))
        .await
        .unwrap();
    assert_eq!(c.outcome, Outcome::Shared, "{c:#?}");
    let copy = w.deps.aws.image("us-west-2", &west).unwrap();
    let source = w.deps.aws.image("us-east-1", &w.source.id).unwrap();
    assert_eq!(copy.launch, source.launch);
    for v in &copy.image.volumes {
        assert_eq!(
            w.deps.aws.snapshot_permissions("us-west-2", &v.snapshot_id),
            targets()
        );
    }
    let west_key_grants: BTreeSet<String> = w
        .deps
        .aws
        .grants(&w.keys[1])
        .into_iter()
        .map(|g| g.1)
        .collect();
    assert_eq!(west_key_grants, targets(), "grants on the us-west-2 key");
    assert_eq!(copy.image.tags["ami-share:managed"], "golden");
    assert!(copy.image.tags.contains_key(amishare::share::PLAN_TAG));

    // Redelivered: nothing to write, not even a tag.
    w.deps.aws.reset_calls();
    on_copy_complete::handle(&w.deps, available("us-west-2", &west))
        .await
        .unwrap();
    let counts = w.deps.aws.call_counts();
    for write in [
        "ec2:CreateTags",
        "ec2:ModifyImageAttribute",
        "ec2:ModifySnapshotAttribute",
        "kms:CreateGrant",
    ] {
        assert_eq!(counts.get(write), None, "{write}: {counts:?}");
    }
}

#[tokio::test]
async fn a_copy_whose_tags_were_dropped_is_recognised_by_name_and_its_tags_restored() {
    let w = world(false, false);
    let s = on_image_available::handle(&w.deps, available("us-east-1", &w.source.id))
        .await
        .unwrap();
    let eu = s
        .copies
        .iter()
        .find(|c| c.region == "eu-west-1")
        .unwrap()
        .image_id
        .clone()
        .unwrap();
    w.deps.aws.complete_copy("eu-west-1", &eu);
    w.deps
        .aws
        .world()
        .images
        .get_mut(&("eu-west-1".into(), eu.clone()))
        .unwrap()
        .image
        .tags
        .clear();
    let c = on_copy_complete::handle(&w.deps, available("eu-west-1", &eu))
        .await
        .unwrap();
    assert_eq!(c.outcome, Outcome::Shared, "{c:#?}");
    assert_eq!(c.rules, ["golden"], "rules found by re-matching the source");
    let tags = w.deps.aws.image("eu-west-1", &eu).unwrap().image.tags;
    assert_eq!(
        tags["ami-share:source-image"],
        format!("us-east-1/{}", w.source.id)
    );
    assert_eq!(tags["ami-share:source-rule"], "golden");
}

#[tokio::test]
async fn failed_copy_is_reported_and_restarted_later_with_a_new_token() {
    let w = world(false, false);
    let s = on_image_available::handle(&w.deps, available("us-east-1", &w.source.id))
        .await
        .unwrap();
    let eu = s
        .copies
        .iter()
        .find(|c| c.region == "eu-west-1")
        .unwrap()
        .image_id
        .clone()
        .unwrap();
    w.deps
        .aws
        .world()
        .images
        .get_mut(&("eu-west-1".into(), eu.clone()))
        .unwrap()
        .image
        .state = ImageState::Failed;
    let c = on_copy_complete::handle(&w.deps, event("failed", "eu-west-1", &eu))
        .await
        .unwrap();
    assert_eq!(c.outcome, Outcome::CopyFailed);
    assert!(
        c.reason
            .as_deref()
            .unwrap()
            .contains("Copy failed: ResourceLimitExceeded"),
        "{:?}",
        c.reason
    );
    assert_eq!(
        w.deps.aws.image("eu-west-1", &eu).unwrap().image.state,
        ImageState::Failed,
        "nothing deregistered"
    );
    // the next attempt, the nightly run's convergence (which looks copies up by name),
    // starts a fresh copy under a new name and token
    let source = w.deps.aws.image("us-east-1", &w.source.id).unwrap().image;
    let rules = amishare::plan::matching_rules(&w.deps.policy, &source, "123456789012").unwrap();
    let plan = amishare::plan::SharePlan::from_rules(w.deps.policy.kms_access, rules);
    let conv =
        amishare::share::Convergence::prepare(&w.deps, [(&source, &plan)], chrono::Utc::now())
            .await
            .unwrap();
    let again = conv.converge(&source, &plan, true, None).await.unwrap();
    let retry = again
        .copies
        .iter()
        .find(|c| c.region == "eu-west-1")
        .unwrap();
    assert_eq!(retry.status, "started");
    assert_ne!(retry.image_id.as_deref(), Some(eu.as_str()));
}

#[tokio::test]
async fn images_that_are_not_our_copies_are_left_to_on_image_available() {
    let w = world(false, false);
    let c = on_copy_complete::handle(&w.deps, available("us-east-1", &w.source.id))
        .await
        .unwrap();
    assert_eq!(c.outcome, Outcome::Ignored);
    assert!(w
        .deps
        .aws
        .image("us-east-1", &w.source.id)
        .unwrap()
        .launch
        .is_empty());
}

#[tokio::test]
async fn reencrypted_copy_is_shared_when_available_and_never_the_original() {
    let fake = FakeAws::new();
    let ebs = fake.create_key("us-east-1", KeyManager::Aws);
    let cmk = fake.create_key("us-east-1", KeyManager::Customer);
    fake.create_alias(&cmk, "alias/ami-share");
    let src = fake.create_image(ImageSpec::new("us-east-1", "golden-1").encrypted_with(&[&ebs]));
    let p = Policy::from_json(
        r#"{"rules":[{"name":"g","match":{"name":"golden-*"},"share_with":{"accounts":["111122223333"]}}],
            "reencrypt_with":{"us-east-1":"alias/ami-share"}}"#,
    )
    .unwrap();
    let deps = Deps::new(fake, p, OWN_ACCOUNT);
    let s = on_image_available::handle(&deps, available("us-east-1", &src.id))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::ReencryptStarted);
    let copy = s.copies[0].image_id.clone().unwrap();
    deps.aws.complete_copy("us-east-1", &copy);
    let c = on_copy_complete::handle(&deps, available("us-east-1", &copy))
        .await
        .unwrap();
    assert_eq!(c.outcome, Outcome::Shared, "{c:#?}");
    let shared = deps.aws.image("us-east-1", &copy).unwrap();
    assert_eq!(shared.launch.accounts.len(), 1);
    assert_eq!(deps.aws.grants(&cmk).len(), 1);
    assert!(deps
        .aws
        .image("us-east-1", &src.id)
        .unwrap()
        .launch
        .is_empty());
}

#[tokio::test]
async fn deprecation_time_of_the_source_is_propagated() {
    let w = world(false, false);
    deprecate_source(&w, "2027-06-01T00:00:00.000Z");
    let west = copy_to_us_west_2(&w).await;
    w.deps.aws.complete_copy("us-west-2", &west);
    on_copy_complete::handle(&w.deps, available("us-west-2", &west))
        .await
        .unwrap();
    assert_eq!(
        w.deps
            .aws
            .image("us-west-2", &west)
            .unwrap()
            .image
            .deprecation_time
            .as_deref(),
        Some("2027-06-01T00:00:00.000Z")
    );
}

/// A copy that becomes available after its source's deprecation time: EC2 refuses a time in
/// the past, so the copy is deprecated from the next minute, after it is shared and recorded.
#[tokio::test]
async fn a_source_deprecated_in_the_past_deprecates_its_copy_now_and_the_copy_is_managed() {
    let w = world(false, false);
    let west = copy_to_us_west_2(&w).await;
    // the source was deprecated while the copy was in flight
    deprecate_source(&w, "2026-01-01T00:00:00.000Z");
    w.deps.aws.complete_copy("us-west-2", &west);
    let before = chrono::Utc::now();
    let c = on_copy_complete::handle(&w.deps, available("us-west-2", &west))
        .await
        .unwrap();
    assert_eq!(c.outcome, Outcome::Shared, "{c:#?}");
    assert!(
        c.reason
            .as_deref()
            .unwrap()
            .contains("2026-01-01T00:00:00.000Z"),
        "{c:?}"
    );
    let copy = w.deps.aws.image("us-west-2", &west).unwrap();
    let at = copy.image.deprecation_time.as_deref().unwrap();
    let at = chrono::DateTime::parse_from_rfc3339(at).unwrap();
    assert!(
        at > before && at <= before + chrono::Duration::seconds(121),
        "{at}"
    );
    assert!(!copy.launch.is_empty(), "shared");
    assert!(
        copy.image.tags.contains_key("ami-share:plan"),
        "recorded: not left half-managed"
    );
}

/// A late step that fails (here EnableImageDeprecation, refused) comes after the copy is
/// shared and recorded: it is reported, and the copy is managed all the same.
#[tokio::test]
async fn a_failing_deprecation_leaves_the_copy_shared_and_recorded() {
    let w = world(false, false);
    deprecate_source(&w, "2027-06-01T00:00:00.000Z");
    let west = copy_to_us_west_2(&w).await;
    w.deps.aws.complete_copy("us-west-2", &west);
    w.deps
        .aws
        .fail("ec2:EnableImageDeprecation", "UnauthorizedOperation", 0, 1);
    let c = on_copy_complete::handle(&w.deps, available("us-west-2", &west))
        .await
        .unwrap();
    assert_eq!(c.outcome, Outcome::Failed, "{c:#?}");
    let copy = w.deps.aws.image("us-west-2", &west).unwrap();
    assert!(!copy.launch.is_empty());
    assert!(copy.image.tags.contains_key("ami-share:plan"));
    assert!(copy.image.tags.contains_key("ami-share:managed"));
}

/// One image through the whole chain: build → available → copies → copy events in a
/// shuffled order, one delivered twice → every Region shared as the policy says.
#[tokio::test]
async fn whole_chain_with_shuffled_and_duplicated_copy_events() {
    for seed in 0u64..6 {
        let w = world(true, true);
        let s = on_image_available::handle(&w.deps, available("us-east-1", &w.source.id))
            .await
            .unwrap();
        let mut events: Vec<(String, String)> = s
            .copies
            .iter()
            .map(|c| (c.region.clone(), c.image_id.clone().unwrap()))
            .collect();
        for (r, id) in &events {
            w.deps.aws.complete_copy(r, id);
        }
        let dup = events[(seed as usize) % events.len()].clone();
        events.push(dup);
        // deterministic shuffle per seed
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        for i in (1..events.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            events.swap(i, (state >> 33) as usize % (i + 1));
        }
        for (r, id) in &events {
            let c = on_copy_complete::handle(&w.deps, available(r, id))
                .await
                .unwrap();
            assert_eq!(c.outcome, Outcome::Shared, "seed {seed}: {c:#?}");
        }
        let source = w.deps.aws.image("us-east-1", &w.source.id).unwrap();
        for (i, r) in ["us-east-1", "us-west-2", "eu-west-1"].iter().enumerate() {
            let world = w.deps.aws.world();
            let imgs: Vec<_> = world
                .images
                .values()
                .filter(|x| &x.image.region == r)
                .collect();
            assert_eq!(imgs.len(), 1, "seed {seed}: exactly one image in {r}");
            assert_eq!(imgs[0].launch, source.launch, "seed {seed}: {r}");
            for v in &imgs[0].image.volumes {
                assert_eq!(
                    world.snapshots[&(r.to_string(), v.snapshot_id.clone())].permissions,
                    targets(),
                    "seed {seed}: {r}"
                );
            }
            let grants = &world.keys[&w.keys[i]].grants;
            assert_eq!(
                grants.len(),
                4,
                "seed {seed}: one grant per account on the {r} key"
            );
        }
    }
}

/// A copy that fails after its source was converged makes the source's fingerprint stale, so
/// the next night converges the source again and starts the copy anew.
#[tokio::test]
async fn a_failed_copy_clears_its_sources_fingerprint() {
    use amishare::share::PLAN_TAG;
    let w = world(false, false);
    on_image_available::handle(&w.deps, available("us-east-1", &w.source.id))
        .await
        .unwrap();
    let src = w.deps.aws.image("us-east-1", &w.source.id).unwrap().image;
    assert!(src.tags.contains_key(PLAN_TAG), "{:?}", src.tags);
    let copy_id = w
        .deps
        .aws
        .world()
        .images
        .values()
        .find(|i| i.image.region == "us-west-2")
        .map(|i| i.image.id.clone())
        .unwrap();
    w.deps
        .aws
        .world()
        .images
        .get_mut(&("us-west-2".to_string(), copy_id.clone()))
        .unwrap()
        .image
        .state = ImageState::Failed;
    let s = on_copy_complete::handle(&w.deps, event("failed", "us-west-2", &copy_id))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::CopyFailed);
    assert!(s.reason.unwrap().contains("fingerprint was cleared"));
    let src = w.deps.aws.image("us-east-1", &w.source.id).unwrap().image;
    assert!(!src.tags.contains_key(PLAN_TAG), "{:?}", src.tags);
}
