//! The publishing adapters (Parameter Store, AWS RAM, EventBridge) against aws-smithy-mocks:
//! the exact request shapes, pagination, conversion and error codes; where moto falls short
//! (RAM does not share parameters there, nor associate or disassociate), this is the proof.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::collections::BTreeMap;

use amishare::aws::AwsPorts;
use amishare::publish::ports::{EventEntry, Events, NewResourceShare, Parameters, ResourceShares};
use aws_sdk_eventbridge::operation::put_events::PutEventsOutput;
use aws_sdk_eventbridge::types::PutEventsResultEntry;
use aws_sdk_ram::operation::associate_resource_share::AssociateResourceShareOutput;
use aws_sdk_ram::operation::create_resource_share::{
    CreateResourceShareError, CreateResourceShareOutput,
};
use aws_sdk_ram::operation::disassociate_resource_share::DisassociateResourceShareOutput;
use aws_sdk_ram::operation::get_resource_share_associations::GetResourceShareAssociationsOutput;
use aws_sdk_ram::operation::get_resource_shares::GetResourceSharesOutput;
use aws_sdk_ram::operation::update_resource_share::UpdateResourceShareOutput;
use aws_sdk_ram::types::{
    ResourceOwner, ResourceShareAssociation, ResourceShareAssociationStatus,
    ResourceShareAssociationType, ResourceShareStatus,
};
use aws_sdk_ssm::operation::get_parameter_history::GetParameterHistoryOutput;
use aws_sdk_ssm::operation::get_parameters::GetParametersOutput;
use aws_sdk_ssm::operation::label_parameter_version::LabelParameterVersionOutput;
use aws_sdk_ssm::operation::put_parameter::{PutParameterError, PutParameterOutput};
use aws_sdk_ssm::operation::unlabel_parameter_version::UnlabelParameterVersionOutput;
use aws_sdk_ssm::types::{Parameter, ParameterHistory, ParameterTier, ParameterType};
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_smithy_types::error::ErrorMetadata;

const R: &str = "us-east-1";
const NAME: &str = "/golden/al2023/latest";
const SHARE: &str = "arn:aws:ram:us-east-1:123456789012:resource-share/s-1";
const PARAM_ARN: &str = "arn:aws:ssm:us-east-1:123456789012:parameter/golden/al2023/latest";

fn ports(ssm: &[&Rule], ram: &[&Rule], events: &[&Rule]) -> AwsPorts {
    let none: [&Rule; 0] = [];
    let ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, none.iter().copied());
    let kms = mock_client!(aws_sdk_kms, RuleMode::MatchAny, none.iter().copied());
    let org = mock_client!(
        aws_sdk_organizations,
        RuleMode::MatchAny,
        none.iter().copied()
    );
    let ssm = mock_client!(aws_sdk_ssm, RuleMode::MatchAny, ssm.iter().copied());
    let ram = mock_client!(aws_sdk_ram, RuleMode::MatchAny, ram.iter().copied());
    let events = mock_client!(
        aws_sdk_eventbridge,
        RuleMode::MatchAny,
        events.iter().copied()
    );
    AwsPorts::from_clients(R, ec2, kms, org).with_publishing_clients(R, ssm, ram, events)
}

fn meta(code: &str, message: &str) -> ErrorMetadata {
    ErrorMetadata::builder().code(code).message(message).build()
}

