//! The burst path against the double: a batch of events from the function's SQS queue, each
//! record through the same frame as a direct event; a record that fails transiently is
//! answered in `batchItemFailures` (SQS delivers it again), a malformed one is reported once
//! and not retried, the others are done.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::time::Duration;

use amishare::deps::{Deps, Settings};
use amishare::distribute::Response;
use amishare::Policy;
use amishare_testkit::{FakeAws, ImageSpec, OWN_ACCOUNT};
use on_image_available::handle_invocation;
use serde_json::{json, Value};

const R: &str = "us-east-1";
const ACCOUNT: &str = "111122223333";

fn fixture() -> Value {
    serde_json::from_str(include_str!("../../../events/sqs-image-available.json")).unwrap()
}

/// A batch of one record per body, message ids `m0`, `m1`, …
fn batch(bodies: &[String]) -> Value {
    let template = fixture()["Records"][0].clone();
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let mut r = template.clone();
            r["messageId"] = json!(format!("m{i}"));
            r["body"] = json!(body);
            r
        })
        .collect();
    json!({ "Records": records })
}

fn event_body(image_id: &str) -> String {
    let record = &fixture()["Records"][0];
    let mut e: Value = serde_json::from_str(record["body"].as_str().unwrap()).unwrap();
    e["detail"]["ImageId"] = json!(image_id);
    e.to_string()
}

fn deps() -> Deps<FakeAws> {
    let policy = Policy::from_json(&format!(
        r#"{{"rules":[{{"name":"golden","match":{{"name":"golden-*"}},"share_with":{{"accounts":["{ACCOUNT}"]}}}}]}}"#
    ))
    .unwrap();
    let mut d = Deps::new(FakeAws::new(), policy, OWN_ACCOUNT);
    d.settings = Settings {
        visibility_retry_delays: vec![Duration::from_millis(1); 3],
        ..Settings::default()
    };
    d
}

fn images(d: &Deps<FakeAws>, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            d.aws
                .create_image(ImageSpec::new(R, &format!("golden-{i}")).snapshots(1))
                .id
        })
        .collect()
}

fn shared(d: &Deps<FakeAws>, id: &str) -> bool {
    d.aws
        .image(R, id)
        .unwrap()
        .launch
        .accounts
        .contains(ACCOUNT)
}

fn to_retry(r: &Response) -> Vec<String> {
    let Response::Batch(b) = r else {
        panic!("not a batch response: {r:?}")
    };
    let mut ids: Vec<String> = b
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn the_fixture_is_a_batch_and_the_response_is_what_lambda_reads() {
    let d = deps();
    let r = handle_invocation(&d, fixture()).await.unwrap();
    assert_eq!(to_retry(&r), Vec::<String>::new());
    // The image of the fixture does not exist: a permanent failure, reported, not retried.
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        json!({"batchItemFailures": []})
    );
}

#[tokio::test]
async fn every_record_of_a_batch_is_distributed() {
    let d = deps();
    let ids = images(&d, 5);
    let bodies: Vec<String> = ids.iter().map(|i| event_body(i)).collect();
    let r = handle_invocation(&d, batch(&bodies)).await.unwrap();
    assert_eq!(to_retry(&r), Vec::<String>::new());
    assert!(ids.iter().all(|i| shared(&d, i)));
}

#[tokio::test]
async fn a_transient_failure_retries_only_its_record_and_the_redelivery_finishes_it() {
    let d = deps();
    let ids = images(&d, 3);
    let bodies: Vec<String> = ids.iter().map(|i| event_body(i)).collect();
    // The second ModifyImageAttribute call is throttled past the SDK's retries.
    d.aws
        .fail("ec2:ModifyImageAttribute", "RequestLimitExceeded", 1, 1);
    let r = handle_invocation(&d, batch(&bodies)).await.unwrap();
    let retry = to_retry(&r);
    assert_eq!(retry.len(), 1, "{r:?}");
    let i: usize = retry[0][1..].parse().unwrap();
    assert!(!shared(&d, &ids[i]));
    assert_eq!(ids.iter().filter(|id| shared(&d, id)).count(), 2);
    // SQS delivers the record again: it finishes, and the batch has nothing left to retry.
    let r = handle_invocation(&d, batch(&[bodies[i].clone()]))
        .await
        .unwrap();
    assert_eq!(to_retry(&r), Vec::<String>::new());
    assert!(shared(&d, &ids[i]));
}

