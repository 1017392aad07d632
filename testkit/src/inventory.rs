//! The [`Inventory`] port on the in-memory double [`FakeAws`]: snapshot descriptions, sizes,
//! start times, states and tags; the Recycle Bin; launch templates with every version; launch
//! configurations. Every listing page is a call and can fail (`FakeAws::fail`).
//!
//! Snapshots made by `FakeAws::create_image` get what EC2 would give them: the description
//! `Created by CreateImage(i-…) for ami-…` (or `Copied for DestinationAmi …` for copies), our
//! provenance tag on copies, 8 GiB, `completed`, started at [`default_snapshot_start`].
//! [`FakeAws::deregister_image`] and [`FakeAws::recycle_image`] keep that description, as EC2 does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};

use crate::{FakeAws, FakeSnapshot, World, OWN_ACCOUNT};
use amishare::error::AwsError;
use amishare::names::SOURCE_IMAGE_TAG;
use amishare::ports::Snapshot;
use amishare::ports::{AwsResult, Image};
use amishare::sweep::inventory::{
    Inventory, OwnSnapshot, RecycledImage, Reference, SnapshotState, SnapshotTags,
};

/// Start time of snapshots made without an explicit one.
pub fn default_snapshot_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// What EC2 knows of a snapshot beyond `Snapshot`.
#[derive(Debug, Clone)]
pub struct SnapshotMeta {
    pub description: String,
    pub size_gib: u64,
    pub start_time: DateTime<Utc>,
    pub state: SnapshotState,
    pub tags: BTreeMap<String, String>,
}

/// One launch template version.
#[derive(Debug, Clone, Default)]
pub struct FakeTemplateVersion {
    pub snapshot_ids: BTreeSet<String>,
    pub image_id: Option<String>,
}

/// The part of the world only the sweeper reads.
#[derive(Debug, Default)]
pub struct FakeInventory {
    /// (Region, snapshot id) → metadata; absent: derived from the image using the snapshot.
    pub snapshot_meta: BTreeMap<(String, String), SnapshotMeta>,
    /// (Region, image id) → name, of images in the Recycle Bin.
    pub recycle_bin: BTreeMap<(String, String), String>,
    /// (Region, launch template id) → versions (version n is at index n-1).
    pub launch_templates: BTreeMap<(String, String), Vec<FakeTemplateVersion>>,
    /// (Region, launch configuration name) → what it references.
    pub launch_configurations: BTreeMap<(String, String), FakeTemplateVersion>,
    /// Snapshots `DeleteSnapshot` refuses with `InvalidSnapshot.InUse` although nothing the
    /// inventory lists references them (our proof was wrong).
    pub in_use_anyway: BTreeSet<String>,
    /// Snapshots deleted, in order.
    pub deleted: Vec<String>,
    next_id: u64,
}

/// A snapshot to add with [`FakeAws::add_snapshot`].
#[derive(Debug, Clone)]
pub struct SnapshotSpec {
    pub region: String,
    pub description: String,
    pub size_gib: u64,
    pub start_time: DateTime<Utc>,
    pub state: SnapshotState,
    pub tags: BTreeMap<String, String>,
}

impl SnapshotSpec {
    pub fn new(region: &str, description: &str) -> Self {
        Self {
            region: region.into(),
            description: description.into(),
            size_gib: 8,
            start_time: default_snapshot_start(),
            state: SnapshotState::Completed,
            tags: BTreeMap::new(),
        }
    }
    /// `Created by CreateImage(i-…) for <image_id>`.
    pub fn made_for(region: &str, image_id: &str) -> Self {
        Self::new(
            region,
            &format!("Created by CreateImage(i-0f00000000000000a) for {image_id}"),
        )
    }
    pub fn tag(mut self, k: &str, v: &str) -> Self {
        self.tags.insert(k.into(), v.into());
        self
    }
    pub fn size(mut self, gib: u64) -> Self {
        self.size_gib = gib;
        self
    }
    pub fn started(mut self, at: DateTime<Utc>) -> Self {
        self.start_time = at;
        self
    }
    pub fn state(mut self, state: SnapshotState) -> Self {
        self.state = state;
        self
    }
}

pub(crate) fn key(region: &str, id: &str) -> (String, String) {
    (region.to_string(), id.to_string())
}

fn err(service: &'static str, op: &'static str, code: &str, msg: &str, resource: &str) -> AwsError {
    AwsError::new(service, op, code, msg, resource)
}

