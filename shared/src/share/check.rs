//! The first half of converging an image: every read, and every refusal, before anything is
//! written — the image's keys (and what each customer managed key gives), its launch and
//! snapshot permissions, image block public access, the organization listings it needs; the
//! `aws/ebs` rule, a public share that cannot be made, the launch permission quota; and the key
//! policy of every Region's key its copies will use ([`Convergence::check_copy_keys`]). No copy
//! starts and nothing is shared before all of them pass.

use std::collections::BTreeSet;

use futures::stream::{self, StreamExt, TryStreamExt};

use super::converge::Convergence;
use crate::deps::{aws_managed_message, snapshot_ids, Encryption, LAUNCH_PERMISSION_QUOTA};
use crate::error::{Error, Result};
use crate::plan::{CopyDestination, Desired, SharePlan};
use crate::ports::{Aws, Image, LaunchPermissions};

/// What the checks found: the image is shared as it is, or (its snapshots use `aws/ebs`) a
/// re-encrypted copy is made and shared instead.
pub(super) enum Checked {
    /// Share the image itself.
    Share(Box<ShareChecked>),
    /// Make a same-Region copy re-encrypted with this customer managed key.
    Reencrypt { cmk: String },
}

/// What [`Convergence::check`] read.
struct Reads {
    enc: Encryption,
    current_launch: LaunchPermissions,
    current_snaps: Vec<(String, BTreeSet<String>)>,
    /// Image block public access is on in the Region (read only for a public share).
    blocked: bool,
}

/// The reads of an image and what they decided, for the writes.
pub(super) struct ShareChecked {
    pub enc: Encryption,
    pub current_launch: LaunchPermissions,
    pub current_snaps: Vec<(String, BTreeSet<String>)>,
    pub desired: Desired,
    /// The launch permissions to add.
    pub add: LaunchPermissions,
    /// A part of the share that cannot be made (a new public share), with why.
    pub refused: Option<String>,
}

impl<P: Aws> Convergence<'_, P> {
    /// Read everything `image` needs under `plan` and refuse what cannot be done; writes
    /// nothing. `enc`: the image's keys when already known (the sweeper's snapshot listing).
    pub(super) async fn check(
        &self,
        image: &Image,
        plan: &SharePlan,
        may_copy: bool,
        enc: Option<Encryption>,
    ) -> Result<Checked> {
        let region = image.region.as_str();
        let Reads {
            enc,
            current_launch,
            current_snaps,
            blocked,
        } = self.read(image, plan, enc).await?;
        let desired = self.desired(image, plan, may_copy);
        // aws/ebs cannot be shared: a same-Region copy re-encrypted with a customer managed
        // key is made and shared instead.
        if let Some(key) = enc.aws_managed.first() {
            if desired.shares_anything() {
                let Some(cmk) = self.deps.policy.reencrypt_with.get(region) else {
                    return Err(Error::refused(
                        &image.id,
                        aws_managed_message(image, &key.arn),
                    ));
                };
                return Ok(Checked::Reencrypt { cmk: cmk.clone() });
            }
        }

        // A new public share that cannot be made is refused on its own: an image that is
        // public already stays so (block public access blocks only new public shares), and
        // the accounts, organizations, OUs and snapshots are shared all the same.
        let mut want = desired.launch.clone();
        let mut refused = None;
        if want.public && !current_launch.public {
            let why = if image.is_encrypted() {
                Some("encrypted images cannot be made public; remove share_with.public from the rule or share an unencrypted image".to_string())
            } else if blocked {
                Some(format!("image block public access is on in {region}, so a new public share is refused; turn it off (ec2 disable-image-block-public-access) or remove share_with.public from the rule"))
            } else {
                None
            };
            if let Some(why) = why {
                want.public = false;
                refused = Some(format!("public share of {}: {why}", image.id));
            }
        }
        let add = want.missing_from(&current_launch);
        let total = current_launch.len() + add.len();
        if total > LAUNCH_PERMISSION_QUOTA {
            return Err(Error::refused(
                &image.id,
                format!("sharing would give the image {total} launch permission entities, over the quota of {LAUNCH_PERMISSION_QUOTA} per image and Region; share with organizations or OUs instead of single accounts"),
            ));
        }
        Ok(Checked::Share(Box::new(ShareChecked {
            enc,
            current_launch,
            current_snaps,
            desired,
            add,
            refused,
        })))
    }

    /// Every read, all at once: the organization listings the image needs, its keys (then,
    /// still among the reads, what each customer managed key gives), its launch and snapshot
    /// permissions, and (for a public share) image block public access.
    async fn read(
        &self,
        image: &Image,
        plan: &SharePlan,
        enc: Option<Encryption>,
    ) -> Result<Reads> {
        let region = image.region.as_str();
        let snapshots = snapshot_ids(image);
        let keys = async {
            let enc = match enc {
                Some(e) => e,
                None => self.deps.encryption(image).await?,
            };
            self.read_key_access(image, plan, &enc).await?;
            Ok::<_, Error>(enc)
        };
        let read_snapshots = stream::iter(snapshots.iter())
            .map(|s| async move {
                let current = self.deps.aws.create_volume_permissions(region, s).await?;
                Ok::<_, Error>((s.clone(), current))
            })
            .buffer_unordered(self.deps.settings.concurrency)
            .try_collect::<Vec<_>>();
        let read_launch =
            async { Ok::<_, Error>(self.deps.aws.launch_permissions(region, &image.id).await?) };
        let read_blocked = async {
            if plan.launch.public && !image.is_encrypted() {
                Ok::<_, Error>(self.deps.aws.public_sharing_blocked(region).await?)
            } else {
                Ok(false)
            }
        };
        let ((), enc, current_launch, current_snaps, blocked) = futures::try_join!(
            self.ensure_members(image, plan),
            keys,
            read_launch,
            read_snapshots,
            read_blocked
        )?;
        Ok(Reads {
            enc,
            current_launch,
            current_snaps,
            blocked,
        })
    }

    /// Under `kms_access: key_policy`, the key of every Region a copy goes to must admit the
    /// rule's organizations and OUs too, or the copy would be shared with them in its Region
    /// while the source is refused here: checked before any copy starts (`DescribeKey` for an
    /// alias, `GetKeyPolicy` once per key). Only encrypted images' copies use those keys.
    pub(super) async fn check_copy_keys(
        &self,
        image: &Image,
        plan: &SharePlan,
        copies: &[CopyDestination],
    ) -> Result<()> {
        let by_policy: BTreeSet<String> = plan.kms_policy.groups().cloned().collect();
        if by_policy.is_empty() || !image.is_encrypted() {
            return Ok(());
        }
        let by_policy = &by_policy;
        stream::iter(
            copies
                .iter()
                .filter_map(|c| Some((&c.region, c.kms_key_id.as_ref()?))),
        )
        .map(|(region, key)| async move {
            let arn = if key.starts_with("arn:aws") && key.contains(":key/") {
                key.clone()
            } else {
                self.deps.aws.describe_key(region, key).await?.arn
            };
            self.check_key_policy(region, &arn, by_policy).await
        })
        .buffer_unordered(self.deps.settings.concurrency)
        .try_collect::<Vec<()>>()
        .await?;
        Ok(())
    }
}
