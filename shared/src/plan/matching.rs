//! Which rules apply to an image, and whether the image is ours to touch at all.

use globset::GlobMatcher;

use crate::config::{compile_glob, Match, Policy, Rule};
use crate::names::{self, CopyKind, Provenance};
use crate::ports::{Image, ImageState};

/// Tag that makes the product leave an image alone: `ami-share:skip` = `true`.
pub const SKIP_TAG: &str = "ami-share:skip";

fn glob_matcher(pattern: &str) -> Option<GlobMatcher> {
    compile_glob(pattern).ok().map(|g| g.compile_matcher())
}

impl Match {
    /// Every condition given must hold; `"*"` as a tag value means "present, any value".
    pub fn matches(&self, image: &Image) -> bool {
        if self.all {
            return true;
        }
        if self.name.is_none() && self.tags.is_empty() {
            return false; // refused by validation; never match everything by accident
        }
        let name_ok = match &self.name {
            None => true,
            Some(p) => glob_matcher(p).is_some_and(|m| m.is_match(&image.name)),
        };
        name_ok
            && self.tags.iter().all(|(k, v)| match image.tags.get(k) {
                Some(actual) => v == "*" || actual == v,
                None => false,
            })
    }
}

/// What kind of image this is, as both event handlers and the sweeper see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageKind {
    /// Built here (or copied here by someone else, e.g. Packer's `ami_regions`): shared by
    /// on-image-available; copied only when it is not itself a copy.
    Source { is_foreign_copy: bool },
    /// Claims to be a copy this product made (cross-Region, or a same-Region re-encryption),
    /// and EC2's lineage (`SourceImageId` / `SourceImageRegion`) names the same source. Still
    /// to be checked against that source ([`super::verify_copy`]) before it is shared or
    /// published: the provenance here is EC2's, the rules are never the tag's.
    OurCopy(Provenance),
    /// Carries the product's copy tags or copy name, but EC2's lineage does not name that
    /// source (or names none): anyone who can tag or name an image can write those, so it is
    /// refused (`forged-provenance`), never shared, published or retired on their word.
    Forged { claim: Provenance, why: String },
}

/// Classify an image. A claim to be our copy (our provenance tags, or our deterministic copy
/// name where tags were dropped) is only a claim: it holds when EC2's own lineage of the image
/// names the same source image and Region, and the kind fits (a Region copy comes from another
/// Region, a re-encryption from its own).
pub fn classify(image: &Image) -> ImageKind {
    let claim = names::provenance_from_tags(&image.tags)
        .or_else(|| names::provenance_from_name(&image.name));
    let Some(claim) = claim else {
        let is_foreign_copy = image.source_image_id.is_some()
            && image
                .source_image_region
                .as_deref()
                .is_some_and(|r| r != image.region);
        return ImageKind::Source { is_foreign_copy };
    };
    let (Some(src_id), Some(src_region)) = (
        image.source_image_id.as_deref(),
        image.source_image_region.as_deref(),
    ) else {
        let why = format!(
            "its tags or name claim a copy of {}/{}, but EC2 records no source image for it (it was not made by CopyImage)",
            claim.source_region, claim.source_image_id
        );
        return ImageKind::Forged { claim, why };
    };
    if src_id != claim.source_image_id || src_region != claim.source_region {
        let why = format!(
            "its tags or name claim a copy of {}/{}, but EC2 records it was made from {src_region}/{src_id}",
            claim.source_region, claim.source_image_id
        );
        return ImageKind::Forged { claim, why };
    }
    let same_region = src_region == image.region;
    match (claim.kind, same_region) {
        (CopyKind::RegionCopy, true) => ImageKind::Forged {
            why: format!(
                "it claims to be a copy from another Region, but its source {src_region}/{src_id} is in its own Region"
            ),
            claim,
        },
        (CopyKind::Reencrypt, false) => ImageKind::Forged {
            why: format!(
                "it claims to be a same-Region re-encrypted copy, but its source is in {src_region}"
            ),
            claim,
        },
        _ => ImageKind::OurCopy(claim),
    }
}

/// Why an image is left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    NotOwned {
        owner: String,
    },
    NotAvailable {
        state: String,
    },
    SkipTag,
    NoRuleMatches,
    /// Our copy tags or name without EC2's lineage to back them (`forged-provenance`).
    ForgedProvenance(String),
    /// A copy whose source is gone (deregistered, disabled): it keeps what it was shared
    /// with, and may be retired, but is never newly shared or published.
    SourceGone {
        source: String,
    },
}

