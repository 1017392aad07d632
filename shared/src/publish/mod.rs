//! Publication: a rule's newest fully shared image in a Region, for its consumers — a
//! Parameter Store parameter (`aws:ec2:image`), the rule's AWS RAM share of it, and an
//! "AMI Distributed" event.
//!
//! - [`decide`]: pure decisions (which image is newest, the receipt label, names and ARNs);
//! - [`service`]: the [`Publisher`], the one path for the event functions and the night;
//! - [`params`]: the one way a latest-image parameter is written (publisher and target
//!   accounts alike);
//! - [`ram`]: the rule's resource share;
//! - [`ports`]: Parameter Store, RAM and EventBridge, which only publication uses;
//! - [`report`]: what a publication did.

pub mod decide;
pub mod params;
pub mod ports;
mod ram;
pub mod report;
pub mod service;

pub use decide::{
    label_for, parameter_arn, publication_order, share_name, share_principals, EVENT_DETAIL_TYPE,
    EVENT_SOURCE, SHARE_RULE_TAG, VERSION_LIMIT_CODE,
};
pub use ports::Publishing;
pub use report::{Publication, PublishStatus, ShareChange};
pub use service::Publisher;
