//! `copy_into` at night, against the double: with every event lost, the night starts the
//! copies of each rule's newest image in every target account and Region, then finishes
//! them (the source's deprecation, the target's own parameter, older copies tagged
//! superseded and, opted in, deprecated); the copies are tracked, never owned: a target that
//! leaves the OU, and the retirement of the source, leave them where they are.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use amishare::deps::Deps;
use amishare::names::SUPERSEDED_BY_TAG;
use amishare::ports::{Image, ImageState};
use amishare::Policy;
use amishare_testkit::{FakeAws, ImageSpec, OWN_ACCOUNT};
use chrono::{TimeZone, Utc};
use nightly_sweeper::{handle, Run, SweepReport};
use serde_json::json;

const R: &str = "us-east-1";
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
const OU: &str = "ou-ab12-cdef3456";
const OU_ARN: &str = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456";
const LONE: &str = "111122223333";
const IN_OU: [&str; 2] = ["200000000001", "200000000002"];
const PARAM: &str = "/golden/al2023/latest";

fn policy() -> Policy {
    Policy::from_json(
        &json!({"rules": [{"name": "golden", "match": {"name": "golden-*"},
            "copy_into": {"accounts": [LONE], "organizational_units": [OU_ARN],
                "regions": [{"region": REGIONS[0]}, {"region": REGIONS[1]}],
                "deprecate_superseded": true},
            "publish": {"parameter": PARAM, "in_target_accounts": true}}]})
        .to_string(),
    )
    .unwrap()
}

fn world() -> (Deps<FakeAws>, Image) {
    let fake = FakeAws::new();
    let root = fake.create_org("o-a1b2c3d4e5");
    fake.add_ou(&root, OU);
    for a in IN_OU {
        fake.add_account(OU, a, "ACTIVE");
    }
    fake.add_account(&root, LONE, "ACTIVE");
    for a in [LONE, IN_OU[0], IN_OU[1]] {
        fake.add_target_account(a, &REGIONS);
    }
    let img = fake.create_image(ImageSpec::new(R, "golden-1").created("2026-11-01T10:00:00.000Z"));
    (Deps::new(fake, policy(), OWN_ACCOUNT), img)
}

async fn night(d: &Deps<FakeAws>) -> SweepReport {
    night_in(d, R).await
}

async fn night_in(d: &Deps<FakeAws>, region: &str) -> SweepReport {
    let now = Utc.with_ymd_and_hms(2026, 12, 6, 3, 30, 0).unwrap();
    handle(d, json!({}), &Run::new(region, now, None))
        .await
        .unwrap()
}

fn the_copy(d: &Deps<FakeAws>, account: &str, region: &str, source: &str) -> Image {
    d.aws
        .target_images(account, region)
        .into_iter()
        .find(|i| i.source_image_id.as_deref() == Some(source))
        .unwrap()
}

fn writes_in_targets(d: &Deps<FakeAws>) -> Vec<String> {
    d.aws
        .call_counts()
        .into_keys()
        .filter(|k| {
            k.starts_with("target:")
                && ![
                    "target:DescribeImages",
                    "target:DescribeKey",
                    "target:GetParameters",
                    "target:GetAllowedImagesSettings",
                ]
                .contains(&k.as_str())
        })
        .collect()
}

fn assert_only_reads_in_targets(d: &Deps<FakeAws>) {
    assert!(writes_in_targets(d).is_empty(), "{:?}", d.aws.call_counts());
}

/// Night 1 starts every copy (no event ever came); EC2 finishes them; night 2 finishes them.
async fn copied_and_finished(d: &Deps<FakeAws>) {
    let r = night(d).await;
    assert_eq!(r.target_copies.started, 6, "{:?}", r.target_copies);
    d.aws.finish_target_copies();
    let r = night(d).await;
    assert_eq!(r.target_copies.finished, 6, "{:?}", r.target_copies);
}

