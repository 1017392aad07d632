use async_trait::async_trait;
use aws_sdk_organizations::types::{Account, ChildType};

use super::{aws_error, AwsPorts};
use crate::error::AwsError;
use crate::ports::{AwsResult, Org, OrgAccount};

fn convert(a: &Account) -> OrgAccount {
    // `State` supersedes the deprecated `Status`; read whichever is there.
    let status = a
        .state()
        .map(|s| s.as_str().to_string())
        .or_else(|| a.status().map(|s| s.as_str().to_string()))
        .unwrap_or_else(|| "UNKNOWN".to_string());
    OrgAccount {
        id: a.id().unwrap_or_default().to_string(),
        status,
    }
}

#[async_trait]
impl Org for AwsPorts {
    async fn organization_id(&self) -> AwsResult<String> {
        let out =
            self.org.describe_organization().send().await.map_err(|e| {
                aws_error("organizations", "DescribeOrganization", "organization", e)
            })?;
        out.organization()
            .and_then(|o| o.id())
            .map(str::to_string)
            .ok_or_else(|| {
                AwsError::new(
                    "organizations",
                    "DescribeOrganization",
                    "MissingOrganization",
                    "no organization in the response",
                    "organization",
                )
            })
    }

    async fn describe_account(&self, account_id: &str) -> AwsResult<Option<OrgAccount>> {
        match self
            .org
            .describe_account()
            .account_id(account_id)
            .send()
            .await
        {
            Ok(out) => Ok(out.account().map(convert)),
            Err(e) => {
                let err = aws_error("organizations", "DescribeAccount", account_id, e);
                if err.code == "AccountNotFoundException" {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    async fn effective_ec2_policy(&self, account_id: &str) -> AwsResult<Option<String>> {
        self.limit("", "organizations:DescribeEffectivePolicy")
            .await;
        match self
            .org
            .describe_effective_policy()
            .policy_type(aws_sdk_organizations::types::EffectivePolicyType::DeclarativePolicyEc2)
            .target_id(account_id)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .effective_policy()
                .and_then(|p| p.policy_content())
                .map(str::to_string)),
            Err(e) => {
                let err = aws_error("organizations", "DescribeEffectivePolicy", account_id, e);
                if err.code == "EffectivePolicyNotFoundException" {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    async fn all_accounts(&self) -> AwsResult<Vec<OrgAccount>> {
        let mut pages = self.org.list_accounts().into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| aws_error("organizations", "ListAccounts", "organization", e))?;
            out.extend(page.accounts().iter().map(convert));
        }
        Ok(out)
    }

    async fn accounts_for_parent(&self, parent_id: &str) -> AwsResult<Vec<OrgAccount>> {
        let mut pages = self
            .org
            .list_accounts_for_parent()
            .parent_id(parent_id)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page
                .map_err(|e| aws_error("organizations", "ListAccountsForParent", parent_id, e))?;
            out.extend(page.accounts().iter().map(convert));
        }
        Ok(out)
    }

    async fn child_ous(&self, parent_id: &str) -> AwsResult<Vec<String>> {
        let mut pages = self
            .org
            .list_children()
            .parent_id(parent_id)
            .child_type(ChildType::OrganizationalUnit)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| aws_error("organizations", "ListChildren", parent_id, e))?;
            out.extend(
                page.children()
                    .iter()
                    .filter_map(|c| c.id().map(str::to_string)),
            );
        }
        Ok(out)
    }
}
