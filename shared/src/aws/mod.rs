//! Adapters: the only code that touches `aws_sdk_*` types. Each one builds the request,
//! paginates, converts to our types, and maps SDK errors by their code into [`AwsError`].
//!
//! All clients come from one `SdkConfig` (so `AWS_ENDPOINT_URL` works everywhere); clients of
//! other Regions are derived from it on first use and kept.

mod convert;
mod ec2;
mod inventory;
mod kms;
mod line;
mod org;
mod publish;
pub mod rate;
mod retire;
mod targets;

use std::collections::HashMap;
use std::sync::Mutex;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::config::retry::RetryPartition;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::error::AwsError;
pub use rate::RateLimits;

/// The copy line's queue name where `AMI_SHARE_COPY_LINE` is not set (local runs against an
/// emulator; the stack sets `<stack>-copy-line.fifo`).
pub const DEFAULT_COPY_LINE: &str = "ami-share-copy-line.fifo";
/// The target line's queue name where `AMI_SHARE_TARGET_LINE` is not set.
pub const DEFAULT_TARGET_LINE: &str = "ami-share-target-line";

/// The real AWS behind all four ports.
/// The credentials of one target account's role, once assumed.
type TargetSession = std::sync::Arc<tokio::sync::OnceCell<aws_sdk_ec2::config::Credentials>>;

pub struct AwsPorts {
    base: SdkConfig,
    /// Client-side caps on EC2's per-API request rates (every request and every page).
    rate: RateLimits,
    ec2: Mutex<HashMap<String, aws_sdk_ec2::Client>>,
    kms: Mutex<HashMap<String, aws_sdk_kms::Client>>,
    org: aws_sdk_organizations::Client,
    autoscaling: Mutex<HashMap<String, aws_sdk_autoscaling::Client>>,
    ssm: Mutex<HashMap<String, aws_sdk_ssm::Client>>,
    ram: Mutex<HashMap<String, aws_sdk_ram::Client>>,
    events: Mutex<HashMap<String, aws_sdk_eventbridge::Client>>,
    sqs: Mutex<HashMap<String, aws_sdk_sqs::Client>>,
    /// The copies' waiting line: its queue's name (the same in every Region) and, per Region,
    /// its URL once looked up.
    copy_line: Option<String>,
    /// The target line's queue name (in the function's own Region).
    target_line: String,
    line_urls: Mutex<HashMap<String, String>>,
    /// The role `copy_into` assumes in each target account (its name), and the credentials of
    /// each account assumed so far.
    target_role: Option<String>,
    targets: Mutex<HashMap<String, (std::time::Instant, TargetSession)>>,
    /// The HTTP client (one connection pool) every target account's adapters share.
    target_http: std::sync::OnceLock<aws_smithy_runtime_api::client::http::SharedHttpClient>,
    /// The retry partition of these adapters' EC2, KMS and Parameter Store clients (the
    /// retry quota and the adaptive rate limiter): `None`, the SDK's own per service and
    /// Region; a target account's adapters have their own, so a throttled target account never
    /// drains the publisher's retries or another target's.
    retry_partition: Option<String>,
}

fn put_client<C>(map: &Mutex<HashMap<String, C>>, region: &str, client: C) {
    map.lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(region.to_string(), client);
}

