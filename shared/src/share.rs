//! The sharing service: make an image's launch permissions, snapshot permissions and KMS
//! grants what the plan says. Used by on-image-available (source images), on-copy-complete
//! (copies, in their own Region) and the nightly sweeper (drift repair).
//!
//! Order of work: read and check everything first (snapshots, keys, organization listings,
//! current launch permissions), refuse before writing anything when a step is impossible; then
//! snapshot permissions and grants (concurrently, bounded); launch permissions last, so an
//! image only becomes visible to consumers once they can use it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;

use crate::config::{parse_org_arn, parse_ou_arn, Policy};
use crate::domain::names::{account_of_principal, account_principal, grant_name};
use crate::domain::plan::{batches, AccountTargets, SharePlan};
use crate::error::{AwsError, Error, Result};
use crate::ports::{Aws, GrantRequest, Image, KeyInfo, KeyManager, LaunchPermissions};

/// Most entities (accounts + organizations + OUs) an image can be shared with per Region.
pub const LAUNCH_PERMISSION_QUOTA: usize = 1000;
/// Most accounts one `ModifySnapshotAttribute` call may carry.
pub const SNAPSHOT_BATCH: usize = 500;

/// Tunables; the defaults are the production values, tests shrink the delays.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Delays between `DescribeImages` attempts while a just-announced image is not visible yet.
    pub visibility_retry_delays: Vec<Duration>,
    /// Most AWS calls in flight at once for independent work (snapshots, grants).
    pub concurrency: usize,
    /// How long Organizations listings are reused by a warm Lambda.
    pub org_cache_ttl: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            visibility_retry_delays: vec![
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(4),
            ],
            concurrency: 8,
            org_cache_ttl: Duration::from_secs(300),
        }
    }
}

/// What a warm Lambda remembers between invocations.
#[derive(Debug, Default)]
pub struct Caches {
    /// Organization / OU ARN → (when listed, active member accounts).
    org: Mutex<HashMap<String, (Instant, BTreeSet<String>)>>,
    /// The caller's organization id.
    org_id: Mutex<Option<(Instant, String)>>,
    /// (Region, key id as referenced) → key metadata. Who manages a key never changes.
    keys: Mutex<HashMap<(String, String), KeyInfo>>,
}

/// Everything a handler needs: the AWS ports, the policy, who we are, caches and tunables.
pub struct Deps<P> {
    pub aws: P,
    pub policy: Policy,
    /// The account the functions run in (owner of the images they manage).
    pub account_id: String,
    pub caches: Caches,
    pub settings: Settings,
}

impl<P: Aws> Deps<P> {
    pub fn new(aws: P, policy: Policy, account_id: impl Into<String>) -> Self {
        Self {
            aws,
            policy,
            account_id: account_id.into(),
            caches: Caches::default(),
            settings: Settings::default(),
        }
    }

    /// `DescribeImages`, retried with the configured delays while the image is not visible
    /// yet (it may not be, right after its event).
    pub async fn describe_image_eventually(
        &self,
        region: &str,
        image_id: &str,
    ) -> Result<Option<Image>> {
        let mut delays = self.settings.visibility_retry_delays.iter();
        loop {
            if let Some(image) = self.aws.describe_image(region, image_id).await? {
                return Ok(Some(image));
            }
            match delays.next() {
                Some(d) => {
                    tracing::info!(
                        image_id,
                        region,
                        delay_ms = d.as_millis() as u64,
                        "image not visible yet; retrying"
                    );
                    tokio::time::sleep(*d).await;
                }
                None => return Ok(None),
            }
        }
    }

    async fn organization_id(&self) -> Result<String> {
        if let Ok(guard) = self.caches.org_id.lock() {
            if let Some((at, id)) = guard.as_ref() {
                if at.elapsed() < self.settings.org_cache_ttl {
                    return Ok(id.clone());
                }
            }
        }
        let id = self.aws.organization_id().await?;
        if let Ok(mut guard) = self.caches.org_id.lock() {
            *guard = Some((Instant::now(), id.clone()));
        }
        Ok(id)
    }

