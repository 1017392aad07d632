//! The target-account port ([`TargetAccounts`]) over the SDK: the same EC2, KMS and Parameter
//! Store adapters, built with the credentials of the target-account role
//! (`arn:aws:iam::<account>:role/<AMI_SHARE_TARGET_ROLE_NAME>`), assumed once per account and
//! kept for 45 minutes (the session lasts an hour; no invocation lasts longer than 15 minutes).
//! Calls in a target account spend that account's request buckets, not the publisher's, so
//! they are not paced here; the SDK's adaptive retries absorb a throttle.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use aws_sdk_ec2::config::{Credentials, SharedCredentialsProvider};

use super::{aws_error, AwsPorts, RateLimits};
use crate::config::TARGET_ROLE_ENV;
use crate::error::AwsError;
use crate::names::COPIED_FROM_ACCOUNT_TAG;
use crate::ports::{AwsResult, CopyRequest, Image, Images, KeyInfo, Keys};
use crate::publish::ports::{ParameterVersion, Parameters};
use crate::target_copies::TargetAccounts;

/// How long an assumed role's credentials are reused.
const SESSION_REUSE: Duration = Duration::from_secs(45 * 60);

impl AwsPorts {
    /// The name of the role `copy_into` assumes in each target account.
    pub fn with_target_role(mut self, name: Option<String>) -> Self {
        self.target_role = name;
        self
    }

    /// The role's ARN in `account` (the partition of the home Region).
    fn target_role_arn(&self, account: &str) -> AwsResult<String> {
        let Some(name) = &self.target_role else {
            return Err(AwsError::new(
                "sts",
                "AssumeRole",
                "TargetRoleNotConfigured",
                format!("{TARGET_ROLE_ENV} is not set, so no target-account role can be assumed (the stack sets it from TargetAccountRoleName)"),
                account,
            ));
        };
        let partition = match self.home_region().as_deref() {
            Some(r) if r.starts_with("cn-") => "aws-cn",
            Some(r) if r.starts_with("us-gov-") => "aws-us-gov",
            _ => "aws",
        };
        Ok(format!("arn:{partition}:iam::{account}:role/{name}"))
    }

    /// The adapters acting in `account`, through its target-account role: assumed once per
    /// account (the targets of one account in several Regions wait for the same `AssumeRole`).
    /// Only the credentials are kept (a few hundred bytes an account): the adapters are built
    /// for each call on the shared connection pool and dropped after it, so 5,000 accounts do
    /// not hold 5,000 sets of SDK clients.
    async fn in_account(&self, account: &str) -> AwsResult<AwsPorts> {
        let cell = {
            let mut map = self.targets.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(account) {
                Some((at, cell)) if at.elapsed() < SESSION_REUSE => cell.clone(),
                _ => {
                    let cell = Arc::new(tokio::sync::OnceCell::new());
                    map.insert(account.to_string(), (Instant::now(), cell.clone()));
                    cell
                }
            }
        };
        let creds = cell.get_or_try_init(|| self.assume(account)).await?.clone();
        Ok(self.target_adapters(account, creds).await)
    }

    /// The adapters of a target account with its credentials: the shared connection pool, no
    /// client-side rate caps (each account has its own EC2 buckets), and a retry partition of
    /// its own.
    pub async fn target_adapters(&self, account: &str, creds: Credentials) -> AwsPorts {
        let mut base = self
            .base
            .clone()
            .into_builder()
            .credentials_provider(SharedCredentialsProvider::new(creds));
        // One connection pool for every target account: the endpoints are the same hosts, only
        // the credentials differ (a client per account would mean its own connections and TLS
        // handshakes, 20,000 of them a night over 5,000 accounts).
        if self.base.http_client().is_none() {
            base = base.http_client(self.target_http.get_or_init(shared_https_client).clone());
        }
        // Each target account in a retry partition of its own: a few throttled target accounts
        // never drain the retries (or the adaptive limiter) of the publisher or of the others.
        AwsPorts::new(base.build(), None, RateLimits::unlimited())
            .await
            .with_retry_partition(target_retry_partition(account))
    }

    /// `AssumeRole` of the target-account role in `account`: its credentials.
    async fn assume(&self, account: &str) -> AwsResult<Credentials> {
        let arn = self.target_role_arn(account)?;
        let out = aws_sdk_sts::Client::new(&self.base)
            .assume_role()
            .role_arn(&arn)
            .role_session_name("ami-share-copy-into")
            .send()
            .await
            .map_err(|e| aws_error("sts", "AssumeRole", &arn, e))?;
        let Some(c) = out.credentials() else {
            return Err(AwsError::new(
                "sts",
                "AssumeRole",
                "NoCredentials",
                "AssumeRole answered without credentials",
                &arn,
            ));
        };
        let expiry = SystemTime::try_from(*c.expiration()).ok();
        Ok(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            expiry,
            "ami-share-target-account",
        ))
    }
}

/// The name of a target account's retry partition.
pub fn target_retry_partition(account: &str) -> String {
    format!("ami-share-target-{account}")
}

/// The SDK's default HTTPS client (hyper 1.x, rustls with aws-lc), built once.
fn shared_https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .build_https()
}

#[async_trait]
impl TargetAccounts for AwsPorts {
    async fn allowed_images_settings(
        &self,
        account: &str,
        region: &str,
    ) -> AwsResult<crate::allowed::Settings> {
        self.in_account(account)
            .await?
            .own_allowed_images_settings(region)
            .await
    }

