//! Retirement against the in-memory double: selection, stages and their timing, usage
//! protection (owner-account references, consumer usage reports, lastLaunchedTime), copies in
//! step with their source, resuming a cut-short run, the night's limit.

// Test set-up and assertions: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use amishare::copy::copy_request;
use amishare::deps::Deps;
use amishare::names::{CopyKind, MANAGED_TAG};
use amishare::ports::{Image, ImageState, Images};
use amishare::retire::RetireItem;
use amishare::retire::{STAGE_AT_TAG, STAGE_TAG};
use amishare::Policy;
use amishare_testkit::{FakeAws, ImageSpec, OWN_ACCOUNT};
use chrono::{DateTime, Duration, TimeZone, Utc};
use nightly_sweeper::{handle, Run, SweepReport};
use serde_json::{json, Value};

const R: &str = "us-east-1";
const W: &str = "us-west-2";
const ACCOUNT: &str = "111122223333";

/// "Now" of the nights: in the future, as EC2 (and the double) refuse deprecation times in
/// the past.
fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 6, 1, 3, 30, 0).unwrap()
}

fn policy(retire: Value, max_retirements: u32) -> Policy {
    Policy::from_json(
        &json!({"rules": [{"name": "golden", "match": {"name": "golden-*"},
            "share_with": {"accounts": [ACCOUNT]}, "retire": retire,
            "copy_to": [{"region": W}]}],
            "sweeper": {"max_retirements": max_retirements}})
        .to_string(),
    )
    .unwrap()
}

/// `n` images of rule golden in `region`, one a week, the newest last.
fn images(fake: &FakeAws, region: &str, n: usize) -> Vec<Image> {
    (0..n)
        .map(|i| {
            let created = start() - Duration::days(7 * (n - i) as i64);
            let date = created.format("%Y-%m-%dT%H:%M:%S.000Z").to_string();
            fake.create_image(
                ImageSpec::new(region, &format!("golden-{i}"))
                    .created(&date)
                    .tag(MANAGED_TAG, "golden"),
            )
        })
        .collect()
}

async fn sweep_at(d: &Deps<FakeAws>, region: &str, now: DateTime<Utc>) -> SweepReport {
    d.aws
        .set_report_clock(&now.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    handle(d, json!({}), &Run::new(region, now, None))
        .await
        .unwrap()
}

fn image(d: &Deps<FakeAws>, region: &str, id: &str) -> Option<Image> {
    d.aws.image(region, id).map(|f| f.image)
}

fn stage(d: &Deps<FakeAws>, region: &str, id: &str) -> Option<String> {
    image(d, region, id).and_then(|i| i.tags.get(STAGE_TAG).cloned())
}

fn items<'a>(r: &'a SweepReport, id: &str) -> Vec<&'a RetireItem> {
    r.retirement
        .items
        .iter()
        .filter(|i| i.image_id == id)
        .collect()
}

#[tokio::test]
async fn keep_n_retires_all_but_the_newest_n_of_the_region_and_never_the_newest() {
    let fake = FakeAws::new();
    let east = images(&fake, R, 5);
    let west = images(&fake, W, 2);
    let d = Deps::new(
        fake,
        policy(json!({"keep": 2, "mode": "act"}), 20),
        OWN_ACCOUNT,
    );
    let r = sweep_at(&d, R, start()).await;
    assert_eq!(r.retirement.selected, 3, "{:#?}", r.retirement);
    assert_eq!(r.retirement.deprecated, 3);
    for (i, img) in east.iter().enumerate() {
        let now = image(&d, R, &img.id).unwrap();
        let retired = i < 3;
        assert_eq!(now.deprecation_time.is_some(), retired, "{i}");
        assert_eq!(stage(&d, R, &img.id).is_some(), retired, "{i}");
    }
    // The other Region's images count there only: 2, the rule keeps 2.
    let r = sweep_at(&d, W, start()).await;
    assert_eq!(r.retirement.selected, 0);
    assert!(west
        .iter()
        .all(|i| image(&d, W, &i.id).unwrap().deprecation_time.is_none()));
}

