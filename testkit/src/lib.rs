//! A faithful in-memory double of the AWS ports, for handler tests (and the copy and sweeper
//! work). It models what the local emulator does not: several snapshots per image, encrypted
//! snapshots and `aws/ebs` vs customer managed keys, pagination (every listing page is a call,
//! and can fail), suspended accounts and nested OUs, per-call failure injection, KMS grant-name
//! idempotency, `CopyImage` client tokens, the 500-account limit of `ModifySnapshotAttribute`,
//! images that are not visible right after their event.
//!
//! A dev-only crate: the product never links it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use amishare::error::AwsError;
use amishare::ports::*;

mod images;
pub mod inventory;
mod keys;
pub mod line;
mod org;
pub mod publish;
pub mod retire;
mod snapshots;
pub mod targets;

/// Account the double's images belong to unless told otherwise.
pub const OWN_ACCOUNT: &str = "123456789012";

#[derive(Debug, Clone)]
pub struct FakeImage {
    pub image: Image,
    pub launch: LaunchPermissions,
    /// The client token it was copied with.
    pub client_token: Option<String>,
    /// For copies: the request that made it.
    pub copied_from: Option<CopyRequest>,
}

#[derive(Debug, Clone)]
pub struct FakeSnapshot {
    pub snapshot: Snapshot,
    pub permissions: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct FakeKey {
    pub info: KeyInfo,
    pub region: String,
    pub aliases: Vec<String>,
    pub grants: Vec<Grant>,
    /// The key policy document (`GetKeyPolicy`); a new key's lets only its account use it.
    pub policy: String,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub struct FakeOrg {
    pub id: String,
    pub root_id: String,
    /// OU id → parent id.
    pub ous: BTreeMap<String, String>,
    /// account id → (parent id, status).
    pub accounts: BTreeMap<String, (String, String)>,
}

#[derive(Debug, Clone)]
struct Failure {
    op: String,
    skip: usize,
    times: usize,
    code: String,
}

/// The whole simulated world. Public so tests can look at (and change) anything.
#[derive(Debug, Default)]
pub struct World {
    /// (Region, image id) → image.
    pub images: BTreeMap<(String, String), FakeImage>,
    /// (Region, snapshot id) → snapshot.
    pub snapshots: BTreeMap<(String, String), FakeSnapshot>,
    /// key ARN → key.
    pub keys: BTreeMap<String, FakeKey>,
    pub org: Option<FakeOrg>,
    /// Accounts outside the organization (`DescribeAccount` does not find them). Every other
    /// account a test names but does not place with [`FakeAws::add_account`] is taken for a
    /// member in a part of the organization the test does not model: `DescribeAccount` finds
    /// it (ACTIVE), the listings do not show it.
    pub outside_org: BTreeSet<String>,
    /// Account → its effective EC2 declarative policy (`DescribeEffectivePolicy`).
    pub declarative_policies: BTreeMap<String, String>,
    /// (account, Region) → its own Allowed AMIs settings (`GetAllowedImagesSettings`, through
    /// the target role).
    pub allowed_images: BTreeMap<(String, String), amishare::allowed::Settings>,
    /// Regions where image block public access is on.
    pub public_blocked: BTreeSet<String>,
    /// Every call made, in order, as `service:Operation`.
    pub calls: Vec<String>,
    /// Items per page of every listing.
    pub page_size: usize,
    /// image id → how many more `DescribeImages` calls it stays invisible for.
    pub invisible_for: BTreeMap<String, usize>,
    /// What the sweeper's inventory sees beyond images and snapshots (see
    /// `inventory`).
    pub inventory: crate::inventory::FakeInventory,
    /// The most resource ids one `CreateTags` / `DeleteTags` call carried.
    pub largest_tag_batch: usize,
    /// Parameter Store, AWS RAM and EventBridge (see `publish`).
    pub publishing: crate::publish::FakePublishing,
    /// Image references, usage reports (see `retire`).
    pub retirement: crate::retire::FakeRetirement,
    /// The target accounts of `copy_into` (see `targets`).
    pub targets: crate::targets::FakeTargets,
    /// The copies' waiting lines and EC2's copy cap (see `line`).
    pub lines: crate::line::FakeLines,
    failures: Vec<Failure>,
    next_id: u64,
}

/// The double. Cheap to share behind `&`.
#[derive(Debug)]
pub struct FakeAws {
    world: Mutex<World>,
}

impl Default for FakeAws {
    fn default() -> Self {
        Self::new()
    }
}

/// What [`FakeAws::create_image`] makes.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub region: String,
    pub name: String,
    pub owner: String,
    pub state: ImageState,
    pub tags: BTreeMap<String, String>,
    pub snapshots: usize,
    /// Encrypt every snapshot with this key ARN (cycled through when several are given).
    pub keys: Vec<String>,
    pub source: Option<(String, String)>,
    /// `CreationDate`; default `2026-11-21T10:00:00.000Z`.
    pub created: Option<String>,
}

impl ImageSpec {
    pub fn new(region: &str, name: &str) -> Self {
        Self {
            region: region.into(),
            name: name.into(),
            owner: OWN_ACCOUNT.into(),
            state: ImageState::Available,
            tags: BTreeMap::new(),
            snapshots: 1,
            keys: Vec::new(),
            source: None,
            created: None,
        }
    }
    pub fn created(mut self, date: &str) -> Self {
        self.created = Some(date.into());
        self
    }
    pub fn tag(mut self, k: &str, v: &str) -> Self {
        self.tags.insert(k.into(), v.into());
        self
    }
    pub fn snapshots(mut self, n: usize) -> Self {
        self.snapshots = n;
        self
    }
    pub fn encrypted_with(mut self, keys: &[&str]) -> Self {
        self.keys = keys.iter().map(|k| k.to_string()).collect();
        self
    }
    pub fn owner(mut self, owner: &str) -> Self {
        self.owner = owner.into();
        self
    }
    pub fn state(mut self, state: ImageState) -> Self {
        self.state = state;
        self
    }
    pub fn copied_from(mut self, region: &str, image_id: &str) -> Self {
        self.source = Some((region.into(), image_id.into()));
        self
    }
}

impl FakeAws {
    pub fn new() -> Self {
        Self {
            world: Mutex::new(World {
                page_size: 2,
                ..World::default()
            }),
        }
    }

