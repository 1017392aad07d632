//! Deterministic names, tokens and tags: what makes retries and redeliveries idempotent and
//! lets every function recognise the product's own copies.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// Tag on copies: `<source-region>/<source-image-id>`.
pub const SOURCE_IMAGE_TAG: &str = "ami-share:source-image";
/// Tag on copies: the names of the rules that asked for the copy, comma-separated.
pub const SOURCE_RULE_TAG: &str = "ami-share:source-rule";
/// Tag on copies: `region-copy` or `reencrypt`.
pub const COPY_KIND_TAG: &str = "ami-share:copy-kind";
/// Tag on images the product manages (shares).
pub const MANAGED_TAG: &str = "ami-share:managed";
/// Tag on copies: the source's creation date, which orders a rule's images in every Region
/// (a copy's own creation date is when it was copied).
pub const SOURCE_CREATED_TAG: &str = "ami-share:source-created";

/// Operations a consumer account needs on a customer managed key to launch from, and to copy,
/// an image encrypted with it (aws-facts §4).
pub const GRANT_OPERATIONS: [&str; 7] = [
    "Decrypt",
    "DescribeKey",
    "CreateGrant",
    "ReEncryptFrom",
    "ReEncryptTo",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
];

/// The grant name for an account on a key: the same on every retry, so a retry finds (and
/// KMS returns) the existing grant instead of creating a second one.
pub fn grant_name(account: &str) -> String {
    format!("ami-share-{account}")
}

/// Tag on a customer managed key: the receipts of the account sets whose grants the event
/// path created in full (fingerprints of [`grant_set_fingerprint`], newest first, space
/// separated). An event whose accounts' fingerprint is there needs neither `ListGrants` nor
/// `CreateGrant`; the night never trusts it and removes it when it revokes a grant.
pub const GRANTS_TAG: &str = "ami-share:grants";
/// Most receipts kept in [`GRANTS_TAG`] (17 characters each; a tag value holds 256).
pub const GRANT_RECEIPTS: usize = 12;

/// A short, stable fingerprint of a set of grantee accounts (16 hex digits).
pub fn grant_set_fingerprint<'a>(accounts: impl IntoIterator<Item = &'a String>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for a in accounts {
        h.update(a.as_bytes());
        h.update(b",");
    }
    hex::encode(h.finalize())[..16].to_string()
}

/// `arn:aws:iam::<account>:root`.
pub fn account_principal(account: &str) -> String {
    format!("arn:aws:iam::{account}:root")
}

/// The account of an `arn:aws:iam::<account>:root` principal.
pub fn account_of_principal(principal: &str) -> Option<&str> {
    principal
        .strip_prefix("arn:aws:iam::")?
        .strip_suffix(":root")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CopyKind {
    /// A copy to another Region.
    RegionCopy,
    /// A same-Region copy re-encrypted with a customer managed key (the source used `aws/ebs`).
    Reencrypt,
}

impl CopyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CopyKind::RegionCopy => "region-copy",
            CopyKind::Reencrypt => "reencrypt",
        }
    }
    fn name_marker(self) -> &'static str {
        match self {
            CopyKind::RegionCopy => "--copy-of-",
            CopyKind::Reencrypt => "--reenc-of-",
        }
    }
}

/// Where a copy of ours came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub source_region: String,
    pub source_image_id: String,
    pub kind: CopyKind,
    /// Rule names from the tag; empty when only the name was left.
    pub rules: Vec<String>,
}

