//! The library shared by the three ami-share Lambda functions: the policy, the events, the
//! AWS ports and their adapters, the pure decisions, and the sharing service.

pub mod aws;
pub mod bootstrap;
pub mod config;
pub mod converge;
pub mod copies;
pub mod deps;
pub mod domain;
pub mod error;
pub mod event;
pub mod inventory;
pub mod metrics;
pub mod ports;
pub mod publish;
pub mod rate;
pub mod report;

pub use config::Policy;
pub use error::{AwsError, Error, Result};
