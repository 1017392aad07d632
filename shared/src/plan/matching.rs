//! Which rules apply to an image, and whether the image is ours to touch at all.

use globset::GlobMatcher;

use crate::config::{compile_glob, Match, Policy, Rule};
use crate::names::{self, Provenance};
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
    /// A copy this product made (cross-Region, or a same-Region re-encryption).
    OurCopy(Provenance),
}

/// Classify by our provenance tags, falling back to our deterministic copy name (some
/// accounts, and the local emulator, drop tags at creation).
pub fn classify(image: &Image) -> ImageKind {
    if let Some(p) = names::provenance_from_tags(&image.tags)
        .or_else(|| names::provenance_from_name(&image.name))
    {
        return ImageKind::OurCopy(p);
    }
    let is_foreign_copy = image.source_image_id.is_some()
        && image
            .source_image_region
            .as_deref()
            .is_some_and(|r| r != image.region);
    ImageKind::Source { is_foreign_copy }
}

/// Why an image is left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    NotOwned { owner: String },
    NotAvailable { state: String },
    SkipTag,
    NoRuleMatches,
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
    if image
        .tags
        .get(SKIP_TAG)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
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
