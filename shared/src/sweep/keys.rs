//! The night's key access, per customer managed key after all images: key policies checked
//! once a night (`kms_access: key_policy`), and our grants that no image needs any more pruned.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Error;
use crate::names::{account_of_principal, grant_name, GRANTS_TAG};
use crate::night::{Ledger, Run, LISTED};
use crate::ports::{Aws, KeyManager};
use crate::share::Convergence;
use crate::sweep::inventory::Inventory;
use crate::sweep::report::SweepReport;

/// Key ARN → accounts some image encrypted with it still needs a grant for; `None` once an
/// image using the key is not ours to judge (its grants are then never pruned this run).
pub(crate) type KeyNeeds = BTreeMap<String, Option<BTreeSet<String>>>;

/// Key ARN → the organizations and OUs whose access to it the key policy must give
/// (`kms_access: key_policy`).
pub(crate) type PolicyNeeds = BTreeMap<String, BTreeSet<String>>;

/// Each customer managed key whose organizations and OUs reach it by key policy, checked once
/// a night (one `GetKeyPolicy` per key, whatever the number of images or accounts; the
/// night's convergences already read it when they needed it). A key that does not admit them
/// is reported with the statement to add, and its grants are not pruned tonight (they may be
/// all the access its consumers have).
pub(crate) async fn verify_key_policies<P: Aws>(
    conv: &Convergence<'_, P>,
    run: &Run,
    policy_needs: &PolicyNeeds,
    needs: &mut KeyNeeds,
    report: &mut SweepReport,
) {
    let deps = conv.deps();
    for (key_arn, arns) in policy_needs {
        let checked = async {
            if deps.key_info(&run.region, key_arn).await?.manager != KeyManager::Customer {
                return Ok(false);
            }
            conv.check_key_policy(&run.region, key_arn, arns).await?;
            Ok::<_, Error>(true)
        }
        .await;
        match checked {
            Ok(false) => {}
            Ok(true) => report.drift.key_policies_checked += 1,
            Err(e) => {
                report.drift.key_policies_checked += 1;
                report.drift.key_policies_refused.push(key_arn.clone());
                report.error(&format!("key policy of {key_arn}"), &e);
                needs.insert(key_arn.clone(), None);
            }
        }
    }
}

/// Our grants (named `ami-share-<account>`) on customer managed keys of our images that no
/// image encrypted with that key needs any more.
pub(crate) async fn prune_grants<P: Aws + Inventory>(
    conv: &Convergence<'_, P>,
    run: &Run,
    needs: &KeyNeeds,
    report: &mut SweepReport,
) -> Result<(), Error> {
    let deps = conv.deps();
    for (key_arn, need) in needs {
        let Some(need) = need else { continue };
        if !run.may_start() {
            report.left_for_next("grant pruning".into());
            return Ok(());
        }
        if deps.key_info(&run.region, key_arn).await?.manager != KeyManager::Customer {
            continue;
        }
        let grants = conv.grants(&run.region, key_arn).await?;
        let mut revoked = false;
        for g in grants {
            let Some(account) = account_of_principal(&g.grantee_principal) else {
                continue;
            };
            if g.name.as_deref() != Some(grant_name(account).as_str()) || need.contains(account) {
                continue; // not ours, or still needed
            }
            let line = format!("{key_arn}: {account}");
            let d = &mut report.drift;
            if deps.policy.sweeper.prune_unlisted_shares {
                if !revoked {
                    // The event path's receipts on this key stop being true with the first
                    // revocation: removed before it, so no event skips a grant it needs.
                    deps.aws
                        .remove_key_tag(&run.region, key_arn, GRANTS_TAG)
                        .await?;
                    revoked = true;
                }
                deps.aws
                    .revoke_grant(&run.region, key_arn, &g.grant_id)
                    .await?;
                d.pruned_total += 1;
                if d.pruned.grants.len() < LISTED {
                    d.pruned.grants.push(line);
                }
            } else {
                d.would_prune_total += 1;
                if d.would_prune.grants.len() < LISTED {
                    d.would_prune.grants.push(line);
                }
            }
        }
    }
    Ok(())
}