/// The client of `region` in `map`, built from `base` on first use.
fn regional<C: Clone>(
    map: &Mutex<HashMap<String, C>>,
    base: &SdkConfig,
    region: &str,
    build: impl FnOnce(SdkConfig) -> C,
) -> C {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(region.to_string())
        .or_insert_with(|| {
            build(
                base.clone()
                    .into_builder()
                    .region(Region::new(region.to_string()))
                    .build(),
            )
        })
        .clone()
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
            ssm: Mutex::default(),
            ram: Mutex::default(),
            events: Mutex::default(),
            sqs: Mutex::default(),
            copy_line: Some(DEFAULT_COPY_LINE.to_string()),
            target_line: DEFAULT_TARGET_LINE.to_string(),
            line_urls: Mutex::default(),
            target_role: None,
            targets: Mutex::default(),
            target_http: std::sync::OnceLock::new(),
            retry_partition: None,
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
            ssm: Mutex::default(),
            ram: Mutex::default(),
            events: Mutex::default(),
            sqs: Mutex::default(),
            copy_line: Some(DEFAULT_COPY_LINE.to_string()),
            target_line: DEFAULT_TARGET_LINE.to_string(),
            line_urls: Mutex::default(),
            target_role: None,
            targets: Mutex::default(),
            target_http: std::sync::OnceLock::new(),
            retry_partition: None,
        }
    }

    /// The same adapters with these Parameter Store, RAM and EventBridge clients for `region`
    /// (tests with aws-smithy-mocks).
    pub fn with_publishing_clients(
        self,
        region: &str,
        ssm: aws_sdk_ssm::Client,
        ram: aws_sdk_ram::Client,
        events: aws_sdk_eventbridge::Client,
    ) -> Self {
        put_client(&self.ssm, region, ssm);
        put_client(&self.ram, region, ram);
        put_client(&self.events, region, events);
        self
    }

    /// The same adapters with this SQS client for `region` (tests with aws-smithy-mocks).
    pub fn with_sqs_client(self, region: &str, sqs: aws_sdk_sqs::Client) -> Self {
        put_client(&self.sqs, region, sqs);
        self
    }

    /// The same adapters with the copies' waiting line: the FIFO queue of this name in each
    /// destination Region (`AMI_SHARE_COPY_LINE`, the stack's `<stack>-copy-line.fifo`;
    /// [`DEFAULT_COPY_LINE`] where it is not set).
    pub fn with_copy_line(mut self, queue_name: impl Into<String>) -> Self {
        self.copy_line = Some(queue_name.into());
        self
    }

    /// The same adapters with the target line (`AMI_SHARE_TARGET_LINE`, the stack's
    /// `<stack>-target-line`; [`DEFAULT_TARGET_LINE`] where it is not set).
    pub fn with_target_line(mut self, queue_name: impl Into<String>) -> Self {
        self.target_line = queue_name.into();
        self
    }

    /// The same adapters in a retry partition of their own (`<name>-<service>-<region>`).
    pub fn with_retry_partition(mut self, name: impl Into<String>) -> Self {
        self.retry_partition = Some(name.into());
        self
    }

    /// The retry partition of `service` in `region`, when these adapters have their own.
    pub fn retry_partition(&self, service: &str, region: &str) -> Option<RetryPartition> {
        self.retry_partition
            .as_ref()
            .map(|p| RetryPartition::new(format!("{p}-{service}-{region}")))
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

    /// Wait for the EC2 `action`'s bucket in `region` (a KMS operation as `kms:<Operation>`);
    /// call before every request and page.
    pub(crate) async fn limit(&self, region: &str, action: &str) {
        self.rate.acquire(region, action).await;
    }

    pub(crate) fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        let partition = self.retry_partition("ec2", region);
        regional(&self.ec2, &self.base, region, |c| {
            let mut b = aws_sdk_ec2::config::Builder::from(&c);
            if let Some(p) = partition {
                b = b.retry_partition(p);
            }
            aws_sdk_ec2::Client::from_conf(b.build())
        })
    }

    pub(crate) fn kms(&self, region: &str) -> aws_sdk_kms::Client {
        let partition = self.retry_partition("kms", region);
        regional(&self.kms, &self.base, region, |c| {
            let mut b = aws_sdk_kms::config::Builder::from(&c);
            if let Some(p) = partition {
                b = b.retry_partition(p);
            }
            aws_sdk_kms::Client::from_conf(b.build())
        })
    }

    pub(crate) fn autoscaling(&self, region: &str) -> aws_sdk_autoscaling::Client {
        regional(&self.autoscaling, &self.base, region, |c| {
            aws_sdk_autoscaling::Client::new(&c)
        })
    }

    pub(crate) fn ssm(&self, region: &str) -> aws_sdk_ssm::Client {
        let partition = self.retry_partition("ssm", region);
        regional(&self.ssm, &self.base, region, |c| {
            let mut b = aws_sdk_ssm::config::Builder::from(&c);
            if let Some(p) = partition {
                b = b.retry_partition(p);
            }
            aws_sdk_ssm::Client::from_conf(b.build())
        })
    }

    /// The EC2 client of `region` (tests: its retry partition).
    pub fn ec2_client(&self, region: &str) -> aws_sdk_ec2::Client {
        self.ec2(region)
    }

    pub(crate) fn ram(&self, region: &str) -> aws_sdk_ram::Client {
        regional(&self.ram, &self.base, region, |c| {
            aws_sdk_ram::Client::new(&c)
        })
    }

    pub(crate) fn sqs(&self, region: &str) -> aws_sdk_sqs::Client {
        regional(&self.sqs, &self.base, region, |c| {
            aws_sdk_sqs::Client::new(&c)
        })
    }

    pub(crate) fn events(&self, region: &str) -> aws_sdk_eventbridge::Client {
        regional(&self.events, &self.base, region, |c| {
            aws_sdk_eventbridge::Client::new(&c)
        })
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

/// `sts:GetCallerIdentity`: the account the credentials of `sdk` belong to (the operator
/// CLI's publisher account).
pub async fn caller_account(sdk: &SdkConfig) -> Result<String, crate::error::Error> {
    let region = sdk.region().map(|r| r.to_string()).unwrap_or_default();
    let out = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| aws_error("sts", "GetCallerIdentity", &region, e))?;
    out.account()
        .map(str::to_string)
        .ok_or_else(|| crate::error::Error::Config("sts:GetCallerIdentity named no account".into()))
}
