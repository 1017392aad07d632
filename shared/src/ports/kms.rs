//! KMS keys and their grants.

use async_trait::async_trait;
use serde::Serialize;

use super::AwsResult;

/// Who manages a KMS key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum KeyManager {
    /// AWS managed (`aws/ebs`): cannot be used by other accounts, so its snapshots cannot be
    /// shared.
    Aws,
    Customer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    pub arn: String,
    pub manager: KeyManager,
    pub enabled: bool,
}

/// A grant on a KMS key, as `ListGrants` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    pub grant_id: String,
    pub name: Option<String>,
    pub grantee_principal: String,
}

/// A grant to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantRequest {
    pub key_arn: String,
    pub grantee_principal: String,
    pub name: String,
}

/// KMS keys.
#[async_trait]
pub trait Keys: Send + Sync {
    /// `DescribeKey`: the key's ARN and who manages it.
    async fn describe_key(&self, region: &str, key_id: &str) -> AwsResult<KeyInfo>;
    /// `GetKeyPolicy` (`default`): the key policy document as text.
    async fn key_policy(&self, region: &str, key_arn: &str) -> AwsResult<String>;
    /// `ListGrants` of the key, all pages (the largest KMS allows, 100 a page).
    async fn list_grants(&self, region: &str, key_arn: &str) -> AwsResult<Vec<Grant>>;
    /// `ListResourceTags` of the key (one page: a key holds at most 50 tags): the value of
    /// `tag`, if set.
    async fn key_tag(&self, region: &str, key_arn: &str, tag: &str) -> AwsResult<Option<String>>;
    /// `TagResource`: set one tag on the key.
    async fn set_key_tag(
        &self,
        region: &str,
        key_arn: &str,
        tag: &str,
        value: &str,
    ) -> AwsResult<()>;
    /// `UntagResource`: remove one tag from the key (absent: nothing to do).
    async fn remove_key_tag(&self, region: &str, key_arn: &str, tag: &str) -> AwsResult<()>;
    /// `CreateGrant` with the operations launching and copying need.
    async fn create_grant(&self, region: &str, grant: &GrantRequest) -> AwsResult<()>;
    /// `RevokeGrant` (the key owner's way to delete a grant).
    async fn revoke_grant(&self, region: &str, key_arn: &str, grant_id: &str) -> AwsResult<()>;
    /// `GenerateMac` (`HMAC_SHA_256`) of `message` with an HMAC key: the MAC.
    async fn generate_mac(&self, region: &str, key_id: &str, message: &[u8]) -> AwsResult<Vec<u8>>;
}
