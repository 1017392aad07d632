//! Publishing a rule's newest image, in memory: on-image-available publishes the source in its
//! Region, on-copy-complete each copy in its Region; never backwards, whatever the order and
//! repetition of the events.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::collections::BTreeSet;
use std::time::Duration;

use amishare::deps::{Deps, Settings};
use amishare::ports::{Image, ImageState};
use amishare::publish::{PublishStatus, EVENT_DETAIL_TYPE, EVENT_SOURCE};
use amishare::report::{Outcome, Summary};
use amishare::Policy;
use amishare_testkit::{FakeAws, ImageSpec, OWN_ACCOUNT};
use serde_json::{json, Value};

const OU_ARN: &str = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456";
const ACCOUNT: &str = "111122223333";
const PARAM: &str = "/golden/al2023/latest";
const R: &str = "us-east-1";
const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];

fn event(file: &str, region: &str, image_id: &str) -> Value {
    let text = match file {
        "copy" => include_str!("../../../events/copy-available.json"),
        _ => include_str!("../../../events/image-available.json"),
    };
    let mut e: Value = serde_json::from_str(text).unwrap();
    e["region"] = json!(region);
    e["detail"]["ImageId"] = json!(image_id);
    e["detail"]["State"] = json!("available");
    e
}

fn policy(copies: bool, extra: &str) -> Policy {
    let copy_to = if copies {
        r#","copy_to":[{"region":"us-west-2"},{"region":"eu-west-1"}]"#
    } else {
        ""
    };
    Policy::from_json(&format!(
        r#"{{"rules":[{{"name":"golden","match":{{"name":"golden-*"}},
            "share_with":{{"accounts":["{ACCOUNT}"],"organizational_units":["{OU_ARN}"]}},
            "publish":{{"parameter":"{PARAM}"}}{copy_to}}}]{extra}}}"#
    ))
    .unwrap()
}

fn deps(policy: Policy) -> Deps<FakeAws> {
    let fake = FakeAws::new();
    let root = fake.create_org("o-a1b2c3d4e5");
    fake.add_ou(&root, "ou-ab12-cdef3456");
    fake.add_account("ou-ab12-cdef3456", "200000000001", "ACTIVE");
    let mut d = Deps::new(fake, policy, OWN_ACCOUNT);
    d.settings = Settings {
        visibility_retry_delays: vec![Duration::from_millis(1); 2],
        ..Settings::default()
    };
    d
}

fn image(d: &Deps<FakeAws>, created: &str) -> Image {
    d.aws
        .create_image(ImageSpec::new(R, &format!("golden-{created}")).created(created))
}

async fn available(d: &Deps<FakeAws>, id: &str) -> Summary {
    on_image_available::handle(d, event("source", R, id))
        .await
        .unwrap()
}

fn value(d: &Deps<FakeAws>, region: &str) -> Option<String> {
    d.aws.parameter(region, PARAM).map(|p| p.value)
}