    fn cached_members(&self, arn: &str) -> Option<BTreeSet<String>> {
        let guard = self.caches.org.lock().ok()?;
        let (at, accounts) = guard.get(arn)?;
        (at.elapsed() < self.settings.org_cache_ttl).then(|| accounts.clone())
    }

    fn remember_members(&self, arn: &str, accounts: &BTreeSet<String>) {
        if let Ok(mut guard) = self.caches.org.lock() {
            guard.insert(arn.to_string(), (Instant::now(), accounts.clone()));
        }
    }

    /// The ACTIVE accounts of an organization (must be the caller's own: only it can be
    /// listed) or of an OU and all OUs nested below it.
    pub async fn members(&self, arn: &str) -> Result<BTreeSet<String>> {
        if let Some(hit) = self.cached_members(arn) {
            return Ok(hit);
        }
        let accounts = if let Some(org) = parse_org_arn(arn) {
            let ours = self.organization_id().await?;
            if ours != org {
                return Err(Error::refused(
                    arn,
                    format!(
                        "this account's organization is {ours}, so the accounts of {org} cannot be listed; \
                         snapshots and KMS keys can only be shared with listed accounts. List that \
                         organization's accounts under share_with.accounts, or set share_snapshots and \
                         grant_kms to false for this rule"
                    ),
                ));
            }
            let all = self.aws.all_accounts().await?;
            all.into_iter()
                .filter(|a| a.is_active())
                .map(|a| a.id)
                .collect()
        } else if let Some((_, ou)) = parse_ou_arn(arn) {
            let mut found = BTreeSet::new();
            let mut level = vec![ou.to_string()];
            while !level.is_empty() {
                let listed: Vec<(Vec<crate::ports::OrgAccount>, Vec<String>)> =
                    stream::iter(level.iter())
                        .map(|parent| async move {
                            let (accounts, children) = futures::try_join!(
                                self.aws.accounts_for_parent(parent),
                                self.aws.child_ous(parent)
                            )?;
                            Ok::<_, AwsError>((accounts, children))
                        })
                        .buffer_unordered(self.settings.concurrency)
                        .try_collect()
                        .await?;
                level = Vec::new();
                for (accounts, children) in listed {
                    found.extend(accounts.into_iter().filter(|a| a.is_active()).map(|a| a.id));
                    level.extend(children);
                }
            }
            found
        } else {
            return Err(Error::Config(format!(
                "{arn:?} is neither an organization nor an OU ARN"
            )));
        };
        self.remember_members(arn, &accounts);
        Ok(accounts)
    }

    /// Plain accounts plus the active members of every organization and OU, without `self`.
    pub async fn expand(&self, targets: &AccountTargets) -> Result<BTreeSet<String>> {
        let members = self
            .members_of(
                targets
                    .organizations
                    .iter()
                    .chain(targets.organizational_units.iter()),
            )
            .await?;
        Ok(self.accounts_of(targets, &members))
    }