#[tokio::test]
async fn max_age_selects_older_images_keep_is_a_floor_and_the_newest_is_never_retired() {
    let fake = FakeAws::new();
    let imgs = images(&fake, R, 4); // 28, 21, 14, 7 days old
    let d = Deps::new(
        fake,
        policy(json!({"max_age_days": 10, "keep": 3, "mode": "act"}), 20),
        OWN_ACCOUNT,
    );
    let r = sweep_at(&d, R, start()).await;
    // Older than 10 days: three; beyond the newest 3: one. Both must hold.
    assert_eq!(r.retirement.selected, 1, "{:#?}", r.retirement);
    assert!(image(&d, R, &imgs[0].id)
        .unwrap()
        .deprecation_time
        .is_some());

    // Age alone, every image older than the limit: the newest stays.
    let fake = FakeAws::new();
    let imgs = images(&fake, R, 3);
    let d = Deps::new(
        fake,
        policy(json!({"max_age_days": 1, "mode": "act"}), 20),
        OWN_ACCOUNT,
    );
    let r = sweep_at(&d, R, start()).await;
    assert_eq!(r.retirement.selected, 2);
    assert!(image(&d, R, &imgs[2].id)
        .unwrap()
        .deprecation_time
        .is_none());
}

#[tokio::test]
async fn report_mode_is_the_default_and_changes_nothing() {
    let fake = FakeAws::new();
    let imgs = images(&fake, R, 3);
    let d = Deps::new(fake, policy(json!({"keep": 1}), 20), OWN_ACCOUNT);
    let r = sweep_at(&d, R, start()).await;
    assert_eq!(r.retirement.would, 2);
    assert_eq!(r.retirement.done, 0);
    for i in &imgs {
        let now = image(&d, R, &i.id).unwrap();
        assert!(now.deprecation_time.is_none() && !now.tags.contains_key(STAGE_TAG));
    }
    assert_eq!(items(&r, &imgs[0].id)[0].status, "would");
}

/// deprecate, disable 7 days later, deregister 14 days after that; usage reports requested
/// the night a protected stage is due and read the next.
#[tokio::test]
async fn each_stage_waits_its_days_and_the_usage_report_is_read_the_night_after() {
    let fake = FakeAws::new();
    let imgs = images(&fake, R, 2);
    let old = imgs[0].id.clone();
    let d = Deps::new(
        fake,
        policy(
            json!({"keep": 1, "disable_after_days": 7, "deregister_after_days": 14, "mode": "act"}),
            20,
        ),
        OWN_ACCOUNT,
    );
    let day = |n: i64| start() + Duration::days(n);
    sweep_at(&d, R, day(0)).await;
    assert_eq!(stage(&d, R, &old).as_deref(), Some("deprecated"));
    // The stage's time, signed for this image and stage (issue 25).
    assert_eq!(
        image(&d, R, &old)
            .unwrap()
            .tags
            .get(STAGE_AT_TAG)
            .map(String::as_str),
        Some(
            d.aws
                .signed_mark("retire-stage:deprecated", &old, "2030-06-01T03:30:00Z")
                .as_str()
        )
    );

    let r = sweep_at(&d, R, day(3)).await;
    assert_eq!(r.retirement.waiting, 1);
    assert!(items(&r, &old)[0]
        .detail
        .contains("disabled is due at 2030-06-08T03:30:00Z"));

    // Day 7: due; no usage report yet: one is requested, the image stays.
    d.aws.reset_calls();
    let r = sweep_at(&d, R, day(7)).await;
    assert_eq!(
        d.aws.call_counts().get("ec2:CreateImageUsageReport"),
        Some(&1)
    );
    assert_eq!(r.retirement.usage_reports_pending, 1);
    let it = items(&r, &old);
    assert_eq!(it[0].status, "protected");
    assert!(
        it[0].protected_by[0].contains("requested tonight"),
        "{it:?}"
    );
    assert_eq!(image(&d, R, &old).unwrap().state, ImageState::Available);
    // Not ready the same night either.
    let r = sweep_at(&d, R, day(7) + Duration::hours(1)).await;
    assert!(
        items(&r, &old)[0].protected_by[0].contains("is pending"),
        "{:?}",
        items(&r, &old)
    );

    // The next night: the report says nobody uses it: disabled.
    d.aws.finish_usage_reports();
    d.aws.reset_calls();
    let r = sweep_at(&d, R, day(8)).await;
    assert_eq!(
        d.aws
            .call_counts()
            .get("ec2:DescribeImageUsageReportEntries"),
        Some(&1)
    );
    assert_eq!(r.retirement.disabled, 1, "{:#?}", r.retirement);
    assert_eq!(image(&d, R, &old).unwrap().state, ImageState::Disabled);
    assert_eq!(stage(&d, R, &old).as_deref(), Some("disabled"));

    // Deregistration: 14 days after disabling; the old report is too old: a new one first.
    let r = sweep_at(&d, R, day(21)).await;
    assert_eq!(r.retirement.waiting, 1, "{:#?}", r.retirement);
    let r = sweep_at(&d, R, day(22)).await;
    assert_eq!(r.retirement.usage_reports_pending, 1, "{:#?}", r.retirement);
    d.aws.finish_usage_reports();
    let r = sweep_at(&d, R, day(23)).await;
    assert_eq!(r.retirement.deregistered, 1, "{:#?}", r.retirement);
    assert!(image(&d, R, &old).is_none());
    // Its snapshot is left for the orphan sweep.
    assert!(d
        .aws
        .world()
        .snapshots
        .contains_key(&(R.to_string(), imgs[0].volumes[0].snapshot_id.clone())));
}

