//! The ports: what the product needs from AWS, in its own words and types.
//!
//! No SDK type crosses these traits. The adapters in [`crate::aws`] implement them over the
//! real SDK clients; `amishare_testkit::FakeAws` (a dev-only crate) implements them in memory.
//! Listing methods return everything: paginating is the adapter's job.
//!
//! Here are the ports every capability reads through (EC2, KMS, Organizations), one file per
//! AWS service, and their union [`Aws`]. A port only one capability needs lives in that
//! capability's folder: [`crate::publish::ports`] (Parameter Store, RAM, EventBridge),
//! [`crate::retire::ports`] (image references, usage reports, disable, deregister),
//! [`crate::sweep::inventory`] (the Region's whole inventory, for the night).

mod ec2;
mod kms;
mod line;
mod org;

use crate::error::AwsError;

pub use ec2::{
    CopyRequest, EbsVolume, Image, ImageState, Images, LaunchPermissions, Snapshot, Snapshots,
    MAX_TAG_RESOURCES,
};
pub use kms::{Grant, GrantRequest, KeyInfo, KeyManager, Keys};
pub use line::{CopyLine, LineEntry};
pub use org::{Org, OrgAccount};

pub type AwsResult<T> = Result<T, AwsError>;

/// The ports of sharing: what every capability needs (images, snapshots, keys, the
/// organization, the copies' waiting line).
pub trait Aws: Images + Snapshots + Keys + Org + CopyLine {}
impl<T: Images + Snapshots + Keys + Org + CopyLine> Aws for T {}
