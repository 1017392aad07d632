//! The orphan decisions, table by table (aws-facts §6).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};

use super::judge::*;
use crate::config::SweepMode;
use crate::ports::{EbsVolume, Image, ImageState};
use crate::sweep::inventory::{OwnSnapshot, RecycledImage, Reference, SnapshotState, SnapshotTags};

const GONE: &str = "ami-0123456789abcdef0";
const LIVE: &str = "ami-0fedcba9876543210";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 3, 30, 0)
        .single()
        .unwrap_or_default()
}

fn snap(id: &str, description: &str) -> OwnSnapshot {
    OwnSnapshot {
        id: id.into(),
        description: description.into(),
        size_gib: 8,
        start_time: Some(now() - chrono::Duration::days(30)),
        state: SnapshotState::Completed,
        tags: SnapshotTags::default(),
        kms_key_id: None,
    }
}

fn created_for(image: &str) -> String {
    format!("Created by CreateImage(i-0abc1234def567890) for {image}")
}

fn image(id: &str, state: ImageState, snapshot: &str) -> Image {
    Image {
        id: id.into(),
        region: "us-east-1".into(),
        name: "n".into(),
        owner_id: "123456789012".into(),
        state,
        tags: BTreeMap::new(),
        volumes: vec![EbsVolume {
            device_name: "/dev/xvda".into(),
            snapshot_id: snapshot.into(),
            encrypted: false,
        }],
        source_image_id: None,
        source_image_region: None,
        deprecation_time: None,
        creation_date: None,
        last_launched_time: None,
        deregistration_protection: None,
        verified_source_created: None,
        watermarks: Vec::new(),
    }
}

fn reference(by: &str, snapshots: &[&str], images: &[&str]) -> Reference {
    Reference {
        by: by.into(),
        snapshot_ids: snapshots.iter().map(|s| s.to_string()).collect(),
        image_ids: images
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>(),
    }
}

#[test]
fn descriptions_that_name_an_image_and_those_that_do_not() {
    let cases: &[(&str, Option<&str>)] = &[
        ("Created by CreateImage(i-0abc1234def567890) for ami-0123456789abcdef0", Some(GONE)),
        ("Created by CreateImage(i-0abc1234def567890) for ami-0123456789abcdef0 from vol-0aaa", Some(GONE)),
        ("Created by CreateImage(i-1234abcd) for ami-1234abcd from vol-1234abcd", Some("ami-1234abcd")),
        (
            "Copied for DestinationAmi ami-0123456789abcdef0 from SourceAmi ami-0fedcba9876543210 for SourceSnapshot snap-0aaa. Task created on 1,700,000,000.",
            Some(GONE),
        ),
        ("", None),
        ("my backup of ami-0123456789abcdef0", None),
        ("Created by CreateImage(i-0abc) for my-image", None),
        ("Created by CreateImage(i-0abc) for ami-XYZ", None),
        ("Created by CreateImage(i-0abc) for ami-0123", None),
        ("This snapshot is created by the AWS Backup service.", None),
        ("Created for policy: policy-0abc schedule: Daily", None),
        ("Copied for DestinationAmi  ami-0123456789abcdef0", None),
        ("created by createimage(i-0abc) for ami-0123456789abcdef0", None),
    ];
    for (d, want) in cases {
        assert_eq!(image_named_in(d), *want, "{d:?}");
    }
}

