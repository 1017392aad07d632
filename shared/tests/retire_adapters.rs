//! The retirement adapter against aws-smithy-mocks: the request shapes of
//! `DescribeImageReferences`, `CreateImageUsageReport`, `DescribeImageUsageReports`,
//! `DescribeImageUsageReportEntries`, `DisableImage` and `DeregisterImage` (moto has none of
//! the first four and answers the others with an HTML 500), pagination, and error codes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::collections::BTreeMap;

use amishare::aws::AwsPorts;
use amishare::retire::ports::{Retirement, UsageReportRequest};
use aws_sdk_ec2::operation::create_image_usage_report::CreateImageUsageReportOutput;
use aws_sdk_ec2::operation::deregister_image::{DeregisterImageError, DeregisterImageOutput};
use aws_sdk_ec2::operation::describe_image_references::DescribeImageReferencesOutput;
use aws_sdk_ec2::operation::describe_image_usage_report_entries::DescribeImageUsageReportEntriesOutput;
use aws_sdk_ec2::operation::describe_image_usage_reports::DescribeImageUsageReportsOutput;
use aws_sdk_ec2::operation::disable_image::DisableImageOutput;
use aws_sdk_ec2::types::{
    ImageReference, ImageReferenceOptionName, ImageReferenceResourceType, ImageUsageReport,
    ImageUsageReportEntry, ResourceType, Tag,
};
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_smithy_types::error::ErrorMetadata;

const R: &str = "us-east-1";

fn ports(ec2: &[&Rule]) -> AwsPorts {
    let none: [&Rule; 0] = [];
    let ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, ec2.iter().copied());
    let kms = mock_client!(aws_sdk_kms, RuleMode::MatchAny, none.iter().copied());
    let org = mock_client!(
        aws_sdk_organizations,
        RuleMode::MatchAny,
        none.iter().copied()
    );
    AwsPorts::from_clients(R, ec2, kms, org)
}

#[tokio::test]
async fn references_are_asked_for_every_resource_type_and_every_launch_template_version() {
    let first = mock!(aws_sdk_ec2::Client::describe_image_references)
        .match_requests(|r| {
            let types: Vec<&str> = r
                .resource_types()
                .iter()
                .filter_map(|t| t.resource_type().map(|t| t.as_str()))
                .collect();
            let lt = r
                .resource_types()
                .iter()
                .find(|t| t.resource_type() == Some(&ImageReferenceResourceType::Ec2LaunchTemplate))
                .map(|t| t.resource_type_options().to_vec())
                .unwrap_or_default();
            r.image_ids() == ["ami-1", "ami-2"]
                && types
                    == [
                        "ec2:Instance",
                        "ec2:LaunchTemplate",
                        "ssm:Parameter",
                        "imagebuilder:ImageRecipe",
                        "imagebuilder:ContainerRecipe",
                    ]
                && lt.len() == 1
                && lt[0].option_name() == Some(&ImageReferenceOptionName::VersionDepth)
                && lt[0].option_values() == ["10000"]
                && r.next_token().is_none()
        })
        .then_output(|| {
            DescribeImageReferencesOutput::builder()
                .image_references(
                    ImageReference::builder()
                        .image_id("ami-1")
                        .resource_type(ImageReferenceResourceType::Ec2LaunchTemplate)
                        .arn("arn:aws:ec2:us-east-1:123456789012:launch-template/lt-1")
                        .build(),
                )
                .next_token("t2")
                .build()
        });
    let second = mock!(aws_sdk_ec2::Client::describe_image_references)
        .match_requests(|r| r.next_token() == Some("t2"))
        .then_output(|| {
            DescribeImageReferencesOutput::builder()
                .image_references(
                    ImageReference::builder()
                        .image_id("ami-2")
                        .resource_type(ImageReferenceResourceType::SsmParameter)
                        .arn("arn:aws:ssm:us-east-1:123456789012:parameter/app/ami")
                        .build(),
                )
                .build()
        });
    let p = ports(&[&first, &second]);
    let refs = p
        .image_references(R, &["ami-1".into(), "ami-2".into()])
        .await
        .unwrap();
    let got: Vec<(&str, &str)> = refs
        .iter()
        .map(|r| (r.image_id.as_str(), r.resource_type.as_str()))
        .collect();
    assert_eq!(
        got,
        [("ami-1", "ec2:LaunchTemplate"), ("ami-2", "ssm:Parameter")]
    );
}

#[tokio::test]
async fn a_usage_report_covers_instances_and_every_launch_template_version_tagged_and_tokened() {
    let rule = mock!(aws_sdk_ec2::Client::create_image_usage_report)
        .match_requests(|r| {
            let types: Vec<&str> = r
                .resource_types()
                .iter()
                .filter_map(|t| t.resource_type())
                .collect();
            let lt_options = r
                .resource_types()
                .iter()
                .find(|t| t.resource_type() == Some("ec2:LaunchTemplate"))
                .map(|t| t.resource_type_options().to_vec())
                .unwrap_or_default();
            let tags = r.tag_specifications();
            r.image_id() == Some("ami-1")
                && types == ["ec2:Instance", "ec2:LaunchTemplate"]
                && lt_options.len() == 1
                && lt_options[0].option_name() == Some("version-depth")
                && lt_options[0].option_values() == ["10000"]
                && r.account_ids() == ["111122223333", "444455556666"]
                && r.client_token() == Some("tok")
                && tags.len() == 1
                && tags[0].resource_type() == Some(&ResourceType::ImageUsageReport)
                && tags[0].tags()[0].key() == Some("ami-share:retire")
                && tags[0].tags()[0].value() == Some("ami-1")
        })
        .then_output(|| {
            CreateImageUsageReportOutput::builder()
                .report_id("amiur-1")
                .build()
        });
    // No accounts: every account (the parameter is left out, not sent empty).
    let all = mock!(aws_sdk_ec2::Client::create_image_usage_report)
        .match_requests(|r| r.image_id() == Some("ami-2") && r.account_ids.is_none())
        .then_output(|| {
            CreateImageUsageReportOutput::builder()
                .report_id("amiur-2")
                .build()
        });
    let p = ports(&[&rule, &all]);
    let req = |image: &str, accounts: &[&str]| UsageReportRequest {
        image_id: image.into(),
        account_ids: accounts.iter().map(|a| a.to_string()).collect(),
        tags: BTreeMap::from([("ami-share:retire".to_string(), image.to_string())]),
        client_token: "tok".into(),
    };
    let id = p
        .create_usage_report(R, &req("ami-1", &["111122223333", "444455556666"]))
        .await
        .unwrap();
    assert_eq!(id, "amiur-1");
    let id = p.create_usage_report(R, &req("ami-2", &[])).await.unwrap();
    assert_eq!(id, "amiur-2");
}

