//! What every function's `main` does before serving events: read the environment once, parse
//! and validate the policy, load one `SdkConfig`, learn the account id, build the adapters.

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;

use crate::aws::{caller_account, AwsPorts};
use crate::config::{Policy, ORG_ROLE_ENV, POLICY_ENV};
use crate::deps::Deps;
use crate::error::Error;
use crate::rate::RateLimits;

/// How a function retries AWS calls: the SDK's adaptive mode (it backs off on throttling with a
/// client-side rate limiter of its own), with more attempts for a batch job than for an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// An event function: a few attempts, then Lambda's own retry of the event.
    Event,
    /// The nightly sweeper: many calls, no one waiting on it; more attempts.
    Batch,
}

impl Workload {
    pub fn retry_config(self) -> RetryConfig {
        let attempts = match self {
            Workload::Event => 4,
            Workload::Batch => 10,
        };
        RetryConfig::adaptive().with_max_attempts(attempts)
    }
}

/// Read the policy from `AMI_SHARE_POLICY`.
pub fn policy_from_env() -> Result<Policy, Error> {
    let text = std::env::var(POLICY_ENV).map_err(|_| {
        Error::Config(format!(
            "{POLICY_ENV} is not set; it must hold the policy JSON (see docs/policy.md)"
        ))
    })?;
    Policy::from_json(&text)
}

/// Everything a handler needs, built once per Lambda execution environment.
pub async fn load(workload: Workload) -> Result<Deps<AwsPorts>, Error> {
    let policy = policy_from_env()?;
    let role = std::env::var(ORG_ROLE_ENV)
        .ok()
        .filter(|r| !r.trim().is_empty());
    if let Some(r) = &role {
        if !r.starts_with("arn:") || !r.contains(":role/") {
            return Err(Error::Config(format!(
                "{ORG_ROLE_ENV}={r:?} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"
            )));
        }
    }
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(workload.retry_config())
        .load()
        .await;
    let account = caller_account(&sdk).await.map_err(Error::from)?;
    let rate = RateLimits::new(policy.rate_limits.clone());
    let aws = AwsPorts::new(sdk, role.as_deref(), rate).await;
    tracing::info!(
        account,
        rules = policy.rules.len(),
        org_role = role.as_deref().unwrap_or(""),
        "initialised"
    );
    Ok(Deps::new(aws, policy, account))
}

/// Initialise logging the way the runtime recommends (JSON when the Lambda's log format is
/// JSON).
pub fn init_logging() {
    lambda_runtime::tracing::init_default_subscriber();
}
