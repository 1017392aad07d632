//! The reason codes: why an image is not where the policy wants it, each with its fix. One
//! fixed list for `ami-share status`, the night's report and the docs
//! (docs/operations.md#status-where-is-image-x-and-why-not-in-account-y).

use serde::Serialize;

/// Every reason code `status` (and the night's report) gives, with its fix.
pub const REASONS: &[(&str, &str)] = &[
    ("not-shared", "the launch permission is missing: the next night adds it (sweeper), or look for the error in the image's last event summary"),
    ("snapshot-not-shared", "a snapshot is not shared with the account: the next night adds it; an account that joined an OU since is added then"),
    ("no-key-access", "no KMS grant for the account on the image's customer managed key: the next night creates it (grant_kms)"),
    ("key-policy-refuses", "kms_access is key_policy and the key policy does not admit the OU or organization: add the statement shown"),
    ("copy-missing", "no copy in the Region yet: the next night starts it (or the event's copy failed: see its summary)"),
    ("copy-pending", "the copy is in flight: it is shared when it becomes available (on-copy-complete)"),
    ("copy-waiting", "the copy waits in the Region's copy line for a free slot (20 copies in flight per Region): it starts when one ends"),
    ("copy-failed", "the copy failed: the next night starts it again under a new name"),
    ("not-published", "the rule's parameter does not exist in the Region: the next night publishes the newest fully shared image"),
    ("target-copy-missing", "the target account holds no copy: the target line or the next night starts it"),
    ("target-copy-pending", "the target account's copy is in flight: its parameter moves once it is available"),
    ("target-copy-failed", "the target account's copy failed: the next night starts it again"),
    ("target-copy-unwatermarked", "the target account's copy was made before its source carried the rule's watermark, so consumers admitting the images by watermark cannot see it: the next image's copy carries it; or deregister this copy in the target account and the next night copies the source again, watermarked"),
    ("role-not-assumable", "the target role could not be assumed in the account: deploy the target-account StackSet there (docs/deploy.md)"),
    ("not-allowed-in-consumer", "the account's Allowed AMIs criteria exclude the image, though it is shared: admit the rule's watermark there (docs/consumers.md)"),
    ("account-suspended", "the account is suspended or closing in the organization: nothing can be shared with it"),
    ("outside-rule", "no rule of the policy selects the image: check the rule's match (name, tags) and the policy deployed"),
    ("forged-provenance", "the image claims to be our copy but EC2's lineage disagrees: it is never shared, published or retired"),
    ("share-refused", "the product refused part of the share (block public access, an aws/ebs key, …): the detail says what to change"),
    ("source-gone", "our copy's source is gone: the copy keeps its shares, nothing new is shared"),
    ("not-ours", "the image is owned by another account: the product shares only its own account's images"),
    ("retired", "the image is deprecated or disabled by the rule's retirement: consumers should launch the rule's newest image"),
];

/// One missing piece: its code, what exactly, and the fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub code: &'static str,
    pub detail: String,
    pub fix: &'static str,
}

impl Reason {
    pub fn new(code: &'static str, detail: impl Into<String>) -> Self {
        let fix = REASONS
            .iter()
            .find(|(c, _)| *c == code)
            .map_or("", |(_, f)| f);
        Self {
            code,
            detail: detail.into(),
            fix,
        }
    }
}
