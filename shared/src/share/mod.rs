//! Sharing: bring one image to the state the policy asks for in its own Region — launch
//! permissions, snapshot permissions, KMS grants, the managed tag — start its copies, and
//! record a fingerprint of that state once it is all true.
//!
//! - [`converge`]: the [`Convergence`] service, the one path to that state for the event
//!   functions and the nightly repair alike;
//! - [`check`]: every read and refusal of an image, before anything is written;
//! - [`write`]: the shares, once every check passed;
//! - [`grants`]: the KMS grants of the keys an image uses;
//! - [`key_policy`]: KMS access by key policy for organizations and OUs (checked, pure);
//! - [`prune`]: removing shares no rule asks for, from the product's own images;
//! - [`report`]: what converging an image did.
//!
//! What the policy asks for an image is decided in [`crate::plan`]; the copies are started by
//! [`crate::copy`].

mod check;
pub mod converge;
mod grants;
pub mod key_policy;
mod prune;
pub mod report;
mod write;

pub use converge::{already_recorded, is_managed, Convergence, CONVERGED_AT_TAG, PLAN_TAG};
pub use grants::KeyState;
pub use report::{Converged, GrantRecord, ShareReport, SnapshotShare, Unlisted};