async fn due_for_disabling(protect: Value) -> (Deps<FakeAws>, Vec<Image>) {
    let fake = FakeAws::new();
    let imgs = images(&fake, R, 2);
    let mut retire = json!({"keep": 1, "deprecate": false, "disable_after_days": 0, "mode": "act"});
    if let (Some(r), Some(p)) = (retire.as_object_mut(), protect.as_object()) {
        r.extend(p.clone());
    }
    let d = Deps::new(fake, policy(retire, 20), OWN_ACCOUNT);
    // Night 0: selected (no deprecation stage), then (the continuation's next round) the
    // disable stage is due: the usage report is requested. Night 1 reads it.
    sweep_at(&d, R, start()).await;
    sweep_at(&d, R, start() + Duration::hours(1)).await;
    (d, imgs)
}

#[tokio::test]
async fn an_own_account_reference_protects_until_it_is_gone() {
    let (d, imgs) = due_for_disabling(json!({})).await;
    let old = &imgs[0].id;
    d.aws.reference(
        old,
        "ec2:LaunchTemplate",
        "arn:aws:ec2:us-east-1:123456789012:launch-template/lt-1:7",
    );
    d.aws.reference(
        old,
        "ssm:Parameter",
        "arn:aws:ssm:us-east-1:123456789012:parameter/app/ami",
    );
    let r = sweep_at(&d, R, start() + Duration::days(1)).await;
    let it = items(&r, old);
    assert_eq!(it[0].status, "protected");
    assert_eq!(
        it[0].protected_by,
        [
            "referenced by ec2:LaunchTemplate arn:aws:ec2:us-east-1:123456789012:launch-template/lt-1:7",
            "referenced by ssm:Parameter arn:aws:ssm:us-east-1:123456789012:parameter/app/ami"
        ]
    );
    assert_eq!(image(&d, R, old).unwrap().state, ImageState::Available);
    // Checked again each night: once the references are gone (and the report is read), it goes.
    d.aws.world().retirement.references.clear();
    sweep_at(&d, R, start() + Duration::days(2)).await;
    d.aws.finish_usage_reports();
    let r = sweep_at(&d, R, start() + Duration::days(3)).await;
    assert_eq!(r.retirement.disabled, 1, "{:#?}", r.retirement);
}