#[tokio::test]
async fn with_every_event_lost_the_night_starts_then_finishes_each_copy() {
    let (d, src) = world();
    d.aws
        .world()
        .images
        .get_mut(&(R.to_string(), src.id.clone()))
        .unwrap()
        .image
        .deprecation_time = Some("2027-06-01T00:00:00.000Z".into());
    let r = night(&d).await;
    assert_eq!(r.target_copies.rules, 1);
    assert_eq!(r.target_copies.targets, 6);
    assert_eq!(r.target_copies.started, 6);
    let emf = r.emf(Utc::now());
    assert_eq!(emf["TargetCopiesStarted"], json!(6));

    // Still copying: pending, nothing to finish yet.
    let r = night(&d).await;
    assert_eq!(r.target_copies.pending, 6);
    assert_eq!(r.target_copies.started, 0);

    d.aws.finish_target_copies();
    let r = night(&d).await;
    assert_eq!(r.target_copies.finished, 6);
    assert_eq!(r.target_copies.parameters_written, 6);
    for account in [LONE, IN_OU[0], IN_OU[1]] {
        for region in REGIONS {
            let copy = the_copy(&d, account, region, &src.id);
            assert_eq!(
                copy.deprecation_time.as_deref(),
                Some("2027-06-01T00:00:00.000Z")
            );
            let versions = d.aws.target_parameter(account, region, PARAM);
            assert_eq!(versions.len(), 1);
            assert_eq!(
                versions[0].0, copy.id,
                "the target's parameter names its own copy"
            );
            assert_eq!(versions[0].1, ["created-2026-11-01T10-00-00.000Z"]);
        }
    }

    // Finished: the next night only reads.
    d.aws.reset_calls();
    let r = night(&d).await;
    assert_eq!(r.target_copies.finished, 6);
    assert_eq!(r.target_copies.parameters_written, 0);
    assert_only_reads_in_targets(&d);
}

#[tokio::test]
async fn a_newer_image_supersedes_the_older_copies_which_stay_with_their_owner() {
    let (d, old) = world();
    copied_and_finished(&d).await;
    let new = d
        .aws
        .create_image(ImageSpec::new(R, "golden-2").created("2026-12-01T10:00:00.000Z"));
    copied_and_finished(&d).await;
    for account in [LONE, IN_OU[0], IN_OU[1]] {
        for region in REGIONS {
            let (o, n) = (
                the_copy(&d, account, region, &old.id),
                the_copy(&d, account, region, &new.id),
            );
            assert_eq!(
                o.state,
                ImageState::Available,
                "never disabled or deregistered"
            );
            assert_eq!(o.tags.get(SUPERSEDED_BY_TAG), Some(&n.id));
            // Issue 27 (6): the night's "now" (03:30) is long past when its pass runs; the
            // deprecation time comes from the clock at the call (the double, like EC2, refuses
            // one in the past).
            let at = o.deprecation_time.as_deref().expect("deprecate_superseded");
            assert!(
                at > Utc::now().to_rfc3339().as_str(),
                "deprecated in the future, from the clock at the call: {at}"
            );
            assert!(n.deprecation_time.is_none());
            let versions = d.aws.target_parameter(account, region, PARAM);
            assert_eq!(
                versions.last().unwrap().0,
                n.id,
                "the parameter moved forward"
            );
        }
    }
    // Once tagged, never again.
    d.aws.reset_calls();
    let r = night(&d).await;
    assert_eq!(r.target_copies.superseded, 0);
    assert_only_reads_in_targets(&d);
}

#[tokio::test]
async fn a_target_that_leaves_the_ou_keeps_its_copy_and_gets_no_new_one() {
    let (mut d, old) = world();
    // A later night: a new process, nothing remembered of the organization.
    d.settings.org_cache_ttl = std::time::Duration::ZERO;
    copied_and_finished(&d).await;
    let root = d.aws.world().org.as_ref().unwrap().root_id.clone();
    d.aws.add_account(&root, IN_OU[1], "ACTIVE"); // moved out of the OU
    d.aws
        .create_image(ImageSpec::new(R, "golden-2").created("2026-12-01T10:00:00.000Z"));
    let r = night(&d).await;
    assert_eq!(r.target_copies.targets, 4);
    for region in REGIONS {
        let [kept] = d.aws.target_images(IN_OU[1], region).try_into().unwrap();
        assert_eq!(kept.source_image_id.as_deref(), Some(old.id.as_str()));
        assert_eq!(kept.state, ImageState::Available);
        assert!(!kept.tags.contains_key(SUPERSEDED_BY_TAG) && kept.deprecation_time.is_none());
    }
}

