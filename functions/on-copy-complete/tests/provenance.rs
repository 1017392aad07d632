//! Forged tags steer nothing (issue 25): which images are our copies, under which rules they
//! are shared and which is a rule's newest come from EC2's lineage (`SourceImageId` /
//! `SourceImageRegion`) and the policy, never from tags or names anyone can write.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::time::Duration;

use amishare::deps::{Deps, Settings};
use amishare::metrics::{event_record, FORGED_PROVENANCE};
use amishare::ports::Image;
use amishare::report::{Outcome, Summary};
use amishare::Policy;
use amishare_testkit::{ami_event, FakeAws, Fixture, ImageSpec, OWN_ACCOUNT};
use serde_json::{json, Value};

const GOLDEN_ACCOUNT: &str = "111122223333";
const WIDE_ACCOUNT: &str = "444455556666";
const PARAM: &str = "/golden/al2023/latest";
const SRC: &str = "us-east-1";
const DST: &str = "us-west-2";

fn event(region: &str, image_id: &str) -> Value {
    ami_event(Fixture::CopyAvailable, region, image_id)
}

/// Rule `golden` (publishes, copies to us-west-2) and rule `wide`, which matches other images
/// and shares with another account.
fn deps() -> Deps<FakeAws> {
    let policy = Policy::from_json(&format!(
        r#"{{"rules":[
            {{"name":"golden","match":{{"name":"golden-*"}},
              "share_with":{{"accounts":["{GOLDEN_ACCOUNT}"]}},
              "publish":{{"parameter":"{PARAM}"}},
              "copy_to":[{{"region":"{DST}"}}]}},
            {{"name":"wide","match":{{"tags":{{"Team":"other"}}}},
              "share_with":{{"accounts":["{WIDE_ACCOUNT}"]}}}}]}}"#
    ))
    .unwrap();
    let mut d = Deps::new(FakeAws::new(), policy, OWN_ACCOUNT);
    d.settings = Settings {
        visibility_retry_delays: vec![Duration::from_millis(1); 2],
        ..Settings::default()
    };
    d
}

async fn copy_complete(d: &Deps<FakeAws>, region: &str, id: &str) -> Summary {
    on_copy_complete::handle(d, event(region, id))
        .await
        .unwrap()
}

/// A source shared by on-image-available, and its copy to us-west-2, completed.
async fn source_and_copy(d: &Deps<FakeAws>, created: &str) -> (Image, String) {
    let source = d
        .aws
        .create_image(ImageSpec::new(SRC, &format!("golden-{created}")).created(created));
    let mut ev = event(SRC, &source.id);
    ev["detail-type"] = json!("EC2 AMI State Change");
    let s = on_image_available::handle(d, ev).await.unwrap();
    let copy = s
        .copies
        .iter()
        .find(|c| c.region == DST)
        .and_then(|c| c.image_id.clone())
        .unwrap();
    d.aws.complete_copy(DST, &copy);
    (source, copy)
}

fn writes(d: &Deps<FakeAws>) -> Vec<String> {
    d.aws
        .call_counts()
        .into_iter()
        .filter(|(op, _)| {
            [
                "ec2:ModifyImageAttribute",
                "ec2:ModifySnapshotAttribute",
                "kms:CreateGrant",
                "ssm:PutParameter",
                "ec2:CreateTags",
                "events:PutEvents",
            ]
            .contains(&op.as_str())
        })
        .map(|(op, n)| format!("{op} x{n}"))
        .collect()
}

fn assert_forged(s: &Summary) {
    assert_eq!(s.outcome, Outcome::Refused, "{s:#?}");
    assert_eq!(s.reason_code, Some("forged-provenance"), "{s:#?}");
    assert!(s.share.is_none() && s.published.is_empty(), "{s:#?}");
    let record = event_record(
        "on-copy-complete",
        Some(s),
        Duration::ZERO,
        chrono::Utc::now(),
    );
    assert_eq!(record[FORGED_PROVENANCE], json!(1.0));
    assert_eq!(record["Undistributed"], json!(1.0));
}