/// The metadata of a snapshot, as EC2 would report it.
pub(crate) fn meta_of(w: &World, region: &str, snapshot_id: &str) -> SnapshotMeta {
    if let Some(m) = w.inventory.snapshot_meta.get(&key(region, snapshot_id)) {
        return m.clone();
    }
    let owner = w.images.values().find(|i| {
        i.image.region == region && i.image.volumes.iter().any(|v| v.snapshot_id == snapshot_id)
    });
    let mut tags = BTreeMap::new();
    let description = match owner {
        Some(i) => match &i.copied_from {
            Some(r) => {
                if let Some(src) = i.image.tags.get(SOURCE_IMAGE_TAG) {
                    tags.insert(SOURCE_IMAGE_TAG.to_string(), src.clone());
                }
                format!(
                    "Copied for DestinationAmi {} from SourceAmi {} for SourceSnapshot snap-0",
                    i.image.id, r.source_image_id
                )
            }
            None => format!(
                "Created by CreateImage(i-0f00000000000000a) for {}",
                i.image.id
            ),
        },
        None => String::new(),
    };
    SnapshotMeta {
        description,
        size_gib: 8,
        start_time: default_snapshot_start(),
        state: SnapshotState::Completed,
        tags,
    }
}

impl FakeAws {
    /// Set (`Some`) or remove (`None`) a tag of a snapshot, as `CreateTags` / `DeleteTags` do.
    pub(crate) fn set_snapshot_tag(
        w: &mut World,
        region: &str,
        snapshot_id: &str,
        k: &str,
        v: Option<&str>,
    ) {
        let mut m = meta_of(w, region, snapshot_id);
        match v {
            Some(v) => m.tags.insert(k.into(), v.into()),
            None => m.tags.remove(k),
        };
        w.inventory
            .snapshot_meta
            .insert(key(region, snapshot_id), m);
    }

    /// Add a snapshot that belongs to no image; returns its id.
    pub fn add_snapshot(&self, spec: SnapshotSpec) -> String {
        let mut w = self.world();
        w.inventory.next_id += 1;
        let id = format!("snap-f{:016x}", w.inventory.next_id);
        w.snapshots.insert(
            key(&spec.region, &id),
            FakeSnapshot {
                snapshot: Snapshot {
                    id: id.clone(),
                    encrypted: false,
                    kms_key_id: None,
                    description: String::new(),
                },
                permissions: BTreeSet::new(),
            },
        );
        w.inventory.snapshot_meta.insert(
            key(&spec.region, &id),
            SnapshotMeta {
                description: spec.description,
                size_gib: spec.size_gib,
                start_time: spec.start_time,
                state: spec.state,
                tags: spec.tags,
            },
        );
        id
    }

    /// Pin down the metadata EC2 derived for the image's snapshots (so it outlives the image).
    fn keep_snapshot_meta(w: &mut World, region: &str, image_id: &str) {
        let snaps: Vec<String> = w
            .images
            .get(&key(region, image_id))
            .map(|i| {
                i.image
                    .volumes
                    .iter()
                    .map(|v| v.snapshot_id.clone())
                    .collect()
            })
            .unwrap_or_default();
        for s in snaps {
            let m = meta_of(w, region, &s);
            w.inventory.snapshot_meta.insert(key(region, &s), m);
        }
    }

    /// `DeregisterImage` without deleting its snapshots: they stay, with their description.
    pub fn deregister_image(&self, region: &str, image_id: &str) {
        let mut w = self.world();
        Self::keep_snapshot_meta(&mut w, region, image_id);
        w.images.remove(&key(region, image_id));
    }

    /// `DeregisterImage` into the Recycle Bin (a retention rule applies).
    pub fn recycle_image(&self, region: &str, image_id: &str) {
        let mut w = self.world();
        Self::keep_snapshot_meta(&mut w, region, image_id);
        if let Some(i) = w.images.remove(&key(region, image_id)) {
            w.inventory
                .recycle_bin
                .insert(key(region, image_id), i.image.name);
        }
    }

    /// Set a tag on a snapshot (as someone else would).
    pub fn tag_snapshot_directly(&self, region: &str, snapshot_id: &str, k: &str, v: &str) {
        let mut w = self.world();
        let mut m = meta_of(&w, region, snapshot_id);
        m.tags.insert(k.into(), v.into());
        w.inventory
            .snapshot_meta
            .insert(key(region, snapshot_id), m);
    }

    /// The snapshot's tags.
    pub fn snapshot_tags(&self, region: &str, snapshot_id: &str) -> BTreeMap<String, String> {
        meta_of(&self.world(), region, snapshot_id).tags
    }

    pub fn snapshot_exists(&self, region: &str, snapshot_id: &str) -> bool {
        self.world()
            .snapshots
            .contains_key(&key(region, snapshot_id))
    }

    /// A launch template whose versions reference these snapshots / images.
    pub fn add_launch_template(&self, region: &str, id: &str, versions: Vec<FakeTemplateVersion>) {
        self.world()
            .inventory
            .launch_templates
            .insert(key(region, id), versions);
    }