    /// Direct access to the simulated world.
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Calls made so far, per `service:Operation` (pages count one each).
    pub fn call_counts(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for c in &self.world().calls {
            *m.entry(c.clone()).or_insert(0) += 1;
        }
        m
    }

    /// Calls made so far to one service.
    pub fn calls_to(&self, service: &str) -> usize {
        self.world()
            .calls
            .iter()
            .filter(|c| c.starts_with(&format!("{service}:")))
            .count()
    }

    pub fn reset_calls(&self) {
        self.world().calls.clear();
    }

    /// Make the next `times` calls of `op` (`service:Operation`) fail with `code`, after letting
    /// `skip` calls of it through.
    pub fn fail(&self, op: &str, code: &str, skip: usize, times: usize) {
        self.world().failures.push(Failure {
            op: op.into(),
            skip,
            times,
            code: code.into(),
        });
    }

    pub fn create_key(&self, region: &str, manager: KeyManager) -> String {
        let mut w = self.world();
        w.next_id += 1;
        let id = format!("{:08x}-0000-4000-8000-{:012x}", w.next_id, w.next_id);
        let arn = format!("arn:aws:kms:{region}:{OWN_ACCOUNT}:key/{id}");
        w.keys.insert(
            arn.clone(),
            FakeKey {
                info: KeyInfo {
                    arn: arn.clone(),
                    manager,
                    enabled: true,
                },
                region: region.into(),
                aliases: Vec::new(),
                grants: Vec::new(),
                policy: default_key_policy(),
                tags: BTreeMap::new(),
            },
        );
        arn
    }

    /// The key's tags.
    pub fn key_tags(&self, key_arn: &str) -> BTreeMap<String, String> {
        self.world()
            .keys
            .get(key_arn)
            .map(|k| k.tags.clone())
            .unwrap_or_default()
    }