#[tokio::test]
async fn retiring_the_source_leaves_the_target_copies_in_place() {
    let (d, src) = world();
    copied_and_finished(&d).await;
    d.aws
        .world()
        .images
        .get_mut(&(R.to_string(), src.id.clone()))
        .unwrap()
        .image
        .state = ImageState::Deregistered;
    d.aws.reset_calls();
    let r = night(&d).await;
    assert_eq!(
        r.target_copies.targets, 0,
        "no newest image: nothing to follow"
    );
    assert_eq!(d.aws.calls_to("target"), 0);
    for account in [LONE, IN_OU[0], IN_OU[1]] {
        for region in REGIONS {
            assert_eq!(
                the_copy(&d, account, region, &src.id).state,
                ImageState::Available
            );
        }
    }
}

#[tokio::test]
async fn a_role_that_cannot_be_assumed_is_failed_counted_and_named() {
    let (d, _) = world();
    d.aws.deny_target_role(LONE);
    let r = night(&d).await;
    assert_eq!(r.target_copies.failed, 2);
    assert_eq!(r.target_copies.started, 4);
    assert_eq!(r.emf(Utc::now())["TargetCopiesFailed"], json!(2));
    let p = &r.target_copies.problems[0];
    assert_eq!(p.account, LONE);
    assert_eq!(p.error_code.as_deref(), Some("AccessDenied"));
}

#[tokio::test]
async fn the_targets_parameter_never_moves_back_when_two_regions_build_the_rules_images() {
    // The rule's images are built in two Regions; each Region's night follows its own newest
    // into the same targets. The newer one wins everywhere, whichever night runs last.
    let (d, old) = world();
    let elsewhere = "us-west-2";
    let new = d
        .aws
        .create_image(ImageSpec::new(elsewhere, "golden-2").created("2026-12-01T10:00:00.000Z"));
    night_in(&d, elsewhere).await;
    d.aws.finish_target_copies();
    let r = night_in(&d, elsewhere).await;
    assert_eq!(r.target_copies.parameters_written, 6);

    // us-east-1's newest is the older image: copied too, but the parameter stays on the newer.
    night(&d).await;
    d.aws.finish_target_copies();
    let r = night(&d).await;
    assert_eq!(r.target_copies.finished, 6);
    assert_eq!(
        r.target_copies.parameters_written, 0,
        "{:?}",
        r.target_copies
    );
    for account in [LONE, IN_OU[0], IN_OU[1]] {
        for region in REGIONS {
            let n = the_copy(&d, account, region, &new.id);
            let versions = d.aws.target_parameter(account, region, PARAM);
            assert_eq!(versions.len(), 1, "never written back");
            assert_eq!(versions[0].0, n.id);
            // The older image's copy exists (the target owns it), superseded once the newer
            // Region's night runs again.
            assert!(!the_copy(&d, account, region, &old.id)
                .tags
                .contains_key(SUPERSEDED_BY_TAG));
        }
    }
    let r = night_in(&d, elsewhere).await;
    assert_eq!(r.target_copies.superseded, 6);
}

