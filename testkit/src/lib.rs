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

use async_trait::async_trait;

use amishare::config::parse_key_ref;
use amishare::error::AwsError;
use amishare::ports::*;

pub mod inventory;
pub mod publish;
pub mod retire;

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
            },
        );
        arn
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
                            amishare::domain::names::account_of_principal(&g.grantee_principal)
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

fn leak(s: &str) -> &'static str {
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

fn resolve_key(w: &World, region: &str, key_id: &str) -> Option<String> {
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

#[async_trait]
impl Images for FakeAws {
    async fn describe_image(&self, region: &str, image_id: &str) -> AwsResult<Option<Image>> {
        self.call("ec2:DescribeImages")?;
        let mut w = self.world();
        if let Some(n) = w.invisible_for.get_mut(image_id) {
            if *n > 0 {
                *n -= 1;
                return Ok(None);
            }
        }
        Ok(w.images
            .get(&(region.to_string(), image_id.to_string()))
            .map(|i| i.image.clone()))
    }

    async fn launch_permissions(
        &self,
        region: &str,
        image_id: &str,
    ) -> AwsResult<LaunchPermissions> {
        self.call("ec2:DescribeImageAttribute")?;
        Ok(self
            .world()
            .image_mut("DescribeImageAttribute", region, image_id)?
            .launch
            .clone())
    }

    async fn add_launch_permissions(
        &self,
        region: &str,
        image_id: &str,
        add: &LaunchPermissions,
    ) -> AwsResult<()> {
        self.call("ec2:ModifyImageAttribute")?;
        let mut w = self.world();
        let img = w.image_mut("ModifyImageAttribute", region, image_id)?;
        img.launch.accounts.extend(add.accounts.iter().cloned());
        img.launch
            .organizations
            .extend(add.organizations.iter().cloned());
        img.launch
            .organizational_units
            .extend(add.organizational_units.iter().cloned());
        img.launch.public |= add.public;
        Ok(())
    }

    async fn public_sharing_blocked(&self, region: &str) -> AwsResult<bool> {
        self.call("ec2:GetImageBlockPublicAccessState")?;
        Ok(self.world().public_blocked.contains(region))
    }

    async fn copy_image(&self, r: &CopyRequest) -> AwsResult<String> {
        self.call("ec2:CopyImage")?;
        let mut w = self.world();
        if let Some(existing) = w.images.values().find(|i| {
            i.client_token.as_deref() == Some(&r.client_token)
                && i.image.region == r.destination_region
        }) {
            return Ok(existing.image.id.clone());
        }
        let source = w
            .images
            .get(&(r.source_region.clone(), r.source_image_id.clone()))
            .cloned()
            .ok_or_else(|| {
                err(
                    "ec2",
                    "CopyImage",
                    "InvalidAMIID.NotFound",
                    "no such source image",
                    &r.source_image_id,
                )
            })?;
        if let Some(k) = &r.kms_key_id {
            if resolve_key(&w, &r.destination_region, k).is_none() {
                return Err(err(
                    "ec2",
                    "CopyImage",
                    "InvalidParameterValue",
                    "the KMS key does not exist in the destination Region",
                    k,
                ));
            }
        }
        if w.images.values().any(|i| {
            i.image.region == r.destination_region
                && i.image.name == r.name
                && i.image.owner_id == OWN_ACCOUNT
        }) {
            return Err(err(
                "ec2",
                "CopyImage",
                "InvalidAMIName.Duplicate",
                "an image with this name exists",
                &r.name,
            ));
        }
        w.next_id += 1;
        let id = format!("ami-{:017x}", w.next_id);
        let mut tags = if r.copy_image_tags {
            source.image.tags.clone()
        } else {
            BTreeMap::new()
        };
        tags.extend(r.tags.clone());
        let image = Image {
            id: id.clone(),
            region: r.destination_region.clone(),
            name: r.name.clone(),
            owner_id: OWN_ACCOUNT.into(),
            state: ImageState::Pending,
            tags,
            volumes: Vec::new(),
            source_image_id: Some(r.source_image_id.clone()),
            source_image_region: Some(r.source_region.clone()),
            deprecation_time: None,
            creation_date: Some("2026-11-21T11:00:00.000Z".into()),
            last_launched_time: None,
            deregistration_protection: None,
        };
        w.images.insert(
            (r.destination_region.clone(), id.clone()),
            FakeImage {
                image,
                launch: LaunchPermissions::default(),
                client_token: Some(r.client_token.clone()),
                copied_from: Some(r.clone()),
            },
        );
        Ok(id)
    }

    async fn find_own_images_by_tag(
        &self,
        region: &str,
        key: &str,
        value: &str,
    ) -> AwsResult<Vec<Image>> {
        let found: Vec<Image> = self
            .world()
            .images
            .values()
            .filter(|i| {
                i.image.region == region
                    && i.image.owner_id == OWN_ACCOUNT
                    && i.image.tags.get(key).map(String::as_str) == Some(value)
            })
            .map(|i| i.image.clone())
            .collect();
        self.list("ec2:DescribeImages", found)
    }

    async fn find_own_images_by_name(&self, region: &str, name: &str) -> AwsResult<Vec<Image>> {
        // EC2's name filter takes `*` and `?` wildcards.
        let pattern = amishare::config::compile_glob(name)
            .map(|g| g.compile_matcher())
            .map_err(|e| {
                err(
                    "ec2",
                    "DescribeImages",
                    "InvalidParameterValue",
                    &e.to_string(),
                    name,
                )
            })?;
        let found: Vec<Image> = self
            .world()
            .images
            .values()
            .filter(|i| {
                i.image.region == region
                    && i.image.owner_id == OWN_ACCOUNT
                    && pattern.is_match(&i.image.name)
            })
            .map(|i| i.image.clone())
            .collect();
        self.list("ec2:DescribeImages", found)
    }

    async fn enable_deprecation(
        &self,
        region: &str,
        image_id: &str,
        deprecate_at: &str,
    ) -> AwsResult<()> {
        self.call("ec2:EnableImageDeprecation")?;
        // EC2 refuses a deprecation time in the past.
        if let Ok(at) = chrono::DateTime::parse_from_rfc3339(deprecate_at) {
            if at.with_timezone(&chrono::Utc) <= chrono::Utc::now() {
                return Err(AwsError::new(
                    "ec2",
                    "EnableImageDeprecation",
                    "InvalidParameterValue",
                    format!("the deprecation time {deprecate_at} is in the past"),
                    image_id,
                ));
            }
        }
        let mut w = self.world();
        let img = w.image_mut("EnableImageDeprecation", region, image_id)?;
        img.image.deprecation_time = Some(deprecate_at.to_string());
        Ok(())
    }

    async fn tag_resources(
        &self,
        region: &str,
        resource_ids: &[String],
        tags: &BTreeMap<String, String>,
    ) -> AwsResult<()> {
        self.call("ec2:CreateTags")?;
        let mut w = self.world();
        w.check_tag_batch("CreateTags", resource_ids)?;
        for id in resource_ids {
            if let Some(i) = w.images.get_mut(&(region.to_string(), id.clone())) {
                i.image.tags.extend(tags.clone());
            } else if w.snapshots.contains_key(&(region.to_string(), id.clone())) {
                for (k, v) in tags {
                    FakeAws::set_snapshot_tag(&mut w, region, id, k, Some(v));
                }
            } else if id.starts_with("snap-") {
                return Err(err(
                    "ec2",
                    "CreateTags",
                    "InvalidSnapshot.NotFound",
                    "no such snapshot",
                    id,
                ));
            }
        }
        Ok(())
    }

    async fn untag_resources(
        &self,
        region: &str,
        resource_ids: &[String],
        keys: &[&str],
    ) -> AwsResult<()> {
        self.call("ec2:DeleteTags")?;
        let mut w = self.world();
        w.check_tag_batch("DeleteTags", resource_ids)?;
        for id in resource_ids {
            if let Some(i) = w.images.get_mut(&(region.to_string(), id.clone())) {
                for k in keys {
                    i.image.tags.remove(*k);
                }
            } else if w.snapshots.contains_key(&(region.to_string(), id.clone())) {
                for k in keys {
                    FakeAws::set_snapshot_tag(&mut w, region, id, k, None);
                }
            }
        }
        Ok(())
    }

    async fn remove_launch_permissions(
        &self,
        region: &str,
        image_id: &str,
        remove: &LaunchPermissions,
    ) -> AwsResult<()> {
        self.call("ec2:ModifyImageAttribute")?;
        let mut w = self.world();
        let img = w.image_mut("ModifyImageAttribute", region, image_id)?;
        img.launch.accounts.retain(|a| !remove.accounts.contains(a));
        img.launch
            .organizations
            .retain(|a| !remove.organizations.contains(a));
        img.launch
            .organizational_units
            .retain(|a| !remove.organizational_units.contains(a));
        img.launch.public &= !remove.public;
        Ok(())
    }
}

#[async_trait]
impl Snapshots for FakeAws {
    async fn describe_snapshots(
        &self,
        region: &str,
        snapshot_ids: &[String],
    ) -> AwsResult<Vec<Snapshot>> {
        self.call("ec2:DescribeSnapshots")?;
        let w = self.world();
        snapshot_ids
            .iter()
            .map(|id| {
                w.snapshots
                    .get(&(region.to_string(), id.clone()))
                    .map(|s| s.snapshot.clone())
                    .ok_or_else(|| {
                        err(
                            "ec2",
                            "DescribeSnapshots",
                            "InvalidSnapshot.NotFound",
                            "no such snapshot",
                            id,
                        )
                    })
            })
            .collect()
    }

    async fn create_volume_permissions(
        &self,
        region: &str,
        snapshot_id: &str,
    ) -> AwsResult<BTreeSet<String>> {
        self.call("ec2:DescribeSnapshotAttribute")?;
        Ok(self.snapshot_permissions(region, snapshot_id))
    }

    async fn add_create_volume_permission(
        &self,
        region: &str,
        snapshot_id: &str,
        accounts: &[String],
    ) -> AwsResult<()> {
        self.call("ec2:ModifySnapshotAttribute")?;
        let mut w = self.world();
        if accounts.len() > 500 {
            return Err(err(
                "ec2",
                "ModifySnapshotAttribute",
                "InvalidParameterValue",
                "at most 500 modifications per call",
                snapshot_id,
            ));
        }
        let aws_managed = |w: &World, k: &Option<String>| {
            k.as_ref()
                .and_then(|k| w.keys.get(k))
                .is_some_and(|k| k.info.manager == KeyManager::Aws)
        };
        let key = w
            .snapshots
            .get(&(region.to_string(), snapshot_id.to_string()))
            .map(|s| s.snapshot.kms_key_id.clone());
        match key {
            None => Err(err(
                "ec2",
                "ModifySnapshotAttribute",
                "InvalidSnapshot.NotFound",
                "no such snapshot",
                snapshot_id,
            )),
            Some(k) if aws_managed(&w, &k) => Err(err(
                "ec2",
                "ModifySnapshotAttribute",
                "InvalidParameter",
                "Snapshots encrypted with the AWS Managed CMK can't be shared",
                snapshot_id,
            )),
            Some(_) => {
                if let Some(s) = w
                    .snapshots
                    .get_mut(&(region.to_string(), snapshot_id.to_string()))
                {
                    s.permissions.extend(accounts.iter().cloned());
                }
                Ok(())
            }
        }
    }

    async fn remove_create_volume_permission(
        &self,
        region: &str,
        snapshot_id: &str,
        accounts: &[String],
    ) -> AwsResult<()> {
        self.call("ec2:ModifySnapshotAttribute")?;
        if accounts.len() > 500 {
            return Err(err(
                "ec2",
                "ModifySnapshotAttribute",
                "InvalidParameterValue",
                "at most 500 modifications per call",
                snapshot_id,
            ));
        }
        let mut w = self.world();
        let s = w
            .snapshots
            .get_mut(&crate::inventory::key(region, snapshot_id))
            .ok_or_else(|| {
                err(
                    "ec2",
                    "ModifySnapshotAttribute",
                    "InvalidSnapshot.NotFound",
                    "no such snapshot",
                    snapshot_id,
                )
            })?;
        s.permissions.retain(|a| !accounts.contains(a));
        Ok(())
    }
}

#[async_trait]
impl Keys for FakeAws {
    async fn describe_key(&self, region: &str, key_id: &str) -> AwsResult<KeyInfo> {
        self.call("kms:DescribeKey")?;
        let w = self.world();
        if parse_key_ref(key_id).is_none() && !key_id.starts_with("alias/aws/") {
            return Err(err(
                "kms",
                "DescribeKey",
                "ValidationException",
                "not a key id",
                key_id,
            ));
        }
        resolve_key(&w, region, key_id)
            .and_then(|arn| w.keys.get(&arn).map(|k| k.info.clone()))
            .ok_or_else(|| {
                err(
                    "kms",
                    "DescribeKey",
                    "NotFoundException",
                    "Key not found",
                    key_id,
                )
            })
    }

    async fn list_grants(&self, _region: &str, key_arn: &str) -> AwsResult<Vec<Grant>> {
        let grants = self
            .world()
            .keys
            .get(key_arn)
            .map(|k| k.grants.clone())
            .ok_or_else(|| {
                err(
                    "kms",
                    "ListGrants",
                    "NotFoundException",
                    "Key not found",
                    key_arn,
                )
            })?;
        self.list("kms:ListGrants", grants)
    }

    async fn create_grant(&self, _region: &str, g: &GrantRequest) -> AwsResult<()> {
        self.call("kms:CreateGrant")?;
        let mut w = self.world();
        w.next_id += 1;
        let id = format!("grant-{:x}", w.next_id);
        let key = w.keys.get_mut(&g.key_arn).ok_or_else(|| {
            err(
                "kms",
                "CreateGrant",
                "NotFoundException",
                "Key not found",
                &g.key_arn,
            )
        })?;
        // KMS: the same name and details return the existing grant instead of a new one.
        if !key.grants.iter().any(|x| {
            x.name.as_deref() == Some(&g.name) && x.grantee_principal == g.grantee_principal
        }) {
            key.grants.push(Grant {
                grant_id: id,
                name: Some(g.name.clone()),
                grantee_principal: g.grantee_principal.clone(),
            });
        }
        Ok(())
    }

    async fn revoke_grant(&self, _region: &str, key_arn: &str, grant_id: &str) -> AwsResult<()> {
        self.call("kms:RevokeGrant")?;
        let mut w = self.world();
        let k = w.keys.get_mut(key_arn).ok_or_else(|| {
            err(
                "kms",
                "RevokeGrant",
                "NotFoundException",
                "Key not found",
                key_arn,
            )
        })?;
        k.grants.retain(|g| g.grant_id != grant_id);
        Ok(())
    }
}

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
}
