//! Copies owned by the target accounts (`copy_into`, EC2 Image Builder's `targetAccountIds`).
//!
//! The publisher first makes a copy possible: the source plan opens the image to the rule's
//! target accounts (launch permission, snapshots, KMS access; [`crate::plan::SharePlan::for_source`])
//! and nothing more. Then, for each target account and Region:
//!
//! - the event path ([`TargetCopier::start`], from on-image-available once the source is
//!   fully shared) assumes the target-account role and runs `CopyImage` *in the target
//!   account*, from the source, with a deterministic client token (a redelivered event gets
//!   the same copy back), provenance tags at creation and the target's key;
//! - the night ([`TargetCopier::finish`], for each rule's newest source image in the Region)
//!   lists the product's copies in each target account and Region (one `DescribeImages` per
//!   account and Region), starts what is missing (every event lost), and finishes what is
//!   available: the source's deprecation time, the target's parameter
//!   (`publish.in_target_accounts`), and `ami-share:superseded-by` (opt-in: deprecation) on
//!   the older copies.
//!
//! The copies are tracked, never owned: nothing here disables or deregisters a target's
//! copy, and an account that leaves the OU is no longer listed, so its copies stay as they are.
//!
//! - [`follow`]: the target line, which starts what one event did not and finishes each copy
//!   within minutes of its becoming available;
//! - [`ports`]: the calls made in a target account;
//! - [`request`]: the `CopyImage` request of a target copy;
//! - [`report`]: what became of each target copy;
//! - [`service`][]: [`TargetCopier`];
//! - [`store`]: a target account's Parameter Store, for its own newest-image parameter.

pub mod follow;
pub mod ports;
pub mod report;
pub mod request;
pub mod service;
pub mod store;

pub use follow::{Follow, FollowMessage, Followed, FOLLOW_DELAY_SECONDS};
pub use ports::TargetAccounts;
pub use report::{TargetCopyReport, TargetNight, TargetStatus};
pub use request::target_copy_request;
pub use service::TargetCopier;
