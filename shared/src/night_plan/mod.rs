//! The plan: what the next night would do in a Region, computed by running the night's own
//! decisions over a port that reads from AWS and records every write instead of making it
//! ([`Recorder`]). The same computation serves `ami-share plan` and the sweeper's input
//! mode `plan`; it cannot drift from what the night does, because it is the night.

mod recorded_night;
mod recorded_ports;
pub mod recorder;
pub mod summary;

pub use recorder::{Change, Recorder, Write};
pub use summary::{NightPlan, Section};
