//! The double's EC2 images.

use std::collections::BTreeMap;

use async_trait::async_trait;

use amishare::ports::*;

use crate::{err, resolve_key, FakeAws, FakeImage, OWN_ACCOUNT};
use amishare::error::AwsError;

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

    async fn describe_images(&self, region: &str, image_ids: &[String]) -> AwsResult<Vec<Image>> {
        let mut found = Vec::new();
        for ids in image_ids.chunks(200) {
            let w = self.world();
            let part: Vec<Image> = ids
                .iter()
                .filter_map(|id| w.images.get(&(region.to_string(), id.clone())))
                .map(|i| i.image.clone())
                .collect();
            drop(w);
            found.extend(self.list("ec2:DescribeImages", part)?);
        }
        Ok(found)
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
        let slots = source.image.volumes.len().max(1);
        if crate::line::over_cap(&w, &r.destination_region, slots) {
            return Err(err(
                "ec2",
                "CopyImage",
                "ResourceLimitExceeded",
                "too many snapshot copies in flight to this Region",
                &r.destination_region,
            ));
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
            verified_source_created: None,
            // EC2 carries the source's watermarks to the copy.
            watermarks: source.image.watermarks.clone(),
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

    async fn pending_images(&self, region: &str) -> AwsResult<Vec<Image>> {
        let found = crate::line::pending_images(&self.world(), region);
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

    /// EC2's rules: the owner only, at most 5 per image, never on a public image; attaching
    /// one the image carries already changes nothing.
    async fn attach_watermark(&self, region: &str, image_id: &str, name: &str) -> AwsResult<()> {
        self.call("ec2:AttachImageWatermark")?;
        let mut w = self.world();
        let img = w.image_mut("AttachImageWatermark", region, image_id)?;
        let key = format!("{OWN_ACCOUNT}:{name}");
        if img.image.owner_id != OWN_ACCOUNT {
            return Err(err(
                "ec2",
                "AttachImageWatermark",
                "AuthFailure",
                "not the image's owner",
                image_id,
            ));
        }
        if img.launch.public {
            return Err(err(
                "ec2",
                "AttachImageWatermark",
                "InvalidParameterCombination",
                "a watermark cannot be added to a public image",
                image_id,
            ));
        }
        if img.image.watermarks.contains(&key) {
            return Ok(());
        }
        if img.image.watermarks.len() >= 5 {
            return Err(err(
                "ec2",
                "AttachImageWatermark",
                "WatermarkLimitExceeded",
                "at most 5 watermarks",
                image_id,
            ));
        }
        img.image.watermarks.push(key);
        Ok(())
    }
}

impl FakeAws {
    /// Set a tag on an image by hand (as anyone who may `CreateTags` in the account can).
    pub fn tag_image_directly(&self, region: &str, image_id: &str, k: &str, v: &str) {
        if let Some(i) = self
            .world()
            .images
            .get_mut(&(region.to_string(), image_id.to_string()))
        {
            i.image.tags.insert(k.into(), v.into());
        }
    }
}
