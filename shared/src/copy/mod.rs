//! Copies: cross-Region copies of source images, and same-Region re-encrypted copies of images
//! whose snapshots use `aws/ebs`. Never waits for a copy: the destination Region's
//! `available` event (on-copy-complete, [`crate::distribute::copy_complete`]) or the nightly
//! run takes over.
//!
//! - [`request`]: the `CopyImage` request (deterministic name and client token, provenance
//!   tags) and the checks that refuse a copy before any starts;
//! - [`start`]: the [`Copier`] that starts a copy unless one exists;
//! - [`report`]: what became of each copy.

pub mod report;
pub mod request;
pub mod start;

pub use report::CopyReport;
pub use request::{check_copy_plan, copy_request, deprecation_for_copy, COPY_LIMIT_CODE};
pub use start::Copier;
