//! Forged tags steer nothing at night either (issue 25): the night takes its copies from EC2's
//! lineage (their sources read together, one call per 200), shares them under the rules their
//! sources match, orders a rule's images by the sources' own CreationDate, and retires only
//! what a rule's match selects now or verified copies of it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use amishare::deps::Deps;
use amishare::metrics::FORGED_PROVENANCE;
use amishare::names::{MANAGED_TAG, SOURCE_CREATED_TAG, SOURCE_IMAGE_TAG, SOURCE_RULE_TAG};
use amishare::ports::Image;
use amishare::retire::{STAGE_AT_TAG, STAGE_TAG};
use amishare::Policy;
use amishare_testkit::{FakeAws, ImageSpec, OWN_ACCOUNT};
use chrono::{DateTime, TimeZone, Utc};
use nightly_sweeper::{handle, Run, SweepReport};
use serde_json::json;

const SRC: &str = "us-east-1";
const DST: &str = "us-west-2";
const GOLDEN_ACCOUNT: &str = "111122223333";
const WIDE_ACCOUNT: &str = "444455556666";
const PARAM: &str = "/golden/al2023/latest";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 6, 1, 3, 30, 0).unwrap()
}

fn deps(retire: bool) -> Deps<FakeAws> {
    let retire = if retire {
        json!({"keep": 1, "mode": "act", "disable_after_days": 0})
    } else {
        json!(null)
    };
    let mut golden = json!({"name": "golden", "match": {"name": "golden-*"},
        "share_with": {"accounts": [GOLDEN_ACCOUNT]},
        "publish": {"parameter": PARAM}});
    if !retire.is_null() {
        golden["retire"] = retire;
    }
    let policy = json!({"rules": [golden,
        {"name": "wide", "match": {"tags": {"Team": "other"}},
         "share_with": {"accounts": [WIDE_ACCOUNT]}}]});
    Deps::new(
        FakeAws::new(),
        Policy::from_json(&policy.to_string()).unwrap(),
        OWN_ACCOUNT,
    )
}

async fn night(d: &Deps<FakeAws>, region: &str) -> SweepReport {
    handle(d, json!({}), &Run::new(region, now(), None))
        .await
        .unwrap()
}

fn source(d: &Deps<FakeAws>, created: &str) -> Image {
    d.aws
        .create_image(ImageSpec::new(SRC, &format!("golden-{created}")).created(created))
}

/// A copy of `source` in us-west-2 as the product makes it (lineage and tags), made on
/// `copied` (its own CreationDate).
fn copy(d: &Deps<FakeAws>, source: &Image, copied: &str) -> Image {
    d.aws.create_image(
        ImageSpec::new(
            DST,
            &format!("{}--copy-of-{SRC}-{}", source.name, source.id),
        )
        .copied_from(SRC, &source.id)
        .created(copied)
        .tag(SOURCE_IMAGE_TAG, &format!("{SRC}/{}", source.id))
        .tag(SOURCE_RULE_TAG, "golden"),
    )
}

#[tokio::test]
async fn the_night_refuses_a_forged_copy_and_reports_it() {
    let d = deps(false);
    let golden = source(&d, "2030-05-01T00:00:00.000Z");
    // Tagged like a copy of the golden image, made by CreateImage: no lineage.
    let forged = d.aws.create_image(
        ImageSpec::new(DST, "team-b-image")
            .tag(SOURCE_IMAGE_TAG, &format!("{SRC}/{}", golden.id))
            .tag(SOURCE_RULE_TAG, "golden")
            .tag(SOURCE_CREATED_TAG, "2099-01-01T00:00:00.000Z"),
    );
    let r = night(&d, DST).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.drift.forged_provenance, 1, "{:#?}", r.drift);
    assert!(
        r.drift.forged[0].starts_with(&forged.id),
        "{:?}",
        r.drift.forged
    );
    assert!(d.aws.image(DST, &forged.id).unwrap().launch.is_empty());
    assert_eq!(d.aws.parameter(DST, PARAM), None);
    assert_eq!(r.emf(now())[FORGED_PROVENANCE], json!(1));
}

#[tokio::test]
async fn the_night_shares_a_copy_under_its_sources_rules_and_reads_sources_together() {
    let d = deps(false);
    let sources: Vec<Image> = (0..3)
        .map(|i| source(&d, &format!("2030-05-0{}T00:00:00.000Z", i + 1)))
        .collect();
    let copies: Vec<Image> = sources
        .iter()
        .map(|s| copy(&d, s, "2030-05-20T00:00:00.000Z"))
        .collect();
    // One copy's rule tag rewritten to the other rule.
    d.aws
        .tag_image_directly(DST, &copies[0].id, SOURCE_RULE_TAG, "wide");
    d.aws.reset_calls();
    let r = night(&d, DST).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    for c in &copies {
        let launch = d.aws.image(DST, &c.id).unwrap().launch;
        assert!(launch.accounts.contains(GOLDEN_ACCOUNT), "{launch:?}");
        assert!(!launch.accounts.contains(WIDE_ACCOUNT), "{launch:?}");
    }
    // The newest is the copy of the newest source, by the sources' own dates.
    assert_eq!(d.aws.parameter(DST, PARAM).unwrap().value, copies[2].id);
    // The three sources were read in one call (plus the night's own listing and the
    // publication's reads), not one per copy.
    let describes = d.aws.call_counts()["ec2:DescribeImages"];
    assert!(describes <= 4, "{describes} DescribeImages");
}