#[tokio::test]
async fn put_parameter_writes_an_advanced_image_parameter_over_the_old_value() {
    let rule = mock!(aws_sdk_ssm::Client::put_parameter)
        .match_requests(|r| {
            r.name() == Some(NAME)
                && r.value() == Some("ami-1")
                && r.r#type() == Some(&ParameterType::String)
                && r.data_type() == Some("aws:ec2:image")
                && r.tier() == Some(&ParameterTier::Advanced)
                && r.overwrite() == Some(true)
                && r.description().is_some_and(|d| d.contains("ami-share"))
                && r.tags().is_empty() // tags and overwrite cannot be used together
        })
        .then_output(|| PutParameterOutput::builder().version(7).build());
    let p = ports(&[&rule], &[], &[]);
    let v = p
        .put_image_parameter(R, NAME, "ami-1", "Newest image of ami-share rule golden")
        .await
        .unwrap();
    assert_eq!(v, 7);
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn the_version_limit_keeps_its_error_code() {
    let rule = mock!(aws_sdk_ssm::Client::put_parameter).then_error(|| {
        PutParameterError::generic(meta(
            "ParameterMaxVersionLimitExceeded",
            "Version 1, the oldest version, can't be deleted because it has a label",
        ))
    });
    let p = ports(&[&rule], &[], &[]);
    let e = p
        .put_image_parameter(R, NAME, "ami-1", "d")
        .await
        .unwrap_err();
    assert_eq!(e.code, "ParameterMaxVersionLimitExceeded");
    assert_eq!((e.service, e.operation), ("ssm", "PutParameter"));
    assert_eq!(e.resource, NAME);
}

#[tokio::test]
async fn get_parameters_keys_each_result_by_the_name_as_requested_with_its_selector() {
    let labelled = format!("{NAME}:created-2026-11-21T10-00-00.000Z");
    let wanted = vec![NAME.to_string(), labelled.clone()];
    let rule = mock!(aws_sdk_ssm::Client::get_parameters)
        .match_requests(move |r| r.names() == wanted.as_slice())
        .then_output(|| {
            GetParametersOutput::builder()
                .parameters(
                    Parameter::builder()
                        .name(NAME)
                        .value("ami-2")
                        .version(4)
                        .build(),
                )
                .parameters(
                    Parameter::builder()
                        .name(NAME)
                        .selector(":created-2026-11-21T10-00-00.000Z")
                        .value("ami-1")
                        .version(3)
                        .build(),
                )
                .build()
        });
    let p = ports(&[&rule], &[], &[]);
    let got = p
        .get_parameters(R, &[NAME.to_string(), labelled.clone()])
        .await
        .unwrap();
    assert_eq!(got[NAME].value, "ami-2");
    assert_eq!(got[NAME].version, 4);
    assert_eq!(got[&labelled].value, "ami-1");
    assert_eq!(got[&labelled].version, 3);
}

#[tokio::test]
async fn labels_are_put_on_one_version_and_refused_labels_are_an_error() {
    let ok = mock!(aws_sdk_ssm::Client::label_parameter_version)
        .match_requests(|r| {
            r.name() == Some(NAME)
                && r.parameter_version() == Some(4)
                && r.labels() == ["created-2026-11-21T10-00-00.000Z"]
        })
        .then_output(|| LabelParameterVersionOutput::builder().build());
    let p = ports(&[&ok], &[], &[]);
    p.label_parameter_version(R, NAME, 4, "created-2026-11-21T10-00-00.000Z")
        .await
        .unwrap();
    let refused = mock!(aws_sdk_ssm::Client::label_parameter_version).then_output(|| {
        LabelParameterVersionOutput::builder()
            .invalid_labels("1bad")
            .build()
    });
    let p = ports(&[&refused], &[], &[]);
    let e = p
        .label_parameter_version(R, NAME, 4, "1bad")
        .await
        .unwrap_err();
    assert_eq!(e.code, "InvalidLabel");
}

#[tokio::test]
async fn history_is_read_page_by_page_and_labels_removed_from_one_version() {
    let page1 = mock!(aws_sdk_ssm::Client::get_parameter_history)
        .match_requests(|r| {
            r.name() == Some(NAME) && r.next_token().is_none() && r.max_results() == Some(50)
        })
        .then_output(|| {
            GetParameterHistoryOutput::builder()
                .parameters(ParameterHistory::builder().version(2).build())
                .parameters(
                    ParameterHistory::builder()
                        .version(1)
                        .labels("created-a")
                        .build(),
                )
                .next_token("t2")
                .build()
        });
    let page2 = mock!(aws_sdk_ssm::Client::get_parameter_history)
        .match_requests(|r| r.next_token() == Some("t2"))
        .then_output(|| {
            GetParameterHistoryOutput::builder()
                .parameters(
                    ParameterHistory::builder()
                        .version(3)
                        .labels("created-c")
                        .build(),
                )
                .build()
        });
    let unlabel = mock!(aws_sdk_ssm::Client::unlabel_parameter_version)
        .match_requests(|r| {
            r.name() == Some(NAME)
                && r.parameter_version() == Some(1)
                && r.labels() == ["created-a"]
        })
        .then_output(|| UnlabelParameterVersionOutput::builder().build());
    let p = ports(&[&page1, &page2, &unlabel], &[], &[]);
    let h = p.parameter_labels(R, NAME).await.unwrap();
    assert_eq!(
        h,
        [
            (1, vec!["created-a".to_string()]),
            (2, vec![]),
            (3, vec!["created-c".to_string()])
        ]
    );
    p.unlabel_parameter_version(R, NAME, 1, &["created-a".to_string()])
        .await
        .unwrap();
    assert_eq!(unlabel.num_calls(), 1);
}

#[tokio::test]
async fn shares_are_found_by_name_owner_and_status_and_deleted_ones_never_reused() {
    let rule = mock!(aws_sdk_ram::Client::get_resource_shares)
        .match_requests(|r| {
            r.resource_owner() == Some(&ResourceOwner::SelfValue)
                && r.resource_share_status() == Some(&ResourceShareStatus::Active)
                && r.name() == Some("ami-share-golden")
        })
        .then_output(|| {
            let share = |arn: &str, name: &str, status| {
                aws_sdk_ram::types::ResourceShare::builder()
                    .resource_share_arn(arn)
                    .name(name)
                    .status(status)
                    .allow_external_principals(true)
                    .build()
            };
            GetResourceSharesOutput::builder()
                .resource_shares(share(
                    SHARE,
                    "ami-share-golden",
                    ResourceShareStatus::Active,
                ))
                .resource_shares(share(
                    "arn:x:deleted",
                    "ami-share-golden",
                    ResourceShareStatus::Deleted,
                ))
                .resource_shares(share(
                    "arn:x:other",
                    "ami-share-golden-2",
                    ResourceShareStatus::Active,
                ))
                .build()
        });
    let p = ports(&[], &[&rule], &[]);
    let found = p
        .resource_shares_named(R, "ami-share-golden")
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].arn, SHARE);
    assert!(found[0].allow_external_principals);
}