impl SkipReason {
    /// The short code of the reason, as summaries and metrics name it.
    pub fn code(&self) -> &'static str {
        match self {
            SkipReason::NotOwned { .. } => "not-owned",
            SkipReason::NotAvailable { .. } => "not-available",
            SkipReason::SkipTag => "skip-tag",
            SkipReason::NoRuleMatches => "no-rule-matches",
            SkipReason::ForgedProvenance(_) => "forged-provenance",
            SkipReason::SourceGone { .. } => "source-gone",
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::NotOwned { owner } => {
                write!(f, "owned by account {owner}, not by this account")
            }
            SkipReason::NotAvailable { state } => write!(f, "image is {state}, not available"),
            SkipReason::SkipTag => write!(f, "tagged {SKIP_TAG}=true"),
            SkipReason::NoRuleMatches => write!(f, "no rule of the policy matches it"),
            SkipReason::ForgedProvenance(why) => write!(
                f,
                "forged-provenance: {why}; it is not shared, published or retired. Whoever can tag or name images in this account should look at who made it (CloudTrail CreateTags / CreateImage / CopyImage)"
            ),
            SkipReason::SourceGone { source } => write!(
                f,
                "its source {source} is gone (deregistered or disabled): it keeps what it was shared with but is not shared further or published"
            ),
        }
    }
}

/// The rules that apply to an image owned by `own_account`, or why none do.
pub fn matching_rules<'p>(
    policy: &'p Policy,
    image: &Image,
    own_account: &str,
) -> Result<Vec<&'p Rule>, SkipReason> {
    if image.owner_id != own_account {
        return Err(SkipReason::NotOwned {
            owner: image.owner_id.clone(),
        });
    }
    if image.state != ImageState::Available {
        return Err(SkipReason::NotAvailable {
            state: image.state.as_str().to_string(),
        });
    }
    if has_skip_tag(image) {
        return Err(SkipReason::SkipTag);
    }
    let rules: Vec<&Rule> = policy
        .rules
        .iter()
        .filter(|r| r.matcher.matches(image))
        .collect();
    if rules.is_empty() {
        Err(SkipReason::NoRuleMatches)
    } else {
        Ok(rules)
    }
}

/// `ami-share:skip` = `true` on the image.
pub fn has_skip_tag(image: &Image) -> bool {
    image
        .tags
        .get(SKIP_TAG)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Check a copy's claim against its source, read through EC2's lineage: the source must exist,
/// be available, and be owned by `own_account` (the product never copies another account's
/// image). On success the copy carries its source's creation date
/// ([`Image::verified_source_created`]), which orders it among its rule's images.
pub fn verify_copy(
    copy: &mut Image,
    claim: &Provenance,
    source: Option<&Image>,
    own_account: &str,
) -> Result<(), SkipReason> {
    let named = format!("{}/{}", claim.source_region, claim.source_image_id);
    let Some(source) =
        source.filter(|s| !matches!(s.state, ImageState::Deregistered | ImageState::Disabled))
    else {
        return Err(SkipReason::SourceGone { source: named });
    };
    if source.owner_id != own_account {
        return Err(SkipReason::ForgedProvenance(format!(
            "its source {named} is owned by account {}; the product only copies this account's images",
            source.owner_id
        )));
    }
    if source.id != claim.source_image_id || source.region != claim.source_region {
        return Err(SkipReason::SourceGone { source: named });
    }
    copy.verified_source_created = source.creation_date.clone();
    Ok(())
}

/// The rules that apply to one of our copies: those its source (verified through EC2's
/// lineage, [`verify_copy`]) matches now. The copy's own `ami-share:skip` is honoured; the
/// rule names in its tags are never read.
pub fn copy_rules<'p>(
    policy: &'p Policy,
    copy: &mut Image,
    claim: &Provenance,
    source: Option<&Image>,
    own_account: &str,
) -> Result<Vec<&'p Rule>, SkipReason> {
    if copy.owner_id != own_account {
        return Err(SkipReason::NotOwned {
            owner: copy.owner_id.clone(),
        });
    }
    if copy.state != ImageState::Available {
        return Err(SkipReason::NotAvailable {
            state: copy.state.as_str().to_string(),
        });
    }
    if has_skip_tag(copy) {
        return Err(SkipReason::SkipTag);
    }
    verify_copy(copy, claim, source, own_account)?;
    match source {
        Some(source) => match matching_rules(policy, source, own_account) {
            Err(SkipReason::NotAvailable { .. }) => Err(SkipReason::SourceGone {
                source: format!("{}/{}", claim.source_region, claim.source_image_id),
            }),
            other => other,
        },
        None => Err(SkipReason::NoRuleMatches),
    }
}

/// Whether EC2 records every snapshot of a same-Region copy as copied for it from its source
/// (`Copied for DestinationAmi <copy> from SourceAmi <source> …`, which EC2 writes and no one
/// can change). It tells the product's re-encrypted copy from an image made by `CreateImage` of
/// an instance launched from the source, whose lineage names the same source in the same Region.
pub fn snapshots_copied_from(
    copy: &Image,
    source_image_id: &str,
    descriptions: &std::collections::BTreeMap<String, String>,
) -> bool {
    let want = format!(
        "Copied for DestinationAmi {} from SourceAmi {source_image_id}",
        copy.id
    );
    !copy.volumes.is_empty()
        && copy.volumes.iter().all(|v| {
            descriptions
                .get(&v.snapshot_id)
                .is_some_and(|d| d.starts_with(&want))
        })
}
