//! The library shared by the three ami-share Lambda functions, one folder per capability.
//! `docs/architecture.md` draws the whole picture; in short, from the bottom up:
//!
//! - foundations: [`error`], [`config`] (the policy, one file per section), [`event`] (the
//!   EventBridge envelope), [`names`] (the tags and names every capability writes);
//! - [`ports`]: the AWS services every capability reads through, and [`deps`], the wiring that
//!   holds them with the policy, caches and tunables;
//! - [`plan`]: what the policy asks for one image (pure);
//! - capabilities, each with its pure decisions, its service and the ports only it needs:
//!   [`copy`], [`share`], [`publish`], [`retire`], [`sweep`] (inventory, orphans, drift),
//!   [`target_copies`] (copies owned by the target accounts);
//! - reports: [`report`] (an event's summary), [`metrics`] (EMF), [`night`] (a night's run
//!   and ledger);
//! - entry points: [`distribute`] (the event functions' services), [`bootstrap`] (start-up);
//! - [`aws`]: the adapters, the only code that names SDK types.

pub mod allowed;
pub mod aws;
pub mod bootstrap;
pub mod config;
pub mod consumers;
pub mod copy;
pub mod deps;
pub mod distribute;
pub mod error;
pub mod event;
pub mod lineage;
pub mod marks;
pub mod metrics;
pub mod names;
pub mod night;
pub mod night_plan;
pub mod plan;
pub mod ports;
pub mod publish;
pub mod reasons;
pub mod report;
pub mod retire;
pub mod share;
pub mod status;
pub mod sweep;
pub mod target_copies;

pub use config::Policy;
pub use error::{AwsError, Error, Result};
