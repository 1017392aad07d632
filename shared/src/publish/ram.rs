//! The rule's AWS RAM resource share: one per rule and Region, holding the parameter, shared
//! with the rule's accounts, OUs and organizations.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use sha2::{Digest, Sha256};

use super::decide::{share_name, share_principals, SHARE_RULE_TAG};
use super::ports::{NewResourceShare, Publishing, ResourceShare, ShareAssociations};
use super::report::ShareChange;
use super::Publisher;
use crate::config::Rule;
use crate::error::{AwsError, Error, Result};
use crate::ports::Aws;

impl<P: Aws + Publishing> Publisher<'_, P> {
    /// The rule's resource share in `region` and what it holds (`None`: the rule shares with
    /// no principal, so there is no share to keep).
    pub(super) async fn read_share(&self, rule: &Rule, region: &str) -> Result<Option<ShareState>> {
        if share_principals(rule, &self.deps.account_id).is_empty() {
            return Ok(None);
        }
        let aws = &self.deps.aws;
        let name = share_name(&rule.name);
        let shares = aws.resource_shares_named(region, &name).await?;
        if shares.len() > 1 {
            tracing::warn!(share = %name, region, count = shares.len(), "several resource shares carry this name; the first is kept in step, the others are left alone");
        }
        let Some(share) = shares.into_iter().next() else {
            return Ok(Some(ShareState {
                share: None,
                have: ShareAssociations::default(),
            }));
        };
        let have = aws.share_associations(region, &share.arn).await?;
        Ok(Some(ShareState {
            share: Some(share),
            have,
        }))
    }

    /// Bring the rule's resource share in `region` to the parameter and exactly the rule's
    /// principals (extra ones removed only when pruning is on), from what [`Self::read_share`]
    /// found. Runs after the parameter exists: RAM shares only existing parameters.
    pub(super) async fn write_share(
        &self,
        rule: &Rule,
        region: &str,
        parameter_arn: &str,
        state: &Option<ShareState>,
    ) -> Result<ShareChange> {
        let aws = &self.deps.aws;
        let mut change = ShareChange::default();
        let Some(state) = state else {
            return Ok(change);
        };
        let want = share_principals(rule, &self.deps.account_id);
        let name = share_name(&rule.name);
        // External principals only for accounts outside the organization, and only when the
        // policy allows them (otherwise the sharing was refused before this).
        let external = self.deps.policy.allow_external_accounts
            && !self
                .deps
                .outside_organization(&rule.share_with.accounts)
                .await?
                .is_empty();
        let Some(share) = &state.share else {
            return self
                .create_share(rule, region, parameter_arn, want, external)
                .await;
        };
        change.share_arn = Some(share.arn.clone());
        let have = &state.have;
        if external && !share.allow_external_principals {
            aws.allow_external_principals(region, &share.arn)
                .await
                .map_err(|e| ram_error(e, &name))?;
        }
        let missing: Vec<String> = want.difference(&have.principals).cloned().collect();
        let resource_missing = !have.resources.contains(parameter_arn);
        if !missing.is_empty() || resource_missing {
            let resources = if resource_missing {
                vec![parameter_arn.to_string()]
            } else {
                Vec::new()
            };
            aws.associate_resource_share(region, &share.arn, &missing, &resources)
                .await
                .map_err(|e| ram_error(e, &name))?;
            change.principals_added = missing;
            change.resource_added = resource_missing;
        }
        let extra: Vec<String> = have.principals.difference(&want).cloned().collect();
        if !extra.is_empty() {
            if self.deps.policy.sweeper.prune_unlisted_shares {
                aws.disassociate_principals(region, &share.arn, &extra)
                    .await?;
                change.principals_removed = extra;
            } else {
                change.would_remove = extra;
            }
        }
        Ok(change)
    }
}

impl<P: Aws + Publishing> Publisher<'_, P> {
    /// A new share of the parameter with the rule's principals (its client token: the rule,
    /// the Region, the parameter and the day, so a retry the same day makes no second share).
    async fn create_share(
        &self,
        rule: &Rule,
        region: &str,
        parameter_arn: &str,
        want: BTreeSet<String>,
        external: bool,
    ) -> Result<ShareChange> {
        let name = share_name(&rule.name);
        let token = hex::encode(
            &Sha256::digest(format!(
                "{}|{region}|{parameter_arn}|{}",
                rule.name,
                Utc::now().format("%Y-%m-%d")
            ))[..16],
        );
        let made = self
            .deps
            .aws
            .create_resource_share(
                region,
                &NewResourceShare {
                    name: name.clone(),
                    resource_arns: vec![parameter_arn.to_string()],
                    principals: want.iter().cloned().collect(),
                    allow_external_principals: external,
                    tags: BTreeMap::from([(SHARE_RULE_TAG.to_string(), rule.name.clone())]),
                    client_token: token,
                },
            )
            .await
            .map_err(|e| ram_error(e, &name))?;
        Ok(ShareChange {
            share_arn: Some(made.arn),
            created: true,
            principals_added: want.into_iter().collect(),
            resource_added: true,
            ..ShareChange::default()
        })
    }
}

/// A rule's resource share as read: `share` is `None` when none exists yet.
pub(super) struct ShareState {
    share: Option<ResourceShare>,
    have: ShareAssociations,
}

/// RAM's refusal when sharing with AWS Organizations is off, turned into what to do.
fn ram_error(e: AwsError, share: &str) -> Error {
    let lower = e.message.to_ascii_lowercase();
    let org_sharing_off = matches!(
        e.code.as_str(),
        "OperationNotPermittedException" | "InvalidParameterException"
    ) && (lower.contains("sharing with your aws organization")
        || lower.contains("shared within your aws organization"));
    if org_sharing_off {
        return Error::refused(
            share,
            format!(
                "AWS RAM refused the share ({}: {}). Sharing with AWS Organizations is off for this organization: turn it on once, from the management account, with `aws ram enable-sharing-with-aws-organization` (RAM console: Settings, \"Enable sharing with AWS Organizations\"); the next event or nightly run then shares the parameter",
                e.code, e.message
            ),
        );
    }
    e.into()
}
