//! The port of `copy_into`: the calls the product makes *in a target account*, through the
//! deployment's target-account role (`templates/target-account-role.yaml`). Every method
//! names the account and Region it acts in; the adapter assumes the role once per account and
//! invocation.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::ports::{AwsResult, CopyRequest, Image, KeyInfo};
use crate::publish::ports::ParameterVersion;

/// What the product does in the target accounts of `copy_into`.
#[async_trait]
pub trait TargetAccounts: Send + Sync {
    /// `GetAllowedImagesSettings` in the target account and Region (through its role): the
    /// account's own Allowed AMIs settings (`managed-by` a declarative policy: the policy's).
    async fn allowed_images_settings(
        &self,
        account: &str,
        region: &str,
    ) -> AwsResult<crate::allowed::Settings>;
    /// Images `account` owns in `region` that the product copied into it from the
    /// `publisher` account (tag `ami-share:copied-from-account`), in any state, every page.
    async fn target_copies(
        &self,
        account: &str,
        region: &str,
        publisher: &str,
    ) -> AwsResult<Vec<Image>>;
    /// The key a copy into `account` is encrypted with, described (`DescribeKey` in the target
    /// account): `key` as the rule names it, or the account's default EBS key in the Region
    /// (`GetEbsDefaultKmsKeyId`).
    async fn target_key(
        &self,
        account: &str,
        region: &str,
        key: Option<&str>,
    ) -> AwsResult<KeyInfo>;
    /// `CopyImage` run by `account` in the request's destination Region; the new image id.
    async fn copy_into_target(&self, account: &str, request: &CopyRequest) -> AwsResult<String>;
    /// `CreateTags` on one image of the target account.
    async fn tag_target_image(
        &self,
        account: &str,
        region: &str,
        image_id: &str,
        tags: &BTreeMap<String, String>,
    ) -> AwsResult<()>;
    /// `EnableImageDeprecation` on one image of the target account.
    async fn deprecate_target_image(
        &self,
        account: &str,
        region: &str,
        image_id: &str,
        deprecate_at: &str,
    ) -> AwsResult<()>;
    /// `GetParameters` in the target account (names may carry a `:<label>` selector).
    async fn target_parameters(
        &self,
        account: &str,
        region: &str,
        names: &[String],
    ) -> AwsResult<BTreeMap<String, ParameterVersion>>;
    /// `PutParameter` of an image id in the target account (`aws:ec2:image`, overwrite); the
    /// new version.
    async fn put_target_parameter(
        &self,
        account: &str,
        region: &str,
        name: &str,
        image_id: &str,
        description: &str,
    ) -> AwsResult<i64>;
    /// `GetParameterHistory` in the target account, oldest first: (version, labels).
    async fn target_parameter_history(
        &self,
        account: &str,
        region: &str,
        name: &str,
    ) -> AwsResult<Vec<(i64, Vec<String>)>>;
    /// `UnlabelParameterVersion` in the target account.
    async fn unlabel_target_parameter(
        &self,
        account: &str,
        region: &str,
        name: &str,
        version: i64,
        labels: &[String],
    ) -> AwsResult<()>;
    /// `LabelParameterVersion` in the target account.
    async fn label_target_parameter(
        &self,
        account: &str,
        region: &str,
        name: &str,
        version: i64,
        label: &str,
    ) -> AwsResult<()>;
}
