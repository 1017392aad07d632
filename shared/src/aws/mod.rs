//! Adapters: the only code that touches `aws_sdk_*` types. Each one builds the request,
//! paginates, converts to our types, and maps SDK errors by their code into [`AwsError`].
//!
//! All clients come from one `SdkConfig` (so `AWS_ENDPOINT_URL` works everywhere); clients of
//! other Regions are derived from it on first use and kept.

mod ec2;
mod inventory;
mod kms;
mod org;

use std::collections::HashMap;
use std::sync::Mutex;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::error::AwsError;
use crate::rate::RateLimits;

/// The real AWS behind all four ports.
pub struct AwsPorts {
    base: SdkConfig,
    /// Client-side caps on EC2's per-API request rates (every request and every page).
    rate: RateLimits,
    ec2: Mutex<HashMap<String, aws_sdk_ec2::Client>>,
    kms: Mutex<HashMap<String, aws_sdk_kms::Client>>,
    org: aws_sdk_organizations::Client,
    autoscaling: Mutex<HashMap<String, aws_sdk_autoscaling::Client>>,
}

impl AwsPorts {
    /// Build from the one shared config; Organizations reads go through `org_role_arn` when
    /// given (for functions running in a member account).
    pub async fn new(base: SdkConfig, org_role_arn: Option<&str>, rate: RateLimits) -> Self {
        let org = match org_role_arn {
            None => aws_sdk_organizations::Client::new(&base),
            Some(role) => {
                let provider = aws_config::sts::AssumeRoleProvider::builder(role)
                    .session_name("ami-share-org-read")
                    .configure(&base)
                    .build()
                    .await;
                let conf = aws_sdk_organizations::config::Builder::from(&base)
                    .credentials_provider(provider)
                    .build();
                aws_sdk_organizations::Client::from_conf(conf)
            }
        };
        Self {
            base,
            rate,
            ec2: Mutex::default(),
            kms: Mutex::default(),
            org,
            autoscaling: Mutex::default(),
        }
    }

    /// Adapters over explicitly given clients (tests with aws-smithy-mocks). `region` is the
    /// Region the given clients are for.
    pub fn from_clients(
        region: &str,
        ec2: aws_sdk_ec2::Client,
        kms: aws_sdk_kms::Client,
        org: aws_sdk_organizations::Client,
    ) -> Self {
        let base = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .build();
        Self {
            base,
            rate: RateLimits::unlimited(),
            ec2: Mutex::new(HashMap::from([(region.to_string(), ec2)])),
            kms: Mutex::new(HashMap::from([(region.to_string(), kms)])),
            org,
            autoscaling: Mutex::default(),
        }
    }

    /// The Region of the function's own configuration (`AWS_REGION` in Lambda).
    pub fn home_region(&self) -> Option<String> {
        self.base.region().map(|r| r.to_string())
    }

    /// The same adapters with these rate limits (tests of the caps).
    pub fn with_rate_limits(mut self, rate: RateLimits) -> Self {
        self.rate = rate;
        self
    }

    /// Wait for the EC2 `action`'s bucket in `region`; call before every request and page.
    pub(crate) async fn limit(&self, region: &str, action: &str) {
        self.rate.acquire(region, action).await;
    }

    pub(crate) fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        let mut map = self.ec2.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(region.to_string())
            .or_insert_with(|| {
                let conf = aws_sdk_ec2::config::Builder::from(&self.base)
                    .region(Region::new(region.to_string()))
                    .build();
                aws_sdk_ec2::Client::from_conf(conf)
            })
            .clone()
    }

    pub(crate) fn kms(&self, region: &str) -> aws_sdk_kms::Client {
        let mut map = self.kms.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(region.to_string())
            .or_insert_with(|| {
                let conf = aws_sdk_kms::config::Builder::from(&self.base)
                    .region(Region::new(region.to_string()))
                    .build();
                aws_sdk_kms::Client::from_conf(conf)
            })
            .clone()
    }
}

impl AwsPorts {
    pub(crate) fn autoscaling(&self, region: &str) -> aws_sdk_autoscaling::Client {
        let mut map = self.autoscaling.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(region.to_string())
            .or_insert_with(|| {
                let conf = aws_sdk_autoscaling::config::Builder::from(&self.base)
                    .region(Region::new(region.to_string()))
                    .build();
                aws_sdk_autoscaling::Client::from_conf(conf)
            })
            .clone()
    }
}

/// Map an SDK error to ours, keeping the AWS error code.
pub(crate) fn aws_error<E, R>(
    service: &'static str,
    operation: &'static str,
    resource: &str,
    err: aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    let (code, message) = match &err {
        SdkError::ServiceError(se) => (
            se.err().code().unwrap_or("UnknownError").to_string(),
            se.err().message().unwrap_or_default().to_string(),
        ),
        SdkError::TimeoutError(_) => (
            "TimeoutError".to_string(),
            DisplayErrorContext(&err).to_string(),
        ),
        SdkError::DispatchFailure(_) => (
            "DispatchFailure".to_string(),
            DisplayErrorContext(&err).to_string(),
        ),
        SdkError::ResponseError(_) => (
            "ResponseError".to_string(),
            DisplayErrorContext(&err).to_string(),
        ),
        _ => (
            "ConstructionFailure".to_string(),
            DisplayErrorContext(&err).to_string(),
        ),
    };
    AwsError::new(service, operation, code, message, resource)
}
