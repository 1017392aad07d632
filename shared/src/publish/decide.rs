//! Publication's pure decisions: the order of a rule's images (newest wins, in every Region
//! alike), the label that is a publication's receipt, and the names of what it writes.

use std::collections::BTreeSet;

use crate::config::Rule;
use crate::names::SOURCE_CREATED_TAG;
use crate::plan::{classify, ImageKind};
use crate::ports::Image;

/// `source` of the events.
pub const EVENT_SOURCE: &str = "ami-share";
/// `detail-type` of the events.
pub const EVENT_DETAIL_TYPE: &str = "AMI Distributed";
/// Tag on the resource shares: the rule they publish.
pub const SHARE_RULE_TAG: &str = "ami-share:rule";
/// Parameter Store's error when the oldest of the 100 versions it keeps has a label.
pub const VERSION_LIMIT_CODE: &str = "ParameterMaxVersionLimitExceeded";

/// The order of a rule's images: creation date (a copy's source's, the same in every
/// Region), then image id (the source's for a copy). The greatest is the newest.
///
/// Never read from a tag: a source's date is EC2's `CreationDate`; a copy's is its source's,
/// read through EC2's lineage when the copy was verified
/// ([`Image::verified_source_created`]). A copy not verified, and an image whose provenance
/// is forged, order as the oldest of all: they never win a publication.
pub fn publication_order(image: &Image) -> (String, String) {
    match classify(image) {
        ImageKind::Source { .. } => (
            image.creation_date.clone().unwrap_or_default(),
            image.id.clone(),
        ),
        ImageKind::OurCopy(p) => (
            image.verified_source_created.clone().unwrap_or_default(),
            p.source_image_id,
        ),
        ImageKind::Forged { .. } => (String::new(), String::new()),
    }
}

/// The order of a copy owned by a target account (`copy_into`): its source's creation date,
/// recorded at the copy by the product, taken only where it is not later than the copy's own
/// creation (a source is always older than its copy), then the source's id.
pub fn target_copy_order(copy: &Image) -> (String, String) {
    let own = copy.creation_date.clone().unwrap_or_default();
    let created = copy
        .tags
        .get(SOURCE_CREATED_TAG)
        .filter(|c| own.is_empty() || **c <= own)
        .cloned()
        .unwrap_or(own);
    let id = copy
        .tags
        .get(crate::names::COPIED_FROM_IMAGE_TAG)
        .and_then(|v| v.split_once('/'))
        .map(|(_, id)| id.to_string())
        .unwrap_or_else(|| copy.id.clone());
    (created, id)
}

/// The label a publication puts on its version: `created-<date>` (labels take letters,
/// digits, `.`, `-`, `_`; not `:`).
pub fn label_for(image: &Image) -> String {
    label_of(&publication_order(image))
}

/// The label of a version naming an image of this order ([`publication_order`],
/// [`target_copy_order`]).
pub fn label_of((created, id): &(String, String)) -> String {
    if created.is_empty() {
        return format!("image-{id}");
    }
    let safe: String = created
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("created-{safe}")
}

/// The ARN of a parameter (`resolve:ssm:<ARN>` in a consumer account).
pub fn parameter_arn(region: &str, account: &str, name: &str) -> String {
    let partition = if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    };
    let path = if name.starts_with('/') {
        name.to_string()
    } else {
        format!("/{name}")
    };
    format!("arn:{partition}:ssm:{region}:{account}:parameter{path}")
}

/// The name of a rule's resource share (one per rule and Region).
pub fn share_name(rule: &str) -> String {
    format!("ami-share-{rule}")
}

/// The principals of a rule's share: its accounts (without the owner), organizations and OUs.
pub fn share_principals(rule: &Rule, own: &str) -> BTreeSet<String> {
    let sw = &rule.share_with;
    sw.accounts
        .iter()
        .filter(|a| *a != own)
        .chain(&sw.organizations)
        .chain(&sw.organizational_units)
        .cloned()
        .collect()
}
