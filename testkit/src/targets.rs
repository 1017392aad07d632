//! The target accounts of `copy_into`: their own images, keys and parameters, kept apart from
//! the publisher's world, and the rules AWS applies to a cross-account `CopyImage`: the
//! source must be shared with the target (launch permission by account, OU or organization;
//! every snapshot; a KMS grant or a key policy admitting it for encrypted snapshots).

use std::collections::{BTreeMap, BTreeSet};

use amishare::names::{account_of_principal, COPIED_FROM_ACCOUNT_TAG};
use amishare::ports::*;
use amishare::publish::ports::ParameterVersion;
use amishare::target_copies::TargetAccounts;
use async_trait::async_trait;

use crate::{err, FakeAws, World};

/// One version of a target parameter: (value, labels).
pub type Version = (String, Vec<String>);

/// A target account's key.
#[derive(Debug, Clone)]
pub struct TargetKey {
    pub info: KeyInfo,
    pub aliases: Vec<String>,
}

/// Everything in the target accounts.
#[derive(Debug, Default)]
pub struct FakeTargets {
    /// (account, Region) → that account's images there.
    pub images: BTreeMap<(String, String), Vec<FakeTargetImage>>,
    /// (account, Region) → its keys.
    pub keys: BTreeMap<(String, String), Vec<TargetKey>>,
    /// (account, Region) → its default EBS key (`alias/aws/ebs` unless set).
    pub default_keys: BTreeMap<(String, String), String>,
    /// Accounts whose target-account role cannot be assumed (not installed, or no trust).
    pub unassumable: BTreeSet<String>,
    /// (account, Region, name) → versions, oldest first: (value, labels). Parameter Store
    /// keeps 100: see `parameter_deleted`.
    pub parameters: BTreeMap<(String, String, String), Vec<Version>>,
    /// (account, Region, name) → how many of its oldest versions Parameter Store deleted (the
    /// version of `parameters[i]` is this + i + 1).
    pub parameter_deleted: BTreeMap<(String, String, String), i64>,
}

#[derive(Debug, Clone)]
pub struct FakeTargetImage {
    pub image: Image,
    pub client_token: String,
    /// The key the copy was encrypted with.
    pub kms_key_id: Option<String>,
    /// Deregistered long enough ago that `DescribeImages` no longer shows it; EC2 still
    /// answers its client token with its id.
    pub vanished: bool,
}

