//! Orphaned snapshots: the snapshots deregistered images left behind, found with proof and
//! reclaimed, never one still in use.
//!
//! - [`judge`]: pure decisions — is this snapshot an orphan, with what proof, or why is it
//!   kept; what to do about it tonight;
//! - [`service`]: the night's orphan sweep over the complete inventory (mark, unmark, delete).

pub mod judge;
pub mod service;
#[cfg(test)]
mod tests;

pub use judge::{decide, judge, mark_value, parse_mark, Action, InUse, KeepReason, Verdict};
pub use service::{sweep, DELETE_CONCURRENCY, IN_USE_CODE};
