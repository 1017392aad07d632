//! The request shapes and answers of the watermark and Allowed AMIs calls (issue 30), through
//! aws-smithy-mocks: `AttachImageWatermark`, `GetAllowedImagesSettings`,
//! `DescribeEffectivePolicy` (`DECLARATIVE_POLICY_EC2`), and the watermarks `DescribeImages`
//! returns.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use amishare::allowed::{Source, State};
use amishare::aws::AwsPorts;
use amishare::ports::{Images, Org};
use amishare::Error;
use aws_sdk_ec2::operation::attach_image_watermark::AttachImageWatermarkOutput;
use aws_sdk_ec2::operation::describe_images::DescribeImagesOutput;
use aws_sdk_ec2::operation::get_allowed_images_settings::GetAllowedImagesSettingsOutput;
use aws_sdk_ec2::types::{
    DeprecationTimeCondition, Image, ImageCriterion, ImageWatermark, ImageWatermarkFilterResponse,
    ManagedBy,
};
use aws_sdk_organizations::operation::describe_effective_policy::{
    DescribeEffectivePolicyError, DescribeEffectivePolicyOutput,
};
use aws_sdk_organizations::types::{EffectivePolicy, EffectivePolicyType};
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_smithy_types::error::ErrorMetadata;

fn ports(ec2: &[&Rule], org: &[&Rule]) -> AwsPorts {
    let ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, ec2.iter().copied());
    let kms = mock_client!(aws_sdk_kms, RuleMode::MatchAny, std::iter::empty::<&Rule>());
    let org = mock_client!(
        aws_sdk_organizations,
        RuleMode::MatchAny,
        org.iter().copied()
    );
    AwsPorts::from_clients("us-east-1", ec2, kms, org)
}

#[tokio::test]
async fn attach_watermark_names_the_image_and_the_watermark_and_describe_reads_them_back() {
    let attach = mock!(aws_sdk_ec2::Client::attach_image_watermark)
        .match_requests(|r| {
            r.image_id() == Some("ami-0123456789abcdef0")
                && r.watermark_name() == Some("golden-approved")
                && r.dry_run().is_none()
        })
        .then_output(|| AttachImageWatermarkOutput::builder().build());
    let describe = mock!(aws_sdk_ec2::Client::describe_images).then_output(|| {
        DescribeImagesOutput::builder()
            .images(
                Image::builder()
                    .image_id("ami-0123456789abcdef0")
                    .owner_id("444455556666")
                    .image_watermarks(
                        ImageWatermark::builder()
                            .watermark_key("444455556666:golden-approved")
                            .source_image_region("us-east-1")
                            .build(),
                    )
                    .build(),
            )
            .build()
    });
    let p = ports(&[&attach, &describe], &[]);
    p.attach_watermark("us-east-1", "ami-0123456789abcdef0", "golden-approved")
        .await
        .unwrap();
    assert_eq!(attach.num_calls(), 1);
    let img = p
        .describe_image("us-east-1", "ami-0123456789abcdef0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(img.watermarks, ["444455556666:golden-approved"]);
}

#[tokio::test]
async fn get_allowed_images_settings_is_read_criterion_by_criterion() {
    let get = mock!(aws_sdk_ec2::Client::get_allowed_images_settings).then_output(|| {
        GetAllowedImagesSettingsOutput::builder()
            .state("enabled")
            .managed_by(ManagedBy::DeclarativePolicy)
            .image_criteria(ImageCriterion::builder().image_providers("amazon").build())
            .image_criteria(
                ImageCriterion::builder()
                    .image_watermarks(
                        ImageWatermarkFilterResponse::builder()
                            .watermark_key("444455556666:golden-*")
                            .build(),
                    )
                    .deprecation_time_condition(
                        DeprecationTimeCondition::builder()
                            .maximum_days_since_deprecated(30)
                            .build(),
                    )
                    .build(),
            )
            .build()
    });
    let p = ports(&[&get], &[]);
    let s = p.own_allowed_images_settings("us-east-1").await.unwrap();
    assert_eq!(
        (s.state, s.source),
        (State::Enabled, Source::DeclarativePolicy)
    );
    assert_eq!(s.criteria[0].providers, Some(vec!["amazon".to_string()]));
    assert_eq!(s.criteria[0].watermarks, None);
    let w = s.criteria[1].watermarks.as_ref().unwrap();
    assert_eq!(w[0].key.as_deref(), Some("444455556666:golden-*"));
    assert!(!w[0].other_conditions);
    assert_eq!(s.criteria[1].max_days_since_deprecated, Some(30));
    assert_eq!(get.num_calls(), 1);
}

#[tokio::test]
async fn describe_effective_policy_asks_for_the_ec2_declarative_policy_of_the_account() {
    let found = mock!(aws_sdk_organizations::Client::describe_effective_policy)
        .match_requests(|r| {
            r.policy_type() == Some(&EffectivePolicyType::DeclarativePolicyEc2)
                && r.target_id() == Some("111122223333")
        })
        .then_output(|| {
            DescribeEffectivePolicyOutput::builder()
                .effective_policy(
                    EffectivePolicy::builder()
                        .policy_content(r#"{"ec2_attributes": {}}"#)
                        .build(),
                )
                .build()
        });
    let none = mock!(aws_sdk_organizations::Client::describe_effective_policy)
        .match_requests(|r| r.target_id() == Some("999988887777"))
        .then_error(|| {
            DescribeEffectivePolicyError::EffectivePolicyNotFoundException(
                aws_sdk_organizations::types::error::EffectivePolicyNotFoundException::builder()
                    .meta(
                        ErrorMetadata::builder()
                            .code("EffectivePolicyNotFoundException")
                            .build(),
                    )
                    .build(),
            )
        });
    let denied = mock!(aws_sdk_organizations::Client::describe_effective_policy)
        .match_requests(|r| r.target_id() == Some("444455556666"))
        .then_error(|| {
            DescribeEffectivePolicyError::AccessDeniedException(
                aws_sdk_organizations::types::error::AccessDeniedException::builder()
                    .meta(
                        ErrorMetadata::builder()
                            .code("AccessDeniedException")
                            .build(),
                    )
                    .build(),
            )
        });
    let p = ports(&[], &[&found, &none, &denied]);
    assert_eq!(
        p.effective_ec2_policy("111122223333")
            .await
            .unwrap()
            .as_deref(),
        Some(r#"{"ec2_attributes": {}}"#)
    );
    assert_eq!(p.effective_ec2_policy("999988887777").await.unwrap(), None);
    let e = Error::from(p.effective_ec2_policy("444455556666").await.unwrap_err());
    assert_eq!(e.error_type(), "Permanent.AccessDeniedException");
}