#[tokio::test]
async fn a_consumer_accounts_usage_protects_naming_the_account() {
    let (d, imgs) = due_for_disabling(json!({})).await;
    let old = &imgs[0].id;
    d.aws.consumer_uses(old, ACCOUNT, "ec2:Instance", 3);
    d.aws.finish_usage_reports();
    let r = sweep_at(&d, R, start() + Duration::days(1)).await;
    let it = items(&r, old);
    assert_eq!(it[0].status, "protected", "{it:?}");
    assert!(
        it[0].protected_by[0].starts_with("used by account 111122223333: 3 ec2:Instance"),
        "{it:?}"
    );
    assert_eq!(image(&d, R, old).unwrap().state, ImageState::Available);
    // The report covered the rule's accounts.
    let req = d.aws.world().retirement.report_requests[0].clone();
    assert_eq!(req.account_ids, [ACCOUNT]);
    assert_eq!(req.tags.get("ami-share:retire"), Some(old));
}

#[tokio::test]
async fn a_recent_launch_protects() {
    let (d, imgs) = due_for_disabling(json!({"protect_if_launched_within_days": 14})).await;
    let old = &imgs[0].id;
    d.aws
        .world()
        .images
        .get_mut(&(R.to_string(), old.clone()))
        .unwrap()
        .image
        .last_launched_time = Some("2030-05-28T08:00:00Z".into());
    d.aws.finish_usage_reports();
    let r = sweep_at(&d, R, start() + Duration::days(1)).await;
    let it = items(&r, old);
    assert_eq!(it[0].status, "protected");
    assert!(it[0].protected_by[0].contains("lastLaunchedTime"), "{it:?}");
    assert!(it[0].protected_by[0].contains("within 14 days"), "{it:?}");
}

#[tokio::test]
async fn reports_are_requested_per_200_accounts() {
    let fake = FakeAws::new();
    images(&fake, R, 2);
    let accounts: Vec<String> = (0..450)
        .map(|i| format!("{:012}", 500_000_000_000u64 + i))
        .collect();
    let p = Policy::from_json(
        &json!({"rules": [{"name": "golden", "match": {"name": "golden-*"},
            "share_with": {"accounts": accounts},
            "retire": {"keep": 1, "deprecate": false, "disable_after_days": 0, "mode": "act"}}]})
        .to_string(),
    )
    .unwrap();
    let d = Deps::new(fake, p, OWN_ACCOUNT);
    sweep_at(&d, R, start()).await;
    sweep_at(&d, R, start() + Duration::hours(1)).await;
    let sizes: Vec<usize> = d
        .aws
        .world()
        .retirement
        .report_requests
        .iter()
        .map(|r| r.account_ids.len())
        .collect();
    assert_eq!(sizes, [200, 200, 50]);
}

#[tokio::test]
async fn deregistration_protection_is_respected_and_named() {
    let fake = FakeAws::new();
    let imgs = images(&fake, R, 2);
    let old = imgs[0].id.clone();
    fake.world()
        .images
        .get_mut(&(R.to_string(), old.clone()))
        .unwrap()
        .image
        .deregistration_protection = Some("enabled".into());
    let d = Deps::new(
        fake,
        policy(
            json!({"keep": 1, "deprecate": false, "deregister_after_days": 0, "mode": "act"}),
            20,
        ),
        OWN_ACCOUNT,
    );
    sweep_at(&d, R, start()).await;
    sweep_at(&d, R, start() + Duration::hours(1)).await;
    d.aws.finish_usage_reports();
    let r = sweep_at(&d, R, start() + Duration::days(1)).await;
    let it = items(&r, &old);
    assert_eq!(it[0].status, "protected", "{it:?}");
    assert!(
        it[0].protected_by[0].contains("deregistration protection is on"),
        "{it:?}"
    );
    assert!(image(&d, R, &old).is_some());
    assert_eq!(d.aws.call_counts().get("ec2:DeregisterImage"), None);
}

