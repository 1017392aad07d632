//! The SDK adapters against aws-smithy-mocks: request shapes, pagination tokens, conversion,
//! error-code mapping and retries.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::time::Duration;

use amishare::aws::AwsPorts;
use amishare::error::Error;
use amishare::ports::{
    CopyRequest, GrantRequest, Images, KeyManager, Keys, LaunchPermissions, Org, Snapshots,
};
use aws_sdk_ec2::operation::copy_image::CopyImageOutput;
use aws_sdk_ec2::operation::describe_images::{DescribeImagesError, DescribeImagesOutput};
use aws_sdk_ec2::operation::modify_image_attribute::ModifyImageAttributeOutput;
use aws_sdk_ec2::operation::modify_snapshot_attribute::{
    ModifySnapshotAttributeError, ModifySnapshotAttributeOutput,
};
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, OperationType, PermissionGroup, ResourceType, Tag,
};
use aws_sdk_kms::operation::create_grant::CreateGrantOutput;
use aws_sdk_kms::operation::describe_key::{DescribeKeyError, DescribeKeyOutput};
use aws_sdk_kms::operation::get_key_policy::{GetKeyPolicyError, GetKeyPolicyOutput};
use aws_sdk_kms::operation::list_grants::ListGrantsOutput;
use aws_sdk_kms::operation::list_resource_tags::ListResourceTagsOutput;
use aws_sdk_kms::operation::tag_resource::TagResourceOutput;
use aws_sdk_kms::operation::untag_resource::UntagResourceOutput;
use aws_sdk_kms::types::Tag as KeyTag;
use aws_sdk_kms::types::{GrantListEntry, GrantOperation, KeyManagerType, KeyMetadata};
use aws_sdk_organizations::operation::describe_organization::DescribeOrganizationError;
use aws_sdk_organizations::operation::list_accounts_for_parent::{
    ListAccountsForParentError, ListAccountsForParentOutput,
};
use aws_sdk_organizations::types::{Account, AccountState};
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_smithy_types::error::ErrorMetadata;
use aws_smithy_types::retry::RetryConfig;

fn retry() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(1))
}

fn ports(ec2: &[&Rule], kms: &[&Rule], org: &[&Rule]) -> AwsPorts {
    let sleep = aws_smithy_async::rt::sleep::SharedAsyncSleep::new(
        aws_smithy_async::rt::sleep::TokioSleep::new(),
    );
    let (s1, s2, s3) = (sleep.clone(), sleep.clone(), sleep);
    let ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, ec2.iter().copied(), |c| c
        .retry_config(retry())
        .sleep_impl(s1.clone()));
    let kms = mock_client!(aws_sdk_kms, RuleMode::MatchAny, kms.iter().copied(), |c| c
        .retry_config(retry())
        .sleep_impl(s2.clone()));
    let org = mock_client!(
        aws_sdk_organizations,
        RuleMode::MatchAny,
        org.iter().copied(),
        |c| c.retry_config(retry()).sleep_impl(s3.clone())
    );
    AwsPorts::from_clients("us-east-1", ec2, kms, org)
}

fn meta(code: &str) -> ErrorMetadata {
    ErrorMetadata::builder()
        .code(code)
        .message(format!("{code} from the mock"))
        .build()
}

