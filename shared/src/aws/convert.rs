//! EC2's image, as the ports read it.

use crate::ports::{EbsVolume, Image, ImageState};

pub(super) fn convert_image(region: &str, i: &aws_sdk_ec2::types::Image) -> Image {
    Image {
        id: i.image_id().unwrap_or_default().to_string(),
        region: region.to_string(),
        name: i.name().unwrap_or_default().to_string(),
        owner_id: i.owner_id().unwrap_or_default().to_string(),
        state: ImageState::parse(i.state().map(|s| s.as_str()).unwrap_or("unknown")),
        tags: i
            .tags()
            .iter()
            .filter_map(|t| {
                Some((
                    t.key()?.to_string(),
                    t.value().unwrap_or_default().to_string(),
                ))
            })
            .collect(),
        volumes: i
            .block_device_mappings()
            .iter()
            .filter_map(|m| {
                let ebs = m.ebs()?;
                Some(EbsVolume {
                    device_name: m.device_name().unwrap_or_default().to_string(),
                    snapshot_id: ebs.snapshot_id()?.to_string(),
                    encrypted: ebs.encrypted().unwrap_or(false),
                })
            })
            .collect(),
        source_image_id: i.source_image_id().map(str::to_string),
        source_image_region: i.source_image_region().map(str::to_string),
        deprecation_time: i.deprecation_time().map(str::to_string),
        creation_date: i.creation_date().map(str::to_string),
        last_launched_time: i.last_launched_time().map(str::to_string),
        deregistration_protection: i.deregistration_protection().map(str::to_string),
        verified_source_created: None,
        watermarks: i
            .image_watermarks()
            .iter()
            .filter_map(|w| w.watermark_key().map(str::to_string))
            .collect(),
    }
}