#[tokio::test]
async fn a_run_cut_short_between_the_action_and_its_tag_resumes_without_repeating_it() {
    let (d, imgs) = due_for_disabling(json!({"deregister_after_days": 5})).await;
    let old = &imgs[0].id;
    d.aws.finish_usage_reports();
    // A run disabled the image and stopped before its tag.
    use amishare::retire::Retirement;
    d.aws.disable_image(R, old).await.unwrap();
    assert_eq!(stage(&d, R, old).as_deref(), Some("selected"));
    // The next night: the stage is recognised from the image's state and its time recorded,
    // without a second DisableImage; the deregistration waits 5 days from here.
    d.aws.reset_calls();
    let r = sweep_at(&d, R, start() + Duration::days(2)).await;
    assert_eq!(d.aws.call_counts().get("ec2:DisableImage"), None);
    assert_eq!(items(&r, old)[0].status, "recorded", "{:?}", items(&r, old));
    assert_eq!(stage(&d, R, old).as_deref(), Some("disabled"));
    let r = sweep_at(&d, R, start() + Duration::days(4)).await;
    assert!(
        items(&r, old)[0]
            .detail
            .contains("deregistered is due at 2030-06-08"),
        "{:?}",
        items(&r, old)
    );
}

#[tokio::test]
async fn at_most_max_retirements_stages_a_night_the_oldest_first() {
    let fake = FakeAws::new();
    let imgs = images(&fake, R, 6);
    let d = Deps::new(
        fake,
        policy(json!({"keep": 1, "mode": "act"}), 2),
        OWN_ACCOUNT,
    );
    let r = sweep_at(&d, R, start()).await;
    assert_eq!(r.retirement.deprecated, 2);
    assert_eq!(r.retirement.not_reached, 3);
    assert_eq!(r.retirement.status, "partial");
    assert!(stage(&d, R, &imgs[0].id).is_some() && stage(&d, R, &imgs[1].id).is_some());
    assert!(stage(&d, R, &imgs[2].id).is_none());
    let r = sweep_at(&d, R, start() + Duration::days(1)).await;
    assert_eq!(r.retirement.deprecated, 2);
}

/// A copy in its Region: held until its source reaches the stage; protected by what uses it
/// in its own Region.
#[tokio::test]
async fn copies_follow_their_source_and_are_never_deregistered_while_their_region_uses_them() {
    let fake = FakeAws::new();
    let src = images(&fake, R, 2);
    let mut copies = Vec::new();
    for s in &src {
        let req = copy_request(s, W, None, CopyKind::RegionCopy, &["golden".into()], 0);
        let id = fake.copy_image(&req).await.unwrap();
        fake.complete_copy(W, &id);
        copies.push(id);
    }
    let d = Deps::new(
        fake,
        policy(
            json!({"keep": 1, "deregister_after_days": 0, "mode": "act"}),
            20,
        ),
        OWN_ACCOUNT,
    );
    // The copy's Region first: its source is not retired yet, so the copy waits.
    let r = sweep_at(&d, W, start()).await;
    assert_eq!(r.retirement.held, 1, "{:#?}", r.retirement);
    assert!(image(&d, W, &copies[0]).unwrap().deprecation_time.is_none());
    assert!(
        image(&d, W, &copies[1]).unwrap().deprecation_time.is_none(),
        "the newest copy stays"
    );
    // The source's Region deprecates the source; then the copy follows.
    sweep_at(&d, R, start()).await;
    let r = sweep_at(&d, W, start()).await;
    assert_eq!(r.retirement.deprecated, 1, "{:#?}", r.retirement);
    assert_eq!(stage(&d, W, &copies[0]).as_deref(), Some("deprecated"));

    // Deregistration: the source goes once nothing uses it; the copy is used in its Region.
    d.aws.reference(
        &copies[0],
        "ec2:Instance",
        "arn:aws:ec2:us-west-2:123456789012:instance/i-1",
    );
    let later = start() + Duration::days(1);
    sweep_at(&d, R, later).await;
    sweep_at(&d, W, later).await;
    d.aws.finish_usage_reports();
    let later = later + Duration::days(1);
    let r = sweep_at(&d, R, later).await;
    assert_eq!(
        r.retirement.deregistered, 1,
        "{:#?} {:?}",
        r.retirement, r.errors
    );
    let r = sweep_at(&d, W, later).await;
    let it = items(&r, &copies[0]);
    assert_eq!(it[0].status, "protected", "{it:?}");
    assert!(it[0].protected_by[0].contains("instance/i-1"));
    assert!(image(&d, W, &copies[0]).is_some());
    // Once its Region stops using it (and the consumers' report, requested that night, is
    // read the next), it goes too: its source is gone, nothing holds it.
    d.aws.world().retirement.references.clear();
    let r = sweep_at(&d, W, later + Duration::days(1)).await;
    assert_eq!(r.retirement.usage_reports_pending, 1, "{:#?}", r.retirement);
    d.aws.finish_usage_reports();
    let r = sweep_at(&d, W, later + Duration::days(2)).await;
    assert_eq!(r.retirement.deregistered, 1, "{:#?}", r.retirement);
    assert!(image(&d, W, &copies[0]).is_none());
}

