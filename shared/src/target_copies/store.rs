//! A target account's Parameter Store in one Region, for the target's own newest-image
//! parameter (`publish.in_target_accounts`): the publisher's parameter logic over the target
//! role.

use super::ports::TargetAccounts;
use crate::error::AwsError;
use crate::publish::params::ParameterStore;

/// A target account's Parameter Store in one Region.
pub(super) struct TargetStore<'a, P> {
    pub aws: &'a P,
    pub account: &'a str,
    pub region: &'a str,
}

#[async_trait::async_trait]
impl<P: TargetAccounts> ParameterStore for TargetStore<'_, P> {
    fn whereabouts(&self) -> String {
        format!("account {} in {}", self.account, self.region)
    }
    async fn put(
        &self,
        name: &str,
        image_id: &str,
        description: &str,
    ) -> crate::ports::AwsResult<i64> {
        self.aws
            .put_target_parameter(self.account, self.region, name, image_id, description)
            .await
    }
    async fn label(&self, name: &str, version: i64, label: &str) -> crate::ports::AwsResult<()> {
        self.aws
            .label_target_parameter(self.account, self.region, name, version, label)
            .await
    }
    async fn history(&self, name: &str) -> crate::ports::AwsResult<Vec<(i64, Vec<String>)>> {
        self.aws
            .target_parameter_history(self.account, self.region, name)
            .await
    }
    async fn unlabel(
        &self,
        name: &str,
        version: i64,
        labels: &[String],
    ) -> crate::ports::AwsResult<()> {
        self.aws
            .unlabel_target_parameter(self.account, self.region, name, version, labels)
            .await
    }
}

/// The AWS error inside an error of a parameter write (what a target's report carries).
pub(super) fn as_aws_error(e: crate::error::Error) -> AwsError {
    match e {
        crate::error::Error::Permanent(a) | crate::error::Error::Transient(a) => a,
        other => AwsError::new("ssm", "PutParameter", "Unexpected", other.to_string(), ""),
    }
}
