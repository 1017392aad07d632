//! Seeding moto with a realistic world: an organization with nested OUs and accounts (one
//! suspended), customer managed keys, images built from instances.

use aws_config::SdkConfig;
use aws_sdk_organizations::types::ChildType;

/// What [`organization`] made.
#[derive(Debug, Clone)]
pub struct OrgSeed {
    pub org_id: String,
    pub org_arn: String,
    pub root_id: String,
    /// `workloads` OU (ARN) with accounts `workloads_accounts` and the nested OU `team`.
    pub workloads_ou_arn: String,
    pub workloads_accounts: Vec<String>,
    pub team_ou_arn: String,
    pub team_accounts: Vec<String>,
    /// Closed (SUSPENDED) account in the `team` OU.
    pub suspended_account: String,
    /// Active account directly under the root.
    pub root_account: String,
}

impl OrgSeed {
    /// Active accounts of the workloads OU and everything below it.
    pub fn workloads_active(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .workloads_accounts
            .iter()
            .chain(self.team_accounts.iter())
            .cloned()
            .collect();
        v.sort();
        v
    }
}

async fn account(
    org: &aws_sdk_organizations::Client,
    name: &str,
    parent: &str,
    root: &str,
) -> String {
    let out = org
        .create_account()
        .account_name(name)
        .email(format!("{name}@example.com"))
        .send()
        .await
        .expect("CreateAccount");
    let id = out
        .create_account_status()
        .and_then(|s| s.account_id())
        .expect("account id")
        .to_string();
    if parent != root {
        org.move_account()
            .account_id(&id)
            .source_parent_id(root)
            .destination_parent_id(parent)
            .send()
            .await
            .expect("MoveAccount");
    }
    id
}

async fn ou(org: &aws_sdk_organizations::Client, parent: &str, name: &str) -> (String, String) {
    let out = org
        .create_organizational_unit()
        .parent_id(parent)
        .name(name)
        .send()
        .await
        .expect("CreateOrganizationalUnit");
    let ou = out.organizational_unit().expect("ou");
    (
        ou.id().expect("id").to_string(),
        ou.arn().expect("arn").to_string(),
    )
}

/// An organization: root → workloads OU (2 accounts) → team OU (2 accounts + 1 suspended),
/// plus one account under the root.
pub async fn organization(config: &SdkConfig) -> OrgSeed {
    let org = aws_sdk_organizations::Client::new(config);
    let created = org
        .create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await
        .expect("CreateOrganization");
    let o = created.organization().expect("organization");
    let (org_id, org_arn) = (
        o.id().expect("id").to_string(),
        o.arn().expect("arn").to_string(),
    );
    let roots = org.list_roots().send().await.expect("ListRoots");
    let root_id = roots.roots()[0].id().expect("root id").to_string();
    let (workloads, workloads_ou_arn) = ou(&org, &root_id, "workloads").await;
    let (team, team_ou_arn) = ou(&org, &workloads, "team").await;
    let mut workloads_accounts = vec![];
    for n in ["wl-a", "wl-b"] {
        workloads_accounts.push(account(&org, n, &workloads, &root_id).await);
    }
    let mut team_accounts = vec![];
    for n in ["team-a", "team-b"] {
        team_accounts.push(account(&org, n, &team, &root_id).await);
    }
    let suspended_account = account(&org, "closed", &team, &root_id).await;
    org.close_account()
        .account_id(&suspended_account)
        .send()
        .await
        .expect("CloseAccount");
    let root_account = account(&org, "root-acct", &root_id, &root_id).await;
    // sanity: the tree is what we think it is
    let children = org
        .list_children()
        .parent_id(&workloads)
        .child_type(ChildType::OrganizationalUnit)
        .send()
        .await
        .expect("ListChildren");
    assert_eq!(children.children().len(), 1);
    OrgSeed {
        org_id,
        org_arn,
        root_id,
        workloads_ou_arn,
        workloads_accounts,
        team_ou_arn,
        team_accounts,
        suspended_account,
        root_account,
    }
}

