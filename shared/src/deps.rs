//! The wiring every function shares: the AWS ports, the policy, who we are, what a warm Lambda
//! remembers (organization listings, key metadata) and the lookups over them. The behaviour
//! lives in the services named for their job: [`crate::converge`] brings an image to its
//! desired state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;

use crate::config::{parse_org_arn, parse_ou_arn, Policy};
use crate::error::{AwsError, Error, Result};
use crate::ports::{Aws, Image, KeyInfo, KeyManager};

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
    /// How long a consumer account's Allowed AMIs, once read, are reused by a warm Lambda
    /// (longer than an invocation: each account is read at most once per invocation).
    pub consumer_cache_ttl: Duration,
    /// Most `CreateGrant` calls in flight for one key: KMS allows 50 a second per account
    /// and Region, so the grants of a 50-account share go out at once.
    pub grant_concurrency: usize,
    /// Most copies into target accounts (`copy_into`: account × Region) one event starts; the
    /// rest are `deferred` to the night, which follows every target. Bounds an event's work
    /// (three calls a target) well inside the functions' timeout however large the OUs.
    pub target_copies_per_event: usize,
    /// Most calls in flight into target accounts (`copy_into`): each target account has its
    /// own EC2 request buckets, so these run wider than the publisher's own calls.
    pub target_concurrency: usize,
    /// The KMS HMAC key the sweeper's marks are signed with ([`crate::marks`]): the stack's
    /// `MarkKey` (`AMI_SHARE_MARK_KEY_ID`); locally the alias [`DEFAULT_MARK_KEY`].
    pub mark_key_id: String,
}

/// The marks' key where `AMI_SHARE_MARK_KEY_ID` is not set (local runs against an emulator
/// that holds an HMAC key under this alias).
pub const DEFAULT_MARK_KEY: &str = "alias/ami-share-marks";

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
            consumer_cache_ttl: Duration::from_secs(900),
            grant_concurrency: 50,
            target_copies_per_event: 500,
            target_concurrency: 32,
            mark_key_id: DEFAULT_MARK_KEY.to_string(),
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
    /// Account → (when checked, whether it is a member of this account's organization).
    membership: Mutex<HashMap<String, (Instant, bool)>>,
    /// The secret the marks are signed with, derived once (one `GenerateMac`).
    mark_key: Mutex<Option<crate::marks::MarkKey>>,
    /// (Region, key id as referenced) → key metadata. Who manages a key never changes.
    keys: Mutex<HashMap<(String, String), KeyInfo>>,
    /// (account, the Region of a read through its `copy_into` role, or none for its
    /// organization policy) → its Allowed AMIs, read once: concurrent readers wait for it.
    consumers: Mutex<HashMap<AllowedKey, Arc<AllowedCell>>>,
    /// Consumers' settings read since the invocation began (an event function's bound).
    consumer_reads: std::sync::atomic::AtomicUsize,
}

/// An account's Allowed AMIs as read (`Err`: why it could not be), and when.
pub type AllowedReading = std::result::Result<crate::allowed::Settings, String>;

/// (account, the Region of a read through its role, or none for its organization policy).
type AllowedKey = (String, Option<String>);

/// One account's reading, made once however many events ask for it at once.
pub type AllowedCell = tokio::sync::OnceCell<(Instant, AllowedReading)>;

/// Everything a handler needs: the AWS ports, the policy, who we are, caches and tunables.
pub struct Deps<P> {
    pub aws: P,
    pub policy: Policy,
    /// The account the functions run in (owner of the images they manage).
    pub account_id: String,
    pub caches: Caches,
    pub settings: Settings,
}

impl<P> Deps<P> {
    /// The same policy, account and settings over another port (the plan's recorder), with
    /// caches of its own.
    pub fn over<Q>(&self, aws: Q) -> Deps<Q> {
        Deps {
            aws,
            policy: self.policy.clone(),
            account_id: self.account_id.clone(),
            caches: Caches::default(),
            settings: self.settings.clone(),
        }
    }
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

    /// The secret the sweeper's marks are signed with: the MAC the marks' KMS HMAC key gives
    /// for [`crate::marks::DERIVATION_MESSAGE`], asked once per warm Lambda. Without it no mark
    /// is written or trusted (the caller reports the error and leaves its marks alone).
    pub async fn mark_key(&self, region: &str) -> Result<crate::marks::MarkKey> {
        if let Some(k) = self.caches.mark_key.lock().ok().and_then(|g| g.clone()) {
            return Ok(k);
        }
        let secret = self
            .aws
            .generate_mac(
                region,
                &self.settings.mark_key_id,
                crate::marks::DERIVATION_MESSAGE,
            )
            .await
            .map_err(|mut e| {
                e.message = format!(
                    "{}; the sweeper signs its marks with the KMS HMAC key {} (the stack's \
                     MarkKey, AMI_SHARE_MARK_KEY_ID) and needs kms:GenerateMac on it",
                    e.message, self.settings.mark_key_id
                );
                Error::from(e)
            })?;
        let key = crate::marks::MarkKey::from_secret(&secret);
        if let Ok(mut g) = self.caches.mark_key.lock() {
            *g = Some(key.clone());
        }
        Ok(key)
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

    /// The members of those organizations and OUs this warm Lambda has listed lately (no
    /// call is made).
    pub fn members_listed<'a>(
        &self,
        arns: impl IntoIterator<Item = &'a String>,
    ) -> BTreeMap<String, BTreeSet<String>> {
        arns.into_iter()
            .filter_map(|arn| Some((arn.clone(), self.cached_members(arn)?)))
            .collect()
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

    /// The accounts among `accounts` that are not members of this account's organization
    /// (Organizations `DescribeAccount`, each account checked once per warm Lambda and
    /// [`Settings::org_cache_ttl`]; this account itself is never checked).
    pub async fn outside_organization<'a>(
        &self,
        accounts: impl IntoIterator<Item = &'a String>,
    ) -> Result<BTreeSet<String>> {
        let distinct: BTreeSet<&String> = accounts
            .into_iter()
            .filter(|a| **a != self.account_id)
            .collect();
        let cached = |a: &str| -> Option<bool> {
            let guard = self.caches.membership.lock().ok()?;
            let (at, member) = guard.get(a)?;
            (at.elapsed() < self.settings.org_cache_ttl).then_some(*member)
        };
        let checked: Vec<(String, bool)> = stream::iter(distinct)
            .map(|a| async move {
                if let Some(member) = cached(a) {
                    return Ok::<_, Error>((a.clone(), member));
                }
                let member = self.aws.describe_account(a).await?.is_some();
                if let Ok(mut guard) = self.caches.membership.lock() {
                    guard.insert(a.clone(), (Instant::now(), member));
                }
                Ok((a.clone(), member))
            })
            .buffer_unordered(self.settings.concurrency)
            .try_collect()
            .await?;
        Ok(checked
            .into_iter()
            .filter(|(_, member)| !member)
            .map(|(a, _)| a)
            .collect())
    }