#[test]
fn every_condition_of_an_orphan_is_checked_and_the_first_failing_one_is_the_reason() {
    let gone = created_for(GONE);
    let in_use = InUse::new(
        &[
            image(LIVE, ImageState::Available, "snap-live"),
            image(
                "ami-00000000000000001",
                ImageState::Disabled,
                "snap-disabled",
            ),
            image(
                "ami-00000000000000002",
                ImageState::Pending,
                "snap-pending-copy",
            ),
            image(
                "ami-00000000000000003",
                ImageState::Available,
                "snap-reused",
            ),
        ],
        &[RecycledImage {
            id: "ami-00000000000000004".into(),
            name: "binned".into(),
        }],
        &[
            reference("launch template lt-1 version 1", &["snap-in-lt"], &[]),
            reference(
                "launch configuration web",
                &["snap-in-lc"],
                &["ami-00000000000000005"],
            ),
        ],
    );
    let with = |f: &dyn Fn(&mut OwnSnapshot)| {
        let mut s = snap("snap-x", &gone);
        f(&mut s);
        s
    };
    let cases: Vec<(&str, OwnSnapshot, Option<&str>)> = vec![
        ("orphan", snap("snap-x", &gone), None),
        (
            "plain snapshot",
            snap("snap-x", "my data"),
            Some("no_proof_of_origin"),
        ),
        (
            "provenance tag only",
            with(&|s| {
                s.description = "".into();
                s.tags.source_image = Some("us-east-1/ami-0123".into());
            }),
            Some("image_not_named"),
        ),
        ("keep tag", with(&|s| s.tags.keep = true), Some("keep_tag")),
        (
            "backup",
            with(&|s| s.tags.backup = true),
            Some("backup_managed"),
        ),
        ("dlm", with(&|s| s.tags.dlm = true), Some("dlm_managed")),
        (
            "pending snapshot",
            with(&|s| s.state = SnapshotState::Pending),
            Some("not_completed"),
        ),
        (
            "error snapshot",
            with(&|s| s.state = SnapshotState::Error),
            Some("not_completed"),
        ),
        (
            "live image",
            snap("snap-live", &created_for(LIVE)),
            Some("image_exists"),
        ),
        (
            "disabled image",
            snap("snap-disabled", &created_for("ami-00000000000000001")),
            Some("image_exists"),
        ),
        (
            "pending copy",
            snap(
                "snap-p",
                "Copied for DestinationAmi ami-00000000000000002 from SourceAmi ami-1",
            ),
            Some("image_exists"),
        ),
        (
            "recycle bin",
            snap("snap-x", &created_for("ami-00000000000000004")),
            Some("image_in_recycle_bin"),
        ),
        (
            "other image's mapping",
            snap("snap-reused", &gone),
            Some("referenced"),
        ),
        (
            "launch template",
            snap("snap-in-lt", &gone),
            Some("referenced"),
        ),
        (
            "launch configuration",
            snap("snap-in-lc", &gone),
            Some("referenced"),
        ),
        (
            "image named by a launch configuration",
            snap("snap-y", &created_for("ami-00000000000000005")),
            Some("image_referenced"),
        ),
        (
            "too young",
            with(&|s| s.start_time = Some(now() - chrono::Duration::days(6))),
            Some("too_young"),
        ),
        (
            "no start time",
            with(&|s| s.start_time = None),
            Some("too_young"),
        ),
    ];
    for (name, s, want) in cases {
        let v = judge(&s, &in_use, now(), 7);
        match (want, &v) {
            (None, Verdict::Orphan(p)) => assert_eq!(p.image_id, GONE, "{name}"),
            (Some(code), Verdict::Keep(r)) => assert_eq!(r.code(), code, "{name}: {r}"),
            _ => panic!("{name}: got {v:?}, wanted {want:?}"),
        }
    }
}

#[test]
fn min_age_boundary() {
    let n = now();
    assert!(old_enough(Some(n - chrono::Duration::days(7)), n, 7));
    assert!(!old_enough(
        Some(n - chrono::Duration::days(7) + chrono::Duration::seconds(1)),
        n,
        7
    ));
    assert!(old_enough(Some(n), n, 0));
    assert!(!old_enough(None, n, 0));
    assert!(
        !old_enough(Some(n + chrono::Duration::days(1)), n, 0),
        "a start time in the future is not old"
    );
}

#[test]
fn mark_wait_recheck_delete() {
    let today = NaiveDate::from_ymd_opt(2026, 11, 21).unwrap_or_default();
    let d = |s: &str| parse_mark(s).unwrap_or_default();
    use SweepMode::{Delete, Report};
    type Case<'a> = (&'a str, bool, Option<&'a str>, SweepMode, u32, Action);
    let cases: Vec<Case> = vec![
        (
            "not an orphan, not marked",
            false,
            None,
            Delete,
            7,
            Action::None,
        ),
        (
            "not an orphan any more",
            false,
            Some("2026-01-01"),
            Delete,
            7,
            Action::Unmark,
        ),
        (
            "not an orphan, garbage tag",
            false,
            Some("soon"),
            Report,
            7,
            Action::Unmark,
        ),
        ("new orphan, report", true, None, Report, 7, Action::Mark),
        (
            "new orphan, delete mode still only marks",
            true,
            None,
            Delete,
            0,
            Action::Mark,
        ),
        (
            "garbage tag is re-marked",
            true,
            Some("yesterday"),
            Delete,
            0,
            Action::Mark,
        ),
        (
            "future date is re-marked",
            true,
            Some("2026-11-22"),
            Delete,
            0,
            Action::Mark,
        ),
        (
            "marked yesterday, grace 7",
            true,
            Some("2026-11-20"),
            Delete,
            7,
            Action::Wait {
                since: d("2026-11-20"),
                days_left: 6,
            },
        ),
        (
            "marked 6 days ago, grace 7",
            true,
            Some("2026-11-15"),
            Delete,
            7,
            Action::Wait {
                since: d("2026-11-15"),
                days_left: 1,
            },
        ),
        (
            "marked 7 days ago, grace 7",
            true,
            Some("2026-11-14"),
            Delete,
            7,
            Action::Delete {
                since: d("2026-11-14"),
            },
        ),
        (
            "marked long ago",
            true,
            Some("2025-01-01"),
            Delete,
            7,
            Action::Delete {
                since: d("2025-01-01"),
            },
        ),
        (
            "marked long ago, report mode never deletes",
            true,
            Some("2025-01-01"),
            Report,
            7,
            Action::Wait {
                since: d("2025-01-01"),
                days_left: 0,
            },
        ),
        (
            "marked today, grace 0",
            true,
            Some("2026-11-21"),
            Delete,
            0,
            Action::Delete { since: today },
        ),
    ];
    for (name, orphan, tag, mode, grace, want) in cases {
        assert_eq!(decide(orphan, tag, today, mode, grace), want, "{name}");
    }
}

#[test]
fn mark_value_is_the_utc_date() {
    assert_eq!(mark_value(now()), "2026-11-21");
    assert_eq!(parse_mark(&mark_value(now())), Some(now().date_naive()));
}
