//! Parameter Store, AWS RAM and EventBridge in memory, as the publishing ports see them.
//!
//! Modelled: parameter versions and labels (a label sits on one version and moves; selectors
//! `name:label` / `name:version`; at most 10 names per `GetParameters`); the 100-version
//! history that refuses a new version while the oldest is labelled; the asynchronous
//! `aws:ec2:image` validation (a value that is not an available image of the Region creates no
//! version, though `PutParameter` succeeded); RAM shares by name and status, their principal
//! and resource associations, RAM's refusal of organization and OU principals while sharing
//! with AWS Organizations is off, and of standard-tier parameters; `PutEvents` entries kept in
//! order. A race can be staged: another writer's value put just before the next
//! `PutParameter` of a name.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;

use amishare::ports::*;
use amishare::publish::ports::*;

use crate::{err, FakeAws};

/// Parameter Store keeps this many versions of a parameter.
pub const VERSION_LIMIT: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeParameterVersion {
    pub version: i64,
    pub value: String,
    pub labels: BTreeSet<String>,
    pub tier: String,
    pub data_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeShare {
    pub region: String,
    pub arn: String,
    pub name: String,
    pub active: bool,
    pub allow_external_principals: bool,
    pub principals: BTreeSet<String>,
    pub resources: BTreeSet<String>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
pub struct FakePublishing {
    /// (Region, name) → versions, oldest first.
    pub parameters: BTreeMap<(String, String), Vec<FakeParameterVersion>>,
    /// The highest version ever created, per parameter (numbers are never reused).
    pub last_version: BTreeMap<(String, String), i64>,
    pub shares: Vec<FakeShare>,
    /// (Region called, entry), in order.
    pub events: Vec<(String, EventEntry)>,
    /// RAM sharing with AWS Organizations is off.
    pub org_sharing_off: bool,
    /// (name, value): put by "another writer" just before the next `PutParameter` of name.
    pub interleave: Option<(String, String)>,
}

impl FakeAws {
    /// The current value of a parameter.
    pub fn parameter(&self, region: &str, name: &str) -> Option<FakeParameterVersion> {
        self.world()
            .publishing
            .parameters
            .get(&(region.to_string(), name.to_string()))
            .and_then(|v| v.last().cloned())
    }

    /// Every version of a parameter, oldest first.
    pub fn parameter_versions(&self, region: &str, name: &str) -> Vec<FakeParameterVersion> {
        self.world()
            .publishing
            .parameters
            .get(&(region.to_string(), name.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// Set a parameter's value directly (a hand edit, or the state before a test).
    pub fn set_parameter(&self, region: &str, name: &str, value: &str) -> i64 {
        let mut w = self.world();
        let key = (region.to_string(), name.to_string());
        let p = &mut w.publishing;
        let v = p.last_version.get(&key).copied().unwrap_or(0) + 1;
        p.last_version.insert(key.clone(), v);
        p.parameters
            .entry(key)
            .or_default()
            .push(FakeParameterVersion {
                version: v,
                value: value.to_string(),
                labels: BTreeSet::new(),
                tier: "Advanced".into(),
                data_type: "aws:ec2:image".into(),
            });
        v
    }

    /// The active shares of a Region with this name.
    pub fn shares_named(&self, region: &str, name: &str) -> Vec<FakeShare> {
        self.world()
            .publishing
            .shares
            .iter()
            .filter(|s| s.region == region && s.name == name && s.active)
            .cloned()
            .collect()
    }

    /// The events put so far.
    pub fn events(&self) -> Vec<(String, EventEntry)> {
        self.world().publishing.events.clone()
    }
}

fn split_selector(requested: &str) -> (&str, Option<&str>) {
    // A name is a path ("/a/b"); a selector follows the last ':'.
    match requested.rsplit_once(':') {
        Some((name, sel)) if !name.is_empty() && !sel.contains('/') => (name, Some(sel)),
        _ => (requested, None),
    }
}

fn org_principal(p: &str) -> bool {
    p.starts_with("arn:aws:organizations::")
}

const ORG_SHARING_OFF: &str = "The resource you are attempting to share can only be shared within your AWS Organization. This error may also occur if you have not enabled sharing with your AWS organization, or that onboarding process is still in progress.";

impl FakeAws {
    fn check_principals(&self, op: &'static str, principals: &[String]) -> AwsResult<()> {
        if self.world().publishing.org_sharing_off && principals.iter().any(|p| org_principal(p)) {
            return Err(err(
                "ram",
                op,
                "OperationNotPermittedException",
                ORG_SHARING_OFF,
                "share",
            ));
        }
        Ok(())
    }

    /// RAM shares only advanced-tier parameters that exist.
    fn check_resources(&self, op: &'static str, arns: &[String]) -> AwsResult<()> {
        let w = self.world();
        for arn in arns {
            let found = arn.split_once(":parameter").and_then(|(head, name)| {
                let region = head.split(':').nth(3)?;
                w.publishing
                    .parameters
                    .get(&(region.to_string(), name.to_string()))
                    .and_then(|v| v.last())
            });
            match found {
                None => {
                    return Err(err(
                        "ram",
                        op,
                        "UnknownResourceException",
                        "the resource does not exist",
                        arn,
                    ))
                }
                Some(p) if p.tier != "Advanced" => {
                    return Err(err(
                        "ram",
                        op,
                        "InvalidParameterException",
                        "only advanced-tier parameters can be shared",
                        arn,
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Parameters for FakeAws {
    async fn get_parameters(
        &self,
        region: &str,
        names: &[String],
    ) -> AwsResult<BTreeMap<String, ParameterVersion>> {
        self.call("ssm:GetParameters")?;
        if names.is_empty() || names.len() > 10 {
            return Err(err(
                "ssm",
                "GetParameters",
                "ValidationException",
                "between 1 and 10 names",
                "names",
            ));
        }
        let w = self.world();
        let mut out = BTreeMap::new();
        for requested in names {
            let (name, selector) = split_selector(requested);
            let Some(versions) = w
                .publishing
                .parameters
                .get(&(region.to_string(), name.to_string()))
            else {
                continue;
            };
            let found = match selector {
                None => versions.last(),
                Some(s) => match s.parse::<i64>() {
                    Ok(v) => versions.iter().find(|p| p.version == v),
                    Err(_) => versions.iter().find(|p| p.labels.contains(s)),
                },
            };
            if let Some(p) = found {
                out.insert(
                    requested.clone(),
                    ParameterVersion {
                        name: name.to_string(),
                        value: p.value.clone(),
                        version: p.version,
                    },
                );
            }
        }
        Ok(out)
    }

    async fn put_image_parameter(
        &self,
        region: &str,
        name: &str,
        image_id: &str,
        _description: &str,
    ) -> AwsResult<i64> {
        self.call("ssm:PutParameter")?;
        let mut w = self.world();
        let key = (region.to_string(), name.to_string());
        let mut values = Vec::new();
        if let Some((n, v)) = w.publishing.interleave.take() {
            if n == name {
                values.push(v);
            } else {
                w.publishing.interleave = Some((n, v));
            }
        }
        values.push(image_id.to_string());
        let mut last = 0;
        for value in values {
            let versions = w.publishing.parameters.entry(key.clone()).or_default();
            if versions.len() >= VERSION_LIMIT {
                if versions.first().is_some_and(|p| !p.labels.is_empty()) {
                    return Err(err(
                        "ssm",
                        "PutParameter",
                        "ParameterMaxVersionLimitExceeded",
                        "the oldest version can't be deleted because it has a label",
                        name,
                    ));
                }
                versions.remove(0);
            }
            let v = w.publishing.last_version.get(&key).copied().unwrap_or(0) + 1;
            last = v;
            // aws:ec2:image is validated asynchronously: an invalid value creates no version.
            let valid = w
                .images
                .get(&(region.to_string(), value.clone()))
                .is_some_and(|i| i.image.state == ImageState::Available);
            if !valid {
                continue;
            }
            w.publishing.last_version.insert(key.clone(), v);
            w.publishing
                .parameters
                .entry(key.clone())
                .or_default()
                .push(FakeParameterVersion {
                    version: v,
                    value,
                    labels: BTreeSet::new(),
                    tier: "Advanced".into(),
                    data_type: "aws:ec2:image".into(),
                });
        }
        Ok(last)
    }

    async fn label_parameter_version(
        &self,
        region: &str,
        name: &str,
        version: i64,
        label: &str,
    ) -> AwsResult<()> {
        self.call("ssm:LabelParameterVersion")?;
        let mut w = self.world();
        let Some(versions) = w
            .publishing
            .parameters
            .get_mut(&(region.to_string(), name.to_string()))
        else {
            return Err(err(
                "ssm",
                "LabelParameterVersion",
                "ParameterNotFound",
                "no such parameter",
                name,
            ));
        };
        if !versions.iter().any(|p| p.version == version) {
            return Err(err(
                "ssm",
                "LabelParameterVersion",
                "ParameterVersionNotFound",
                &format!("Systems Manager could not find version {version} of {name}"),
                name,
            ));
        }
        let bad = label.is_empty()
            || label.len() > 100
            || label.starts_with(|c: char| c.is_ascii_digit())
            || label.to_ascii_lowercase().starts_with("aws")
            || label.to_ascii_lowercase().starts_with("ssm")
            || !label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if bad {
            return Err(err(
                "ssm",
                "LabelParameterVersion",
                "InvalidLabel",
                &format!("labels refused: {label}"),
                name,
            ));
        }
        for p in versions.iter_mut() {
            if p.version == version {
                p.labels.insert(label.to_string());
            } else {
                p.labels.remove(label);
            }
        }
        Ok(())
    }

    async fn parameter_labels(
        &self,
        region: &str,
        name: &str,
    ) -> AwsResult<Vec<(i64, Vec<String>)>> {
        let history: Vec<(i64, Vec<String>)> = self
            .parameter_versions(region, name)
            .into_iter()
            .map(|p| (p.version, p.labels.into_iter().collect()))
            .collect();
        // One call per page of 50.
        for _ in 0..history.len().div_ceil(50).max(1) {
            self.call("ssm:GetParameterHistory")?;
        }
        Ok(history)
    }

    async fn unlabel_parameter_version(
        &self,
        region: &str,
        name: &str,
        version: i64,
        labels: &[String],
    ) -> AwsResult<()> {
        self.call("ssm:UnlabelParameterVersion")?;
        let mut w = self.world();
        if let Some(p) = w
            .publishing
            .parameters
            .get_mut(&(region.to_string(), name.to_string()))
            .and_then(|v| v.iter_mut().find(|p| p.version == version))
        {
            for l in labels {
                p.labels.remove(l);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ResourceShares for FakeAws {
    async fn resource_shares_named(
        &self,
        region: &str,
        name: &str,
    ) -> AwsResult<Vec<ResourceShare>> {
        self.call("ram:GetResourceShares")?;
        Ok(self
            .shares_named(region, name)
            .into_iter()
            .map(|s| ResourceShare {
                arn: s.arn,
                name: s.name,
                allow_external_principals: s.allow_external_principals,
            })
            .collect())
    }

    async fn create_resource_share(
        &self,
        region: &str,
        share: &NewResourceShare,
    ) -> AwsResult<ResourceShare> {
        self.call("ram:CreateResourceShare")?;
        self.check_principals("CreateResourceShare", &share.principals)?;
        self.check_resources("CreateResourceShare", &share.resource_arns)?;
        let mut w = self.world();
        if !share.allow_external_principals
            && share
                .principals
                .iter()
                .any(|p| !org_principal(p) && w.outside_org.contains(p))
        {
            return Err(err(
                "ram",
                "CreateResourceShare",
                "OperationNotPermittedException",
                "the share does not allow external principals",
                &share.name,
            ));
        }
        w.next_id += 1;
        let arn = format!(
            "arn:aws:ram:{region}:{}:resource-share/{:08x}-0000-4000-8000-000000000000",
            crate::OWN_ACCOUNT,
            w.next_id
        );
        w.publishing.shares.push(FakeShare {
            region: region.to_string(),
            arn: arn.clone(),
            name: share.name.clone(),
            active: true,
            allow_external_principals: share.allow_external_principals,
            principals: share.principals.iter().cloned().collect(),
            resources: share.resource_arns.iter().cloned().collect(),
            tags: share.tags.clone(),
        });
        Ok(ResourceShare {
            arn,
            name: share.name.clone(),
            allow_external_principals: share.allow_external_principals,
        })
    }

    async fn share_associations(
        &self,
        _region: &str,
        share_arn: &str,
    ) -> AwsResult<ShareAssociations> {
        self.call("ram:GetResourceShareAssociations")?;
        self.call("ram:GetResourceShareAssociations")?;
        let w = self.world();
        let share = w.publishing.shares.iter().find(|s| s.arn == share_arn);
        Ok(share
            .map(|s| ShareAssociations {
                principals: s.principals.clone(),
                resources: s.resources.clone(),
            })
            .unwrap_or_default())
    }

    async fn associate_resource_share(
        &self,
        _region: &str,
        share_arn: &str,
        principals: &[String],
        resource_arns: &[String],
    ) -> AwsResult<()> {
        self.call("ram:AssociateResourceShare")?;
        self.check_principals("AssociateResourceShare", principals)?;
        self.check_resources("AssociateResourceShare", resource_arns)?;
        let mut w = self.world();
        // RAM's external principals: accounts outside the organization (members need no
        // AllowExternalPrincipals).
        let outside = w.outside_org.clone();
        let share = w
            .publishing
            .shares
            .iter_mut()
            .find(|s| s.arn == share_arn && s.active)
            .ok_or_else(|| {
                err(
                    "ram",
                    "AssociateResourceShare",
                    "UnknownResourceException",
                    "no such share",
                    share_arn,
                )
            })?;
        if !share.allow_external_principals
            && principals
                .iter()
                .any(|p| !org_principal(p) && outside.contains(p))
        {
            return Err(err(
                "ram",
                "AssociateResourceShare",
                "OperationNotPermittedException",
                "the share does not allow external principals",
                share_arn,
            ));
        }
        share.principals.extend(principals.iter().cloned());
        share.resources.extend(resource_arns.iter().cloned());
        Ok(())
    }

    async fn disassociate_principals(
        &self,
        _region: &str,
        share_arn: &str,
        principals: &[String],
    ) -> AwsResult<()> {
        self.call("ram:DisassociateResourceShare")?;
        let mut w = self.world();
        if let Some(share) = w.publishing.shares.iter_mut().find(|s| s.arn == share_arn) {
            for p in principals {
                share.principals.remove(p);
            }
        }
        Ok(())
    }

    async fn allow_external_principals(&self, _region: &str, share_arn: &str) -> AwsResult<()> {
        self.call("ram:UpdateResourceShare")?;
        let mut w = self.world();
        if let Some(share) = w.publishing.shares.iter_mut().find(|s| s.arn == share_arn) {
            share.allow_external_principals = true;
        }
        Ok(())
    }
}

#[async_trait]
impl Events for FakeAws {
    async fn put_events(&self, region: &str, entries: &[EventEntry]) -> AwsResult<()> {
        self.call("events:PutEvents")?;
        if entries.is_empty() || entries.len() > 10 {
            return Err(err(
                "events",
                "PutEvents",
                "ValidationException",
                "between 1 and 10 entries",
                region,
            ));
        }
        let mut w = self.world();
        for e in entries {
            w.publishing.events.push((region.to_string(), e.clone()));
        }
        Ok(())
    }
}