#[tokio::test]
async fn a_night_cut_by_its_deadline_follows_the_targets_in_the_next_invocation() {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, SystemTime};
    // A clock that moves one second every time it is read.
    let ticking = || {
        let t = Arc::new(Mutex::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        ));
        nightly_sweeper::Clock(Arc::new(move || {
            let mut t = t.lock().unwrap();
            *t += Duration::from_secs(1);
            *t
        }))
    };
    let (d, src) = world();
    let now = Utc.with_ymd_and_hms(2026, 12, 6, 3, 30, 0).unwrap();
    let mut left_targets = false;
    for round in 1.. {
        assert!(round <= 20, "the continuation never finished");
        let clock = ticking();
        let deadline = clock.now() + nightly_sweeper::DEFAULT_MARGIN + Duration::from_secs(4);
        let r = handle(
            &d,
            json!({}),
            &Run::new(R, now, Some(deadline)).with_clock(clock),
        )
        .await
        .unwrap();
        left_targets |= r.not_reached.iter().any(|w| w.contains("target accounts"));
        // Issue 27 (9): cut in the target pass, the night leaves where it stopped on the image.
        if let Some(w) = r
            .not_reached
            .iter()
            .find(|w| w.contains("going on from account"))
        {
            let at = w.rsplit(' ').next().unwrap();
            let cursor =
                d.aws.image(R, &src.id).unwrap().image.tags["ami-share:targets-cursor"].clone();
            assert_eq!(cursor, format!("golden/{at}"));
        }
        if !r.more {
            break;
        }
    }
    assert!(
        left_targets,
        "the deadline should have left the targets to a later invocation"
    );
    for account in [LONE, IN_OU[0], IN_OU[1]] {
        for region in REGIONS {
            let copies = d.aws.target_images(account, region);
            assert_eq!(copies.len(), 1, "one copy, however many invocations");
            assert_eq!(copies[0].source_image_id.as_deref(), Some(src.id.as_str()));
        }
    }
}

/// Issue 27 (11): the target's own parameter is written the publisher's way. After 100
/// labelled versions Parameter Store refuses a new one until the oldest label goes: the night
/// removes it and writes, instead of failing every night.
#[tokio::test]
async fn a_target_parameter_with_100_labelled_versions_still_moves_forward() {
    let (d, src) = world();
    let r = night(&d).await;
    assert_eq!(r.target_copies.started, 6);
    d.aws.finish_target_copies();
    // One target's parameter already holds 100 versions, the oldest labelled.
    let key = (LONE.to_string(), R.to_string(), PARAM.to_string());
    {
        let mut w = d.aws.world();
        let versions: Vec<(String, Vec<String>)> = (0..100)
            .map(|i| (format!("ami-{i:017x}"), vec![format!("created-old-{i}")]))
            .collect();
        w.targets.parameters.insert(key.clone(), versions);
    }
    let r = night(&d).await;
    assert_eq!(r.target_copies.failed, 0, "{:?}", r.target_copies.problems);
    assert_eq!(r.target_copies.finished, 6);
    let copy = the_copy(&d, LONE, R, &src.id);
    let versions = d.aws.target_parameter(LONE, R, PARAM);
    assert_eq!(versions.len(), 100, "Parameter Store keeps 100");
    assert_eq!(versions.last().unwrap().0, copy.id);
    assert_eq!(
        versions.last().unwrap().1,
        ["created-2026-11-01T10-00-00.000Z"]
    );
    let calls = d.aws.call_counts();
    assert_eq!(
        calls.get("target:UnlabelParameterVersion"),
        Some(&1),
        "{calls:?}"
    );
    assert_eq!(calls.get("target:GetParameterHistory"), Some(&1));
}

/// Issue 27 (11): a version not readable yet (Parameter Store validates an `aws:ec2:image`
/// value first) is no failure: the value is written, and the next night labels it.
#[tokio::test]
async fn a_target_version_not_readable_yet_is_labelled_by_the_next_night() {
    let (d, _) = world();
    let r = night(&d).await;
    assert_eq!(r.target_copies.started, 6);
    d.aws.finish_target_copies();
    d.aws.fail(
        "target:LabelParameterVersion",
        "ParameterVersionNotFound",
        0,
        6,
    );
    let r = night(&d).await;
    assert_eq!(r.target_copies.failed, 0, "{:?}", r.target_copies.problems);
    assert_eq!(r.target_copies.parameters_written, 6);
    for account in [LONE, IN_OU[0], IN_OU[1]] {
        let versions = d.aws.target_parameter(account, R, PARAM);
        assert!(versions[0].1.is_empty(), "not labelled yet");
    }
    let r = night(&d).await;
    assert_eq!(r.target_copies.failed, 0);
    for account in [LONE, IN_OU[0], IN_OU[1]] {
        let versions = d.aws.target_parameter(account, R, PARAM);
        assert_eq!(versions.len(), 1, "no second version");
        assert_eq!(versions[0].1, ["created-2026-11-01T10-00-00.000Z"]);
    }
}

