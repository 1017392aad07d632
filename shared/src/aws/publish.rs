//! Adapters of the publishing ports: Parameter Store, AWS RAM, EventBridge.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_ram::types::{
    ResourceOwner, ResourceShareAssociationStatus, ResourceShareAssociationType,
    ResourceShareStatus, Tag,
};
use aws_sdk_ssm::types::{ParameterTier, ParameterType};

use super::{aws_error, AwsPorts};
use crate::error::AwsError;
use crate::ports::AwsResult;
use crate::publish::ports::{
    EventEntry, Events, NewResourceShare, ParameterVersion, Parameters, ResourceShare,
    ResourceShares, ShareAssociations,
};

/// Parameter Store's data type for image ids: it checks the value is an image.
pub const IMAGE_DATA_TYPE: &str = "aws:ec2:image";

#[async_trait]
impl Parameters for AwsPorts {
    async fn get_parameters(
        &self,
        region: &str,
        names: &[String],
    ) -> AwsResult<BTreeMap<String, ParameterVersion>> {
        let out = self
            .ssm(region)
            .get_parameters()
            .set_names(Some(names.to_vec()))
            .send()
            .await
            .map_err(|e| aws_error("ssm", "GetParameters", &names.join(","), e))?;
        Ok(out
            .parameters()
            .iter()
            .map(|p| {
                let name = p.name().unwrap_or_default().to_string();
                let key = format!("{name}{}", p.selector().unwrap_or_default());
                let version = ParameterVersion {
                    name,
                    value: p.value().unwrap_or_default().to_string(),
                    version: p.version(),
                };
                (key, version)
            })
            .collect())
    }

    async fn put_image_parameter(
        &self,
        region: &str,
        name: &str,
        image_id: &str,
        description: &str,
    ) -> AwsResult<i64> {
        let out = self
            .ssm(region)
            .put_parameter()
            .name(name)
            .value(image_id)
            .r#type(ParameterType::String)
            .data_type(IMAGE_DATA_TYPE)
            .tier(ParameterTier::Advanced)
            .overwrite(true)
            .description(description)
            .send()
            .await
            .map_err(|e| aws_error("ssm", "PutParameter", name, e))?;
        Ok(out.version())
    }

    async fn label_parameter_version(
        &self,
        region: &str,
        name: &str,
        version: i64,
        label: &str,
    ) -> AwsResult<()> {
        let out = self
            .ssm(region)
            .label_parameter_version()
            .name(name)
            .parameter_version(version)
            .labels(label)
            .send()
            .await
            .map_err(|e| aws_error("ssm", "LabelParameterVersion", name, e))?;
        if !out.invalid_labels().is_empty() {
            return Err(AwsError::new(
                "ssm",
                "LabelParameterVersion",
                "InvalidLabel",
                format!("labels refused: {}", out.invalid_labels().join(", ")),
                name,
            ));
        }
        Ok(())
    }

    async fn parameter_labels(
        &self,
        region: &str,
        name: &str,
    ) -> AwsResult<Vec<(i64, Vec<String>)>> {
        let mut pages = self
            .ssm(region)
            .get_parameter_history()
            .name(name)
            .max_results(50)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("ssm", "GetParameterHistory", name, e))?;
            out.extend(
                page.parameters()
                    .iter()
                    .map(|p| (p.version(), p.labels().to_vec())),
            );
        }
        out.sort_by_key(|(v, _)| *v);
        Ok(out)
    }

    async fn unlabel_parameter_version(
        &self,
        region: &str,
        name: &str,
        version: i64,
        labels: &[String],
    ) -> AwsResult<()> {
        self.ssm(region)
            .unlabel_parameter_version()
            .name(name)
            .parameter_version(version)
            .set_labels(Some(labels.to_vec()))
            .send()
            .await
            .map_err(|e| aws_error("ssm", "UnlabelParameterVersion", name, e))?;
        Ok(())
    }
}

impl AwsPorts {
    /// The associated (or associating) entities of one kind, all pages.
    async fn associations(
        &self,
        region: &str,
        share_arn: &str,
        kind: ResourceShareAssociationType,
    ) -> AwsResult<BTreeSet<String>> {
        let mut pages = self
            .ram(region)
            .get_resource_share_associations()
            .association_type(kind)
            .resource_share_arns(share_arn)
            .into_paginator()
            .send();
        let mut out = BTreeSet::new();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| aws_error("ram", "GetResourceShareAssociations", share_arn, e))?;
            out.extend(
                page.resource_share_associations()
                    .iter()
                    .filter(|a| {
                        matches!(
                            a.status(),
                            Some(
                                ResourceShareAssociationStatus::Associated
                                    | ResourceShareAssociationStatus::Associating
                            )
                        )
                    })
                    .filter_map(|a| a.associated_entity().map(str::to_string)),
            );
        }
        Ok(out)
    }
}

