//! Copies: cross-Region copies of source images, and same-Region re-encrypted copies of images
//! whose snapshots use `aws/ebs`. Every copy goes through its destination Region's waiting
//! line ([`line`]), so no more are in flight there than EC2 allows; never waits for a copy:
//! the destination Region's `available` event (on-copy-complete,
//! [`crate::distribute::copy_complete`]) takes over, and drains the line again.
//!
//! - [`request`]: the `CopyImage` request (deterministic name and client token, provenance
//!   tags) and the checks that refuse a copy before any starts;
//! - [`line`]: the waiting line of each destination Region ([`Line`]);
//! - [`start`]: the [`Copier`] that starts a copy (through the line) unless one exists;
//! - [`report`]: what became of each copy.

pub mod line;
pub mod report;
pub mod request;
pub mod start;

pub use line::{clear_source_fingerprint, Drained, DroppedCopy, Line, LineReport, WaitingCopy};
pub use report::CopyReport;
pub use request::{check_copy_plan, copy_request, deprecation_for_copy, COPY_LIMIT_CODE};
pub use start::Copier;
