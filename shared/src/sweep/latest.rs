//! The night's publication: each publishing rule's newest fully shared image in the Region,
//! through the event functions' [`Publisher`] (issue 15's repair of parameters and shares).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::deps::{Deps, Encryption};
use crate::night::{Ledger, Run, LISTED};
use crate::ports::{Aws, Image};
use crate::publish::{publication_order, PublishStatus, Publisher, Publishing};
use crate::sweep::drift::{image_key_ids, Candidate};
use crate::sweep::report::SweepReport;

/// Each publishing rule's newest fully shared image in the Region, published through the event
/// functions' path ([`Publisher::publish`]): a missing or wrong parameter, an unfinished
/// publication and a share out of step with the rule are repaired. A few calls per rule, none
/// per image.
pub(super) async fn publish_latest<P: Aws + Publishing>(
    deps: &Deps<P>,
    run: &Run,
    candidates: &[Candidate<'_>],
    shared: &BTreeSet<&str>,
    keys_of: Option<&HashMap<&str, &Arc<str>>>,
    report: &mut SweepReport,
) {
    let publisher = Publisher::new(deps);
    let publishes = |r: &&crate::config::Rule| {
        r.publish
            .as_ref()
            .is_some_and(|p| p.shares_from_publisher(&r.share_with))
    };
    for rule in deps.policy.rules.iter().filter(publishes) {
        if !run.may_start() {
            report.left_for_next(format!("publication of rule {}", rule.name));
            return;
        }
        let mut mine: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| shared.contains(c.image.id.as_str()) && c.plan.rules.contains(&rule.name))
            .collect();
        mine.sort_by_key(|c| std::cmp::Reverse(publication_order(c.image)));
        for c in mine {
            // An image on aws/ebs is never shared itself (its re-encrypted copy is).
            if c.image.is_encrypted() {
                let enc = match keys_of {
                    Some(k) => known_encryption(deps, c.image, k).await,
                    None => None,
                };
                let enc = match enc {
                    Some(e) => e,
                    None => match deps.encryption(c.image).await {
                        Ok(e) => e,
                        Err(e) => {
                            report.drift.publications_failed.push(rule.name.clone());
                            report.error(&format!("publication of rule {}", rule.name), &e);
                            break;
                        }
                    },
                };
                if !enc.aws_managed.is_empty() {
                    continue;
                }
            }
            match publisher.publish(rule, c.image).await {
                Ok(p) => {
                    let d = &mut report.drift;
                    if matches!(p.status, PublishStatus::Published | PublishStatus::Finished)
                        || p.share.changes() > 0
                    {
                        d.publications_repaired += 1;
                    }
                    if d.publications.len() < LISTED {
                        d.publications.push(p);
                    }
                }
                Err(e) => {
                    report.drift.publications_failed.push(rule.name.clone());
                    report.error(
                        &format!("publication of rule {} ({})", rule.name, c.image.id),
                        &e,
                    )
                }
            }
            break;
        }
    }
}

/// The image's keys from the snapshot listing (`DescribeKey` once per key and warm Lambda);
/// `None` when some snapshot is missing from the listing (then convergence reads them).
pub(super) async fn known_encryption<P: Aws>(
    deps: &Deps<P>,
    image: &Image,
    keys_of: &HashMap<&str, &Arc<str>>,
) -> Option<Encryption> {
    if !image.is_encrypted() {
        return Some(Encryption::default());
    }
    if image
        .volumes
        .iter()
        .any(|v| v.encrypted && !keys_of.contains_key(v.snapshot_id.as_str()))
    {
        return None;
    }
    deps.encryption_by_keys(&image.region, image_key_ids(image, keys_of))
        .await
        .ok()
}