#[async_trait]
impl ResourceShares for AwsPorts {
    async fn resource_shares_named(
        &self,
        region: &str,
        name: &str,
    ) -> AwsResult<Vec<ResourceShare>> {
        let mut pages = self
            .ram(region)
            .get_resource_shares()
            .resource_owner(ResourceOwner::SelfValue)
            .resource_share_status(ResourceShareStatus::Active)
            .name(name)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("ram", "GetResourceShares", name, e))?;
            out.extend(
                page.resource_shares()
                    .iter()
                    // Filtered here too: the name and status filters are the service's to
                    // honour, and a deleted share must never be reused.
                    .filter(|s| s.name() == Some(name))
                    .filter(|s| {
                        s.status()
                            .is_none_or(|st| *st == ResourceShareStatus::Active)
                    })
                    .map(|s| ResourceShare {
                        arn: s.resource_share_arn().unwrap_or_default().to_string(),
                        name: name.to_string(),
                        allow_external_principals: s.allow_external_principals().unwrap_or(false),
                    }),
            );
        }
        Ok(out)
    }

    async fn create_resource_share(
        &self,
        region: &str,
        share: &NewResourceShare,
    ) -> AwsResult<ResourceShare> {
        let tags = share
            .tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let out = self
            .ram(region)
            .create_resource_share()
            .name(&share.name)
            .set_resource_arns(Some(share.resource_arns.clone()))
            .set_principals(Some(share.principals.clone()))
            .allow_external_principals(share.allow_external_principals)
            .set_tags(Some(tags))
            .client_token(&share.client_token)
            .send()
            .await
            .map_err(|e| aws_error("ram", "CreateResourceShare", &share.name, e))?;
        let made = out.resource_share();
        Ok(ResourceShare {
            arn: made
                .and_then(|s| s.resource_share_arn())
                .unwrap_or_default()
                .to_string(),
            name: share.name.clone(),
            allow_external_principals: made
                .and_then(|s| s.allow_external_principals())
                .unwrap_or(share.allow_external_principals),
        })
    }

    async fn share_associations(
        &self,
        region: &str,
        share_arn: &str,
    ) -> AwsResult<ShareAssociations> {
        // Both kinds at once.
        let (principals, resources) = futures::try_join!(
            self.associations(region, share_arn, ResourceShareAssociationType::Principal),
            self.associations(region, share_arn, ResourceShareAssociationType::Resource)
        )?;
        Ok(ShareAssociations {
            principals,
            resources,
        })
    }

    async fn associate_resource_share(
        &self,
        region: &str,
        share_arn: &str,
        principals: &[String],
        resource_arns: &[String],
    ) -> AwsResult<()> {
        let some = |v: &[String]| (!v.is_empty()).then(|| v.to_vec());
        self.ram(region)
            .associate_resource_share()
            .resource_share_arn(share_arn)
            .set_principals(some(principals))
            .set_resource_arns(some(resource_arns))
            .send()
            .await
            .map_err(|e| aws_error("ram", "AssociateResourceShare", share_arn, e))?;
        Ok(())
    }

    async fn disassociate_principals(
        &self,
        region: &str,
        share_arn: &str,
        principals: &[String],
    ) -> AwsResult<()> {
        self.ram(region)
            .disassociate_resource_share()
            .resource_share_arn(share_arn)
            .set_principals(Some(principals.to_vec()))
            .send()
            .await
            .map_err(|e| aws_error("ram", "DisassociateResourceShare", share_arn, e))?;
        Ok(())
    }

    async fn allow_external_principals(&self, region: &str, share_arn: &str) -> AwsResult<()> {
        self.ram(region)
            .update_resource_share()
            .resource_share_arn(share_arn)
            .allow_external_principals(true)
            .send()
            .await
            .map_err(|e| aws_error("ram", "UpdateResourceShare", share_arn, e))?;
        Ok(())
    }
}

#[async_trait]
impl Events for AwsPorts {
    async fn put_events(&self, region: &str, entries: &[EventEntry]) -> AwsResult<()> {
        let resource = entries
            .iter()
            .map(|e| e.bus.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let request = entries
            .iter()
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&e.bus)
                    .source(&e.source)
                    .detail_type(&e.detail_type)
                    .detail(&e.detail)
                    .set_resources(Some(e.resources.clone()))
                    .build()
            })
            .collect();
        let out = self
            .events(region)
            .put_events()
            .set_entries(Some(request))
            .send()
            .await
            .map_err(|e| aws_error("events", "PutEvents", &resource, e))?;
        if out.failed_entry_count() > 0 {
            let failed = out
                .entries()
                .iter()
                .enumerate()
                .find(|(_, e)| e.error_code().is_some());
            let (code, message, bus) = match failed {
                Some((i, e)) => (
                    e.error_code().unwrap_or("FailedEntry"),
                    e.error_message().unwrap_or_default(),
                    entries.get(i).map_or(resource.as_str(), |e| e.bus.as_str()),
                ),
                None => ("FailedEntry", "", resource.as_str()),
            };
            return Err(AwsError::new(
                "events",
                "PutEvents",
                code,
                format!(
                    "{} of {} events refused: {message}",
                    out.failed_entry_count(),
                    entries.len()
                ),
                bus,
            ));
        }
        Ok(())
    }
}