#[tokio::test]
async fn a_malformed_record_is_reported_once_not_retried_and_does_not_stop_the_others() {
    let d = deps();
    let ids = images(&d, 1);
    let r = handle_invocation(
        &d,
        batch(&[
            "not json".into(),
            "{\"detail\":{}}".into(),
            event_body(&ids[0]),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(to_retry(&r), Vec::<String>::new());
    assert!(shared(&d, &ids[0]));
}

/// Issue 27 (12): an SQS batch that does not deserialise is not acknowledged as one malformed
/// event (its records would be lost): the invocation fails, so SQS delivers them again and the
/// redrive policy keeps them.
#[tokio::test]
async fn a_batch_that_does_not_deserialise_fails_the_invocation_and_loses_nothing() {
    let d = deps();
    let ids = images(&d, 1);
    let mut b = batch(&[event_body(&ids[0])]);
    b["Records"][0]["messageAttributes"] = json!("not an object");
    let e = handle_invocation(&d, b).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert_eq!(e.aws_code(), Some("MalformedBatch"));
    assert!(e.to_string().contains("delivers them again"), "{e}");
    assert!(
        !shared(&d, &ids[0]),
        "nothing done: the batch comes back whole"
    );
    assert!(d.aws.world().calls.is_empty());
}

#[tokio::test]
async fn the_same_event_twice_in_a_batch_shares_once() {
    let d = deps();
    let ids = images(&d, 1);
    let body = event_body(&ids[0]);
    let r = handle_invocation(&d, batch(&[body.clone(), body]))
        .await
        .unwrap();
    assert_eq!(to_retry(&r), Vec::<String>::new());
    let img = d.aws.image(R, &ids[0]).unwrap();
    assert_eq!(img.launch.accounts.len(), 1);
}

#[tokio::test]
async fn a_direct_event_is_still_one_event_with_its_summary() {
    let d = deps();
    let ids = images(&d, 1);
    let event: Value = serde_json::from_str(&event_body(&ids[0])).unwrap();
    let r = handle_invocation(&d, event).await.unwrap();
    let Response::Event(s) = r else {
        panic!("not an event summary: {r:?}")
    };
    assert_eq!(s.image_id.as_deref(), Some(ids[0].as_str()));
    assert!(shared(&d, &ids[0]));
}

#[tokio::test]
async fn the_images_of_one_key_in_a_batch_read_and_grant_the_key_once() {
    use amishare::ports::KeyManager;
    let d = deps();
    let key = d.aws.create_key(R, KeyManager::Customer);
    let ids: Vec<String> = (0..5)
        .map(|i| {
            d.aws
                .create_image(
                    ImageSpec::new(R, &format!("golden-{i}"))
                        .snapshots(1)
                        .encrypted_with(&[&key]),
                )
                .id
        })
        .collect();
    d.aws.reset_calls();
    let bodies: Vec<String> = ids.iter().map(|i| event_body(i)).collect();
    let r = handle_invocation(&d, batch(&bodies)).await.unwrap();
    assert_eq!(to_retry(&r), Vec::<String>::new());
    assert!(ids.iter().all(|i| shared(&d, i)));
    let c = d.aws.call_counts();
    assert_eq!(c.get("kms:ListResourceTags"), Some(&1), "{c:#?}");
    assert_eq!(c.get("kms:ListGrants"), Some(&1), "{c:#?}");
    assert_eq!(c.get("kms:CreateGrant"), Some(&1), "{c:#?}");
    assert_eq!(c.get("kms:TagResource"), Some(&1), "one receipt: {c:#?}");
    assert_eq!(d.aws.grants(&key).len(), 1);
}
