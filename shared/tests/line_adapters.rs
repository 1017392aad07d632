//! The copy line's and the target line's SQS requests, on the wire (aws-smithy-mocks): the
//! queue found by name once, a FIFO send with its group and deduplication id (the copy's
//! client token), a receive that asks for the group and hides what it hands out, a release
//! to visibility 0, and the target line's batches of 10 with their delays.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use amishare::aws::AwsPorts;
use amishare::ports::CopyLine;
use aws_sdk_sqs::operation::change_message_visibility::ChangeMessageVisibilityOutput;
use aws_sdk_sqs::operation::get_queue_url::GetQueueUrlOutput;
use aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput;
use aws_sdk_sqs::operation::send_message::SendMessageOutput;
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};

const URL: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/stack-copy-line.fifo";

fn ports(rules: &[&Rule]) -> AwsPorts {
    let ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, &[]);
    let kms = mock_client!(aws_sdk_kms, RuleMode::MatchAny, &[]);
    let org = mock_client!(aws_sdk_organizations, RuleMode::MatchAny, &[]);
    let sqs = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, rules.iter().copied());
    AwsPorts::from_clients("us-east-1", ec2, kms, org)
        .with_sqs_client("us-east-1", sqs)
        .with_copy_line("stack-copy-line.fifo")
        .with_target_line("stack-target-line")
}

fn url_of(name: &'static str) -> Rule {
    mock!(aws_sdk_sqs::Client::get_queue_url)
        .match_requests(move |r| r.queue_name() == Some(name))
        .then_output(move || {
            GetQueueUrlOutput::builder()
                .queue_url(format!(
                    "https://sqs.us-east-1.amazonaws.com/123456789012/{name}"
                ))
                .build()
        })
}

#[tokio::test]
async fn a_copy_joins_its_line_with_its_group_and_its_token_as_deduplication_id() {
    let url = url_of("stack-copy-line.fifo");
    let send = mock!(aws_sdk_sqs::Client::send_message)
        .match_requests(|r| {
            r.queue_url() == Some(URL)
                && r.message_group_id() == Some("self")
                && r.message_deduplication_id() == Some("tok")
                && r.message_body() == Some("{}")
                && r.delay_seconds().is_none()
        })
        .then_output(|| SendMessageOutput::builder().build());
    let p = ports(&[&url, &send]);
    p.line_send("us-east-1", "self", "tok", "{}").await.unwrap();
    p.line_send("us-east-1", "self", "tok", "{}").await.unwrap();
    assert_eq!(url.num_calls(), 1, "the URL is looked up once");
    assert_eq!(send.num_calls(), 2);
}

#[tokio::test]
async fn a_drain_receives_with_the_group_hides_and_releases_at_once() {
    let url = url_of("stack-copy-line.fifo");
    let receive = mock!(aws_sdk_sqs::Client::receive_message)
        .match_requests(|r| {
            r.queue_url() == Some(URL)
                && r.max_number_of_messages() == Some(10)
                && r.visibility_timeout() == Some(120)
                && r.message_system_attribute_names()
                    == [MessageSystemAttributeName::MessageGroupId]
        })
        .then_output(|| {
            ReceiveMessageOutput::builder()
                .messages(
                    Message::builder()
                        .receipt_handle("rh-1")
                        .body("{\"x\":1}")
                        .attributes(MessageSystemAttributeName::MessageGroupId, "self")
                        .build(),
                )
                .build()
        });
    let release = mock!(aws_sdk_sqs::Client::change_message_visibility)
        .match_requests(|r| r.receipt_handle() == Some("rh-1") && r.visibility_timeout() == Some(0))
        .then_output(|| ChangeMessageVisibilityOutput::builder().build());
    let p = ports(&[&url, &receive, &release]);
    let got = p.line_receive("us-east-1", 25, 120).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].group.as_str(), got[0].receipt.as_str()),
        ("self", "rh-1")
    );
    p.line_release("us-east-1", "rh-1").await.unwrap();
    assert_eq!(release.num_calls(), 1);
}

#[tokio::test]
async fn the_target_line_is_sent_in_batches_of_ten_with_their_delays() {
    let url = url_of("stack-target-line");
    let batch = mock!(aws_sdk_sqs::Client::send_message_batch)
        .match_requests(|r| {
            r.entries().len() <= 10
                && r.entries()
                    .iter()
                    .all(|e| e.delay_seconds() == Some(120) && e.message_body().starts_with("{"))
        })
        .then_output(|| {
            SendMessageBatchOutput::builder()
                .set_successful(Some(vec![]))
                .set_failed(Some(vec![]))
                .build()
                .unwrap()
        });
    let p = ports(&[&url, &batch]);
    let entries: Vec<(String, u32)> = (0..23).map(|i| (format!("{{\"n\":{i}}}"), 120)).collect();
    p.follow_send(&entries).await.unwrap();
    assert_eq!(batch.num_calls(), 3, "23 messages: 10 + 10 + 3");
}