fn publishing_policy(prune: bool) -> Policy {
    Policy::from_json(
        &json!({"rules": [{"name": "golden", "match": {"name": "golden-*"},
            "share_with": {"accounts": [ACCOUNT]},
            "publish": {"parameter": "/golden/latest"},
            "retire": {"keep": 1, "disable_after_days": 0, "mode": "act"}}],
            "sweeper": {"prune_unlisted_shares": prune}})
        .to_string(),
    )
    .unwrap()
}

#[tokio::test]
async fn the_latest_parameter_names_the_newest_and_a_failed_publication_holds_the_rules_retirement()
{
    let fake = FakeAws::new();
    let imgs = images(&fake, R, 2);
    // Set to the older image by hand, and the night cannot write it.
    fake.set_parameter(R, "/golden/latest", &imgs[0].id);
    fake.fail("ssm:PutParameter", "AccessDeniedException", 0, 1);
    let d = Deps::new(fake, publishing_policy(false), OWN_ACCOUNT);
    let r = sweep_at(&d, R, start()).await;
    assert_eq!(r.drift.publications_failed, ["golden"]);
    assert_eq!(r.retirement.done, 0, "{:#?}", r.retirement);
    assert!(image(&d, R, &imgs[0].id)
        .unwrap()
        .deprecation_time
        .is_none());
    assert!(
        r.not_reached
            .iter()
            .any(|n| n.contains("its publication failed")),
        "{:?}",
        r.not_reached
    );
    // The next night the parameter moves to the newest, and the older image retires.
    let r = sweep_at(&d, R, start() + Duration::hours(1)).await;
    assert_eq!(
        d.aws.parameter(R, "/golden/latest").unwrap().value,
        imgs[1].id
    );
    assert_eq!(r.retirement.deprecated, 1, "{:#?}", r.retirement);
    assert!(image(&d, R, &imgs[1].id)
        .unwrap()
        .deprecation_time
        .is_none());
}