#[tokio::test]
async fn a_share_is_created_with_the_parameter_the_principals_its_tag_and_a_token() {
    let rule = mock!(aws_sdk_ram::Client::create_resource_share)
        .match_requests(|r| {
            r.name() == Some("ami-share-golden")
                && r.resource_arns() == [PARAM_ARN]
                && r.principals()
                    == [
                        "111122223333",
                        "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456",
                    ]
                && r.allow_external_principals() == Some(true)
                && r.client_token() == Some("tok")
                && r.tags().len() == 1
                && r.tags()[0].key() == Some("ami-share:rule")
                && r.tags()[0].value() == Some("golden")
        })
        .then_output(|| {
            CreateResourceShareOutput::builder()
                .resource_share(
                    aws_sdk_ram::types::ResourceShare::builder()
                        .resource_share_arn(SHARE)
                        .allow_external_principals(true)
                        .build(),
                )
                .build()
        });
    let p = ports(&[], &[&rule], &[]);
    let made = p
        .create_resource_share(
            R,
            &NewResourceShare {
                name: "ami-share-golden".into(),
                resource_arns: vec![PARAM_ARN.into()],
                principals: vec![
                    "111122223333".into(),
                    "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456".into(),
                ],
                allow_external_principals: true,
                tags: BTreeMap::from([("ami-share:rule".into(), "golden".into())]),
                client_token: "tok".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(made.arn, SHARE);
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn ram_refusals_keep_their_code_and_message() {
    let msg = "The resource you are attempting to share can only be shared within your AWS Organization. This error may also occur if you have not enabled sharing with your AWS organization, or that onboarding process is still in progress.";
    let rule = mock!(aws_sdk_ram::Client::create_resource_share).then_error(move || {
        CreateResourceShareError::generic(meta("OperationNotPermittedException", msg))
    });
    let p = ports(&[], &[&rule], &[]);
    let e = p
        .create_resource_share(
            R,
            &NewResourceShare {
                name: "ami-share-golden".into(),
                resource_arns: vec![PARAM_ARN.into()],
                principals: vec![
                    "arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5".into(),
                ],
                allow_external_principals: false,
                tags: BTreeMap::new(),
                client_token: "tok".into(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "OperationNotPermittedException");
    assert_eq!(e.message, msg);
    assert_eq!((e.service, e.operation), ("ram", "CreateResourceShare"));
}

#[tokio::test]
async fn associations_of_both_kinds_count_only_associated_and_associating_ones() {
    let assoc = |entity: &str, status| {
        ResourceShareAssociation::builder()
            .associated_entity(entity)
            .status(status)
            .build()
    };
    let principals = mock!(aws_sdk_ram::Client::get_resource_share_associations)
        .match_requests(|r| {
            r.association_type() == Some(&ResourceShareAssociationType::Principal)
                && r.resource_share_arns() == [SHARE]
        })
        .then_output(move || {
            GetResourceShareAssociationsOutput::builder()
                .resource_share_associations(assoc(
                    "111122223333",
                    ResourceShareAssociationStatus::Associated,
                ))
                .resource_share_associations(assoc(
                    "222233334444",
                    ResourceShareAssociationStatus::Associating,
                ))
                .resource_share_associations(assoc(
                    "999988887777",
                    ResourceShareAssociationStatus::Disassociated,
                ))
                .build()
        });
    let resources = mock!(aws_sdk_ram::Client::get_resource_share_associations)
        .match_requests(|r| r.association_type() == Some(&ResourceShareAssociationType::Resource))
        .then_output(move || {
            GetResourceShareAssociationsOutput::builder()
                .resource_share_associations(assoc(
                    PARAM_ARN,
                    ResourceShareAssociationStatus::Associated,
                ))
                .build()
        });
    let p = ports(&[], &[&principals, &resources], &[]);
    let a = p.share_associations(R, SHARE).await.unwrap();
    assert_eq!(
        a.principals.into_iter().collect::<Vec<_>>(),
        ["111122223333", "222233334444"]
    );
    assert_eq!(a.resources.into_iter().collect::<Vec<_>>(), [PARAM_ARN]);
}

#[tokio::test]
async fn associate_disassociate_and_update_send_exactly_what_changes() {
    let associate = mock!(aws_sdk_ram::Client::associate_resource_share)
        .match_requests(|r| {
            r.resource_share_arn() == Some(SHARE)
                && r.principals() == ["444455556666"]
                && r.resource_arns().is_empty()
        })
        .then_output(|| AssociateResourceShareOutput::builder().build());
    let associate_resource = mock!(aws_sdk_ram::Client::associate_resource_share)
        .match_requests(|r| r.principals().is_empty() && r.resource_arns() == [PARAM_ARN])
        .then_output(|| AssociateResourceShareOutput::builder().build());
    let disassociate = mock!(aws_sdk_ram::Client::disassociate_resource_share)
        .match_requests(|r| {
            r.resource_share_arn() == Some(SHARE)
                && r.principals()
                    == ["arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456"]
                && r.resource_arns().is_empty()
        })
        .then_output(|| DisassociateResourceShareOutput::builder().build());
    let update = mock!(aws_sdk_ram::Client::update_resource_share)
        .match_requests(|r| {
            r.resource_share_arn() == Some(SHARE) && r.allow_external_principals() == Some(true)
        })
        .then_output(|| UpdateResourceShareOutput::builder().build());
    let p = ports(
        &[],
        &[&associate, &associate_resource, &disassociate, &update],
        &[],
    );
    p.associate_resource_share(R, SHARE, &["444455556666".into()], &[])
        .await
        .unwrap();
    p.associate_resource_share(R, SHARE, &[], &[PARAM_ARN.into()])
        .await
        .unwrap();
    p.disassociate_principals(
        R,
        SHARE,
        &["arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456".into()],
    )
    .await
    .unwrap();
    p.allow_external_principals(R, SHARE).await.unwrap();
    for r in [&associate, &associate_resource, &disassociate, &update] {
        assert_eq!(r.num_calls(), 1);
    }
}

fn entry(bus: &str) -> EventEntry {
    EventEntry {
        bus: bus.into(),
        source: "ami-share".into(),
        detail_type: "AMI Distributed".into(),
        detail: r#"{"rule":"golden","image-id":"ami-1"}"#.into(),
        resources: vec!["arn:aws:ec2:us-east-1::image/ami-1".into()],
    }
}

#[tokio::test]
async fn put_events_sends_every_entry_with_its_bus_source_type_detail_and_resources() {
    let bus = "arn:aws:events:us-east-1:444455556666:event-bus/org-images";
    let rule = mock!(aws_sdk_eventbridge::Client::put_events)
        .match_requests(move |r| {
            let e = r.entries();
            e.len() == 2
                && e[0].event_bus_name() == Some("default")
                && e[1].event_bus_name() == Some(bus)
                && e.iter().all(|x| {
                    x.source() == Some("ami-share")
                        && x.detail_type() == Some("AMI Distributed")
                        && x.detail() == Some(r#"{"rule":"golden","image-id":"ami-1"}"#)
                        && x.resources() == ["arn:aws:ec2:us-east-1::image/ami-1"]
                })
        })
        .then_output(|| {
            PutEventsOutput::builder()
                .failed_entry_count(0)
                .entries(PutEventsResultEntry::builder().event_id("e1").build())
                .entries(PutEventsResultEntry::builder().event_id("e2").build())
                .build()
        });
    let p = ports(&[], &[], &[&rule]);
    p.put_events(R, &[entry("default"), entry(bus)])
        .await
        .unwrap();
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn an_entry_eventbridge_refuses_fails_the_call_naming_the_bus_and_its_code() {
    let bus = "arn:aws:events:us-east-1:444455556666:event-bus/org-images";
    let rule = mock!(aws_sdk_eventbridge::Client::put_events).then_output(|| {
        PutEventsOutput::builder()
            .failed_entry_count(1)
            .entries(PutEventsResultEntry::builder().event_id("e1").build())
            .entries(
                PutEventsResultEntry::builder()
                    .error_code("AccessDeniedException")
                    .error_message("not authorized to put events on the bus")
                    .build(),
            )
            .build()
    });
    let p = ports(&[], &[], &[&rule]);
    let e = p
        .put_events(R, &[entry("default"), entry(bus)])
        .await
        .unwrap_err();
    assert_eq!(e.code, "AccessDeniedException");
    assert_eq!(e.resource, bus);
    assert!(e.message.contains("1 of 2 events refused"), "{}", e.message);
}
