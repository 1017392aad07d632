//! What the policy asks for one image, decided without AWS: which rules match it and what kind
//! of image it is ([`matching`]), and the desired state those rules add up to — launch
//! permissions, snapshot accounts, grants, copies — with its fingerprint ([`desired`]).
//! Pure: no async, no I/O. Sharing, copies, publication and retirement all start here.

pub mod desired;
pub mod matching;

pub use desired::{
    batches, AccountTargets, CopyDestination, Desired, IntoPlan, Members, SharePlan,
};
pub use matching::{
    classify, copy_rules, has_skip_tag, matching_rules, snapshots_copied_from, verify_copy,
    ImageKind, SkipReason,
};