#[tokio::test]
async fn a_shared_image_is_published_as_an_image_parameter_shared_with_the_rules_principals() {
    let d = deps(policy(false, ""));
    let img = image(&d, "2026-11-21T10:00:00.000Z");
    let s = available(&d, &img.id).await;
    assert_eq!(s.outcome, Outcome::Shared, "{s:?}");

    let p = d.aws.parameter(R, PARAM).unwrap();
    assert_eq!(p.value, img.id);
    assert_eq!(p.data_type, "aws:ec2:image");
    assert_eq!(p.tier, "Advanced");
    assert_eq!(
        p.labels,
        BTreeSet::from(["created-2026-11-21T10-00-00.000Z".to_string()])
    );
    let arn = format!("arn:aws:ssm:{R}:{OWN_ACCOUNT}:parameter{PARAM}");
    let [pubd] = s.published.as_slice() else {
        panic!("{:?}", s.published)
    };
    assert_eq!(pubd.status, PublishStatus::Published);
    assert_eq!(pubd.parameter_arn, arn);
    assert_eq!(pubd.previous_image_id, None);

    // One share per rule and Region: the parameter, the rule's account and OU.
    let [share] = d
        .aws
        .shares_named(R, "ami-share-golden")
        .try_into()
        .unwrap();
    assert_eq!(share.resources, BTreeSet::from([arn.clone()]));
    assert_eq!(
        share.principals,
        BTreeSet::from([ACCOUNT.to_string(), OU_ARN.to_string()])
    );
    assert!(
        !share.allow_external_principals,
        "the account is a member of the organization: no external principals (issue 25)"
    );
    assert_eq!(
        share.tags.get("ami-share:rule").map(String::as_str),
        Some("golden")
    );

    // One event on the default bus of the Region, with everything a pipeline needs.
    let events = d.aws.events();
    let [(region, e)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(region, R);
    assert_eq!(e.bus, "default");
    assert_eq!(e.source, EVENT_SOURCE);
    assert_eq!(e.detail_type, EVENT_DETAIL_TYPE);
    assert_eq!(
        e.resources,
        vec![format!("arn:aws:ec2:{R}::image/{}", img.id)]
    );
    let detail: Value = serde_json::from_str(&e.detail).unwrap();
    assert_eq!(
        detail,
        json!({"rule": "golden", "region": R, "image-id": img.id, "image-name": img.name,
            "image-created": "2026-11-21T10:00:00.000Z", "parameter-name": PARAM,
            "parameter-arn": arn, "parameter-version": 1, "previous-image-id": null})
    );
}

#[tokio::test]
async fn a_redelivered_event_writes_nothing_and_announces_nothing() {
    let d = deps(policy(false, ""));
    let img = image(&d, "2026-11-21T10:00:00.000Z");
    available(&d, &img.id).await;
    d.aws.reset_calls();
    let s = available(&d, &img.id).await;
    assert_eq!(s.published[0].status, PublishStatus::Current);
    let calls = d.aws.call_counts();
    for write in [
        "ssm:PutParameter",
        "ssm:LabelParameterVersion",
        "events:PutEvents",
        "ram:CreateResourceShare",
        "ram:AssociateResourceShare",
    ] {
        assert_eq!(calls.get(write), None, "{write}: {calls:?}");
    }
    assert_eq!(d.aws.events().len(), 1);
}

/// Every order of three images' events, each delivered twice: the parameter ends on the
/// newest, never moves backwards on the way, and each move is announced once.
#[tokio::test]
async fn never_backwards_under_shuffled_and_repeated_events() {
    let orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for order in orders {
        let d = deps(policy(false, ""));
        let imgs = [
            image(&d, "2026-11-01T10:00:00.000Z"),
            image(&d, "2026-11-08T10:00:00.000Z"),
            image(&d, "2026-11-15T10:00:00.000Z"),
        ];
        let mut newest_seen = None;
        for i in order.iter().chain(order.iter().rev()) {
            available(&d, &imgs[*i].id).await;
            let now = value(&d, R).unwrap();
            let rank = imgs.iter().position(|m| m.id == now).unwrap();
            assert!(
                newest_seen.is_none_or(|n| rank >= n),
                "{order:?}: moved back to {rank}"
            );
            newest_seen = Some(rank);
        }
        assert_eq!(value(&d, R).unwrap(), imgs[2].id, "{order:?}");
        let moves = order
            .iter()
            .scan(None, |best: &mut Option<usize>, i| {
                let forward = best.is_none_or(|b| *i > b);
                if forward {
                    *best = Some(*i);
                }
                Some(forward)
            })
            .filter(|f| *f)
            .count();
        let events = d.aws.events();
        assert_eq!(events.len(), moves, "{order:?}");
        // Each event names what the parameter named before.
        let last: Value = serde_json::from_str(&events[moves - 1].1.detail).unwrap();
        assert_eq!(last["image-id"], json!(imgs[2].id));
        if moves > 1 {
            let before: Value = serde_json::from_str(&events[moves - 2].1.detail).unwrap();
            assert_eq!(last["previous-image-id"], before["image-id"]);
        }
    }
}

#[tokio::test]
async fn a_tie_in_creation_date_goes_to_the_greater_image_id() {
    let d = deps(policy(false, ""));
    let a = image(&d, "2026-11-21T10:00:00.000Z");
    let b = image(&d, "2026-11-21T10:00:00.000Z");
    let (low, high) = if a.id < b.id { (a, b) } else { (b, a) };
    available(&d, &high.id).await;
    let s = available(&d, &low.id).await;
    assert_eq!(s.published[0].status, PublishStatus::NewerKept);
    assert_eq!(s.published[0].current_image_id, high.id);
    assert_eq!(value(&d, R).unwrap(), high.id);
}

#[tokio::test]
async fn a_published_image_that_is_no_longer_available_is_replaced_by_an_older_one() {
    let d = deps(policy(false, ""));
    let old = image(&d, "2026-11-01T10:00:00.000Z");
    let new = image(&d, "2026-11-15T10:00:00.000Z");
    available(&d, &new.id).await;
    d.aws
        .world()
        .images
        .get_mut(&(R.to_string(), new.id.clone()))
        .unwrap()
        .image
        .state = ImageState::Disabled;
    let s = available(&d, &old.id).await;
    assert_eq!(s.published[0].status, PublishStatus::Published);
    assert_eq!(
        s.published[0].previous_image_id.as_deref(),
        Some(new.id.as_str())
    );
    assert_eq!(value(&d, R).unwrap(), old.id);
}

#[tokio::test]
async fn another_writer_between_read_and_write_never_wins_with_an_older_image() {
    let d = deps(policy(false, ""));
    let old = image(&d, "2026-11-01T10:00:00.000Z");
    let new = image(&d, "2026-11-15T10:00:00.000Z");
    // While the older image's event is between its read and its write, the newer one's
    // writer puts its value.
    d.aws.world().publishing.interleave = Some((PARAM.into(), new.id.clone()));
    let s = available(&d, &old.id).await;
    assert_eq!(s.published[0].status, PublishStatus::NewerKept, "{s:?}");
    assert_eq!(value(&d, R).unwrap(), new.id);
    let versions = d.aws.parameter_versions(R, PARAM);
    let values: Vec<&str> = versions.iter().map(|v| v.value.as_str()).collect();
    assert_eq!(values, [new.id.as_str(), old.id.as_str(), new.id.as_str()]);
    // The label of the newer image sits on the current version.
    assert!(versions[2]
        .labels
        .contains("created-2026-11-15T10-00-00.000Z"));
}

#[tokio::test]
async fn a_run_cut_short_before_the_label_is_finished_by_the_retry() {
    let d = deps(policy(false, ""));
    let img = image(&d, "2026-11-21T10:00:00.000Z");
    d.aws
        .fail("ssm:LabelParameterVersion", "ThrottlingException", 0, 1);
    let e = on_image_available::handle(&d, event("source", R, &img.id))
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    let s = available(&d, &img.id).await;
    assert_eq!(s.published[0].status, PublishStatus::Finished, "{s:?}");
    assert_eq!(
        d.aws.parameter_versions(R, PARAM).len(),
        1,
        "no second write"
    );
    assert!(d.aws.parameter(R, PARAM).unwrap().labels.len() == 1);
    // Events are at least once: the cut-short run had sent its event already.
    assert_eq!(d.aws.events().len(), 2);
}

#[tokio::test]
async fn a_version_not_created_yet_is_transient_naming_the_asynchronous_validation() {
    let d = deps(policy(false, ""));
    let img = image(&d, "2026-11-21T10:00:00.000Z");
    d.aws.fail(
        "ssm:LabelParameterVersion",
        "ParameterVersionNotFound",
        0,
        1,
    );
    let e = on_image_available::handle(&d, event("source", R, &img.id))
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(e.to_string().contains("asynchronously"), "{e}");
}

#[tokio::test]
async fn a_full_version_history_with_a_labelled_oldest_version_is_made_room_for() {
    let d = deps(policy(false, ""));
    let old = image(&d, "2026-11-01T10:00:00.000Z");
    let new = image(&d, "2026-11-15T10:00:00.000Z");
    for _ in 0..100 {
        d.aws.set_parameter(R, PARAM, &old.id);
    }
    d.aws
        .world()
        .publishing
        .parameters
        .get_mut(&(R.into(), PARAM.into()))
        .unwrap()[0]
        .labels
        .insert("created-old".into());
    let s = available(&d, &new.id).await;
    assert_eq!(s.published[0].status, PublishStatus::Published, "{s:?}");
    assert_eq!(value(&d, R).unwrap(), new.id);
    let versions = d.aws.parameter_versions(R, PARAM);
    assert_eq!(versions.len(), 100);
    assert!(versions.iter().all(|v| !v.labels.contains("created-old")));
}

#[tokio::test]
async fn organization_sharing_off_is_refused_naming_the_fix_and_the_rest_is_done() {
    let d = deps(policy(false, ""));
    d.aws.world().publishing.org_sharing_off = true;
    let img = image(&d, "2026-11-21T10:00:00.000Z");
    let s = available(&d, &img.id).await;
    assert_eq!(s.outcome, Outcome::Refused, "{s:?}");
    let msg = &s.error.as_ref().unwrap().message;
    assert!(
        msg.contains("aws ram enable-sharing-with-aws-organization"),
        "{msg}"
    );
    assert!(msg.contains("ami-share-golden"), "{msg}");
    // The image itself is shared; the parameter is written but not announced or labelled,
    // so the next event or night finishes the publication.
    assert!(d
        .aws
        .image(R, &img.id)
        .unwrap()
        .launch
        .accounts
        .contains(ACCOUNT));
    assert_eq!(value(&d, R).unwrap(), img.id);
    assert!(d.aws.events().is_empty());
    d.aws.world().publishing.org_sharing_off = false;
    let s = available(&d, &img.id).await;
    assert_eq!(s.published[0].status, PublishStatus::Finished, "{s:?}");
    assert_eq!(d.aws.events().len(), 1);
}

#[tokio::test]
async fn the_event_also_goes_to_the_policys_bus_in_that_buss_region() {
    let bus = "arn:aws:events:eu-west-1:444455556666:event-bus/org-images";
    let d = deps(policy(
        false,
        &format!(r#","events":{{"event_bus_arn":"{bus}"}}"#),
    ));
    let img = image(&d, "2026-11-21T10:00:00.000Z");
    available(&d, &img.id).await;
    let events = d.aws.events();
    let got: Vec<(&str, &str)> = events
        .iter()
        .map(|(r, e)| (r.as_str(), e.bus.as_str()))
        .collect();
    assert_eq!(got, [("eu-west-1", bus), (R, "default")]);
    assert_eq!(events[0].1.detail, events[1].1.detail);
}

#[tokio::test]
async fn an_image_not_fully_shared_is_not_published() {
    let d = deps(policy(false, r#","allow_public":true"#));
    // A public rule under image block public access: refused, so not fully shared.
    let p = Policy::from_json(&format!(
        r#"{{"allow_public":true,"rules":[{{"name":"golden","match":{{"name":"golden-*"}},
            "share_with":{{"accounts":["{ACCOUNT}"],"public":true}},
            "publish":{{"parameter":"{PARAM}"}}}}]}}"#
    ))
    .unwrap();
    let d = Deps::new(d.aws, p, OWN_ACCOUNT);
    d.aws.world().public_blocked.insert(R.into());
    let img = image(&d, "2026-11-21T10:00:00.000Z");
    let s = available(&d, &img.id).await;
    assert_eq!(s.outcome, Outcome::Refused);
    assert!(s.published.is_empty());
    assert_eq!(value(&d, R), None);
}