    async fn target_copies(
        &self,
        account: &str,
        region: &str,
        publisher: &str,
    ) -> AwsResult<Vec<Image>> {
        self.in_account(account)
            .await?
            .find_own_images_by_tag(region, COPIED_FROM_ACCOUNT_TAG, publisher)
            .await
    }

    async fn target_key(
        &self,
        account: &str,
        region: &str,
        key: Option<&str>,
    ) -> AwsResult<KeyInfo> {
        let there = self.in_account(account).await?;
        let key = match key {
            Some(k) => k.to_string(),
            None => {
                let out = there
                    .ec2(region)
                    .get_ebs_default_kms_key_id()
                    .send()
                    .await
                    .map_err(|e| aws_error("ec2", "GetEbsDefaultKmsKeyId", region, e))?;
                out.kms_key_id().unwrap_or("alias/aws/ebs").to_string()
            }
        };
        there.describe_key(region, &key).await
    }

    async fn copy_into_target(&self, account: &str, request: &CopyRequest) -> AwsResult<String> {
        self.in_account(account).await?.copy_image(request).await
    }

    async fn tag_target_image(
        &self,
        account: &str,
        region: &str,
        image_id: &str,
        tags: &BTreeMap<String, String>,
    ) -> AwsResult<()> {
        self.in_account(account)
            .await?
            .tag_resources(region, &[image_id.to_string()], tags)
            .await
    }

    async fn deprecate_target_image(
        &self,
        account: &str,
        region: &str,
        image_id: &str,
        deprecate_at: &str,
    ) -> AwsResult<()> {
        self.in_account(account)
            .await?
            .enable_deprecation(region, image_id, deprecate_at)
            .await
    }

    async fn target_parameters(
        &self,
        account: &str,
        region: &str,
        names: &[String],
    ) -> AwsResult<BTreeMap<String, ParameterVersion>> {
        self.in_account(account)
            .await?
            .get_parameters(region, names)
            .await
    }

    async fn put_target_parameter(
        &self,
        account: &str,
        region: &str,
        name: &str,
        image_id: &str,
        description: &str,
    ) -> AwsResult<i64> {
        self.in_account(account)
            .await?
            .put_image_parameter(region, name, image_id, description)
            .await
    }

    async fn target_parameter_history(
        &self,
        account: &str,
        region: &str,
        name: &str,
    ) -> AwsResult<Vec<(i64, Vec<String>)>> {
        self.in_account(account)
            .await?
            .parameter_labels(region, name)
            .await
    }

    async fn unlabel_target_parameter(
        &self,
        account: &str,
        region: &str,
        name: &str,
        version: i64,
        labels: &[String],
    ) -> AwsResult<()> {
        self.in_account(account)
            .await?
            .unlabel_parameter_version(region, name, version, labels)
            .await
    }

    async fn label_target_parameter(
        &self,
        account: &str,
        region: &str,
        name: &str,
        version: i64,
        label: &str,
    ) -> AwsResult<()> {
        self.in_account(account)
            .await?
            .label_parameter_version(region, name, version, label)
            .await
    }
}

impl AwsPorts {
    /// `GetAllowedImagesSettings` of the account these ports act as, in `region`.
    pub async fn own_allowed_images_settings(
        &self,
        region: &str,
    ) -> AwsResult<crate::allowed::Settings> {
        let out = self
            .ec2(region)
            .get_allowed_images_settings()
            .send()
            .await
            .map_err(|e| aws_error("ec2", "GetAllowedImagesSettings", region, e))?;
        Ok(allowed_settings(&out))
    }
}

/// The account's Allowed AMIs settings as the evaluator reads them.
fn allowed_settings(
    out: &aws_sdk_ec2::operation::get_allowed_images_settings::GetAllowedImagesSettingsOutput,
) -> crate::allowed::Settings {
    use crate::allowed::{Criterion, Settings, Source, State, WatermarkFilter};
    let criteria = out
        .image_criteria()
        .iter()
        .map(|c| Criterion {
            providers: (!c.image_providers().is_empty()).then(|| c.image_providers().to_vec()),
            names: (!c.image_names().is_empty()).then(|| c.image_names().to_vec()),
            product_codes: (!c.marketplace_product_codes().is_empty())
                .then(|| c.marketplace_product_codes().to_vec()),
            max_days_since_created: c
                .creation_date_condition()
                .and_then(|d| d.maximum_days_since_created())
                .map(i64::from),
            max_days_since_deprecated: c
                .deprecation_time_condition()
                .and_then(|d| d.maximum_days_since_deprecated())
                .map(i64::from),
            watermarks: (!c.image_watermarks().is_empty()).then(|| {
                c.image_watermarks()
                    .iter()
                    .map(|w| WatermarkFilter {
                        key: w.watermark_key().map(str::to_string),
                        other_conditions: w.source_image_region().is_some()
                            || w.maximum_days_since_source_image_created().is_some()
                            || w.maximum_days_since_watermark_created().is_some(),
                    })
                    .collect()
            }),
            scan_result: c.scan_result_condition().is_some(),
            unknown_fields: Vec::new(),
        })
        .collect();
    let source = match out.managed_by().map(|m| m.as_str()) {
        Some("declarative-policy") => Source::DeclarativePolicy,
        _ => Source::Account,
    };
    Settings {
        // An unknown state is judged as enabled: the stricter reading.
        state: out.state().and_then(State::parse).unwrap_or(State::Enabled),
        criteria,
        source,
    }
}
