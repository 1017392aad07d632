//! AWS Organizations (read-only).

use async_trait::async_trait;
use serde::Serialize;

use super::AwsResult;

/// An account of the organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrgAccount {
    pub id: String,
    /// `ACTIVE`, `SUSPENDED`, `PENDING_CLOSURE`, ...
    pub status: String,
}

impl OrgAccount {
    pub fn is_active(&self) -> bool {
        self.status == "ACTIVE"
    }
}

/// AWS Organizations (read-only).
#[async_trait]
pub trait Org: Send + Sync {
    /// `DescribeOrganization`: the id (`o-…`) of the caller's organization.
    async fn organization_id(&self) -> AwsResult<String>;
    /// `DescribeAccount`: the account when it is a member of the caller's organization, `None`
    /// when it is not (`AccountNotFoundException`).
    async fn describe_account(&self, account_id: &str) -> AwsResult<Option<OrgAccount>>;
    /// `ListAccounts`: every account of the organization.
    async fn all_accounts(&self) -> AwsResult<Vec<OrgAccount>>;
    /// `ListAccountsForParent`: accounts directly under a root or OU.
    async fn accounts_for_parent(&self, parent_id: &str) -> AwsResult<Vec<OrgAccount>>;
    /// `ListChildren(ORGANIZATIONAL_UNIT)`: OUs directly under a root or OU.
    async fn child_ous(&self, parent_id: &str) -> AwsResult<Vec<String>>;
    /// `DescribeEffectivePolicy` `DECLARATIVE_POLICY_EC2` of an account: the policy document,
    /// `None` when no declarative policy applies to it.
    async fn effective_ec2_policy(&self, account_id: &str) -> AwsResult<Option<String>>;
}
