//! The event path: what happens when an image or one of our copies becomes available. Each
//! event function is a thin handler over one service here, run inside the common [`frame`].
//!
//! - [`available`]: on-image-available — share ([`crate::share`]), start copies
//!   ([`crate::copy`]), publish ([`crate::publish`]);
//! - [`copy_complete`]: on-copy-complete — share the copy in its Region like its source,
//!   deprecate it like its source, publish it;
//! - [`frame`]: parse the event, run the service, summarise, count (EMF);
//! - [`follow`]: the target line's batches (copies into target accounts, started and
//!   followed until finished);
//! - [`line`]: draining a Region's copy line, reported and counted;
//! - [`queue`]: the burst path, an SQS batch of events with partial batch responses.

pub mod available;
pub mod copy_complete;
pub mod follow;
pub mod frame;
pub mod line;
pub mod queue;

pub use available::image_available;
pub use copy_complete::copy_complete;
pub use frame::{finish, on_ami_event};
pub use queue::{on_invocation, Response};
