//! Key access of a convergence: each key's grants read once per service, one grant per
//! account, named deterministically, never created twice; and, for organizations and OUs under
//! `kms_access: key_policy`, each key's policy read once per service and checked.

use std::collections::BTreeSet;

use futures::stream::{self, StreamExt, TryStreamExt};

use super::converge::GrantSlot;
use super::key_policy::{self, OrgTarget};
use super::Convergence;
use crate::error::{Error, Result};
use crate::names::{account_of_principal, account_principal, grant_name};
use crate::ports::{Aws, Grant, GrantRequest};

impl<P: Aws> Convergence<'_, P> {
    /// The grants of a key, read once per convergence service.
    fn grant_slot(&self, region: &str, key_arn: &str) -> GrantSlot {
        let mut map = self.grants.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((region.to_string(), key_arn.to_string()))
            .or_default()
            .clone()
    }

    /// The key's grants (`ListGrants` once per run).
    pub async fn grants(&self, region: &str, key_arn: &str) -> Result<Vec<Grant>> {
        let slot = self.grant_slot(region, key_arn);
        let mut guard = slot.lock().await;
        if guard.is_none() {
            *guard = Some(self.deps.aws.list_grants(region, key_arn).await?);
        }
        Ok(guard.clone().unwrap_or_default())
    }

    /// The key's policy document (`GetKeyPolicy` once per service).
    async fn key_policy_document(&self, region: &str, key_arn: &str) -> Result<String> {
        let slot = {
            let mut map = self.key_policies.lock().unwrap_or_else(|p| p.into_inner());
            map.entry((region.to_string(), key_arn.to_string()))
                .or_default()
                .clone()
        };
        let mut guard = slot.lock().await;
        if let Some(doc) = guard.as_ref() {
            return Ok(doc.clone());
        }
        let doc = self.deps.aws.key_policy(region, key_arn).await?;
        *guard = Some(doc.clone());
        Ok(doc)
    }

    /// Refuse unless the key's policy lets every organization and OU of `arns` use the key
    /// (the refusal prints the statement to add). No grant is made for them.
    pub async fn check_key_policy(
        &self,
        region: &str,
        key_arn: &str,
        arns: &BTreeSet<String>,
    ) -> Result<()> {
        if arns.is_empty() {
            return Ok(());
        }
        let targets: BTreeSet<OrgTarget> =
            arns.iter().filter_map(|a| OrgTarget::from_arn(a)).collect();
        let doc = self.key_policy_document(region, key_arn).await?;
        key_policy::check(&doc, &targets).map_err(|gap| {
            tracing::warn!(key_arn, region, uncovered = ?gap.uncovered, "key policy does not admit the rule's organizations or OUs");
            Error::refused(key_arn, gap.message(key_arn))
        })
    }

    /// One grant per account on the key, named deterministically; returns (created, already
    /// there).
    pub(super) async fn ensure_grants(
        &self,
        region: &str,
        key_arn: &str,
        accounts: &BTreeSet<String>,
    ) -> Result<(Vec<String>, usize)> {
        if accounts.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let slot = self.grant_slot(region, key_arn);
        let mut guard = slot.lock().await;
        if guard.is_none() {
            *guard = Some(self.deps.aws.list_grants(region, key_arn).await?);
        }
        let grants = guard.get_or_insert_with(Vec::new);
        let have: BTreeSet<(String, String)> = grants
            .iter()
            .filter_map(|g| {
                Some((
                    g.name.clone()?,
                    account_of_principal(&g.grantee_principal)?.to_string(),
                ))
            })
            .collect();
        let missing: Vec<String> = accounts
            .iter()
            .filter(|a| !have.contains(&(grant_name(a), (*a).clone())))
            .cloned()
            .collect();
        let existing = accounts.len() - missing.len();
        let created: Vec<Grant> = stream::iter(missing.iter())
            .map(|account| async move {
                let req = GrantRequest {
                    key_arn: key_arn.to_string(),
                    grantee_principal: account_principal(account),
                    name: grant_name(account),
                };
                self.deps.aws.create_grant(region, &req).await?;
                Ok::<_, Error>(Grant {
                    grant_id: String::new(),
                    name: Some(req.name),
                    grantee_principal: req.grantee_principal,
                })
            })
            .buffer_unordered(self.deps.settings.grant_concurrency)
            .try_collect()
            .await?;
        grants.extend(created);
        Ok((missing, existing))
    }
}