#[tokio::test]
async fn describe_image_asks_for_disabled_images_and_converts_everything() {
    let rule = mock!(aws_sdk_ec2::Client::describe_images)
        .match_requests(|r| r.image_ids() == ["ami-1"] && r.include_disabled() == Some(true))
        .then_output(|| {
            let img = aws_sdk_ec2::types::Image::builder()
                .image_id("ami-1")
                .name("golden-1")
                .owner_id("123456789012")
                .state(aws_sdk_ec2::types::ImageState::Available)
                .tags(Tag::builder().key("Share").value("org").build())
                .block_device_mappings(
                    BlockDeviceMapping::builder()
                        .device_name("/dev/xvda")
                        .ebs(
                            EbsBlockDevice::builder()
                                .snapshot_id("snap-1")
                                .encrypted(true)
                                .build(),
                        )
                        .build(),
                )
                .block_device_mappings(
                    BlockDeviceMapping::builder()
                        .device_name("/dev/sdb")
                        .virtual_name("ephemeral0")
                        .build(),
                )
                .source_image_id("ami-0")
                .source_image_region("eu-west-1")
                .build();
            DescribeImagesOutput::builder().images(img).build()
        });
    let p = ports(&[&rule], &[], &[]);
    let img = p
        .describe_image("us-east-1", "ami-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(img.name, "golden-1");
    assert_eq!(img.tags["Share"], "org");
    assert_eq!(
        img.volumes.len(),
        1,
        "instance-store mappings are not EBS volumes"
    );
    assert!(img.volumes[0].encrypted);
    assert_eq!(img.source_image_region.as_deref(), Some("eu-west-1"));
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn describe_images_reads_ids_200_a_call_through_the_image_id_filter_and_pages() {
    // 250 ids: two calls of the filter (200 + 50), the first answered in two pages.
    let ids: Vec<String> = (0..250).map(|i| format!("ami-{i:017x}")).collect();
    let image = |id: &str| -> aws_sdk_ec2::types::Image {
        aws_sdk_ec2::types::Image::builder()
            .image_id(id)
            .owner_id("123456789012")
            .state(aws_sdk_ec2::types::ImageState::Available)
            .creation_date("2026-12-01T00:00:00.000Z")
            .build()
    };
    let filter_of = |r: &aws_sdk_ec2::operation::describe_images::DescribeImagesInput| {
        r.filters()
            .iter()
            .find(|f| f.name() == Some("image-id"))
            .map(|f| f.values().to_vec())
            .unwrap_or_default()
    };
    let (first, second) = (ids[..200].to_vec(), ids[200..].to_vec());
    let (f1, f2, f3) = (first.clone(), first.clone(), second.clone());
    let page1 = mock!(aws_sdk_ec2::Client::describe_images)
        .match_requests(move |r| {
            filter_of(r) == f1
                && r.next_token().is_none()
                && r.max_results() == Some(1000)
                && r.include_disabled() == Some(true)
                && r.image_ids().is_empty()
                && r.owners().is_empty()
        })
        .then_output(move || {
            DescribeImagesOutput::builder()
                .images(image("ami-00000000000000000"))
                .next_token("t2")
                .build()
        });
    let page2 = mock!(aws_sdk_ec2::Client::describe_images)
        .match_requests(move |r| filter_of(r) == f2 && r.next_token() == Some("t2"))
        .then_output(move || {
            DescribeImagesOutput::builder()
                .images(image("ami-00000000000000001"))
                .build()
        });
    let call2 = mock!(aws_sdk_ec2::Client::describe_images)
        .match_requests(move |r| filter_of(r) == f3)
        .then_output(move || {
            DescribeImagesOutput::builder()
                .images(image("ami-000000000000000c8"))
                .build()
        });
    let p = ports(&[&page1, &page2, &call2], &[], &[]);
    let got = p.describe_images("us-east-1", &ids).await.unwrap();
    assert_eq!(
        got.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        [
            "ami-00000000000000000",
            "ami-00000000000000001",
            "ami-000000000000000c8"
        ]
    );
    assert_eq!(
        (page1.num_calls(), page2.num_calls(), call2.num_calls()),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn describe_image_not_found_is_none_malformed_is_a_permanent_error() {
    let nf = mock!(aws_sdk_ec2::Client::describe_images)
        .match_requests(|r| r.image_ids() == ["ami-0aaaaaaa"])
        .then_error(|| DescribeImagesError::generic(meta("InvalidAMIID.NotFound")));
    let bad = mock!(aws_sdk_ec2::Client::describe_images)
        .match_requests(|r| r.image_ids() == ["ami-zz"])
        .then_error(|| DescribeImagesError::generic(meta("InvalidAMIID.Malformed")));
    let p = ports(&[&nf, &bad], &[], &[]);
    assert_eq!(
        p.describe_image("us-east-1", "ami-0aaaaaaa").await.unwrap(),
        None
    );
    let e = Error::from(p.describe_image("us-east-1", "ami-zz").await.unwrap_err());
    assert_eq!(e.error_type(), "Permanent.InvalidAMIID.Malformed");
    assert!(
        e.to_string().contains("ec2:DescribeImages on ami-zz"),
        "{e}"
    );
}

#[tokio::test]
async fn throttling_is_retried_by_the_sdk_then_mapped_to_transient_with_its_code() {
    let throttled = mock!(aws_sdk_ec2::Client::describe_images)
        .sequence()
        .error(|| DescribeImagesError::generic(meta("RequestLimitExceeded")))
        .times(2)
        .output(|| DescribeImagesOutput::builder().build())
        .build();
    let p = ports(&[&throttled], &[], &[]);
    assert_eq!(p.describe_image("us-east-1", "ami-1").await.unwrap(), None);
    assert_eq!(throttled.num_calls(), 3, "two throttles, then success");

    let always = mock!(aws_sdk_ec2::Client::describe_images)
        .sequence()
        .error(|| DescribeImagesError::generic(meta("RequestLimitExceeded")))
        .repeatedly()
        .build();
    let p = ports(&[&always], &[], &[]);
    let e = Error::from(p.describe_image("us-east-1", "ami-1").await.unwrap_err());
    assert!(e.is_transient());
    assert_eq!(e.error_type(), "Transient.RequestLimitExceeded");
    assert_eq!(
        always.num_calls(),
        3,
        "the SDK's 3 attempts, then our error"
    );
}

#[tokio::test]
async fn launch_permissions_are_added_in_one_call_with_every_kind_of_entry() {
    let rule = mock!(aws_sdk_ec2::Client::modify_image_attribute)
        .match_requests(|r| {
            let add = r.launch_permission().map(|l| l.add()).unwrap_or_default();
            r.image_id() == Some("ami-1")
                && add.iter().filter_map(|p| p.user_id()).collect::<Vec<_>>() == ["111122223333"]
                && add.iter().filter_map(|p| p.organization_arn()).count() == 1
                && add
                    .iter()
                    .filter_map(|p| p.organizational_unit_arn())
                    .count()
                    == 1
                && add.iter().any(|p| p.group() == Some(&PermissionGroup::All))
        })
        .then_output(|| ModifyImageAttributeOutput::builder().build());
    let p = ports(&[&rule], &[], &[]);
    let add = LaunchPermissions {
        accounts: ["111122223333".to_string()].into(),
        organizations: [
            "arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5".to_string(),
        ]
        .into(),
        organizational_units: [
            "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456".to_string(),
        ]
        .into(),
        public: true,
    };
    p.add_launch_permissions("us-east-1", "ami-1", &add)
        .await
        .unwrap();
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn snapshot_permissions_use_the_flat_form() {
    let rule = mock!(aws_sdk_ec2::Client::modify_snapshot_attribute)
        .match_requests(|r| {
            r.snapshot_id() == Some("snap-1")
                && r.operation_type() == Some(&OperationType::Add)
                && r.user_ids() == ["111122223333", "444455556666"]
                && r.create_volume_permission().is_none()
        })
        .then_output(|| ModifySnapshotAttributeOutput::builder().build());
    let p = ports(&[&rule], &[], &[]);
    p.add_create_volume_permission(
        "us-east-1",
        "snap-1",
        &["111122223333".into(), "444455556666".into()],
    )
    .await
    .unwrap();
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn sharing_an_aws_managed_snapshot_keeps_the_invalid_parameter_code() {
    let rule = mock!(aws_sdk_ec2::Client::modify_snapshot_attribute).then_error(|| {
        ModifySnapshotAttributeError::generic(
            ErrorMetadata::builder()
                .code("InvalidParameter")
                .message("Snapshots encrypted with the AWS Managed CMK can't be shared")
                .build(),
        )
    });
    let p = ports(&[&rule], &[], &[]);
    let e = p
        .add_create_volume_permission("us-east-1", "snap-1", &["111122223333".into()])
        .await
        .unwrap_err();
    assert_eq!(e.code, "InvalidParameter");
    assert!(e.message.contains("AWS Managed CMK"));
}

#[tokio::test]
async fn copy_image_request_carries_token_tags_and_encryption() {
    let rule = mock!(aws_sdk_ec2::Client::copy_image)
        .match_requests(|r| {
            let kinds: Vec<_> = r
                .tag_specifications()
                .iter()
                .filter_map(|t| t.resource_type().cloned())
                .collect();
            r.source_region() == Some("us-east-1")
                && r.source_image_id() == Some("ami-1")
                && r.client_token() == Some("tok")
                && r.encrypted() == Some(true)
                && r.kms_key_id() == Some("alias/k")
                && r.copy_image_tags() == Some(true)
                // a standard copy unless the rule opts in to a time-based one
                && r.snapshot_copy_completion_duration_minutes().is_none()
                && kinds == [ResourceType::Image, ResourceType::Snapshot]
                && r.tag_specifications().iter().all(|t| {
                    t.tags().iter().any(|x| {
                        x.key() == Some("ami-share:source-image")
                            && x.value() == Some("us-east-1/ami-1")
                    })
                })
        })
        .then_output(|| CopyImageOutput::builder().image_id("ami-2").build());
    let p = ports(&[&rule], &[], &[]);
    assert_eq!(p.copy_image(&copy_request()).await.unwrap(), "ami-2");
    assert_eq!(rule.num_calls(), 1);
}

/// A copy of `us-east-1/ami-1` within its Region, encrypted with `alias/k`, token `tok`.
fn copy_request() -> CopyRequest {
    CopyRequest {
        source_region: "us-east-1".into(),
        source_image_id: "ami-1".into(),
        destination_region: "us-east-1".into(),
        name: "n".into(),
        description: "d".into(),
        client_token: "tok".into(),
        kms_key_id: Some("alias/k".into()),
        tags: [(
            "ami-share:source-image".to_string(),
            "us-east-1/ami-1".to_string(),
        )]
        .into(),
        copy_image_tags: true,
        completion_minutes: None,
    }
}

#[tokio::test]
async fn a_time_based_copy_asks_for_its_completion_duration() {
    let rule = mock!(aws_sdk_ec2::Client::copy_image)
        .match_requests(|r| {
            r.snapshot_copy_completion_duration_minutes() == Some(120)
                && r.client_token() == Some("tok")
        })
        .then_output(|| CopyImageOutput::builder().image_id("ami-3").build());
    let p = ports(&[&rule], &[], &[]);
    let req = CopyRequest {
        kms_key_id: None,
        tags: Default::default(),
        completion_minutes: Some(120),
        ..copy_request()
    };
    assert_eq!(p.copy_image(&req).await.unwrap(), "ami-3");
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn describe_key_tells_aws_managed_from_customer_and_keeps_not_found() {
    let aws = mock!(aws_sdk_kms::Client::describe_key)
        .match_requests(|r| r.key_id() == Some("alias/aws/ebs"))
        .then_output(|| {
            DescribeKeyOutput::builder()
                .key_metadata(
                    KeyMetadata::builder()
                        .key_id("k1")
                        .arn("arn:aws:kms:us-east-1:123456789012:key/k1")
                        .key_manager(KeyManagerType::Aws)
                        .enabled(true)
                        .build()
                        .unwrap(),
                )
                .build()
        });
    let missing = mock!(aws_sdk_kms::Client::describe_key)
        .match_requests(|r| r.key_id() == Some("gone"))
        .then_error(|| {
            DescribeKeyError::NotFoundException(
                aws_sdk_kms::types::error::NotFoundException::builder()
                    .meta(meta("NotFoundException"))
                    .build(),
            )
        });
    let p = ports(&[], &[&aws, &missing], &[]);
    let k = p.describe_key("us-east-1", "alias/aws/ebs").await.unwrap();
    assert_eq!(k.manager, KeyManager::Aws);
    assert_eq!(k.arn, "arn:aws:kms:us-east-1:123456789012:key/k1");
    let e = Error::from(p.describe_key("us-east-1", "gone").await.unwrap_err());
    assert_eq!(e.error_type(), "Permanent.NotFoundException");
}

#[tokio::test]
async fn get_key_policy_reads_the_default_policy_and_keeps_the_error_code() {
    let ok = mock!(aws_sdk_kms::Client::get_key_policy)
        .match_requests(|r| r.key_id() == Some("arn:k") && r.policy_name() == Some("default"))
        .then_output(|| {
            GetKeyPolicyOutput::builder()
                .policy(r#"{"Statement":[]}"#)
                .policy_name("default")
                .build()
        });
    let p = ports(&[], &[&ok], &[]);
    assert_eq!(
        p.key_policy("us-east-1", "arn:k").await.unwrap(),
        r#"{"Statement":[]}"#
    );
    let denied = mock!(aws_sdk_kms::Client::get_key_policy).then_error(|| {
        GetKeyPolicyError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message("not allowed")
                .build(),
        )
    });
    let p = ports(&[], &[&denied], &[]);
    let e = Error::from(p.key_policy("us-east-1", "arn:k2").await.unwrap_err());
    assert_eq!(e.error_type(), "Permanent.AccessDeniedException");
    assert!(e.to_string().contains("GetKeyPolicy"), "{e}");
    assert!(e.to_string().contains("arn:k2"), "{e}");
}

#[tokio::test]
async fn the_grant_receipt_is_one_tag_read_written_and_removed_by_key() {
    let list = mock!(aws_sdk_kms::Client::list_resource_tags)
        .match_requests(|r| r.key_id() == Some("arn:k") && r.limit() == Some(50))
        .then_output(|| {
            ListResourceTagsOutput::builder()
                .tags(
                    KeyTag::builder()
                        .tag_key("team")
                        .tag_value("x")
                        .build()
                        .unwrap(),
                )
                .tags(
                    KeyTag::builder()
                        .tag_key("ami-share:grants")
                        .tag_value("aaaa bbbb")
                        .build()
                        .unwrap(),
                )
                .build()
        });
    let tag = mock!(aws_sdk_kms::Client::tag_resource)
        .match_requests(|r| {
            r.key_id() == Some("arn:k")
                && r.tags().len() == 1
                && r.tags()[0].tag_key() == "ami-share:grants"
                && r.tags()[0].tag_value() == "cccc aaaa"
        })
        .then_output(|| TagResourceOutput::builder().build());
    let untag = mock!(aws_sdk_kms::Client::untag_resource)
        .match_requests(|r| r.key_id() == Some("arn:k") && r.tag_keys() == ["ami-share:grants"])
        .then_output(|| UntagResourceOutput::builder().build());
    let p = ports(&[], &[&list, &tag, &untag], &[]);
    assert_eq!(
        p.key_tag("us-east-1", "arn:k", "ami-share:grants")
            .await
            .unwrap(),
        Some("aaaa bbbb".to_string())
    );
    assert_eq!(
        p.key_tag("us-east-1", "arn:k", "absent").await.unwrap(),
        None
    );
    p.set_key_tag("us-east-1", "arn:k", "ami-share:grants", "cccc aaaa")
        .await
        .unwrap();
    p.remove_key_tag("us-east-1", "arn:k", "ami-share:grants")
        .await
        .unwrap();
    assert_eq!(
        (list.num_calls(), tag.num_calls(), untag.num_calls()),
        (2, 1, 1)
    );
}

#[tokio::test]
async fn list_grants_follows_the_marker_across_pages() {
    let first = mock!(aws_sdk_kms::Client::list_grants)
        .match_requests(|r| r.marker().is_none() && r.limit() == Some(100))
        .then_output(|| {
            ListGrantsOutput::builder()
                .grants(
                    GrantListEntry::builder()
                        .grant_id("g1")
                        .name("ami-share-111122223333")
                        .grantee_principal("arn:aws:iam::111122223333:root")
                        .build(),
                )
                .truncated(true)
                .next_marker("m2")
                .build()
        });
    let second = mock!(aws_sdk_kms::Client::list_grants)
        .match_requests(|r| r.marker() == Some("m2") && r.limit() == Some(100))
        .then_output(|| {
            ListGrantsOutput::builder()
                .grants(
                    GrantListEntry::builder()
                        .grant_id("g2")
                        .grantee_principal("arn:aws:iam::444455556666:root")
                        .build(),
                )
                .truncated(false)
                .build()
        });
    let p = ports(&[], &[&first, &second], &[]);
    let grants = p.list_grants("us-east-1", "arn:k").await.unwrap();
    assert_eq!(
        grants
            .iter()
            .map(|g| g.grant_id.as_str())
            .collect::<Vec<_>>(),
        ["g1", "g2"]
    );
    assert_eq!(grants[1].name, None);
    assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
}

#[tokio::test]
async fn create_grant_names_the_grant_and_limits_operations() {
    let rule = mock!(aws_sdk_kms::Client::create_grant)
        .match_requests(|r| {
            let ops: Vec<&str> = r.operations().iter().map(|o| o.as_str()).collect();
            r.key_id() == Some("arn:k")
                && r.name() == Some("ami-share-111122223333")
                && r.grantee_principal() == Some("arn:aws:iam::111122223333:root")
                && ops
                    == [
                        "Decrypt",
                        "DescribeKey",
                        "CreateGrant",
                        "ReEncryptFrom",
                        "ReEncryptTo",
                        "GenerateDataKey",
                        "GenerateDataKeyWithoutPlaintext",
                    ]
                && !r.operations().contains(&GrantOperation::Encrypt)
        })
        .then_output(|| CreateGrantOutput::builder().grant_id("g").build());
    let p = ports(&[], &[&rule], &[]);
    let g = GrantRequest {
        key_arn: "arn:k".into(),
        grantee_principal: "arn:aws:iam::111122223333:root".into(),
        name: "ami-share-111122223333".into(),
    };
    p.create_grant("us-east-1", &g).await.unwrap();
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn organizations_listings_paginate_and_read_account_state() {
    let first = mock!(aws_sdk_organizations::Client::list_accounts_for_parent)
        .match_requests(|r| r.parent_id() == Some("ou-ab12-cdef3456") && r.next_token().is_none())
        .then_output(|| {
            ListAccountsForParentOutput::builder()
                .accounts(
                    Account::builder()
                        .id("111111111111")
                        .state(AccountState::Active)
                        .build(),
                )
                .next_token("t2")
                .build()
        });
    let second = mock!(aws_sdk_organizations::Client::list_accounts_for_parent)
        .match_requests(|r| r.next_token() == Some("t2"))
        .then_output(|| {
            ListAccountsForParentOutput::builder()
                .accounts(
                    Account::builder()
                        .id("222222222222")
                        .state(AccountState::Suspended)
                        .build(),
                )
                .build()
        });
    let p = ports(&[], &[], &[&first, &second]);
    let accounts = p.accounts_for_parent("ou-ab12-cdef3456").await.unwrap();
    assert_eq!(accounts.len(), 2);
    assert!(accounts[0].is_active());
    assert!(!accounts[1].is_active());
    assert_eq!(accounts[1].status, "SUSPENDED");
}

#[tokio::test]
async fn organizations_errors_keep_their_codes() {
    let denied = mock!(aws_sdk_organizations::Client::list_accounts_for_parent).then_error(|| {
        ListAccountsForParentError::AccessDeniedException(
            aws_sdk_organizations::types::error::AccessDeniedException::builder()
                .meta(meta("AccessDeniedException"))
                .build(),
        )
    });
    let not_in_use = mock!(aws_sdk_organizations::Client::describe_organization).then_error(|| {
        DescribeOrganizationError::AwsOrganizationsNotInUseException(
            aws_sdk_organizations::types::error::AwsOrganizationsNotInUseException::builder()
                .meta(meta("AWSOrganizationsNotInUseException"))
                .build(),
        )
    });
    let p = ports(&[], &[], &[&denied, &not_in_use]);
    let e = Error::from(p.accounts_for_parent("ou-x").await.unwrap_err());
    assert_eq!(e.error_type(), "Permanent.AccessDeniedException");
    let e = Error::from(p.organization_id().await.unwrap_err());
    assert_eq!(
        e.error_type(),
        "Permanent.AWSOrganizationsNotInUseException"
    );
}

#[tokio::test]
async fn describe_account_finds_a_member_and_takes_account_not_found_for_an_outsider() {
    use aws_sdk_organizations::operation::describe_account::{
        DescribeAccountError, DescribeAccountOutput,
    };
    let member = mock!(aws_sdk_organizations::Client::describe_account)
        .match_requests(|r| r.account_id() == Some("111122223333"))
        .then_output(|| {
            DescribeAccountOutput::builder()
                .account(
                    Account::builder()
                        .id("111122223333")
                        .state(AccountState::Active)
                        .build(),
                )
                .build()
        });
    let outsider = mock!(aws_sdk_organizations::Client::describe_account)
        .match_requests(|r| r.account_id() == Some("999988887777"))
        .then_error(|| {
            DescribeAccountError::AccountNotFoundException(
                aws_sdk_organizations::types::error::AccountNotFoundException::builder()
                    .meta(meta("AccountNotFoundException"))
                    .build(),
            )
        });
    let denied = mock!(aws_sdk_organizations::Client::describe_account)
        .match_requests(|r| r.account_id() == Some("444455556666"))
        .then_error(|| {
            DescribeAccountError::AccessDeniedException(
                aws_sdk_organizations::types::error::AccessDeniedException::builder()
                    .meta(meta("AccessDeniedException"))
                    .build(),
            )
        });
    let p = ports(&[], &[], &[&member, &outsider, &denied]);
    let found = p.describe_account("111122223333").await.unwrap().unwrap();
    assert_eq!(
        (found.id.as_str(), found.is_active()),
        ("111122223333", true)
    );
    assert_eq!(p.describe_account("999988887777").await.unwrap(), None);
    let e = Error::from(p.describe_account("444455556666").await.unwrap_err());
    assert_eq!(e.error_type(), "Permanent.AccessDeniedException");
}

// ---- the sweeper's inventory adapter ---------------------------------------------------------

mod inventory {
    use super::*;
    use amishare::sweep::inventory::{Inventory, SnapshotState};
    use aws_sdk_ec2::operation::describe_launch_template_versions::DescribeLaunchTemplateVersionsOutput;
    use aws_sdk_ec2::operation::describe_launch_templates::DescribeLaunchTemplatesOutput;
    use aws_sdk_ec2::operation::describe_snapshots::{
        DescribeSnapshotsError, DescribeSnapshotsOutput,
    };
    use aws_sdk_ec2::operation::list_images_in_recycle_bin::ListImagesInRecycleBinOutput;
    use aws_sdk_ec2::types::{
        ImageRecycleBinInfo, LaunchTemplate, LaunchTemplateBlockDeviceMapping,
        LaunchTemplateEbsBlockDevice, LaunchTemplateVersion, ResponseLaunchTemplateData, Snapshot,
        SnapshotState as Ec2SnapshotState,
    };

    fn snapshot(id: &str, owner: &str) -> Snapshot {
        Snapshot::builder()
            .snapshot_id(id)
            .owner_id(owner)
            .description(format!("Created by CreateImage(i-0123) for ami-0{id}"))
            .volume_size(8)
            .state(Ec2SnapshotState::Completed)
            .tags(Tag::builder().key("ami-share:keep").value("true").build())
            .build()
    }

    #[tokio::test]
    async fn own_snapshots_use_the_owner_id_filter_and_follow_the_token() {
        let owner_filter =
            |r: &aws_sdk_ec2::operation::describe_snapshots::DescribeSnapshotsInput| {
                r.filters()
                    .iter()
                    .any(|f| f.name() == Some("owner-id") && f.values() == ["123456789012"])
                    && r.owner_ids().is_empty()
            };
        let first = mock!(aws_sdk_ec2::Client::describe_snapshots)
            .match_requests(move |r| owner_filter(r) && r.next_token().is_none())
            .then_output(|| {
                DescribeSnapshotsOutput::builder()
                    .snapshots(snapshot("snap-1", "123456789012"))
                    .next_token("p2")
                    .build()
            });
        let second = mock!(aws_sdk_ec2::Client::describe_snapshots)
            .match_requests(move |r| owner_filter(r) && r.next_token() == Some("p2"))
            .then_output(|| {
                DescribeSnapshotsOutput::builder()
                    .snapshots(snapshot("snap-2", "123456789012"))
                    .snapshots(snapshot("snap-9", "999999999999"))
                    .build()
            });
        let p = ports(&[&first, &second], &[], &[]);
        let snaps = p
            .list_own_snapshots("us-east-1", "123456789012")
            .await
            .unwrap();
        assert_eq!(
            snaps.iter().map(|s| &*s.id).collect::<Vec<_>>(),
            ["snap-1", "snap-2"],
            "another owner's snapshot is dropped"
        );
        assert_eq!(snaps[0].size_gib, 8);
        assert_eq!(snaps[0].state, SnapshotState::Completed);
        assert!(snaps[0].tags.keep);
        assert!(snaps[0].description.starts_with("Created by CreateImage"));
    }

    #[tokio::test]
    async fn a_listing_that_fails_on_a_later_page_is_an_error_not_a_shorter_list() {
        let first = mock!(aws_sdk_ec2::Client::describe_snapshots)
            .match_requests(|r| r.next_token().is_none())
            .then_output(|| {
                DescribeSnapshotsOutput::builder()
                    .snapshots(snapshot("snap-1", "123456789012"))
                    .next_token("p2")
                    .build()
            });
        let broken = mock!(aws_sdk_ec2::Client::describe_snapshots)
            .match_requests(|r| r.next_token() == Some("p2"))
            .then_error(|| DescribeSnapshotsError::generic(meta("UnauthorizedOperation")));
        let p = ports(&[&first, &broken], &[], &[]);
        let e = p
            .list_own_snapshots("us-east-1", "123456789012")
            .await
            .unwrap_err();
        assert_eq!(e.code, "UnauthorizedOperation");
        assert_eq!(e.operation, "DescribeSnapshots");
    }

    #[tokio::test]
    async fn own_images_include_disabled_and_deprecated_ones() {
        let rule = mock!(aws_sdk_ec2::Client::describe_images)
            .match_requests(|r| {
                r.owners() == ["self"]
                    && r.include_disabled() == Some(true)
                    && r.include_deprecated() == Some(true)
            })
            .then_output(|| {
                DescribeImagesOutput::builder()
                    .images(
                        aws_sdk_ec2::types::Image::builder()
                            .image_id("ami-1")
                            .state(aws_sdk_ec2::types::ImageState::Disabled)
                            .build(),
                    )
                    .build()
            });
        let p = ports(&[&rule], &[], &[]);
        let images = p.list_own_images("us-east-1").await.unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].state, amishare::ports::ImageState::Disabled);
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn recycle_bin_is_paginated() {
        let first = mock!(aws_sdk_ec2::Client::list_images_in_recycle_bin)
            .match_requests(|r| r.next_token().is_none())
            .then_output(|| {
                ListImagesInRecycleBinOutput::builder()
                    .images(ImageRecycleBinInfo::builder().image_id("ami-1").build())
                    .next_token("n")
                    .build()
            });
        let second = mock!(aws_sdk_ec2::Client::list_images_in_recycle_bin)
            .match_requests(|r| r.next_token() == Some("n"))
            .then_output(|| {
                ListImagesInRecycleBinOutput::builder()
                    .images(ImageRecycleBinInfo::builder().image_id("ami-2").build())
                    .build()
            });
        let p = ports(&[&first, &second], &[], &[]);
        let bin = p.list_recycle_bin_images("us-east-1").await.unwrap();
        assert_eq!(
            bin.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
            ["ami-1", "ami-2"]
        );
    }

    #[tokio::test]
    async fn every_version_of_every_launch_template_is_read() {
        let templates = mock!(aws_sdk_ec2::Client::describe_launch_templates).then_output(|| {
            DescribeLaunchTemplatesOutput::builder()
                .launch_templates(LaunchTemplate::builder().launch_template_id("lt-1").build())
                .build()
        });
        let version = |n: i64, snap: &str| {
            LaunchTemplateVersion::builder()
                .version_number(n)
                .launch_template_data(
                    ResponseLaunchTemplateData::builder()
                        .image_id("ami-7")
                        .block_device_mappings(
                            LaunchTemplateBlockDeviceMapping::builder()
                                .ebs(
                                    LaunchTemplateEbsBlockDevice::builder()
                                        .snapshot_id(snap)
                                        .build(),
                                )
                                .build(),
                        )
                        .build(),
                )
                .build()
        };
        let versions = mock!(aws_sdk_ec2::Client::describe_launch_template_versions)
            .match_requests(|r| r.launch_template_id() == Some("lt-1") && r.versions().is_empty())
            .then_output(move || {
                DescribeLaunchTemplateVersionsOutput::builder()
                    .launch_template_versions(version(1, "snap-old"))
                    .launch_template_versions(version(5, "snap-new"))
                    .build()
            });
        let p = ports(&[&templates, &versions], &[], &[]);
        let refs = p
            .list_launch_template_references("us-east-1")
            .await
            .unwrap();
        let snaps: Vec<&String> = refs.iter().flat_map(|r| r.snapshot_ids.iter()).collect();
        assert_eq!(
            snaps,
            ["snap-old", "snap-new"],
            "version 1 counts as much as $Latest"
        );
        assert!(refs.iter().all(|r| r.image_ids.contains("ami-7")));
        assert_eq!(versions.num_calls(), 1);
    }
}

#[tokio::test]
async fn a_target_copy_request_is_encrypted_with_the_targets_key_and_tagged_at_creation() {
    use amishare::names::{COPIED_BY_RULE_TAG, COPIED_FROM_ACCOUNT_TAG, COPIED_FROM_IMAGE_TAG};
    use amishare::ports::{Image, ImageState};
    use amishare::target_copies::target_copy_request;
    // Into the target's us-east-1 (the Region the mocked client serves).
    let key = "arn:aws:kms:us-east-1:222233334444:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let source = Image {
        id: "ami-1".into(),
        region: "us-east-1".into(),
        name: "golden-1".into(),
        owner_id: "111122223333".into(),
        state: ImageState::Available,
        tags: Default::default(),
        volumes: Vec::new(),
        source_image_id: None,
        source_image_region: None,
        deprecation_time: None,
        creation_date: Some("2026-12-01T10:00:00.000Z".into()),
        last_launched_time: None,
        deregistration_protection: None,
        verified_source_created: None,
        watermarks: Vec::new(),
    };
    let req = target_copy_request(&source, "111122223333", "golden", "us-east-1", key, 0);
    let token = req.client_token.clone();
    let rule = mock!(aws_sdk_ec2::Client::copy_image)
        .match_requests(move |r| {
            let tag = |k: &str| {
                r.tag_specifications()
                    .iter()
                    .filter(|t| t.resource_type() == Some(&ResourceType::Image))
                    .flat_map(|t| t.tags())
                    .find(|x| x.key() == Some(k))
                    .and_then(|x| x.value().map(str::to_string))
            };
            r.source_region() == Some("us-east-1")
                && r.source_image_id() == Some("ami-1")
                && r.client_token() == Some(token.as_str())
                && r.encrypted() == Some(true)
                && r.kms_key_id() == Some(key)
                // another account's tags are not the target's to read
                && r.copy_image_tags() == Some(false)
                && tag(COPIED_FROM_IMAGE_TAG).as_deref() == Some("us-east-1/ami-1")
                && tag(COPIED_FROM_ACCOUNT_TAG).as_deref() == Some("111122223333")
                && tag(COPIED_BY_RULE_TAG).as_deref() == Some("golden")
                && tag("ami-share:managed").is_none()
        })
        .then_output(|| CopyImageOutput::builder().image_id("ami-9").build());
    let p = ports(&[&rule], &[], &[]);
    assert_eq!(p.copy_image(&req).await.unwrap(), "ami-9");
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn without_a_target_role_name_every_target_call_fails_naming_the_setting() {
    use amishare::target_copies::TargetAccounts;
    let p = ports(&[], &[], &[]);
    let e = p
        .target_key("222233334444", "eu-west-1", None)
        .await
        .unwrap_err();
    assert_eq!((e.service, e.operation), ("sts", "AssumeRole"));
    assert_eq!(e.code, "TargetRoleNotConfigured");
    assert!(
        e.message.contains("AMI_SHARE_TARGET_ROLE_NAME")
            && e.message.contains("TargetAccountRoleName")
    );
}

/// Issue 27 (7): each target account's clients have a retry partition of their own (the retry
/// quota and the adaptive limiter), so throttled target accounts never drain the publisher's
/// retries or each other's; the publisher keeps the SDK's own.
#[tokio::test]
async fn each_target_account_has_its_own_retry_partition() {
    use amishare::aws::RateLimits;
    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use aws_credential_types::Credentials;
    let base = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .build();
    let publisher = AwsPorts::new(base, None, RateLimits::unlimited()).await;
    let creds = || Credentials::new("AKID", "SECRET", None, None, "test");
    let a = publisher.target_adapters("111122223333", creds()).await;
    let b = publisher.target_adapters("444455556666", creds()).await;
    let partition = |p: &AwsPorts, region: &str| {
        p.ec2_client(region)
            .config()
            .retry_partition()
            .map(|r| r.to_string())
    };
    assert_eq!(
        partition(&a, "eu-west-1").as_deref(),
        Some("ami-share-target-111122223333-ec2-eu-west-1")
    );
    assert_eq!(
        partition(&b, "eu-west-1").as_deref(),
        Some("ami-share-target-444455556666-ec2-eu-west-1")
    );
    assert_ne!(
        partition(&publisher, "eu-west-1"),
        partition(&a, "eu-west-1")
    );
}