/// Issue 27 (5): a copy its owner deregistered is copied again by the next night
/// (docs/consumers.md). EC2 answers a spent client token with the old copy's id, even once the
/// deregistered copy is no longer listed: the night sees that answer for what it is and starts
/// the copy with the next attempt's token and name.
#[tokio::test]
async fn a_copy_the_consumer_deregistered_is_copied_again() {
    for vanished in [false, true] {
        let (d, src) = world();
        copied_and_finished(&d).await;
        let old = the_copy(&d, LONE, R, &src.id);
        d.aws.deregister_target_image(LONE, R, &old.id, vanished);
        let r = night(&d).await;
        assert_eq!(
            r.target_copies.started, 1,
            "vanished {vanished}: {:?}",
            r.target_copies
        );
        assert_eq!(r.target_copies.failed, 0);
        let live: Vec<Image> = d
            .aws
            .target_images(LONE, R)
            .into_iter()
            .filter(|i| i.source_image_id.as_deref() == Some(src.id.as_str()))
            .filter(|i| i.state != ImageState::Deregistered)
            .collect();
        assert_eq!(live.len(), 1, "vanished {vanished}");
        assert_ne!(live[0].id, old.id);
        assert!(live[0].name.ends_with("-r1"), "{}", live[0].name);
        // Finished like any copy: the parameter names the new one.
        d.aws.finish_target_copies();
        night(&d).await;
        let versions = d.aws.target_parameter(LONE, R, PARAM);
        assert_eq!(
            versions.last().unwrap().0,
            live[0].id,
            "vanished {vanished}"
        );
    }
}

/// Issue 27 (9): a target pass cut at the deadline goes on where it stopped in the next
/// invocation, instead of starting again from the first account (a pass longer than one
/// invocation would never finish).
#[tokio::test]
async fn a_target_pass_cut_short_goes_on_where_it_stopped() {
    use amishare::plan::SharePlan;
    use amishare::target_copies::TargetCopier;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (mut d, src) = world();
    d.settings.target_concurrency = 2; // 6 targets: 3 batches
    let plan = SharePlan::from_rules(d.policy.kms_access, d.policy.rules.iter());
    let into = &plan.into[0];
    let copier = TargetCopier::new(&d);
    // One batch an invocation (the first always runs; the deadline stops the next).
    let asked = AtomicUsize::new(0);
    let mut from = String::new();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (reports, stopped) = copier
            .finish_from(&src, into, &from, || {
                asked.fetch_add(1, Ordering::SeqCst);
                false
            })
            .await
            .unwrap();
        assert_eq!(reports.len(), 2);
        seen.extend(
            reports
                .iter()
                .map(|r| (r.account.clone(), r.region.clone())),
        );
        match stopped {
            Some(next) => from = next,
            None => break,
        }
    }
    let reached = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(
        (reached, seen.len()),
        (6, 6),
        "every target reached, none twice: {seen:?}"
    );
    assert_eq!(
        asked.load(Ordering::SeqCst),
        2,
        "asked before the 2nd batch of the first two invocations"
    );
    // The night writes its cursor on the image when it is cut, and clears it when it ends.
    let r = night(&d).await;
    assert!(r.target_copies.targets >= 6, "{:?}", r.target_copies);
    let cursor = d
        .aws
        .image(R, &src.id)
        .unwrap()
        .image
        .tags
        .get("ami-share:targets-cursor")
        .cloned();
    assert!(
        cursor.is_none() || cursor.as_deref() == Some("golden/"),
        "{cursor:?}"
    );
}
