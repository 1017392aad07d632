//! The `CopyImage` request of a copy owned by a target account.

use std::collections::BTreeMap;

use crate::names::{
    source_image_tag, target_copy_name, target_copy_token, COPIED_BY_RULE_TAG,
    COPIED_FROM_ACCOUNT_TAG, COPIED_FROM_IMAGE_TAG, SOURCE_CREATED_TAG,
};
use crate::ports::{CopyRequest, Image};

/// The request a target account runs to copy `source` (owned by `publisher`) into `region`,
/// encrypted with `key_arn` (the target's key). Tags at creation: provenance (source image,
/// source account, rule) and the source's creation date (which orders a rule's copies). The
/// source's own tags are not copied (another account's tags are not the target's to read).
/// `attempt` > 0 after a failed copy (EC2 would return the failed copy for the same token).
pub fn target_copy_request(
    source: &Image,
    publisher: &str,
    rule: &str,
    region: &str,
    key_arn: &str,
    attempt: usize,
) -> CopyRequest {
    let mut tags = BTreeMap::from([
        (
            COPIED_FROM_IMAGE_TAG.to_string(),
            source_image_tag(&source.region, &source.id),
        ),
        (COPIED_FROM_ACCOUNT_TAG.to_string(), publisher.to_string()),
        (COPIED_BY_RULE_TAG.to_string(), rule.to_string()),
    ]);
    if let Some(created) = &source.creation_date {
        tags.insert(SOURCE_CREATED_TAG.to_string(), created.clone());
    }
    CopyRequest {
        source_region: source.region.clone(),
        source_image_id: source.id.clone(),
        destination_region: region.to_string(),
        name: target_copy_name(
            &source.name,
            publisher,
            &source.region,
            &source.id,
            rule,
            attempt,
        ),
        description: format!(
            "Copy of {} ({}, account {publisher}, {}) by ami-share rule {rule}",
            source.name, source.id, source.region
        ),
        client_token: target_copy_token(&source.region, &source.id, region, key_arn, rule, attempt),
        kms_key_id: Some(key_arn.to_string()),
        tags,
        copy_image_tags: false,
        completion_minutes: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::ImageState;

    fn source() -> Image {
        Image {
            id: "ami-0123456789abcdef0".into(),
            region: "us-east-1".into(),
            name: "golden/al2023 2026-12-01".into(),
            owner_id: "111111111111".into(),
            state: ImageState::Available,
            tags: BTreeMap::new(),
            volumes: Vec::new(),
            source_image_id: None,
            source_image_region: None,
            deprecation_time: None,
            creation_date: Some("2026-12-01T10:00:00.000Z".into()),
            last_launched_time: None,
            deregistration_protection: None,
            verified_source_created: None,
            watermarks: Vec::new(),
        }
    }

    #[test]
    fn deterministic_token_and_name_tags_at_creation_and_the_target_key() {
        let key = "arn:aws:kms:eu-west-1:222222222222:key/k";
        let a = target_copy_request(&source(), "111111111111", "golden", "eu-west-1", key, 0);
        let b = target_copy_request(&source(), "111111111111", "golden", "eu-west-1", key, 0);
        assert_eq!(a, b, "a redelivered event makes the same request");
        assert_eq!(a.kms_key_id.as_deref(), Some(key));
        assert!(!a.copy_image_tags);
        assert_eq!(
            a.tags[COPIED_FROM_IMAGE_TAG],
            "us-east-1/ami-0123456789abcdef0"
        );
        assert_eq!(a.tags[COPIED_FROM_ACCOUNT_TAG], "111111111111");
        assert_eq!(a.tags[COPIED_BY_RULE_TAG], "golden");
        assert_eq!(a.tags[SOURCE_CREATED_TAG], "2026-12-01T10:00:00.000Z");
        assert!(a
            .name
            .ends_with("--from-111111111111-us-east-1-ami-0123456789abcdef0-golden"));
        assert!(a.client_token.len() <= 64);
        let retry = target_copy_request(&source(), "111111111111", "golden", "eu-west-1", key, 1);
        assert_ne!(retry.client_token, a.client_token);
        assert_ne!(retry.name, a.name);
        let other_region =
            target_copy_request(&source(), "111111111111", "golden", "eu-west-2", key, 0);
        assert_ne!(other_region.client_token, a.client_token);
        // Issue 27 (10): another rule copying the same image into the same account, Region and
        // key asks for its own copy: another token and name (the same token with other tags is
        // refused by EC2, the same name too).
        let other_rule =
            target_copy_request(&source(), "111111111111", "silver", "eu-west-1", key, 0);
        assert_ne!(other_rule.client_token, a.client_token);
        assert_ne!(other_rule.name, a.name);
    }

    #[test]
    fn never_taken_for_a_copy_of_the_publishers_own() {
        let a = target_copy_request(&source(), "111111111111", "golden", "eu-west-1", "k", 0);
        assert!(crate::names::provenance_from_tags(&a.tags).is_none());
        assert!(crate::names::provenance_from_name(&a.name).is_none());
        assert!(!a.tags.contains_key(crate::names::MANAGED_TAG));
    }
}
