//! Every fixture in events/ deserializes (or fails) as it should.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use amishare::event::{parse, AmiState, Incoming};
use amishare::Error;
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn ami_state_change_fixtures_parse() {
    let cases = [
        (
            "image-available.json",
            AmiState::Available,
            "us-east-1",
            None,
        ),
        (
            "image-failed.json",
            AmiState::Failed,
            "us-east-1",
            Some("Snapshot creation failed: internal error"),
        ),
        (
            "image-deregistered.json",
            AmiState::Deregistered,
            "us-east-1",
            None,
        ),
        ("image-disabled.json", AmiState::Disabled, "us-east-1", None),
        (
            "copy-available.json",
            AmiState::Available,
            "us-west-2",
            None,
        ),
        (
            "copy-failed.json",
            AmiState::Failed,
            "us-west-2",
            Some("Copy failed: ResourceLimitExceeded"),
        ),
    ];
    for (file, state, region, msg) in cases {
        match parse(fixture(file)).unwrap() {
            Incoming::AmiStateChange(c) => {
                assert_eq!(c.state, state, "{file}");
                assert_eq!(c.region, region, "{file}");
                assert!(c.image_id.starts_with("ami-"));
                assert_eq!(c.error_message.as_deref(), msg, "{file}");
            }
            other => panic!("{file}: {other:?}"),
        }
    }
}

#[test]
fn other_detail_types_are_not_errors() {
    assert!(matches!(
        parse(fixture("other-detail-type.json")).unwrap(),
        Incoming::Other { .. }
    ));
}

#[test]
fn malformed_events_name_the_field() {
    let field = |file: &str| match parse(fixture(file)) {
        Err(Error::BadEvent { field, message }) => (field, message),
        other => panic!("{file}: {other:?}"),
    };
    assert_eq!(field("malformed-no-image-id.json").0, "detail.ImageId");
    let (f, m) = field("malformed-lowercase-state.json");
    assert_eq!(f, "detail.State");
    assert!(m.contains("case-sensitive"), "{m}");
    // not an EventBridge envelope at all
    let (f, _) = match parse(serde_json::json!({"hello": 1})) {
        Err(Error::BadEvent { field, message }) => (field, message),
        other => panic!("{other:?}"),
    };
    assert_eq!(f, "detail-type");
    let mut bad_id = fixture("image-available.json");
    bad_id["detail"]["ImageId"] = Value::from("snap-123");
    assert!(
        matches!(parse(bad_id), Err(Error::BadEvent { field, .. }) if field == "detail.ImageId")
    );
    let mut no_region = fixture("image-available.json");
    no_region.as_object_mut().unwrap().remove("region");
    assert!(matches!(parse(no_region), Err(Error::BadEvent { field, .. }) if field == "region"));
}

#[test]
fn sweeper_inputs_are_json_objects() {
    for f in [
        "sweeper-scheduled.json",
        "sweeper-report-only.json",
        "sweeper-delete.json",
    ] {
        assert!(fixture(f).is_object(), "{f}");
    }
}