/// A customer managed key in the config's Region, with an alias; returns its ARN.
pub async fn key(config: &SdkConfig, alias: &str) -> String {
    let kms = aws_sdk_kms::Client::new(config);
    let k = kms
        .create_key()
        .description("ami-share test key")
        .send()
        .await
        .expect("CreateKey");
    let arn = k
        .key_metadata()
        .and_then(|m| m.arn())
        .expect("arn")
        .to_string();
    kms.create_alias()
        .alias_name(alias)
        .target_key_id(&arn)
        .send()
        .await
        .expect("CreateAlias");
    arn
}

/// The HMAC key the sweeper signs its marks with (the stack's `MarkKey`), under the alias a
/// local run uses (`amishare::deps::DEFAULT_MARK_KEY`).
pub async fn mark_key(config: &SdkConfig) {
    use aws_sdk_kms::types::{KeySpec, KeyUsageType};
    let kms = aws_sdk_kms::Client::new(config);
    let k = kms
        .create_key()
        .key_spec(KeySpec::Hmac256)
        .key_usage(KeyUsageType::GenerateVerifyMac)
        .send()
        .await
        .expect("CreateKey HMAC_256");
    let arn = k.key_metadata().and_then(|m| m.arn()).expect("arn");
    kms.create_alias()
        .alias_name(amishare::deps::DEFAULT_MARK_KEY)
        .target_key_id(arn)
        .send()
        .await
        .expect("CreateAlias");
}

/// An image made the way people make them (RunInstances + CreateImage), with tags; returns
/// (image id, snapshot id).
pub async fn image(config: &SdkConfig, name: &str, tags: &[(&str, &str)]) -> (String, String) {
    use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
    let ec2 = aws_sdk_ec2::Client::new(config);
    let run = ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .expect("RunInstances");
    let instance = run.instances()[0]
        .instance_id()
        .expect("instance id")
        .to_string();
    let mut req = ec2.create_image().instance_id(&instance).name(name);
    if !tags.is_empty() {
        let spec = TagSpecification::builder()
            .resource_type(ResourceType::Image)
            .set_tags(Some(
                tags.iter()
                    .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                    .collect(),
            ))
            .build();
        req = req.tag_specifications(spec);
    }
    let image_id = req
        .send()
        .await
        .expect("CreateImage")
        .image_id()
        .expect("image id")
        .to_string();
    let d = ec2
        .describe_images()
        .image_ids(&image_id)
        .send()
        .await
        .expect("DescribeImages");
    let snap = d.images()[0].block_device_mappings()[0]
        .ebs()
        .and_then(|e| e.snapshot_id())
        .expect("snapshot")
        .to_string();
    (image_id, snap)
}

/// An EventBridge `EC2 AMI State Change` event for the image, from events/.
pub fn ami_event(file: &str, region: &str, image_id: &str) -> serde_json::Value {
    let path = format!("{}/../events/{file}", env!("CARGO_MANIFEST_DIR"));
    let mut e: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
    e["region"] = region.into();
    e["resources"] = serde_json::json!([format!("arn:aws:ec2:{region}::image/{image_id}")]);
    e["detail"]["ImageId"] = image_id.into();
    e
}

/// The functions' dependencies against the emulator, as account 123456789012, without rate
/// limits (moto does not throttle).
pub async fn deps(
    config: &SdkConfig,
    policy: amishare::Policy,
) -> amishare::deps::Deps<amishare::aws::AwsPorts> {
    amishare::deps::Deps::new(
        amishare::aws::AwsPorts::new(config.clone(), None, amishare::aws::RateLimits::unlimited())
            .await,
        policy,
        crate::moto::ACCOUNT_ID,
    )
}

/// The config acting as `account` in `region`: the role `role` there, assumed with the test
/// credentials (moto gives an assumed role's keys to the role's account).
pub async fn as_account(config: &SdkConfig, account: &str, role: &str, region: &str) -> SdkConfig {
    let provider =
        aws_config::sts::AssumeRoleProvider::builder(format!("arn:aws:iam::{account}:role/{role}"))
            .session_name("test-seed")
            .configure(config)
            .build()
            .await;
    config
        .clone()
        .into_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(provider),
        )
        .region(aws_config::Region::new(region.to_string()))
        .build()
}
