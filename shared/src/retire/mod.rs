//! Retirement: each night, per Region, the rules with `retire` take their older images through
//! deprecate, disable and deregister, never while anything still uses them.
//!
//! - [`stage`]: pure decisions — which images a rule selects, which stage each has reached,
//!   which is next;
//! - [`service`]: the night's [`retire`] (the sweeper calls it after drift repair): which
//!   images are due for which stage; `take`: the due stages taken within the night's budget;
//! - [`usage`]: what still uses an image (references, launches, consumer usage reports);
//! - [`ports`]: image references, usage reports, disable and deregister, which only
//!   retirement uses;
//! - [`report`]: its part of the night's report;
//! - [`marks`]: the stage marks' proof (issue 25).

pub mod marks;
pub mod ports;
pub mod report;
pub mod service;
pub mod stage;
mod take;
pub mod usage;

pub use ports::Retirement;
pub use report::{RetireItem, RetireLog, RetireReport};
pub use service::{retire, CHECKS_PER_STAGE};
pub use stage::{Stage, STAGE_AT_TAG, STAGE_TAG, USAGE_REPORT_TAG};
pub use usage::USAGE_REPORT_MAX_AGE_DAYS;