#[tokio::test]
async fn grants_only_a_retired_image_needed_are_revoked_when_pruning_is_on() {
    use amishare::ports::KeyManager;
    let fake = FakeAws::new();
    let (k_old, k_new) = (
        fake.create_key(R, KeyManager::Customer),
        fake.create_key(R, KeyManager::Customer),
    );
    let mk = |name: &str, days: i64, key: &str| {
        let date = (start() - Duration::days(days))
            .format("%Y-%m-%dT%H:%M:%S.000Z")
            .to_string();
        fake.create_image(
            ImageSpec::new(R, name)
                .created(&date)
                .tag(MANAGED_TAG, "golden")
                .encrypted_with(&[key]),
        )
    };
    let old = mk("golden-old", 14, &k_old);
    mk("golden-new", 7, &k_new);
    let p = Policy::from_json(
        &json!({"rules": [{"name": "golden", "match": {"name": "golden-*"},
            "share_with": {"accounts": [ACCOUNT]},
            "retire": {"keep": 1, "deprecate": false, "disable_after_days": 0, "mode": "act"}}],
            "sweeper": {"prune_unlisted_shares": true}})
        .to_string(),
    )
    .unwrap();
    let d = Deps::new(fake, p, OWN_ACCOUNT);
    let ours = |k: &str| {
        d.aws
            .grants(k)
            .into_iter()
            .filter(|(n, _)| n.as_deref() == Some("ami-share-111122223333"))
            .count()
    };
    sweep_at(&d, R, start()).await; // shared (grants on both keys), selected
    assert_eq!((ours(&k_old), ours(&k_new)), (1, 1));
    sweep_at(&d, R, start() + Duration::hours(1)).await; // usage report requested
    d.aws.finish_usage_reports();
    let r = sweep_at(&d, R, start() + Duration::days(1)).await; // disabled
    assert_eq!(r.retirement.disabled, 1, "{:#?}", r.retirement);
    assert_eq!(image(&d, R, &old.id).unwrap().state, ImageState::Disabled);
    // The next night: no remaining shared image needs the old key's grant.
    sweep_at(&d, R, start() + Duration::days(2)).await;
    assert_eq!((ours(&k_old), ours(&k_new)), (0, 1));
}

/// A backlog costs calls in proportion to the night's budget: at most 5 images checked per
/// stage (`max_retirements` 1 here), oldest first; the rest wait for the next nights.
#[tokio::test]
async fn images_beyond_the_nights_check_budget_are_not_even_checked() {
    let fake = FakeAws::new();
    images(&fake, R, 8);
    let d = Deps::new(
        fake,
        policy(
            json!({"keep": 1, "deprecate": false, "disable_after_days": 0, "mode": "act"}),
            1,
        ),
        OWN_ACCOUNT,
    );
    for n in 0..7 {
        sweep_at(&d, R, start() + Duration::minutes(n)).await; // one selected a run
    }
    d.aws.reset_calls();
    let r = sweep_at(&d, R, start() + Duration::hours(1)).await;
    let calls = d.aws.call_counts();
    assert_eq!(calls.get("ec2:DescribeImageReferences"), Some(&1));
    assert_eq!(calls.get("ec2:DescribeImageUsageReports"), Some(&5));
    assert_eq!(r.retirement.protected, 5, "{:#?}", r.retirement);
    assert_eq!(r.retirement.not_reached, 2, "{:#?}", r.retirement);
}

