//! What every function's `main` does before serving events: read the environment once, parse
//! and validate the policy, load one `SdkConfig`, learn the account id, build the adapters.

use aws_config::BehaviorVersion;

use crate::aws::{caller_account, AwsPorts};
use crate::config::{Policy, ORG_ROLE_ENV, POLICY_ENV};
use crate::error::Error;
use crate::share::Deps;

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
pub async fn load() -> Result<Deps<AwsPorts>, Error> {
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
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let account = caller_account(&sdk).await.map_err(Error::from)?;
    let aws = AwsPorts::new(sdk, role.as_deref()).await;
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