    /// The members of each organization / OU ARN, each listed once.
    pub async fn members_of<'a>(
        &self,
        arns: impl IntoIterator<Item = &'a String>,
    ) -> Result<BTreeMap<String, BTreeSet<String>>> {
        let mut out = BTreeMap::new();
        for arn in arns {
            if !out.contains_key(arn) {
                out.insert(arn.clone(), self.members(arn).await?);
            }
        }
        Ok(out)
    }

    fn accounts_of(
        &self,
        targets: &AccountTargets,
        members: &BTreeMap<String, BTreeSet<String>>,
    ) -> BTreeSet<String> {
        let mut out = targets.accounts.clone();
        for arn in targets
            .organizations
            .iter()
            .chain(targets.organizational_units.iter())
        {
            if let Some(m) = members.get(arn) {
                out.extend(m.iter().cloned());
            }
        }
        out.remove(&self.account_id);
        out
    }

    /// `DescribeKey`, remembered for the life of the warm Lambda.
    pub async fn key_info(&self, region: &str, key_id: &str) -> Result<KeyInfo> {
        let cache_key = (region.to_string(), key_id.to_string());
        if let Some(hit) = self
            .caches
            .keys
            .lock()
            .ok()
            .and_then(|g| g.get(&cache_key).cloned())
        {
            return Ok(hit);
        }
        let info = self.aws.describe_key(region, key_id).await?;
        if let Ok(mut g) = self.caches.keys.lock() {
            g.insert(cache_key, info.clone());
        }
        Ok(info)
    }

    /// The keys encrypting the image's snapshots (one `DescribeSnapshots`, one `DescribeKey`
    /// per distinct key not seen before).
    pub async fn encryption(&self, image: &Image) -> Result<Encryption> {
        let mut enc = Encryption::default();
        if !image.is_encrypted() {
            return Ok(enc);
        }
        let ids = snapshot_ids(image);
        let snaps = self.aws.describe_snapshots(&image.region, &ids).await?;
        let key_ids: BTreeSet<String> = snaps.iter().filter_map(|s| s.kms_key_id.clone()).collect();
        for key_id in key_ids {
            let info = self.key_info(&image.region, &key_id).await?;
            match info.manager {
                KeyManager::Aws => enc.aws_managed.push(info),
                KeyManager::Customer => enc.customer.push(info),
            }
        }
        Ok(enc)
    }

    /// Bring the image's sharing up to the plan: see the module documentation for the order.
    /// `enc` comes from [`Deps::encryption`]; images encrypted with `aws/ebs` are refused here
    /// (the caller decides whether a re-encrypted copy is made instead).
    pub async fn apply_sharing(
        &self,
        image: &Image,
        plan: &SharePlan,
        enc: &Encryption,
    ) -> Result<ShareReport> {
        let region = image.region.as_str();
        if let Some(key) = enc.aws_managed.first() {
            if plan.shares_anything() {
                return Err(Error::refused(
                    &image.id,
                    aws_managed_message(image, &key.arn),
                ));
            }
        }
        if plan.launch.public {
            if image.is_encrypted() {
                return Err(Error::refused(&image.id, "encrypted images cannot be made public; remove share_with.public from the rule or share an unencrypted image"));
            }
            if self.aws.public_sharing_blocked(region).await? {
                return Err(Error::refused(
                    &image.id,
                    format!("image block public access is on in {region}, so a public share would fail; turn it off (ec2 disable-image-block-public-access) or remove share_with.public from the rule"),
                ));
            }
        }

        // Reads and checks.
        let snapshots = snapshot_ids(image);
        let empty = AccountTargets::default();
        let snapshot_targets = if snapshots.is_empty() {
            &empty
        } else {
            &plan.snapshots
        };
        let grant_targets = if enc.customer.is_empty() {
            &empty
        } else {
            &plan.kms
        };
        // Each organization / OU is listed once, whichever of the two needs it.
        let members = self
            .members_of(
                [snapshot_targets, grant_targets]
                    .into_iter()
                    .flat_map(|t| t.organizations.iter().chain(t.organizational_units.iter())),
            )
            .await?;
        let snapshot_accounts = self.accounts_of(snapshot_targets, &members);
        let grant_accounts = self.accounts_of(grant_targets, &members);
        let current = self.aws.launch_permissions(region, &image.id).await?;
        let mut wanted = plan.launch.clone();
        wanted.accounts.remove(&self.account_id);
        let add = wanted.missing_from(&current);
        let total = current.len() + add.len();
        if total > LAUNCH_PERMISSION_QUOTA {
            return Err(Error::refused(
                &image.id,
                format!("sharing would give the image {total} launch permission entities, over the quota of {LAUNCH_PERMISSION_QUOTA} per image and Region; share with organizations or OUs instead of single accounts"),
            ));
        }

        // Writes: snapshots and grants first, launch permissions last.
        let snapshot_work = async {
            let calls: Vec<(String, Vec<String>)> = snapshots
                .iter()
                .flat_map(|s| {
                    batches(&snapshot_accounts, SNAPSHOT_BATCH)
                        .into_iter()
                        .map(move |b| (s.clone(), b))
                })
                .collect();
            stream::iter(calls)
                .map(|(snap, batch)| async move {
                    self.aws
                        .add_create_volume_permission(region, &snap, &batch)
                        .await?;
                    Ok::<_, Error>(())
                })
                .buffer_unordered(self.settings.concurrency)
                .try_collect::<Vec<()>>()
                .await
        };
        let grant_work = async {
            let mut created = Vec::new();
            let mut existing = 0usize;
            for key in &enc.customer {
                let (new, old) = self
                    .ensure_grants(region, &key.arn, &grant_accounts)
                    .await?;
                created.extend(new.into_iter().map(|account| GrantRecord {
                    key_arn: key.arn.clone(),
                    account,
                }));
                existing += old;
            }
            Ok::<_, Error>((created, existing))
        };
        let (_, (grants_created, grants_existing)) = futures::try_join!(snapshot_work, grant_work)?;
        if !add.is_empty() {
            self.aws
                .add_launch_permissions(region, &image.id, &add)
                .await?;
        }
        Ok(ShareReport {
            launch_permissions_added: add,
            snapshots_shared: snapshots
                .iter()
                .map(|s| SnapshotShare {
                    snapshot_id: s.clone(),
                    accounts: snapshot_accounts.len(),
                })
                .filter(|s| s.accounts > 0)
                .collect(),
            grants_created,
            grants_existing,
        })
    }

    /// One grant per account on the key, named deterministically; returns (created, already there).
    pub async fn ensure_grants(
        &self,
        region: &str,
        key_arn: &str,
        accounts: &BTreeSet<String>,
    ) -> Result<(Vec<String>, usize)> {
        if accounts.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let grants = self.aws.list_grants(region, key_arn).await?;
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
        stream::iter(missing.iter())
            .map(|account| async move {
                let req = GrantRequest {
                    key_arn: key_arn.to_string(),
                    grantee_principal: account_principal(account),
                    name: grant_name(account),
                };
                self.aws.create_grant(region, &req).await?;
                Ok::<_, Error>(())
            })
            .buffer_unordered(self.settings.concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        Ok((missing, existing))
    }
}

