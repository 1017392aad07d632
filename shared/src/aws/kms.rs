use async_trait::async_trait;
use aws_sdk_kms::types::{GrantOperation, KeyManagerType, Tag};

use super::{aws_error, AwsPorts};
use crate::error::AwsError;
use crate::names::GRANT_OPERATIONS;
use crate::ports::{AwsResult, Grant, GrantRequest, KeyInfo, KeyManager, Keys};

/// The largest page `ListGrants` returns (KMS: 1 to 100, 50 when not given).
pub const LIST_GRANTS_PAGE: i32 = 100;

#[async_trait]
impl Keys for AwsPorts {
    async fn generate_mac(&self, region: &str, key_id: &str, message: &[u8]) -> AwsResult<Vec<u8>> {
        let out = self
            .kms(region)
            .generate_mac()
            .key_id(key_id)
            .mac_algorithm(aws_sdk_kms::types::MacAlgorithmSpec::HmacSha256)
            .message(aws_smithy_types::Blob::new(message))
            .send()
            .await
            .map_err(|e| aws_error("kms", "GenerateMac", key_id, e))?;
        out.mac()
            .map(|m| m.as_ref().to_vec())
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                AwsError::new(
                    "kms",
                    "GenerateMac",
                    "MissingMac",
                    "no Mac in the response",
                    key_id,
                )
            })
    }

    async fn describe_key(&self, region: &str, key_id: &str) -> AwsResult<KeyInfo> {
        let out = self
            .kms(region)
            .describe_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| aws_error("kms", "DescribeKey", key_id, e))?;
        let meta = out.key_metadata().ok_or_else(|| {
            AwsError::new(
                "kms",
                "DescribeKey",
                "MissingKeyMetadata",
                "no KeyMetadata in the response",
                key_id,
            )
        })?;
        Ok(KeyInfo {
            arn: meta.arn().unwrap_or(key_id).to_string(),
            manager: if meta.key_manager() == Some(&KeyManagerType::Aws) {
                KeyManager::Aws
            } else {
                KeyManager::Customer
            },
            enabled: meta.enabled(),
        })
    }

    async fn key_policy(&self, region: &str, key_arn: &str) -> AwsResult<String> {
        let out = self
            .kms(region)
            .get_key_policy()
            .key_id(key_arn)
            .policy_name("default")
            .send()
            .await
            .map_err(|e| aws_error("kms", "GetKeyPolicy", key_arn, e))?;
        Ok(out.policy().unwrap_or_default().to_string())
    }

    async fn list_grants(&self, region: &str, key_arn: &str) -> AwsResult<Vec<Grant>> {
        let mut pages = self
            .kms(region)
            .list_grants()
            .key_id(key_arn)
            .limit(LIST_GRANTS_PAGE)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("kms", "ListGrants", key_arn, e))?;
            out.extend(page.grants().iter().map(|g| Grant {
                grant_id: g.grant_id().unwrap_or_default().to_string(),
                name: g.name().filter(|n| !n.is_empty()).map(str::to_string),
                grantee_principal: g.grantee_principal().unwrap_or_default().to_string(),
            }));
        }
        Ok(out)
    }

    async fn key_tag(&self, region: &str, key_arn: &str, tag: &str) -> AwsResult<Option<String>> {
        let out = self
            .kms(region)
            .list_resource_tags()
            .key_id(key_arn)
            .limit(50)
            .send()
            .await
            .map_err(|e| aws_error("kms", "ListResourceTags", key_arn, e))?;
        Ok(out
            .tags()
            .iter()
            .find(|t| t.tag_key() == tag)
            .map(|t| t.tag_value().to_string()))
    }

    async fn set_key_tag(
        &self,
        region: &str,
        key_arn: &str,
        tag: &str,
        value: &str,
    ) -> AwsResult<()> {
        let tag = Tag::builder()
            .tag_key(tag)
            .tag_value(value)
            .build()
            .map_err(|e| {
                AwsError::new("kms", "TagResource", "InvalidTag", e.to_string(), key_arn)
            })?;
        self.limit(region, "kms:TagResource").await;
        self.kms(region)
            .tag_resource()
            .key_id(key_arn)
            .tags(tag)
            .send()
            .await
            .map_err(|e| aws_error("kms", "TagResource", key_arn, e))?;
        Ok(())
    }

    async fn remove_key_tag(&self, region: &str, key_arn: &str, tag: &str) -> AwsResult<()> {
        self.limit(region, "kms:UntagResource").await;
        self.kms(region)
            .untag_resource()
            .key_id(key_arn)
            .tag_keys(tag)
            .send()
            .await
            .map_err(|e| aws_error("kms", "UntagResource", key_arn, e))?;
        Ok(())
    }

    async fn create_grant(&self, region: &str, g: &GrantRequest) -> AwsResult<()> {
        let ops = GRANT_OPERATIONS
            .iter()
            .map(|o| GrantOperation::from(*o))
            .collect();
        self.limit(region, "kms:CreateGrant").await;
        self.kms(region)
            .create_grant()
            .key_id(&g.key_arn)
            .grantee_principal(&g.grantee_principal)
            .name(&g.name)
            .set_operations(Some(ops))
            .send()
            .await
            .map_err(|e| {
                aws_error(
                    "kms",
                    "CreateGrant",
                    &format!("{} for {}", g.key_arn, g.grantee_principal),
                    e,
                )
            })?;
        Ok(())
    }

    async fn revoke_grant(&self, region: &str, key_arn: &str, grant_id: &str) -> AwsResult<()> {
        self.limit(region, "kms:RevokeGrant").await;
        self.kms(region)
            .revoke_grant()
            .key_id(key_arn)
            .grant_id(grant_id)
            .send()
            .await
            .map_err(|e| {
                aws_error(
                    "kms",
                    "RevokeGrant",
                    &format!("{key_arn} grant {grant_id}"),
                    e,
                )
            })?;
        Ok(())
    }
}