/// The source and its two copies: each published in its own Region once shared there, each
/// copy ordered by its source's creation date.
#[tokio::test]
async fn each_copy_is_published_in_its_destination_region() {
    let d = deps(policy(true, ""));
    let img = image(&d, "2026-11-21T10:00:00.000Z");
    let s = available(&d, &img.id).await;
    assert_eq!(value(&d, R).unwrap(), img.id);
    for c in &s.copies {
        let (region, copy) = (c.region.as_str(), c.image_id.clone().unwrap());
        assert_eq!(value(&d, region), None, "not before the copy is shared");
        d.aws.complete_copy(region, &copy);
        let s = on_copy_complete::handle(&d, event("copy", region, &copy))
            .await
            .unwrap();
        assert_eq!(s.published[0].status, PublishStatus::Published, "{s:?}");
        let p = d.aws.parameter(region, PARAM).unwrap();
        assert_eq!(p.value, copy);
        assert!(
            p.labels.contains("created-2026-11-21T10-00-00.000Z"),
            "{p:?}"
        );
        assert_eq!(d.aws.shares_named(region, "ami-share-golden").len(), 1);
    }
    let regions: BTreeSet<String> = d.aws.events().into_iter().map(|(r, _)| r).collect();
    assert_eq!(regions, REGIONS.iter().map(|r| r.to_string()).collect());
}

