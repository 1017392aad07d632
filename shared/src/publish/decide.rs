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
pub fn publication_order(image: &Image) -> (String, String) {
    let created = image
        .tags
        .get(SOURCE_CREATED_TAG)
        .or(image.creation_date.as_ref())
        .cloned()
        .unwrap_or_default();
    let id = match classify(image) {
        ImageKind::OurCopy(p) => p.source_image_id,
        ImageKind::Source { .. } => image.id.clone(),
    };
    (created, id)
}

/// The label a publication puts on its version: `created-<date>` (labels take letters,
/// digits, `.`, `-`, `_`; not `:`).
pub fn label_for(image: &Image) -> String {
    let (created, id) = publication_order(image);
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