#[tokio::test]
async fn a_forged_future_date_on_an_old_copy_does_not_win_the_night() {
    let d = deps(false);
    let old = source(&d, "2030-04-01T00:00:00.000Z");
    let new = source(&d, "2030-05-01T00:00:00.000Z");
    let old_copy = copy(&d, &old, "2030-05-20T00:00:00.000Z");
    let new_copy = copy(&d, &new, "2030-05-02T00:00:00.000Z");
    d.aws.tag_image_directly(
        DST,
        &old_copy.id,
        SOURCE_CREATED_TAG,
        "2099-01-01T00:00:00.000Z",
    );
    let r = night(&d, DST).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(
        d.aws.parameter(DST, PARAM).unwrap().value,
        new_copy.id,
        "the copy of the newer source, though the older copy was made later and claims 2099"
    );
}

#[tokio::test]
async fn retirement_takes_only_images_the_rule_selects_never_a_managed_tag_alone() {
    let d = deps(true);
    let newest = source(&d, "2030-05-01T00:00:00.000Z");
    let older = source(&d, "2030-04-01T00:00:00.000Z");
    // Another team's image, tagged managed by the retiring rule, with a back-dated stage.
    let theirs = d.aws.create_image(
        ImageSpec::new(SRC, "team-b-build")
            .created("2030-01-01T00:00:00.000Z")
            .tag(MANAGED_TAG, "golden")
            .tag(STAGE_TAG, "deprecated")
            .tag(STAGE_AT_TAG, "2000-01-01T00:00:00Z"),
    );
    let r = night(&d, SRC).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(
        r.retirement.items.iter().all(|i| i.image_id != theirs.id),
        "{:#?}",
        r.retirement.items
    );
    let theirs_now = d.aws.image(SRC, &theirs.id).unwrap().image;
    assert_eq!(theirs_now.deprecation_time, None);
    assert_eq!(theirs_now.state, amishare::ports::ImageState::Available);
    // The rule's own older image is selected (keep 1), the newest is not.
    assert!(r.retirement.items.iter().any(|i| i.image_id == older.id));
    assert!(r.retirement.items.iter().all(|i| i.image_id != newest.id));
}

/// The organization's boundary at night: a plain account outside the organization is refused
/// before anything is shared (issue 25).
#[tokio::test]
async fn the_night_refuses_the_outsider_too() {
    let (d, id) = boundary_world(
        json!({"rules": [{"name": "golden", "match": {"name": "golden-*"},
        "share_with": {"accounts": [OUTSIDER]}}]}),
    );
    let now = now();
    let r = handle(&d, json!({}), &Run::new(SRC, now, None))
        .await
        .unwrap();
    assert!(
        r.errors.iter().any(|e| e.message.contains(OUTSIDER)),
        "{:#?}",
        r.errors
    );
    assert!(d.aws.image(SRC, &id).unwrap().launch.is_empty());
    let calls = d.aws.world().calls.clone();
    assert!(
        !calls
            .iter()
            .any(|c| c == "ec2:ModifyImageAttribute" || c == "kms:CreateGrant"),
        "{calls:?}"
    );
}

fn boundary_world(policy: serde_json::Value) -> (Deps<FakeAws>, String) {
    let fake = FakeAws::new();
    fake.create_org("o-a1b2c3d4e5");
    fake.set_outside_organization(&[OUTSIDER]);
    let img = fake.create_image(ImageSpec::new(SRC, "golden-1"));
    let d = Deps::new(
        fake,
        Policy::from_json(&policy.to_string()).unwrap(),
        OWN_ACCOUNT,
    );
    (d, img.id)
}

const OUTSIDER: &str = "999988887777";

#[tokio::test]
async fn the_night_refuses_a_derivative_posing_as_a_re_encrypted_copy() {
    let d = deps(false);
    let golden = source(&d, "2030-05-01T00:00:00.000Z");
    let derivative = d.aws.create_image(
        ImageSpec::new(SRC, &format!("golden-x--reenc-of-{SRC}-{}", golden.id))
            .copied_from(SRC, &golden.id)
            .tag(SOURCE_IMAGE_TAG, &format!("{SRC}/{}", golden.id))
            .tag("ami-share:copy-kind", "reencrypt"),
    );
    let r = night(&d, SRC).await;
    assert_eq!(r.drift.forged_provenance, 1, "{:#?}", r.drift);
    assert!(r.drift.forged[0].starts_with(&derivative.id));
    assert!(d.aws.image(SRC, &derivative.id).unwrap().launch.is_empty());
    // The golden image itself is shared and published as usual.
    assert_eq!(d.aws.parameter(SRC, PARAM).unwrap().value, golden.id);
}
