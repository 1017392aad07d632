//! The ports only publication needs: Parameter Store, AWS RAM, EventBridge.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use serde::Serialize;

use crate::ports::AwsResult;

/// One version of a Parameter Store parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParameterVersion {
    pub name: String,
    pub value: String,
    pub version: i64,
}

/// Parameter Store, for the parameters that publish a rule's newest image.
#[async_trait]
pub trait Parameters: Send + Sync {
    /// One `GetParameters` of at most 10 names, each optionally with a `:<label>` or
    /// `:<version>` selector; the parameters found, keyed by the name as requested.
    async fn get_parameters(
        &self,
        region: &str,
        names: &[String],
    ) -> AwsResult<BTreeMap<String, ParameterVersion>>;
    /// `PutParameter` of an image id: type `String`, data type `aws:ec2:image`, advanced tier,
    /// overwrite. Returns the new version.
    async fn put_image_parameter(
        &self,
        region: &str,
        name: &str,
        image_id: &str,
        description: &str,
    ) -> AwsResult<i64>;
    /// `LabelParameterVersion` (a label sits on one version at a time: it moves).
    async fn label_parameter_version(
        &self,
        region: &str,
        name: &str,
        version: i64,
        label: &str,
    ) -> AwsResult<()>;
    /// `GetParameterHistory`, all pages, oldest first: (version, labels).
    async fn parameter_labels(
        &self,
        region: &str,
        name: &str,
    ) -> AwsResult<Vec<(i64, Vec<String>)>>;
    /// `UnlabelParameterVersion`.
    async fn unlabel_parameter_version(
        &self,
        region: &str,
        name: &str,
        version: i64,
        labels: &[String],
    ) -> AwsResult<()>;
}

/// An AWS RAM resource share owned by this account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceShare {
    pub arn: String,
    pub name: String,
    pub allow_external_principals: bool,
}

/// A resource share to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewResourceShare {
    pub name: String,
    pub resource_arns: Vec<String>,
    pub principals: Vec<String>,
    pub allow_external_principals: bool,
    pub tags: BTreeMap<String, String>,
    pub client_token: String,
}

/// What a resource share holds and whom it is shared with (associated or associating).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShareAssociations {
    pub principals: BTreeSet<String>,
    pub resources: BTreeSet<String>,
}

/// AWS RAM.
#[async_trait]
pub trait ResourceShares: Send + Sync {
    /// `GetResourceShares` (owner `SELF`, status `ACTIVE`, this name), all pages.
    async fn resource_shares_named(
        &self,
        region: &str,
        name: &str,
    ) -> AwsResult<Vec<ResourceShare>>;
    /// `CreateResourceShare`.
    async fn create_resource_share(
        &self,
        region: &str,
        share: &NewResourceShare,
    ) -> AwsResult<ResourceShare>;
    /// `GetResourceShareAssociations` of both types, all pages.
    async fn share_associations(
        &self,
        region: &str,
        share_arn: &str,
    ) -> AwsResult<ShareAssociations>;
    /// One `AssociateResourceShare` adding principals and/or resources.
    async fn associate_resource_share(
        &self,
        region: &str,
        share_arn: &str,
        principals: &[String],
        resource_arns: &[String],
    ) -> AwsResult<()>;
    /// One `DisassociateResourceShare` removing principals.
    async fn disassociate_principals(
        &self,
        region: &str,
        share_arn: &str,
        principals: &[String],
    ) -> AwsResult<()>;
    /// `UpdateResourceShare` allowing principals outside the organization.
    async fn allow_external_principals(&self, region: &str, share_arn: &str) -> AwsResult<()>;
}

/// One event for `PutEvents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventEntry {
    /// `default` or a bus ARN.
    pub bus: String,
    pub source: String,
    pub detail_type: String,
    /// JSON text.
    pub detail: String,
    pub resources: Vec<String>,
}

/// Amazon EventBridge.
#[async_trait]
pub trait Events: Send + Sync {
    /// One `PutEvents` in `region`; an entry EventBridge refuses fails the call with the
    /// entry's error code.
    async fn put_events(&self, region: &str, entries: &[EventEntry]) -> AwsResult<()>;
}

/// Everything publication needs besides [`crate::ports::Aws`].
pub trait Publishing: Parameters + ResourceShares + Events {}
impl<T: Parameters + ResourceShares + Events> Publishing for T {}