#[tokio::test]
async fn an_image_with_our_copy_tags_but_no_lineage_is_refused_and_nothing_is_written() {
    let d = deps();
    let (source, _) = source_and_copy(&d, "2026-11-21T10:00:00.000Z").await;
    // Made by CreateImage / RegisterImage (no SourceImageId), tagged like one of our copies.
    let forged = d.aws.create_image(
        ImageSpec::new(DST, "anything")
            .tag("ami-share:source-image", &format!("{SRC}/{}", source.id))
            .tag("ami-share:source-rule", "golden")
            .tag("ami-share:source-created", "2099-01-01T00:00:00.000Z"),
    );
    d.aws.reset_calls();
    let s = copy_complete(&d, DST, &forged.id).await;
    assert_forged(&s);
    assert!(
        s.reason.as_deref().unwrap().contains("no source image"),
        "{s:?}"
    );
    assert_eq!(
        writes(&d),
        Vec::<String>::new(),
        "nothing shared, tagged or published"
    );
    assert!(d.aws.image(DST, &forged.id).unwrap().launch.is_empty());
    assert_eq!(d.aws.parameter(DST, PARAM), None);

    // on-image-available refuses it too (it is not a source to share either).
    let mut ev = event(DST, &forged.id);
    ev["detail-type"] = json!("EC2 AMI State Change");
    let s = on_image_available::handle(&d, ev).await.unwrap();
    assert_eq!(s.outcome, Outcome::Refused, "{s:#?}");
    assert_eq!(s.reason_code, Some("forged-provenance"));
    assert_eq!(writes(&d), Vec::<String>::new());
}

#[tokio::test]
async fn a_copy_name_without_matching_lineage_is_refused() {
    let d = deps();
    let (source, _) = source_and_copy(&d, "2026-11-21T10:00:00.000Z").await;
    // A copy of some other image of the account, named like a copy of the golden source.
    let other = d.aws.create_image(ImageSpec::new(SRC, "scratch"));
    let forged = d.aws.create_image(
        ImageSpec::new(DST, &format!("x--copy-of-{SRC}-{}", source.id)).copied_from(SRC, &other.id),
    );
    d.aws.reset_calls();
    let s = copy_complete(&d, DST, &forged.id).await;
    assert_forged(&s);
    assert!(
        s.reason.as_deref().unwrap().contains(&other.id),
        "names what EC2 records: {s:?}"
    );
    assert_eq!(writes(&d), Vec::<String>::new());
}

#[tokio::test]
async fn a_copy_is_shared_under_the_rules_its_source_matches_never_its_tags() {
    let d = deps();
    let (_, copy) = source_and_copy(&d, "2026-11-21T10:00:00.000Z").await;
    // Someone rewrites the copy's rule tag to a rule with other consumers.
    d.aws
        .tag_image_directly(DST, &copy, "ami-share:source-rule", "wide");
    let s = copy_complete(&d, DST, &copy).await;
    assert_eq!(s.outcome, Outcome::Shared, "{s:#?}");
    assert_eq!(s.rules, ["golden"]);
    let launch = d.aws.image(DST, &copy).unwrap().launch;
    assert!(launch.accounts.contains(GOLDEN_ACCOUNT));
    assert!(!launch.accounts.contains(WIDE_ACCOUNT), "{launch:?}");
}

#[tokio::test]
async fn a_copy_of_an_image_no_rule_matches_is_not_shared_whatever_its_tags_say() {
    let d = deps();
    let other = d.aws.create_image(ImageSpec::new(SRC, "scratch-1"));
    // A real copy (EC2 lineage), of an image no rule matches, tagged as one of ours.
    let copy = d.aws.create_image(
        ImageSpec::new(DST, &format!("scratch-1--copy-of-{SRC}-{}", other.id))
            .copied_from(SRC, &other.id)
            .tag("ami-share:source-image", &format!("{SRC}/{}", other.id))
            .tag("ami-share:source-rule", "golden"),
    );
    d.aws.reset_calls();
    let s = copy_complete(&d, DST, &copy.id).await;
    assert_eq!(s.outcome, Outcome::Skipped, "{s:#?}");
    assert!(s.reason.as_deref().unwrap().contains("no rule"), "{s:?}");
    assert_eq!(writes(&d), Vec::<String>::new());
}

