//! The Region's whole inventory for the night: every listing complete, or failed (a partial
//! inventory is not an inventory); listings that failed transiently are run again while the
//! deadline allows.

use crate::deps::Deps;
use crate::error::AwsError;
use crate::night::Run;
use crate::ports::{Aws, Image};
use crate::sweep::inventory::{Inventory, OwnSnapshot, RecycledImage, Reference};

/// The Region's inventory, each listing complete or failed.
pub struct Listings {
    pub images: Result<Vec<Image>, AwsError>,
    pub snapshots: Result<Vec<OwnSnapshot>, AwsError>,
    pub recycled: Result<Vec<RecycledImage>, AwsError>,
    pub launch_templates: Result<Vec<Reference>, AwsError>,
    pub launch_configurations: Result<Vec<Reference>, AwsError>,
}

pub async fn take_inventory<P: Aws + Inventory>(deps: &Deps<P>, region: &str) -> Listings {
    let (images, snapshots, recycled, launch_templates, launch_configurations) = futures::join!(
        deps.aws.list_own_images(region),
        deps.aws.list_own_snapshots(region, &deps.account_id),
        deps.aws.list_recycle_bin_images(region),
        deps.aws.list_launch_template_references(region),
        deps.aws.list_launch_configuration_references(region),
    );
    Listings {
        images,
        snapshots,
        recycled,
        launch_templates,
        launch_configurations,
    }
}

fn retry_transient<T>(slot: &Result<T, AwsError>) -> bool {
    matches!(slot, Err(e) if e.is_transient())
}

impl Listings {
    /// The listings that failed with an error a later attempt may cure.
    pub fn transient_failures(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if retry_transient(&self.images) {
            out.push("images");
        }
        if retry_transient(&self.snapshots) {
            out.push("snapshots");
        }
        if retry_transient(&self.recycled) {
            out.push("Recycle Bin");
        }
        if retry_transient(&self.launch_templates) {
            out.push("launch templates");
        }
        if retry_transient(&self.launch_configurations) {
            out.push("launch configurations");
        }
        out
    }

    /// Run again, whole, the listings that failed transiently.
    pub async fn retry_failed<P: Aws + Inventory>(&mut self, deps: &Deps<P>, region: &str) {
        let (images, snapshots, recycled, templates, configurations) = futures::join!(
            async {
                if retry_transient(&self.images) {
                    Some(deps.aws.list_own_images(region).await)
                } else {
                    None
                }
            },
            async {
                if retry_transient(&self.snapshots) {
                    Some(deps.aws.list_own_snapshots(region, &deps.account_id).await)
                } else {
                    None
                }
            },
            async {
                if retry_transient(&self.recycled) {
                    Some(deps.aws.list_recycle_bin_images(region).await)
                } else {
                    None
                }
            },
            async {
                if retry_transient(&self.launch_templates) {
                    Some(deps.aws.list_launch_template_references(region).await)
                } else {
                    None
                }
            },
            async {
                if retry_transient(&self.launch_configurations) {
                    Some(deps.aws.list_launch_configuration_references(region).await)
                } else {
                    None
                }
            },
        );
        if let Some(x) = images {
            self.images = x;
        }
        if let Some(x) = snapshots {
            self.snapshots = x;
        }
        if let Some(x) = recycled {
            self.recycled = x;
        }
        if let Some(x) = templates {
            self.launch_templates = x;
        }
        if let Some(x) = configurations {
            self.launch_configurations = x;
        }
    }
}

/// The whole inventory, re-running the listings that failed transiently while the deadline
/// allows. Returns the listings and the names of those re-run.
pub async fn complete_inventory<P: Aws + Inventory>(
    deps: &Deps<P>,
    run: &Run,
) -> (Listings, Vec<String>) {
    let mut listings = take_inventory(deps, &run.region).await;
    let mut retried = Vec::new();
    for delay in &run.listing_retry_delays {
        let failed = listings.transient_failures();
        if failed.is_empty() {
            break;
        }
        if run.time_left().is_some_and(|left| left <= *delay) {
            break;
        }
        tracing::warn!(region = %run.region, listings = ?failed, delay_s = delay.as_secs(), "listings failed transiently; running them again");
        retried.extend(failed.iter().map(|f| f.to_string()));
        tokio::time::sleep(*delay).await;
        listings.retry_failed(deps, &run.region).await;
    }
    (listings, retried)
}