    /// Revoke a grant by hand (as an administrator would, outside the product).
    pub fn revoke_by_hand(&self, key_arn: &str, account: &str) {
        if let Some(k) = self.world().keys.get_mut(key_arn) {
            k.grants.retain(|g| {
                amishare::names::account_of_principal(&g.grantee_principal) != Some(account)
            });
        }
    }

    /// Replace the key's policy document (`PutKeyPolicy` by the key's administrators).
    pub fn set_key_policy(&self, key_arn: &str, document: &str) {
        if let Some(k) = self.world().keys.get_mut(key_arn) {
            k.policy = document.into();
        }
    }

    pub fn create_alias(&self, key_arn: &str, alias: &str) {
        if let Some(k) = self.world().keys.get_mut(key_arn) {
            k.aliases.push(alias.into());
        }
    }

    /// Grants on a key, as (name, grantee account).
    pub fn grants(&self, key_arn: &str) -> Vec<(Option<String>, String)> {
        self.world()
            .keys
            .get(key_arn)
            .map(|k| {
                k.grants
                    .iter()
                    .map(|g| {
                        (
                            g.name.clone(),
                            amishare::names::account_of_principal(&g.grantee_principal)
                                .unwrap_or("")
                                .to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn create_image(&self, spec: ImageSpec) -> Image {
        let mut w = self.world();
        let mut volumes = Vec::new();
        for i in 0..spec.snapshots {
            w.next_id += 1;
            let sid = format!("snap-{:017x}", w.next_id);
            let key = (!spec.keys.is_empty()).then(|| spec.keys[i % spec.keys.len()].clone());
            volumes.push(EbsVolume {
                device_name: format!("/dev/sd{}", (b'a' + i as u8) as char),
                snapshot_id: sid.clone(),
                encrypted: key.is_some(),
            });
            w.snapshots.insert(
                (spec.region.clone(), sid.clone()),
                FakeSnapshot {
                    snapshot: Snapshot {
                        id: sid,
                        encrypted: key.is_some(),
                        kms_key_id: key,
                        description: String::new(),
                    },
                    permissions: BTreeSet::new(),
                },
            );
        }
        w.next_id += 1;
        let image = Image {
            id: format!("ami-{:017x}", w.next_id),
            region: spec.region.clone(),
            name: spec.name,
            owner_id: spec.owner,
            state: spec.state,
            tags: spec.tags,
            volumes,
            source_image_region: spec.source.as_ref().map(|s| s.0.clone()),
            source_image_id: spec.source.map(|s| s.1),
            deprecation_time: None,
            creation_date: Some(
                spec.created
                    .unwrap_or_else(|| "2026-11-21T10:00:00.000Z".into()),
            ),
            last_launched_time: None,
            deregistration_protection: None,
            verified_source_created: None,
            watermarks: Vec::new(),
        };
        w.images.insert(
            (image.region.clone(), image.id.clone()),
            FakeImage {
                image: image.clone(),
                launch: LaunchPermissions::default(),
                client_token: None,
                copied_from: None,
            },
        );
        image
    }

    pub fn image(&self, region: &str, id: &str) -> Option<FakeImage> {
        self.world()
            .images
            .get(&(region.to_string(), id.to_string()))
            .cloned()
    }

    pub fn snapshot_permissions(&self, region: &str, id: &str) -> BTreeSet<String> {
        self.world()
            .snapshots
            .get(&(region.to_string(), id.to_string()))
            .map(|s| s.permissions.clone())
            .unwrap_or_default()
    }

    /// Start an organization with this id; returns its root id.
    pub fn create_org(&self, org_id: &str) -> String {
        let root = "r-ab12".to_string();
        self.world().org = Some(FakeOrg {
            id: org_id.into(),
            root_id: root.clone(),
            ..FakeOrg::default()
        });
        root
    }

    /// Declare accounts outside the organization (see [`World::outside_org`]).
    pub fn set_outside_organization(&self, accounts: &[&str]) {
        self.world()
            .outside_org
            .extend(accounts.iter().map(|a| a.to_string()));
    }

    pub fn add_ou(&self, parent: &str, ou_id: &str) {
        if let Some(o) = self.world().org.as_mut() {
            o.ous.insert(ou_id.into(), parent.into());
        }
    }

    pub fn add_account(&self, parent: &str, account: &str, status: &str) {
        if let Some(o) = self.world().org.as_mut() {
            o.accounts
                .insert(account.into(), (parent.into(), status.into()));
        }
    }

    /// Finish a pending copy: it becomes available, with snapshots encrypted as requested.
    pub fn complete_copy(&self, region: &str, image_id: &str) {
        let mut w = self.world();
        let Some(fi) = w
            .images
            .get(&(region.to_string(), image_id.to_string()))
            .cloned()
        else {
            return;
        };
        let key = fi
            .copied_from
            .as_ref()
            .and_then(|r| r.kms_key_id.clone())
            .and_then(|k| resolve_key(&w, region, &k));
        let mut volumes = Vec::new();
        let source_snaps: Vec<EbsVolume> = fi
            .copied_from
            .as_ref()
            .and_then(|r| {
                w.images
                    .get(&(r.source_region.clone(), r.source_image_id.clone()))
            })
            .map(|s| s.image.volumes.clone())
            .unwrap_or_default();
        for v in source_snaps {
            w.next_id += 1;
            let sid = format!("snap-{:017x}", w.next_id);
            let src_key = w
                .snapshots
                .values()
                .find(|s| s.snapshot.id == v.snapshot_id)
                .and_then(|s| s.snapshot.kms_key_id.clone());
            let k = key.clone().or(src_key);
            volumes.push(EbsVolume {
                device_name: v.device_name,
                snapshot_id: sid.clone(),
                encrypted: k.is_some(),
            });
            w.snapshots.insert(
                (region.to_string(), sid.clone()),
                FakeSnapshot {
                    snapshot: Snapshot {
                        id: sid,
                        encrypted: k.is_some(),
                        kms_key_id: k,
                        description: String::new(),
                    },
                    permissions: BTreeSet::new(),
                },
            );
        }
        if let Some(img) = w
            .images
            .get_mut(&(region.to_string(), image_id.to_string()))
        {
            img.image.state = ImageState::Available;
            img.image.volumes = volumes;
        }
    }

    pub(crate) fn call(&self, op: &str) -> Result<(), AwsError> {
        let mut w = self.world();
        w.calls.push(op.to_string());
        for f in w.failures.iter_mut().filter(|f| f.op == op) {
            if f.skip > 0 {
                f.skip -= 1;
                return Ok(());
            }
            if f.times > 0 {
                f.times -= 1;
                let (service, operation) = op.split_once(':').unwrap_or(("fake", op));
                return Err(AwsError::new(
                    leak(service),
                    leak(operation),
                    f.code.clone(),
                    "injected by the test",
                    "fake",
                ));
            }
        }
        Ok(())
    }

    /// A listing: one call per page (at least one).
    pub(crate) fn list<T: Clone>(&self, op: &str, items: Vec<T>) -> Result<Vec<T>, AwsError> {
        let page = self.world().page_size.max(1);
        let pages = items.len().div_ceil(page).max(1);
        for _ in 0..pages {
            self.call(op)?;
        }
        Ok(items)
    }
}

pub(crate) fn leak(s: &str) -> &'static str {
    match s {
        "ec2" => "ec2",
        "kms" => "kms",
        "organizations" => "organizations",
        "autoscaling" => "autoscaling",
        "ssm" => "ssm",
        "ram" => "ram",
        "events" => "events",
        _ => "fake",
    }
}

impl World {
    /// EC2 takes at most 1,000 resource ids per `CreateTags` / `DeleteTags`; remembers the
    /// largest batch seen.
    fn check_tag_batch(&mut self, op: &'static str, ids: &[String]) -> AwsResult<()> {
        self.largest_tag_batch = self.largest_tag_batch.max(ids.len());
        if ids.is_empty() || ids.len() > amishare::ports::MAX_TAG_RESOURCES {
            return Err(err(
                "ec2",
                op,
                "InvalidParameterValue",
                &format!("{} resource ids; between 1 and 1000 are allowed", ids.len()),
                "tags",
            ));
        }
        Ok(())
    }

    /// The image, or EC2's `InvalidAMIID.NotFound` for `operation`.
    pub(crate) fn image_mut(
        &mut self,
        operation: &'static str,
        region: &str,
        image_id: &str,
    ) -> AwsResult<&mut FakeImage> {
        self.images
            .get_mut(&(region.to_string(), image_id.to_string()))
            .ok_or_else(|| {
                err(
                    "ec2",
                    operation,
                    "InvalidAMIID.NotFound",
                    "no such image",
                    image_id,
                )
            })
    }
}

pub(crate) fn err(
    service: &'static str,
    op: &'static str,
    code: &str,
    msg: &str,
    resource: &str,
) -> AwsError {
    AwsError::new(service, op, code, msg, resource)
}

pub(crate) fn resolve_key(w: &World, region: &str, key_id: &str) -> Option<String> {
    w.keys
        .values()
        .find(|k| {
            k.region == region
                && (k.info.arn == key_id
                    || k.info.arn.ends_with(&format!("/{key_id}"))
                    || k.aliases
                        .iter()
                        .any(|a| a == key_id || key_id.ends_with(&format!(":{a}"))))
        })
        .map(|k| k.info.arn.clone())
}

/// Which of the repository's `events/` fixtures [`ami_event`] starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixture {
    ImageAvailable,
    CopyAvailable,
    CopyFailed,
}

/// An `EC2 AMI State Change` event (the fixture, as EventBridge delivers it) for this image in
/// this Region.
pub fn ami_event(fixture: Fixture, region: &str, image_id: &str) -> serde_json::Value {
    let text = match fixture {
        Fixture::ImageAvailable => include_str!("../../events/image-available.json"),
        Fixture::CopyAvailable => include_str!("../../events/copy-available.json"),
        Fixture::CopyFailed => include_str!("../../events/copy-failed.json"),
    };
    let mut e: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    e["region"] = serde_json::json!(region);
    e["detail"]["ImageId"] = serde_json::json!(image_id);
    e
}

/// An effective EC2 declarative policy that turns Allowed AMIs on with these criteria
/// (`{"criteria_1": {...}}`), values under `@@assign` as Organizations gives them.
pub fn declarative_allowed_amis(criteria: serde_json::Value) -> String {
    serde_json::json!({"ec2_attributes": {"allowed_images_settings": {
        "state": {"@@assign": "enabled"}, "image_criteria": criteria}}})
    .to_string()
}

/// An account's own Allowed AMIs setting (`GetAllowedImagesSettings`) admitting only these
/// providers, in `state`.
pub fn own_allowed_amis(
    state: amishare::allowed::State,
    providers: &[&str],
) -> amishare::allowed::Settings {
    amishare::allowed::Settings {
        state,
        criteria: vec![amishare::allowed::Criterion {
            providers: Some(providers.iter().map(|p| p.to_string()).collect()),
            ..Default::default()
        }],
        source: amishare::allowed::Source::Account,
    }
}

/// The default key policy plus the statements the product prints for these organization / OU
/// ARNs (what a key's administrators add for `kms_access: key_policy`).
pub fn key_policy_admitting(arns: &[&str]) -> String {
    use amishare::share::key_policy::{statements_for, OrgTarget};
    let targets: Vec<OrgTarget> = arns.iter().filter_map(|a| OrgTarget::from_arn(a)).collect();
    let mut doc: serde_json::Value =
        serde_json::from_str(&default_key_policy()).unwrap_or_default();
    if let Some(list) = doc["Statement"].as_array_mut() {
        list.extend(statements_for(&targets));
    }
    doc.to_string()
}

/// The policy KMS gives a new key: its own account may do everything, nobody else anything.
pub fn default_key_policy() -> String {
    serde_json::json!({"Version": "2012-10-17", "Id": "key-default-1", "Statement": [
        {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
         "Principal": {"AWS": format!("arn:aws:iam::{OWN_ACCOUNT}:root")},
         "Action": "kms:*", "Resource": "*"}]})
    .to_string()
}