#[tokio::test]
async fn the_skip_tag_on_a_copy_is_honoured() {
    let d = deps();
    let (_, copy) = source_and_copy(&d, "2026-11-21T10:00:00.000Z").await;
    d.aws
        .tag_image_directly(DST, &copy, "ami-share:skip", "true");
    d.aws.reset_calls();
    let s = copy_complete(&d, DST, &copy).await;
    assert_eq!(s.outcome, Outcome::Skipped, "{s:#?}");
    assert_eq!(s.reason_code, Some("skip-tag"));
    assert_eq!(writes(&d), Vec::<String>::new());
}

#[tokio::test]
async fn a_copy_whose_source_is_gone_is_not_newly_shared_or_published() {
    let d = deps();
    let (source, copy) = source_and_copy(&d, "2026-11-21T10:00:00.000Z").await;
    d.aws
        .world()
        .images
        .remove(&(SRC.to_string(), source.id.clone()));
    d.aws.reset_calls();
    let s = copy_complete(&d, DST, &copy).await;
    assert_eq!(s.outcome, Outcome::Skipped, "{s:#?}");
    assert_eq!(s.reason_code, Some("source-gone"));
    assert_eq!(writes(&d), Vec::<String>::new());
}

#[tokio::test]
async fn a_far_future_source_created_tag_does_not_move_the_parameter() {
    let d = deps();
    let (_, old_copy) = source_and_copy(&d, "2026-11-01T10:00:00.000Z").await;
    let s = copy_complete(&d, DST, &old_copy).await;
    assert_eq!(s.outcome, Outcome::Shared, "{s:#?}");
    assert_eq!(d.aws.parameter(DST, PARAM).unwrap().value, old_copy);
    // The old copy claims a source created in 2099.
    d.aws.tag_image_directly(
        DST,
        &old_copy,
        "ami-share:source-created",
        "2099-01-01T00:00:00.000Z",
    );
    // A newer golden image's copy completes: it is published, the forged date counts for
    // nothing (the order is the sources' own CreationDate, read through the lineage).
    let (_, new_copy) = source_and_copy(&d, "2026-12-01T10:00:00.000Z").await;
    let s = copy_complete(&d, DST, &new_copy).await;
    assert_eq!(s.outcome, Outcome::Shared, "{s:#?}");
    assert_eq!(d.aws.parameter(DST, PARAM).unwrap().value, new_copy);
    // The old copy's event again (redelivered): it stays behind the newer image.
    let s = copy_complete(&d, DST, &old_copy).await;
    assert_eq!(s.outcome, Outcome::Shared, "{s:#?}");
    assert_eq!(d.aws.parameter(DST, PARAM).unwrap().value, new_copy);
}

#[tokio::test]
async fn an_image_made_from_an_instance_of_the_source_is_not_its_re_encrypted_copy() {
    // CreateImage of an instance launched from the golden image records the same lineage as a
    // same-Region re-encrypted copy (SourceImageId = the source, same Region); only EC2's
    // descriptions of its snapshots tell them apart.
    let d = deps();
    let source = d
        .aws
        .create_image(ImageSpec::new(SRC, "golden-1").created("2026-11-21T10:00:00.000Z"));
    let derivative = d.aws.create_image(
        ImageSpec::new(SRC, &format!("golden-1--reenc-of-{SRC}-{}", source.id))
            .copied_from(SRC, &source.id)
            .tag("ami-share:source-image", &format!("{SRC}/{}", source.id))
            .tag("ami-share:copy-kind", "reencrypt"),
    );
    d.aws.reset_calls();
    let s = copy_complete(&d, SRC, &derivative.id).await;
    assert_forged(&s);
    assert!(s.reason.as_deref().unwrap().contains("snapshots"), "{s:?}");
    assert_eq!(writes(&d), Vec::<String>::new());
    assert_eq!(d.aws.call_counts()["ec2:DescribeSnapshots"], 1);
}