/// A second copy of the same source in a Region (a retried copy) is as new as the first: the
/// published one stays, no churn and no event.
#[tokio::test]
async fn another_copy_of_the_same_source_leaves_the_published_copy_alone() {
    use amishare::copy::copy_request;
    use amishare::names::CopyKind;
    use amishare::ports::Images;
    let d = deps(policy(true, ""));
    let img = image(&d, "2026-11-21T10:00:00.000Z");
    let s = available(&d, &img.id).await;
    let first = s.copies[0].image_id.clone().unwrap();
    let region = s.copies[0].region.clone();
    d.aws.complete_copy(&region, &first);
    on_copy_complete::handle(&d, event("copy", &region, &first))
        .await
        .unwrap();
    let events = d.aws.events().len();
    let retry = copy_request(
        &img,
        &region,
        None,
        CopyKind::RegionCopy,
        &["golden".into()],
        1,
    );
    let second = d.aws.copy_image(&retry).await.unwrap();
    d.aws.complete_copy(&region, &second);
    let s = on_copy_complete::handle(&d, event("copy", &region, &second))
        .await
        .unwrap();
    assert_eq!(s.published[0].status, PublishStatus::NewerKept, "{s:?}");
    assert_eq!(value(&d, &region).unwrap(), first);
    assert_eq!(d.aws.events().len(), events);
}