    /// Refuse plain accounts outside the organization unless the policy allows them
    /// (`allow_external_accounts`): checked before anything is shared, naming the accounts.
    pub async fn check_inside_organization<'a>(
        &self,
        subject: &str,
        accounts: impl IntoIterator<Item = &'a String>,
    ) -> Result<()> {
        if self.policy.allow_external_accounts {
            return Ok(());
        }
        let outside = self.outside_organization(accounts).await?;
        if outside.is_empty() {
            return Ok(());
        }
        let list: Vec<&str> = outside.iter().map(String::as_str).collect();
        Err(Error::refused(
            subject,
            format!(
                "account{} {} {} not a member of this account's organization, so nothing was shared: \
                 correct share_with.accounts / copy_into.accounts, or set \"allow_external_accounts\": true \
                 at the top of the policy to share outside the organization on purpose",
                if list.len() == 1 { "" } else { "s" },
                list.join(", "),
                if list.len() == 1 { "is" } else { "are" },
            ),
        ))
    }

    /// The members of each organization / OU ARN, each listed once, the ARNs concurrently
    /// (bounded).
    pub async fn members_of<'a>(
        &self,
        arns: impl IntoIterator<Item = &'a String>,
    ) -> Result<BTreeMap<String, BTreeSet<String>>> {
        let distinct: BTreeSet<&String> = arns.into_iter().collect();
        stream::iter(distinct)
            .map(|arn| async move { Ok::<_, Error>((arn.clone(), self.members(arn).await?)) })
            .buffer_unordered(self.settings.concurrency)
            .try_collect()
            .await
    }

    /// A new invocation begins (a Lambda runs one at a time): its bounds start afresh.
    pub fn begin_invocation(&self) {
        self.caches
            .consumer_reads
            .store(0, std::sync::atomic::Ordering::SeqCst);
    }

    /// Take one of the invocation's `budget` consumer reads; `false` when none is left.
    pub fn take_consumer_read(&self, budget: usize) -> bool {
        self.caches
            .consumer_reads
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| (n < budget).then_some(n + 1),
            )
            .is_ok()
    }

    /// The cell an account's Allowed AMIs reading lives in (`region`: read through its
    /// `copy_into` role there): readers of the same account wait for one read. A reading
    /// older than `consumer_cache_ttl` is replaced by an empty cell.
    pub fn allowed_cell(&self, account: &str, region: Option<&str>) -> Arc<AllowedCell> {
        let key = (account.to_string(), region.map(str::to_string));
        let Ok(mut guard) = self.caches.consumers.lock() else {
            return Arc::new(AllowedCell::new());
        };
        if let Some(cell) = guard.get(&key) {
            let fresh = cell
                .get()
                .is_none_or(|(at, _)| at.elapsed() < self.settings.consumer_cache_ttl);
            if fresh {
                return cell.clone();
            }
        }
        let cell = Arc::new(AllowedCell::new());
        guard.insert(key, cell.clone());
        cell
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
        if !image.is_encrypted() {
            return Ok(Encryption::default());
        }
        let ids = snapshot_ids(image);
        let snaps = self.aws.describe_snapshots(&image.region, &ids).await?;
        let key_ids: BTreeSet<String> = snaps.iter().filter_map(|s| s.kms_key_id.clone()).collect();
        self.encryption_by_keys(&image.region, key_ids).await
    }

    /// The same, from key ids already known (the sweeper's snapshot listing carries them).
    pub async fn encryption_by_keys(
        &self,
        region: &str,
        key_ids: impl IntoIterator<Item = String>,
    ) -> Result<Encryption> {
        let distinct: BTreeSet<String> = key_ids.into_iter().collect();
        let infos: Vec<KeyInfo> = stream::iter(distinct)
            .map(|key_id| async move { self.key_info(region, &key_id).await })
            .buffered(self.settings.concurrency)
            .try_collect()
            .await?;
        let mut enc = Encryption::default();
        for info in infos {
            match info.manager {
                KeyManager::Aws => enc.aws_managed.push(info),
                KeyManager::Customer => enc.customer.push(info),
            }
        }
        Ok(enc)
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

/// Tags as a map (helper for reports and tests).
pub fn tag_map<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