/// The message for an image whose snapshots use `aws/ebs`.
pub fn aws_managed_message(image: &Image, key_arn: &str) -> String {
    format!(
        "the snapshots of {} are encrypted with the AWS managed key aws/ebs ({key_arn}), which cannot be shared with other accounts. \
         Add \"reencrypt_with\": {{\"{}\": \"<customer managed key ARN or alias>\"}} to the policy so that ami-share makes and shares a \
         re-encrypted copy, or rebuild the image with a customer managed key",
        image.id, image.region
    )
}

/// The distinct snapshot ids of an image's EBS volumes, in device order.
pub fn snapshot_ids(image: &Image) -> Vec<String> {
    let mut seen = BTreeSet::new();
    image
        .volumes
        .iter()
        .filter(|v| seen.insert(v.snapshot_id.clone()))
        .map(|v| v.snapshot_id.clone())
        .collect()
}

/// The keys encrypting an image's snapshots, by who manages them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Encryption {
    pub customer: Vec<KeyInfo>,
    pub aws_managed: Vec<KeyInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotShare {
    pub snapshot_id: String,
    /// Accounts the snapshot was shared with (added, or confirmed: adding is idempotent).
    pub accounts: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantRecord {
    pub key_arn: String,
    pub account: String,
}

/// What [`Deps::apply_sharing`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShareReport {
    pub launch_permissions_added: LaunchPermissions,
    pub snapshots_shared: Vec<SnapshotShare>,
    pub grants_created: Vec<GrantRecord>,
    pub grants_existing: usize,
}

/// Tags as a map (helper for reports and tests).
pub fn tag_map<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