impl FakeAws {
    /// A target account with a customer managed key `alias/consumer-ami` in each Region, also
    /// its default EBS key. Returns the key ARNs by Region.
    pub fn add_target_account(&self, account: &str, regions: &[&str]) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for region in regions {
            let arn = format!("arn:aws:kms:{region}:{account}:key/target-{account}-{region}");
            self.add_target_key(
                account,
                region,
                &arn,
                KeyManager::Customer,
                "alias/consumer-ami",
            );
            out.insert(region.to_string(), arn);
        }
        out
    }

    /// The account's default EBS key in the Region becomes the AWS managed `aws/ebs`.
    pub fn target_default_key_aws_managed(&self, account: &str, region: &str) {
        let arn = format!("arn:aws:kms:{region}:{account}:key/aws-ebs");
        self.add_target_key(account, region, &arn, KeyManager::Aws, "alias/aws/ebs");
    }

    /// A key of the target account, which becomes its default EBS key in the Region.
    fn add_target_key(
        &self,
        account: &str,
        region: &str,
        arn: &str,
        manager: KeyManager,
        alias: &str,
    ) {
        let mut w = self.world();
        let at = (account.to_string(), region.to_string());
        w.targets
            .keys
            .entry(at.clone())
            .or_default()
            .push(TargetKey {
                info: KeyInfo {
                    arn: arn.to_string(),
                    manager,
                    enabled: true,
                },
                aliases: vec![alias.to_string()],
            });
        w.targets.default_keys.insert(at, arn.to_string());
    }

    /// The role in `account` can no longer be assumed.
    pub fn deny_target_role(&self, account: &str) {
        self.world().targets.unassumable.insert(account.to_string());
    }

    /// The account's images in the Region.
    pub fn target_images(&self, account: &str, region: &str) -> Vec<Image> {
        self.world()
            .targets
            .images
            .get(&(account.to_string(), region.to_string()))
            .map(|v| {
                v.iter()
                    .filter(|i| !i.vanished)
                    .map(|i| i.image.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The target account deregisters its copy `image_id` (`vanished`: long enough ago that
    /// `DescribeImages` no longer lists it).
    pub fn deregister_target_image(
        &self,
        account: &str,
        region: &str,
        image_id: &str,
        vanished: bool,
    ) {
        if let Some(i) = self
            .world()
            .targets
            .images
            .get_mut(&(account.to_string(), region.to_string()))
            .and_then(|v| v.iter_mut().find(|i| i.image.id == image_id))
        {
            i.image.state = ImageState::Deregistered;
            i.vanished = vanished;
        }
    }

    /// Every pending target copy becomes available (EC2 finished copying).
    pub fn finish_target_copies(&self) {
        for images in self.world().targets.images.values_mut() {
            for i in images.iter_mut() {
                if i.image.state == ImageState::Pending {
                    i.image.state = ImageState::Available;
                }
            }
        }
    }

    /// The target parameter's versions, oldest first: (value, labels).
    pub fn target_parameter(&self, account: &str, region: &str, name: &str) -> Vec<Version> {
        self.world()
            .targets
            .parameters
            .get(&(account.to_string(), region.to_string(), name.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    fn assume(&self, account: &str, op: &str) -> AwsResult<()> {
        self.call(&format!("target:{op}"))?;
        if self.world().targets.unassumable.contains(account) {
            return Err(err(
                "sts",
                "AssumeRole",
                "AccessDenied",
                &format!("User: arn:aws:sts::{}:assumed-role/ami-share-fn is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::{account}:role/ami-share-target", crate::OWN_ACCOUNT),
                &format!("arn:aws:iam::{account}:role/ami-share-target"),
            ));
        }
        Ok(())
    }
}

/// Whether `account` is in OU `ou_id` (or below it).
fn in_ou(w: &World, account: &str, ou_id: &str) -> bool {
    let Some(org) = &w.org else { return false };
    let mut at = org.accounts.get(account).map(|(p, _)| p.clone());
    while let Some(parent) = at {
        if parent == ou_id {
            return true;
        }
        at = org.ous.get(&parent).cloned();
    }
    false
}

/// AWS's rules for a cross-account copy: what the source must have shared with `account`.
fn may_copy(w: &World, account: &str, r: &CopyRequest) -> Result<(), String> {
    let Some(src) = w
        .images
        .get(&(r.source_region.clone(), r.source_image_id.clone()))
    else {
        return Err("InvalidAMIID.NotFound".into());
    };
    let launch = &src.launch;
    let launchable = launch.public
        || launch.accounts.contains(account)
        || launch.organizational_units.iter().any(|ou| {
            ou.rsplit('/')
                .next()
                .is_some_and(|id| in_ou(w, account, id))
        })
        || (!launch.organizations.is_empty()
            && w.org
                .as_ref()
                .is_some_and(|o| o.accounts.contains_key(account)));
    if !launchable {
        return Err("InvalidAMIID.NotFound".into());
    }
    for v in &src.image.volumes {
        let snap = w
            .snapshots
            .get(&(r.source_region.clone(), v.snapshot_id.clone()));
        if !snap.is_some_and(|s| s.permissions.contains(account)) {
            return Err(format!("InvalidSnapshot.NotFound: {}", v.snapshot_id));
        }
        let Some(key) = snap.and_then(|s| s.snapshot.kms_key_id.clone()) else {
            continue;
        };
        let Some(k) = w.keys.get(&key) else { continue };
        let granted = k
            .grants
            .iter()
            .any(|g| account_of_principal(&g.grantee_principal) == Some(account));
        // A key policy that admits the account's organization or OU (kms_access: key_policy).
        let by_policy = w.org.as_ref().is_some_and(|o| {
            k.policy.contains(&o.id)
                && (k.policy.contains("aws:PrincipalOrgID")
                    || o.ous
                        .keys()
                        .any(|ou| k.policy.contains(ou.as_str()) && in_ou(w, account, ou)))
        });
        if !granted && !by_policy {
            return Err(format!(
                "AccessDeniedException: account {account} may not use {key}"
            ));
        }
    }
    Ok(())
}

fn key_in<'a>(w: &'a World, account: &str, region: &str, key: &str) -> Option<&'a TargetKey> {
    w.targets
        .keys
        .get(&(account.to_string(), region.to_string()))?
        .iter()
        .find(|k| {
            k.info.arn == key
                || k.info.arn.ends_with(&format!("/{key}"))
                || k.aliases.iter().any(|a| a == key)
        })
}

#[async_trait]
impl TargetAccounts for FakeAws {
    async fn allowed_images_settings(
        &self,
        account: &str,
        region: &str,
    ) -> AwsResult<amishare::allowed::Settings> {
        self.call("target:GetAllowedImagesSettings")?;
        let w = self.world();
        if w.targets.unassumable.contains(account) {
            return Err(err(
                "sts",
                "AssumeRole",
                "AccessDenied",
                "the target role cannot be assumed",
                account,
            ));
        }
        Ok(w.allowed_images
            .get(&(account.to_string(), region.to_string()))
            .cloned()
            .unwrap_or(amishare::allowed::Settings {
                state: amishare::allowed::State::Disabled,
                criteria: Vec::new(),
                source: amishare::allowed::Source::Account,
            }))
    }

    async fn target_copies(
        &self,
        account: &str,
        region: &str,
        publisher: &str,
    ) -> AwsResult<Vec<Image>> {
        self.assume(account, "DescribeImages")?;
        Ok(self
            .target_images(account, region)
            .into_iter()
            .filter(|i| i.tags.get(COPIED_FROM_ACCOUNT_TAG).map(String::as_str) == Some(publisher))
            .collect())
    }

    async fn target_key(
        &self,
        account: &str,
        region: &str,
        key: Option<&str>,
    ) -> AwsResult<KeyInfo> {
        self.assume(account, "DescribeKey")?;
        let w = self.world();
        let key = match key {
            Some(k) => k.to_string(),
            None => w
                .targets
                .default_keys
                .get(&(account.to_string(), region.to_string()))
                .cloned()
                .unwrap_or_else(|| "alias/aws/ebs".into()),
        };
        key_in(&w, account, region, &key)
            .map(|k| k.info.clone())
            .ok_or_else(|| {
                err(
                    "kms",
                    "DescribeKey",
                    "NotFoundException",
                    &format!("Alias or key {key} is not found."),
                    &key,
                )
            })
    }

    async fn copy_into_target(&self, account: &str, r: &CopyRequest) -> AwsResult<String> {
        self.assume(account, "CopyImage")?;
        let mut w = self.world();
        let at = (account.to_string(), r.destination_region.clone());
        if let Some(found) = w
            .targets
            .images
            .get(&at)
            .and_then(|v| v.iter().find(|i| i.client_token == r.client_token))
        {
            // EC2: the same token with other parameters (another rule's tags) is refused.
            if found.image.tags.get(amishare::names::COPIED_BY_RULE_TAG)
                != r.tags.get(amishare::names::COPIED_BY_RULE_TAG)
            {
                return Err(err(
                    "ec2",
                    "CopyImage",
                    "IdempotentParameterMismatch",
                    "the client token was used with other parameters",
                    &r.source_image_id,
                ));
            }
            return Ok(found.image.id.clone());
        }
        if w.targets.images.get(&at).is_some_and(|v| {
            v.iter()
                .any(|i| i.image.name == r.name && i.image.state != ImageState::Deregistered)
        }) {
            return Err(err(
                "ec2",
                "CopyImage",
                "InvalidAMIName.Duplicate",
                "an image with this name exists",
                &r.name,
            ));
        }
        if let Err(why) = may_copy(&w, account, r) {
            let code = why.split(':').next().unwrap_or("AuthFailure").to_string();
            return Err(err("ec2", "CopyImage", &code, &why, &r.source_image_id));
        }
        if let Some(k) = &r.kms_key_id {
            if key_in(&w, account, &r.destination_region, k).is_none() {
                return Err(err(
                    "ec2",
                    "CopyImage",
                    "InvalidParameterValue",
                    "the KMS key does not exist in the target account",
                    k,
                ));
            }
        }
        let Some(src) = w
            .images
            .get(&(r.source_region.clone(), r.source_image_id.clone()))
            .cloned()
        else {
            return Err(err(
                "ec2",
                "CopyImage",
                "InvalidAMIID.NotFound",
                "no such source image",
                &r.source_image_id,
            ));
        };
        w.next_id += 1;
        let id = format!("ami-t{:016x}", w.next_id);
        let image = Image {
            id: id.clone(),
            region: r.destination_region.clone(),
            name: r.name.clone(),
            owner_id: account.to_string(),
            state: ImageState::Pending,
            tags: r.tags.clone(),
            volumes: src
                .image
                .volumes
                .iter()
                .map(|v| EbsVolume {
                    device_name: v.device_name.clone(),
                    snapshot_id: format!("snap-t{}", &v.snapshot_id[5..]),
                    encrypted: r.kms_key_id.is_some(),
                })
                .collect(),
            source_image_id: Some(r.source_image_id.clone()),
            source_image_region: Some(r.source_region.clone()),
            deprecation_time: None,
            creation_date: Some("2026-12-06T00:00:00.000Z".into()),
            last_launched_time: None,
            deregistration_protection: None,
            verified_source_created: None,
            // EC2 carries the source's watermarks to the copy.
            watermarks: src.image.watermarks.clone(),
        };
        w.targets
            .images
            .entry(at)
            .or_default()
            .push(FakeTargetImage {
                vanished: false,
                image,
                client_token: r.client_token.clone(),
                kms_key_id: r.kms_key_id.clone(),
            });
        Ok(id)
    }

    async fn tag_target_image(
        &self,
        account: &str,
        region: &str,
        image_id: &str,
        tags: &BTreeMap<String, String>,
    ) -> AwsResult<()> {
        self.assume(account, "CreateTags")?;
        let mut w = self.world();
        let image = target_image(&mut w, account, region, image_id)?;
        image.tags.extend(tags.clone());
        Ok(())
    }

    async fn deprecate_target_image(
        &self,
        account: &str,
        region: &str,
        image_id: &str,
        deprecate_at: &str,
    ) -> AwsResult<()> {
        self.assume(account, "EnableImageDeprecation")?;
        // EC2 refuses a deprecation time in the past.
        let at = chrono::DateTime::parse_from_rfc3339(deprecate_at)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|e| {
                err(
                    "ec2",
                    "EnableImageDeprecation",
                    "InvalidParameterValue",
                    &e.to_string(),
                    image_id,
                )
            })?;
        if at < chrono::Utc::now() {
            return Err(err(
                "ec2",
                "EnableImageDeprecation",
                "InvalidParameterCombination",
                "the deprecation time must be in the future",
                image_id,
            ));
        }
        let mut w = self.world();
        target_image(&mut w, account, region, image_id)?.deprecation_time =
            Some(deprecate_at.to_string());
        Ok(())
    }

    async fn target_parameters(
        &self,
        account: &str,
        region: &str,
        names: &[String],
    ) -> AwsResult<BTreeMap<String, ParameterVersion>> {
        self.assume(account, "GetParameters")?;
        let w = self.world();
        let mut out = BTreeMap::new();
        for requested in names {
            let (name, label) = match requested.split_once(':') {
                Some((n, l)) => (n, Some(l)),
                None => (requested.as_str(), None),
            };
            let pkey = (account.to_string(), region.to_string(), name.to_string());
            let base = w.targets.parameter_deleted.get(&pkey).copied().unwrap_or(0);
            let Some(versions) = w.targets.parameters.get(&pkey) else {
                continue;
            };
            let found = match label {
                None => versions.len().checked_sub(1),
                Some(l) => versions
                    .iter()
                    .position(|(_, labels)| labels.iter().any(|x| x == l)),
            };
            if let Some(i) = found {
                out.insert(
                    requested.clone(),
                    ParameterVersion {
                        name: name.to_string(),
                        value: versions[i].0.clone(),
                        version: base + i as i64 + 1,
                    },
                );
            }
        }
        Ok(out)
    }

    async fn put_target_parameter(
        &self,
        account: &str,
        region: &str,
        name: &str,
        image_id: &str,
        _description: &str,
    ) -> AwsResult<i64> {
        self.assume(account, "PutParameter")?;
        let mut w = self.world();
        let pkey = (account.to_string(), region.to_string(), name.to_string());
        let versions = w.targets.parameters.entry(pkey.clone()).or_default();
        // Parameter Store keeps 100 versions; it deletes the oldest only when it has no label.
        let mut deleted = 0;
        if versions.len() >= 100 {
            if versions
                .first()
                .is_some_and(|(_, labels)| !labels.is_empty())
            {
                return Err(err(
                    "ssm",
                    "PutParameter",
                    amishare::publish::VERSION_LIMIT_CODE,
                    "the oldest version can't be deleted because it has a label",
                    name,
                ));
            }
            versions.remove(0);
            deleted = 1;
        }
        versions.push((image_id.to_string(), Vec::new()));
        let len = versions.len() as i64;
        let base = w.targets.parameter_deleted.entry(pkey).or_insert(0);
        *base += deleted;
        Ok(*base + len)
    }

    async fn target_parameter_history(
        &self,
        account: &str,
        region: &str,
        name: &str,
    ) -> AwsResult<Vec<(i64, Vec<String>)>> {
        self.assume(account, "GetParameterHistory")?;
        let w = self.world();
        let pkey = (account.to_string(), region.to_string(), name.to_string());
        let base = w.targets.parameter_deleted.get(&pkey).copied().unwrap_or(0);
        Ok(w.targets
            .parameters
            .get(&pkey)
            .map(|v| {
                v.iter()
                    .enumerate()
                    .map(|(i, (_, labels))| (base + i as i64 + 1, labels.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn unlabel_target_parameter(
        &self,
        account: &str,
        region: &str,
        name: &str,
        version: i64,
        labels: &[String],
    ) -> AwsResult<()> {
        self.assume(account, "UnlabelParameterVersion")?;
        let mut w = self.world();
        let pkey = (account.to_string(), region.to_string(), name.to_string());
        let base = w.targets.parameter_deleted.get(&pkey).copied().unwrap_or(0);
        if let Some((_, have)) = w
            .targets
            .parameters
            .get_mut(&pkey)
            .and_then(|v| v.get_mut((version - base - 1) as usize))
        {
            have.retain(|l| !labels.contains(l));
        }
        Ok(())
    }

    async fn label_target_parameter(
        &self,
        account: &str,
        region: &str,
        name: &str,
        version: i64,
        label: &str,
    ) -> AwsResult<()> {
        self.assume(account, "LabelParameterVersion")?;
        let mut w = self.world();
        let pkey = (account.to_string(), region.to_string(), name.to_string());
        let base = w.targets.parameter_deleted.get(&pkey).copied().unwrap_or(0);
        let Some(versions) = w.targets.parameters.get_mut(&pkey) else {
            return Err(err(
                "ssm",
                "LabelParameterVersion",
                "ParameterNotFound",
                "no such parameter",
                name,
            ));
        };
        for (_, labels) in versions.iter_mut() {
            labels.retain(|l| l != label);
        }
        match versions.get_mut((version - base - 1).max(0) as usize) {
            Some((_, labels)) if version > base => {
                labels.push(label.to_string());
                Ok(())
            }
            _ => Err(err(
                "ssm",
                "LabelParameterVersion",
                "ParameterVersionNotFound",
                "no such version",
                name,
            )),
        }
    }
}

fn target_image<'w>(
    w: &'w mut World,
    account: &str,
    region: &str,
    image_id: &str,
) -> AwsResult<&'w mut Image> {
    w.targets
        .images
        .get_mut(&(account.to_string(), region.to_string()))
        .and_then(|v| v.iter_mut().find(|i| i.image.id == image_id))
        .map(|i| &mut i.image)
        .ok_or_else(|| {
            err(
                "ec2",
                "CreateTags",
                "InvalidAMIID.NotFound",
                "no such image in the target account",
                image_id,
            )
        })
}