/// Read provenance from our tags.
pub fn provenance_from_tags(tags: &BTreeMap<String, String>) -> Option<Provenance> {
    let (region, image) = tags.get(SOURCE_IMAGE_TAG)?.split_once('/')?;
    if !image.starts_with("ami-") || region.is_empty() {
        return None;
    }
    let kind = match tags.get(COPY_KIND_TAG).map(String::as_str) {
        Some("reencrypt") => CopyKind::Reencrypt,
        _ => CopyKind::RegionCopy,
    };
    let rules = tags
        .get(SOURCE_RULE_TAG)
        .map(|r| {
            r.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Some(Provenance {
        source_region: region.to_string(),
        source_image_id: image.to_string(),
        kind,
        rules,
    })
}

/// Read provenance from our deterministic copy name (see [`copy_name`]).
pub fn provenance_from_name(name: &str) -> Option<Provenance> {
    for kind in [CopyKind::RegionCopy, CopyKind::Reencrypt] {
        if let Some((_, suffix)) = name.rsplit_once(kind.name_marker()) {
            // suffix: <region>-ami-<hex>[-r<attempt>]
            let at = suffix.find("-ami-")?;
            let (region, image) = (&suffix[..at], &suffix[at + 1..]);
            let image = match image.rsplit_once("-r") {
                Some((img, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => img,
                _ => image,
            };
            if crate::config::is_region(region)
                && image.len() > 4
                && image[4..].bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Some(Provenance {
                    source_region: region.to_string(),
                    source_image_id: image.to_string(),
                    kind,
                    rules: Vec::new(),
                });
            }
        }
    }
    None
}

/// Deterministic name of a copy: `<source name>--copy-of-<region>-<ami-id>` (or `--reenc-of-`),
/// the source name shortened so the whole fits AMI names' 128 characters. Characters AMI names
/// do not allow are replaced with `-`.
///
/// `attempt` 0 is the first copy; a copy started again after a failed one gets `-r<attempt>`.
pub fn copy_name(
    source_name: &str,
    source_region: &str,
    source_image_id: &str,
    kind: CopyKind,
    attempt: usize,
) -> String {
    let retry = retry_suffix(attempt);
    let suffix = format!(
        "{}{}-{}{retry}",
        kind.name_marker(),
        source_region,
        source_image_id
    );
    ami_name(source_name, &suffix)
}

/// Deterministic `ClientToken` (at most 64 ASCII characters) of a copy: a redelivered event
/// or a retried call can never start a second copy.
/// `attempt` distinguishes a copy started again after a failed one (EC2 would otherwise return
/// the failed copy for the same token).
pub fn copy_client_token(
    source_region: &str,
    source_image_id: &str,
    destination_region: &str,
    kms_key: Option<&str>,
    attempt: usize,
) -> String {
    let mut h = Sha256::new();
    let attempt = attempt.to_string();
    for part in [
        source_region,
        source_image_id,
        destination_region,
        kms_key.unwrap_or("-"),
        attempt.as_str(),
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let digest = hex::encode(h.finalize());
    format!("ami-share-{}", &digest[..48])
}

/// Value of [`SOURCE_IMAGE_TAG`].
pub fn source_image_tag(region: &str, image_id: &str) -> String {
    format!("{region}/{image_id}")
}

/// Tags on a copy owned by a target account (`copy_into`), put on at creation. They differ
/// from the publisher's own copies' tags ([`SOURCE_IMAGE_TAG`], [`MANAGED_TAG`]), so that a
/// target account that runs ami-share itself never takes them for copies of its own.
/// `<source-region>/<source-image-id>`.
pub const COPIED_FROM_IMAGE_TAG: &str = "ami-share:copied-from-image";
/// The publisher account (the source's owner); what the product lists a target's copies by.
pub const COPIED_FROM_ACCOUNT_TAG: &str = "ami-share:copied-from-account";
/// The rule that asked for the copy.
pub const COPIED_BY_RULE_TAG: &str = "ami-share:copied-by-rule";
/// On a target's copy of an older image: the target's copy of the rule's newer image, which
/// replaces it. The product never disables or deregisters a target's copy.
pub const SUPERSEDED_BY_TAG: &str = "ami-share:superseded-by";

/// Deterministic name of a copy owned by a target account:
/// `<source name>--from-<publisher>-<region>-<ami-id>-<rule>`, shortened to AMI names' 128
/// characters. The rule is part of it: two rules copying one image into one account and
/// Region make two copies, each with its own name and token (one name would be refused as a
/// duplicate, one token with other tags as a mismatch).
pub fn target_copy_name(
    source_name: &str,
    publisher: &str,
    source_region: &str,
    source_image_id: &str,
    rule: &str,
    attempt: usize,
) -> String {
    let retry = retry_suffix(attempt);
    let suffix = format!("--from-{publisher}-{source_region}-{source_image_id}-{rule}{retry}");
    ami_name(source_name, &suffix)
}

/// Deterministic `ClientToken` of a copy owned by a target account: the copy's
/// [`copy_client_token`] with the rule that asks for it (see [`target_copy_name`]).
pub fn target_copy_token(
    source_region: &str,
    source_image_id: &str,
    destination_region: &str,
    kms_key: &str,
    rule: &str,
    attempt: usize,
) -> String {
    let keyed = format!("{kms_key}\0rule:{rule}");
    copy_client_token(
        source_region,
        source_image_id,
        destination_region,
        Some(&keyed),
        attempt,
    )
}

/// `<base><suffix>` within AMI names' 128 characters: the base shortened, characters AMI names
/// do not allow replaced with `-`.
fn ami_name(base: &str, suffix: &str) -> String {
    let room = 128usize.saturating_sub(suffix.len());
    let base: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "() ./-'@_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(room)
        .collect();
    format!("{base}{suffix}")
}

/// `-r<attempt>` on the name of a copy started again after a failed one; nothing on the first.
fn retry_suffix(attempt: usize) -> String {
    if attempt == 0 {
        String::new()
    } else {
        format!("-r{attempt}")
    }
}

/// Tag recording the fingerprint of the desired state an image was last fully converged to.
pub const PLAN_TAG: &str = "ami-share:plan";
