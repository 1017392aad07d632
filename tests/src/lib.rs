//! Test support for the integration tests: the moto server harness and seeding helpers.
//! Test code: panicking on an unexpected answer is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod moto;
pub mod seed;