    pub fn add_launch_configuration(&self, region: &str, name: &str, refs: FakeTemplateVersion) {
        self.world()
            .inventory
            .launch_configurations
            .insert(key(region, name), refs);
    }
}

#[async_trait]
impl Inventory for FakeAws {
    async fn list_own_snapshots(
        &self,
        region: &str,
        owner_id: &str,
    ) -> AwsResult<Vec<OwnSnapshot>> {
        let found: Vec<OwnSnapshot> = {
            let w = self.world();
            if owner_id != OWN_ACCOUNT {
                Vec::new()
            } else {
                w.snapshots
                    .keys()
                    .filter(|(r, _)| r == region)
                    .map(|(_, id)| {
                        let m = meta_of(&w, region, id);
                        OwnSnapshot {
                            kms_key_id: w
                                .snapshots
                                .get(&key(region, id))
                                .and_then(|s| s.snapshot.kms_key_id.as_deref())
                                .map(Arc::from),
                            id: id.as_str().into(),
                            description: m.description.into(),
                            size_gib: m.size_gib,
                            start_time: Some(m.start_time),
                            state: m.state,
                            tags: SnapshotTags::from_pairs(
                                m.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                            ),
                        }
                    })
                    .collect()
            }
        };
        self.list("ec2:DescribeSnapshots", found)
    }

    async fn list_own_images(&self, region: &str) -> AwsResult<Vec<Image>> {
        let found: Vec<Image> = self
            .world()
            .images
            .values()
            .filter(|i| i.image.region == region && i.image.owner_id == OWN_ACCOUNT)
            .map(|i| i.image.clone())
            .collect();
        self.list("ec2:DescribeImages", found)
    }

    async fn list_recycle_bin_images(&self, region: &str) -> AwsResult<Vec<RecycledImage>> {
        let found: Vec<RecycledImage> = self
            .world()
            .inventory
            .recycle_bin
            .iter()
            .filter(|((r, _), _)| r == region)
            .map(|((_, id), name)| RecycledImage {
                id: id.clone(),
                name: name.clone(),
            })
            .collect();
        self.list("ec2:ListImagesInRecycleBin", found)
    }

    async fn list_launch_template_references(&self, region: &str) -> AwsResult<Vec<Reference>> {
        let templates: Vec<(String, Vec<FakeTemplateVersion>)> = self
            .world()
            .inventory
            .launch_templates
            .iter()
            .filter(|((r, _), _)| r == region)
            .map(|((_, id), v)| (id.clone(), v.clone()))
            .collect();
        let templates = self.list("ec2:DescribeLaunchTemplates", templates)?;
        let mut out = Vec::new();
        for (id, versions) in templates {
            let refs: Vec<Reference> = versions
                .iter()
                .enumerate()
                .map(|(n, v)| Reference {
                    by: format!("launch template {id} version {}", n + 1),
                    snapshot_ids: v.snapshot_ids.clone(),
                    image_ids: v.image_id.iter().cloned().collect(),
                })
                .collect();
            out.extend(self.list("ec2:DescribeLaunchTemplateVersions", refs)?);
        }
        Ok(out)
    }

    async fn list_launch_configuration_references(
        &self,
        region: &str,
    ) -> AwsResult<Vec<Reference>> {
        let found: Vec<Reference> = self
            .world()
            .inventory
            .launch_configurations
            .iter()
            .filter(|((r, _), _)| r == region)
            .map(|((_, name), v)| Reference {
                by: format!("launch configuration {name}"),
                snapshot_ids: v.snapshot_ids.clone(),
                image_ids: v.image_id.iter().cloned().collect(),
            })
            .collect();
        self.list("autoscaling:DescribeLaunchConfigurations", found)
    }

    async fn delete_snapshot(&self, region: &str, snapshot_id: &str) -> AwsResult<()> {
        self.call("ec2:DeleteSnapshot")?;
        let mut w = self.world();
        if !w.snapshots.contains_key(&key(region, snapshot_id)) {
            return Err(err(
                "ec2",
                "DeleteSnapshot",
                "InvalidSnapshot.NotFound",
                "no such snapshot",
                snapshot_id,
            ));
        }
        let used_by_image = w.images.values().any(|i| {
            i.image.region == region && i.image.volumes.iter().any(|v| v.snapshot_id == snapshot_id)
        });
        if used_by_image || w.inventory.in_use_anyway.contains(snapshot_id) {
            return Err(err(
                "ec2",
                "DeleteSnapshot",
                "InvalidSnapshot.InUse",
                "The snapshot is currently in use",
                snapshot_id,
            ));
        }
        w.snapshots.remove(&key(region, snapshot_id));
        w.inventory.snapshot_meta.remove(&key(region, snapshot_id));
        w.inventory.deleted.push(snapshot_id.to_string());
        Ok(())
    }
}
