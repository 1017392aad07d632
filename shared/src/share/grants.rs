//! Key access of a convergence: each key's grants read once per service, one grant per
//! account, named deterministically, never created twice; and, for organizations and OUs under
//! `kms_access: key_policy`, each key's policy read once per service and checked.
//!
//! The event path does not page through a key's grants when it can avoid it: once it has made
//! sure every account of a set holds its grant, it records the set's fingerprint on the key
//! ([`GRANTS_TAG`], a receipt). The next event of an image with the same accounts reads that one
//! tag (`ListResourceTags`) instead of every grant of the key (5,000 grants are 50 `ListGrants`
//! pages). The night never trusts the receipt: it reads the grants, repairs them, and removes
//! the receipt from a key whose grants it revoked (docs/critical-path.md).

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::stream::{self, StreamExt, TryStreamExt};

use super::key_policy::{self, OrgTarget};
use super::Convergence;
use crate::deps::Encryption;
use crate::error::{Error, Result};
use crate::names::{
    account_of_principal, account_principal, grant_name, grant_set_fingerprint, GRANTS_TAG,
    GRANT_RECEIPTS,
};
use crate::plan::SharePlan;
use crate::ports::{Aws, Grant, GrantRequest, Image};

/// One value per (Region, key ARN), read at most once per convergence service: concurrent
/// readers of the same key wait for the first one's call.
pub(super) struct ReadOnce<T>(Mutex<HashMap<(String, String), Slot<T>>>);

type Slot<T> = Arc<tokio::sync::Mutex<Option<T>>>;

impl<T: Clone> Default for ReadOnce<T> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<T: Clone> ReadOnce<T> {
    fn slot(&self, region: &str, key_arn: &str) -> Slot<T> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((region.to_string(), key_arn.to_string()))
            .or_default()
            .clone()
    }

    async fn get<F, Fut>(&self, region: &str, key_arn: &str, read: F) -> Result<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let slot = self.slot(region, key_arn);
        let mut guard = slot.lock().await;
        if let Some(v) = guard.as_ref() {
            return Ok(v.clone());
        }
        let v = read().await?;
        *guard = Some(v.clone());
        Ok(v)
    }
}

/// What a convergence knows of each key: its grants, its policy, its grant receipts, each read
/// at most once. The event functions share one for all the events of an invocation (a batch
/// from their queue), so the images of one key read its grants once; the night has one.
#[derive(Default)]
pub struct KeyState {
    grants: ReadOnce<Vec<Grant>>,
    key_policies: ReadOnce<String>,
    receipts: ReadOnce<Vec<String>>,
}

/// What making sure of a key's grants did.
pub(super) struct Ensured {
    /// Accounts whose grant was created.
    pub created: Vec<String>,
    /// Accounts that held theirs already.
    pub existing: usize,
    /// The receipt to leave on the key (the event path, after a full pass): the tag's new value.
    pub receipt: Option<String>,
}

impl<P: Aws> Convergence<'_, P> {
    /// Among an image's reads, for each customer managed key of `enc`: the grant receipts (the
    /// event path) or the grants (the night) when accounts are to get grants, and the key
    /// policy when organizations or OUs reach the key through it (a key that does not admit
    /// them refuses the image before anything is written).
    pub(super) async fn read_key_access(
        &self,
        image: &Image,
        plan: &SharePlan,
        enc: &Encryption,
    ) -> Result<()> {
        if !image.is_encrypted() {
            return Ok(());
        }
        let region = image.region.as_str();
        let by_policy: BTreeSet<String> = plan.kms_policy.groups().cloned().collect();
        let wants_grants = !plan.kms.is_empty();
        let by_policy = &by_policy;
        stream::iter(&enc.customer)
            .map(|k| async move {
                let grants = async {
                    if wants_grants && self.trusts_receipts {
                        self.grant_receipts(region, &k.arn).await?;
                    } else if wants_grants {
                        self.grants(region, &k.arn).await?;
                    }
                    Ok::<_, Error>(())
                };
                futures::try_join!(grants, self.check_key_policy(region, &k.arn, by_policy))?;
                Ok::<_, Error>(())
            })
            .buffer_unordered(self.deps.settings.concurrency)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }

    /// The key's grants (`ListGrants` once per run).
    pub async fn grants(&self, region: &str, key_arn: &str) -> Result<Vec<Grant>> {
        self.keys
            .grants
            .get(region, key_arn, || async {
                Ok(self.deps.aws.list_grants(region, key_arn).await?)
            })
            .await
    }

    /// The receipts on the key (`ListResourceTags` once per run): fingerprints of the account
    /// sets whose grants were all made.
    pub(super) async fn grant_receipts(&self, region: &str, key_arn: &str) -> Result<Vec<String>> {
        self.keys
            .receipts
            .get(region, key_arn, || async {
                let tag = self.deps.aws.key_tag(region, key_arn, GRANTS_TAG).await?;
                Ok(tag
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_string)
                    .collect())
            })
            .await
    }

    /// The key's policy document (`GetKeyPolicy` once per service).
    async fn key_policy_document(&self, region: &str, key_arn: &str) -> Result<String> {
        self.keys
            .key_policies
            .get(region, key_arn, || async {
                Ok(self.deps.aws.key_policy(region, key_arn).await?)
            })
            .await
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

    /// One grant per account on the key, named deterministically. On the event path a
    /// receipt on the key for exactly these accounts answers without reading the grants, and a
    /// full pass returns the receipt to leave ([`Convergence::leave_receipt`], once the caller's
    /// other writes are under way).
    pub(super) async fn ensure_grants(
        &self,
        region: &str,
        key_arn: &str,
        accounts: &BTreeSet<String>,
    ) -> Result<Ensured> {
        let mut out = Ensured {
            created: Vec::new(),
            existing: 0,
            receipt: None,
        };
        if accounts.is_empty() {
            return Ok(out);
        }
        let receipt = grant_set_fingerprint(accounts);
        if self.trusts_receipts {
            let old = self.grant_receipts(region, key_arn).await?;
            if old.contains(&receipt) {
                out.existing = accounts.len();
                return Ok(out);
            }
            let mut list: Vec<String> = old.into_iter().filter(|r| *r != receipt).collect();
            list.insert(0, receipt);
            list.truncate(GRANT_RECEIPTS);
            out.receipt = Some(list.join(" "));
        }
        let slot = self.keys.grants.slot(region, key_arn);
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
        out.created = missing;
        out.existing = existing;
        Ok(out)
    }

    /// Record on the key that the grants of an account set are all there: `value` is the
    /// receipts, newest first, the oldest dropped past [`GRANT_RECEIPTS`].
    pub(super) async fn leave_receipt(
        &self,
        region: &str,
        key_arn: &str,
        value: &str,
    ) -> Result<()> {
        let list: Vec<String> = value.split_whitespace().map(str::to_string).collect();
        let slot = self.keys.receipts.slot(region, key_arn);
        let mut known = slot.lock().await;
        // Another event of the invocation left the same receipt already.
        if known.as_ref().and_then(|k| k.first()) == list.first() {
            return Ok(());
        }
        self.deps
            .aws
            .set_key_tag(region, key_arn, GRANTS_TAG, value)
            .await?;
        *known = Some(list);
        Ok(())
    }
}
