//! Which images are the product's copies, as EC2 records it: a copy's claim (our provenance
//! tags, or our copy name) is checked against the source EC2's lineage (`SourceImageId` /
//! `SourceImageRegion`) names, read from EC2 — one image on the event path, every claimed copy
//! of a Region at once at night ([`crate::plan::verify_copy`] decides, here they are read).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::deps::Deps;
use crate::error::Result;
use crate::ports::{Aws, Image};

/// What the night found of the images that claim to be the product's copies
/// ([`verify_copies`]).
#[derive(Debug, Default)]
pub struct CopyChecks {
    /// The sources EC2's lineage names, by (Region, image id), as read tonight.
    pub sources: HashMap<(String, String), Image>,
    /// Copies (by image id) that failed the check, with why: `forged-provenance` or
    /// `source-gone`.
    pub refused: HashMap<String, crate::plan::SkipReason>,
}

impl CopyChecks {
    /// The source of one of our copies, as read tonight.
    pub fn source_of(&self, claim: &crate::names::Provenance) -> Option<&Image> {
        self.sources
            .get(&(claim.source_region.clone(), claim.source_image_id.clone()))
    }
}

/// `DescribeImages` of one image, and for one of our copies the check of its claim against
/// the source EC2's lineage names ([`crate::plan::verify_copy`]): a verified copy carries
/// its source's creation date, which orders it among its rule's images.
pub async fn describe_verified<P: Aws>(
    deps: &Deps<P>,
    region: &str,
    image_id: &str,
) -> Result<Option<Image>> {
    let Some(mut image) = deps.aws.describe_image(region, image_id).await? else {
        return Ok(None);
    };
    if let crate::plan::ImageKind::OurCopy(claim) = crate::plan::classify(&image) {
        if unproven_reencryption(deps, &image, &claim).await?.is_none() {
            let source = deps
                .aws
                .describe_image(&claim.source_region, &claim.source_image_id)
                .await?;
            let _unverified =
                crate::plan::verify_copy(&mut image, &claim, source.as_ref(), &deps.account_id);
        }
    }
    Ok(Some(image))
}

/// Check every image that claims to be one of our copies against the source EC2's lineage
/// names: the sources are read together, one `DescribeImages` per 200 of a Region (those in
/// `images` itself are not read again). Returns the copies that failed the check, with why;
/// the verified ones carry their source's creation date.
pub async fn verify_copies<P: Aws>(deps: &Deps<P>, images: &mut [Image]) -> Result<CopyChecks> {
    use crate::plan::{classify, verify_copy, ImageKind, SkipReason};
    let mut known: HashMap<(String, String), Image> = HashMap::new();
    let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let claims: Vec<(usize, ImageKind)> = images
        .iter()
        .enumerate()
        .filter_map(|(i, img)| match classify(img) {
            ImageKind::Source { .. } => None,
            kind => Some((i, kind)),
        })
        .collect();
    let here: HashMap<(&str, &str), usize> = images
        .iter()
        .enumerate()
        .map(|(i, img)| ((img.region.as_str(), img.id.as_str()), i))
        .collect();
    for (_, kind) in &claims {
        if let ImageKind::OurCopy(p) = kind {
            match here.get(&(p.source_region.as_str(), p.source_image_id.as_str())) {
                Some(&i) => {
                    known.insert(
                        (p.source_region.clone(), p.source_image_id.clone()),
                        images[i].clone(),
                    );
                }
                None => {
                    wanted
                        .entry(p.source_region.clone())
                        .or_default()
                        .insert(p.source_image_id.clone());
                }
            }
        }
    }
    for (region, ids) in wanted {
        let ids: Vec<String> = ids.into_iter().collect();
        for source in deps.aws.describe_images(&region, &ids).await? {
            known.insert((source.region.clone(), source.id.clone()), source);
        }
    }
    let mut refused = HashMap::new();
    for (i, kind) in claims {
        let outcome = match kind {
            ImageKind::OurCopy(p) => match unproven_reencryption(deps, &images[i], &p).await? {
                Some(forged) => Err(forged),
                None => {
                    let source = known.get(&(p.source_region.clone(), p.source_image_id.clone()));
                    verify_copy(&mut images[i], &p, source, &deps.account_id)
                }
            },
            ImageKind::Forged { why, .. } => Err(SkipReason::ForgedProvenance(why)),
            ImageKind::Source { .. } => Ok(()),
        };
        if let Err(reason) = outcome {
            refused.insert(images[i].id.clone(), reason);
        }
    }
    Ok(CopyChecks {
        sources: known,
        refused,
    })
}

/// For a same-Region (re-encrypted) copy, the proof its lineage alone cannot give: EC2's
/// descriptions of its snapshots ([`crate::plan::snapshots_copied_from`]), read with one
/// `DescribeSnapshots`. `None` when the claim holds (or is not a re-encryption);
/// `forged-provenance` otherwise.
pub async fn unproven_reencryption<P: Aws>(
    deps: &Deps<P>,
    copy: &Image,
    claim: &crate::names::Provenance,
) -> Result<Option<crate::plan::SkipReason>> {
    if claim.kind != crate::names::CopyKind::Reencrypt {
        return Ok(None);
    }
    let ids = crate::deps::snapshot_ids(copy);
    let descriptions: BTreeMap<String, String> = if ids.is_empty() {
        BTreeMap::new()
    } else {
        deps.aws
            .describe_snapshots(&copy.region, &ids)
            .await?
            .into_iter()
            .map(|s| (s.id, s.description))
            .collect()
    };
    if crate::plan::snapshots_copied_from(copy, &claim.source_image_id, &descriptions) {
        return Ok(None);
    }
    Ok(Some(crate::plan::SkipReason::ForgedProvenance(format!(
        "it claims to be a re-encrypted copy of {}/{}, but EC2 does not record its snapshots as copied from it \
         (an image made from an instance launched from the source records the same lineage)",
        claim.source_region, claim.source_image_id
    ))))
}
