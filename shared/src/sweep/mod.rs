//! The night's own capabilities: the Region's inventory, the orphan sweep and drift repair.
//! The sweeper function runs them side by side each night, then [`crate::retire`].
//!
//! - [`inventory`]: the port over a whole Region (every image, snapshot, Recycle Bin image,
//!   launch template and launch configuration reference), which only the night needs;
//! - [`listings`]: taking that inventory complete, listings re-run while the deadline allows;
//! - [`orphans`]: orphaned snapshots, judged and reclaimed;
//! - [`drift`]: every managed image brought back to the policy, through the same
//!   [`crate::share::Convergence`] and [`crate::publish::Publisher`] as the events;
//! - `latest`: each publishing rule's newest fully shared image published after the repair;
//! - [`keys`]: key access per key after the images: key policies checked, grants pruned;
//! - [`targets`]: copies into target accounts (`copy_into`) confirmed and finished;
//! - [`report`]: the night's report and its metrics.

pub mod consumers;
pub mod drift;
pub mod inventory;
pub mod keys;
mod latest;
pub mod listings;
pub mod orphans;
pub mod report;
pub mod targets;

pub use report::SweepReport;