/// Issue 25: a stage and its time start the wait for the next stage only with the product's
/// proof. A back-dated stage written by hand, a proof copied from another image, a stage
/// changed under a genuine time: none moves the image on; each is reported (tampering:
/// counted, listed, metric) and the image's own state decides, its wait starting from now.
#[tokio::test]
async fn forged_stage_marks_move_nothing_on() {
    let fake = FakeAws::new();
    let imgs = images(&fake, R, 4); // the newest is kept; three are retired
    let (hand, copied, changed) = (imgs[0].id.clone(), imgs[1].id.clone(), imgs[2].id.clone());
    let set = |id: &str, stage: &str, at: &str| {
        let mut w = fake.world();
        let img = &mut w
            .images
            .get_mut(&(R.to_string(), id.to_string()))
            .unwrap()
            .image;
        img.tags.insert(STAGE_TAG.into(), stage.into());
        img.tags.insert(STAGE_AT_TAG.into(), at.into());
    };
    // Written by hand: disabled long ago, no proof.
    set(&hand, "disabled", "2000-01-01T00:00:00Z");
    // A genuine proof of another image, copied.
    let other = fake.signed_mark("retire-stage:disabled", &hand, "2030-01-01T00:00:00Z");
    set(&copied, "disabled", &other);
    // A genuine time of this image's deprecation, under a stage changed to disabled.
    let genuine = fake.signed_mark("retire-stage:deprecated", &changed, "2030-01-01T00:00:00Z");
    set(&changed, "disabled", &genuine);
    let d = Deps::new(
        fake,
        policy(
            json!({"keep": 1, "disable_after_days": 7, "deregister_after_days": 14, "mode": "act"}),
            20,
        ),
        OWN_ACCOUNT,
    );
    let r = sweep_at(&d, R, start()).await;
    for id in [&hand, &copied, &changed] {
        let img = image(&d, R, id).expect("never deregistered");
        assert_eq!(img.state, ImageState::Available, "{id}: never disabled");
        // The image's own state (not deprecated) decided: the first stage, from now.
        assert_eq!(stage(&d, R, id).as_deref(), Some("deprecated"), "{id}");
        assert!(img.deprecation_time.is_some(), "{id}");
    }
    assert_eq!(r.retirement.marks_unsigned, 1, "{:?}", r.retirement);
    assert_eq!(
        r.retirement.marks_tampered, 2,
        "{:?}",
        r.retirement.tampered
    );
    let listed = r.retirement.tampered.join("\n");
    assert!(
        listed.contains(&copied) && listed.contains(&changed),
        "{listed}"
    );
    assert_eq!(r.emf(start())["MarksTampered"], json!(2));
    assert_eq!(d.aws.call_counts().get("ec2:DisableImage"), None);
    assert_eq!(d.aws.call_counts().get("ec2:DeregisterImage"), None);
}

/// Issue 27 (2): the night's `max_retirements` goes to the oldest images first, whatever their
/// rule (docs/retirement.md), not rule by rule.
#[tokio::test]
async fn the_nights_budget_goes_to_the_oldest_images_of_every_rule() {
    let fake = FakeAws::new();
    let day = |n: i64| {
        (start() - Duration::days(n))
            .format("%Y-%m-%dT%H:%M:%S.000Z")
            .to_string()
    };
    // Rule "alpha" (first in the policy): younger images; rule "beta": older ones.
    let mut alpha = Vec::new();
    for (i, age) in [30, 20, 10, 1].iter().enumerate() {
        alpha.push(fake.create_image(ImageSpec::new(R, &format!("alpha-{i}")).created(&day(*age))));
    }
    let mut beta = Vec::new();
    for (i, age) in [90, 62, 2].iter().enumerate() {
        beta.push(fake.create_image(ImageSpec::new(R, &format!("beta-{i}")).created(&day(*age))));
    }
    let retire = json!({"keep": 1, "mode": "act"});
    let policy = Policy::from_json(
        &json!({"rules": [
            {"name": "alpha", "match": {"name": "alpha-*"}, "share_with": {"accounts": [ACCOUNT]}, "retire": retire},
            {"name": "beta", "match": {"name": "beta-*"}, "share_with": {"accounts": [ACCOUNT]}, "retire": retire}],
            "sweeper": {"max_retirements": 4}})
        .to_string(),
    )
    .unwrap();
    let d = Deps::new(fake, policy, OWN_ACCOUNT);
    let r = sweep_at(&d, R, start()).await;
    let done: Vec<&str> = r
        .retirement
        .items
        .iter()
        .filter(|i| i.status == "done")
        .map(|i| i.image_id.as_str())
        .collect();
    // The four oldest of the five selected: beta's 90 and 62 days, alpha's 30 and 20.
    let want = [&beta[0].id, &beta[1].id, &alpha[0].id, &alpha[1].id];
    assert_eq!(done.len(), 4, "{:#?}", r.retirement.items);
    for id in want {
        assert!(done.contains(&id.as_str()), "{id} not retired: {done:?}");
    }
    let limited: Vec<&str> = r
        .retirement
        .items
        .iter()
        .filter(|i| i.status == "limit")
        .map(|i| i.image_id.as_str())
        .collect();
    assert_eq!(
        limited,
        [alpha[2].id.as_str()],
        "the youngest waits for the next night"
    );
}