#[tokio::test]
async fn usage_reports_and_their_entries_are_read_with_states_times_tags_and_counts() {
    let reports = mock!(aws_sdk_ec2::Client::describe_image_usage_reports)
        .match_requests(|r| r.image_ids() == ["ami-1"])
        .then_output(|| {
            DescribeImageUsageReportsOutput::builder()
                .image_usage_reports(
                    ImageUsageReport::builder()
                        .report_id("amiur-1")
                        .image_id("ami-1")
                        .state("available")
                        .creation_time(aws_smithy_types::DateTime::from_secs(1_900_000_000))
                        .account_ids("111122223333")
                        .tags(
                            Tag::builder()
                                .key("ami-share:retire")
                                .value("ami-1")
                                .build(),
                        )
                        .build(),
                )
                .build()
        });
    let entries = mock!(aws_sdk_ec2::Client::describe_image_usage_report_entries)
        .match_requests(|r| r.report_ids() == ["amiur-1"])
        .then_output(|| {
            DescribeImageUsageReportEntriesOutput::builder()
                .image_usage_report_entries(
                    ImageUsageReportEntry::builder()
                        .report_id("amiur-1")
                        .account_id("111122223333")
                        .resource_type("ec2:Instance")
                        .usage_count(3)
                        .build(),
                )
                .build()
        });
    let p = ports(&[&reports, &entries]);
    let got = p.usage_reports(R, "ami-1").await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].state, "available");
    assert_eq!(
        got[0].creation_time.as_deref(),
        Some("2030-03-17T17:46:40Z")
    );
    assert_eq!(got[0].tags["ami-share:retire"], "ami-1");
    let e = p
        .usage_report_entries(R, &["amiur-1".into()])
        .await
        .unwrap();
    assert_eq!(
        (
            e[0].account_id.as_str(),
            e[0].resource_type.as_str(),
            e[0].usage_count
        ),
        ("111122223333", "ec2:Instance", 3)
    );
}

#[tokio::test]
async fn disable_and_deregister_keep_the_snapshots_and_their_error_codes() {
    let disable = mock!(aws_sdk_ec2::Client::disable_image)
        .match_requests(|r| r.image_id() == Some("ami-1"))
        .then_output(|| DisableImageOutput::builder().r#return(true).build());
    let deregister = mock!(aws_sdk_ec2::Client::deregister_image)
        .match_requests(|r| {
            r.image_id() == Some("ami-1") && r.delete_associated_snapshots() == Some(false)
        })
        .then_output(|| DeregisterImageOutput::builder().build());
    let protected = mock!(aws_sdk_ec2::Client::deregister_image)
        .match_requests(|r| r.image_id() == Some("ami-2"))
        .then_error(|| {
            DeregisterImageError::generic(
                ErrorMetadata::builder()
                    .code("OperationNotPermitted")
                    .message("deregistration protection is enabled")
                    .build(),
            )
        });
    let p = ports(&[&disable, &deregister, &protected]);
    p.disable_image(R, "ami-1").await.unwrap();
    p.deregister_image(R, "ami-1").await.unwrap();
    let e = p.deregister_image(R, "ami-2").await.unwrap_err();
    assert_eq!(
        (e.code.as_str(), e.operation, e.resource.as_str()),
        ("OperationNotPermitted", "DeregisterImage", "ami-2")
    );
    assert_eq!(disable.num_calls() + deregister.num_calls(), 2);
}

#[tokio::test]
async fn describe_images_gives_last_launched_time_and_deregistration_protection() {
    use amishare::ports::Images;
    use aws_sdk_ec2::operation::describe_images::DescribeImagesOutput;
    let rule = mock!(aws_sdk_ec2::Client::describe_images)
        .match_requests(|r| r.image_ids() == ["ami-1"])
        .then_output(|| {
            DescribeImagesOutput::builder()
                .images(
                    aws_sdk_ec2::types::Image::builder()
                        .image_id("ami-1")
                        .owner_id("123456789012")
                        .last_launched_time("2030-05-28T08:00:00Z")
                        .deregistration_protection("enabled-with-cooldown")
                        .build(),
                )
                .build()
        });
    let p = ports(&[&rule]);
    let img = p.describe_image(R, "ami-1").await.unwrap().unwrap();
    assert_eq!(
        img.last_launched_time.as_deref(),
        Some("2030-05-28T08:00:00Z")
    );
    assert_eq!(
        img.deregistration_protection.as_deref(),
        Some("enabled-with-cooldown")
    );
}
