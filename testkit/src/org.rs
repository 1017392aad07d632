//! The double's AWS Organizations.

use async_trait::async_trait;

use amishare::ports::*;

use crate::{err, FakeAws};

#[async_trait]
impl Org for FakeAws {
    async fn organization_id(&self) -> AwsResult<String> {
        self.call("organizations:DescribeOrganization")?;
        self.world()
            .org
            .as_ref()
            .map(|o| o.id.clone())
            .ok_or_else(|| {
                err(
                    "organizations",
                    "DescribeOrganization",
                    "AWSOrganizationsNotInUseException",
                    "not in an organization",
                    "organization",
                )
            })
    }

    async fn describe_account(&self, account_id: &str) -> AwsResult<Option<OrgAccount>> {
        self.call("organizations:DescribeAccount")?;
        let w = self.world();
        if w.outside_org.contains(account_id) {
            return Ok(None);
        }
        let status = w
            .org
            .as_ref()
            .and_then(|o| o.accounts.get(account_id))
            .map_or_else(|| "ACTIVE".to_string(), |(_, st)| st.clone());
        Ok(Some(OrgAccount {
            id: account_id.to_string(),
            status,
        }))
    }

    async fn all_accounts(&self) -> AwsResult<Vec<OrgAccount>> {
        let accounts: Vec<OrgAccount> = self
            .world()
            .org
            .as_ref()
            .map(|o| {
                o.accounts
                    .iter()
                    .map(|(id, (_, st))| OrgAccount {
                        id: id.clone(),
                        status: st.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.list("organizations:ListAccounts", accounts)
    }

    async fn accounts_for_parent(&self, parent_id: &str) -> AwsResult<Vec<OrgAccount>> {
        let accounts = {
            let w = self.world();
            let o = w.org.as_ref().ok_or_else(|| {
                err(
                    "organizations",
                    "ListAccountsForParent",
                    "AWSOrganizationsNotInUseException",
                    "not in an organization",
                    parent_id,
                )
            })?;
            if parent_id != o.root_id && !o.ous.contains_key(parent_id) {
                return Err(err(
                    "organizations",
                    "ListAccountsForParent",
                    "ParentNotFoundException",
                    "no such parent",
                    parent_id,
                ));
            }
            o.accounts
                .iter()
                .filter(|(_, (p, _))| p == parent_id)
                .map(|(id, (_, st))| OrgAccount {
                    id: id.clone(),
                    status: st.clone(),
                })
                .collect::<Vec<_>>()
        };
        self.list("organizations:ListAccountsForParent", accounts)
    }

    async fn child_ous(&self, parent_id: &str) -> AwsResult<Vec<String>> {
        let ous: Vec<String> = self
            .world()
            .org
            .as_ref()
            .map(|o| {
                o.ous
                    .iter()
                    .filter(|(_, p)| *p == parent_id)
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default();
        self.list("organizations:ListChildren", ous)
    }

    async fn effective_ec2_policy(&self, account_id: &str) -> AwsResult<Option<String>> {
        self.call("organizations:DescribeEffectivePolicy")?;
        Ok(self.world().declarative_policies.get(account_id).cloned())
    }
}
