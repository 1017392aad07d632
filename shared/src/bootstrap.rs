//! What every function's `main` does before serving events: read the environment once, parse
//! and validate the policy, load one `SdkConfig`, build the adapters. No network call: the
//! account the function runs in comes from the function's ARN with the first event
//! ([`Ready::deps`]), and a policy that does not validate is reported to Lambda as the init
//! error ([`report_init_error`]), every problem with its JSON path.

use std::sync::{Mutex, OnceLock};

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;

use crate::aws::AwsPorts;
use crate::aws::RateLimits;
use crate::config::{
    Policy, ACCOUNT_ENV, COPY_LINE_ENV, EVENT_CONCURRENCY_ENV, MARK_KEY_ENV, ORG_ROLE_ENV,
    POLICY_ENV, POLICY_FILE_ENV, TARGET_LINE_ENV, TARGET_ROLE_ENV,
};
use crate::deps::{Deps, Settings, DEFAULT_MARK_KEY};
use crate::error::Error;
use crate::ports::Aws;

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

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Read the policy, once per execution environment: from `AMI_SHARE_POLICY` (the JSON
/// itself: small policies, local runs) or from the file `AMI_SHARE_POLICY_FILE` names (any
/// size; the stack's policy layer). Exactly one of them must be set.
pub fn policy_from_env() -> Result<Policy, Error> {
    policy_from(var(POLICY_ENV), var(POLICY_FILE_ENV))
}

/// The policy from the value of `AMI_SHARE_POLICY` or the file `AMI_SHARE_POLICY_FILE` names.
pub fn policy_from(text: Option<String>, file: Option<String>) -> Result<Policy, Error> {
    match (text, file) {
        (Some(_), Some(file)) => Err(Error::Config(format!(
            "both {POLICY_ENV} and {POLICY_FILE_ENV}={file:?} are set; set one of them (the policy JSON, or the file that holds it)"
        ))),
        (Some(text), None) => Policy::from_json_in(&text, POLICY_ENV),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                Error::Config(format!(
                    "{POLICY_FILE_ENV}={path:?} cannot be read: {e}; it must name the policy JSON file (in Lambda, the policy layer's /opt/ami-share/policy.json: deploy with scripts/deploy.sh)"
                ))
            })?;
            Policy::from_json_in(&text, &format!("the policy file {path}"))
        }
        (None, None) => Err(Error::Config(format!(
            "neither {POLICY_ENV} (the policy JSON) nor {POLICY_FILE_ENV} (a file holding it) is set; see docs/policy.md"
        ))),
    }
}

/// The account in a Lambda function ARN (`arn:aws:lambda:<region>:<account>:function:<name>`).
pub fn account_of_function_arn(arn: &str) -> Option<&str> {
    let mut parts = arn.split(':');
    let (arn_, _partition, service, _region, account) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    (arn_ == "arn"
        && service == "lambda"
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit()))
    .then_some(account)
}

/// What `main` builds at start (validated policy, adapters), completed into [`Deps`] by the
/// first event, which says which account the function runs in.
pub struct Ready<P> {
    parts: Mutex<Option<(P, Policy)>>,
    settings: Settings,
    deps: OnceLock<Deps<P>>,
    /// The account from `AMI_SHARE_ACCOUNT_ID` (local runs), preferred to the ARN's.
    account: Option<String>,
}

impl<P: Aws> Ready<P> {
    pub fn new(aws: P, policy: Policy) -> Self {
        Self {
            parts: Mutex::new(Some((aws, policy))),
            settings: Settings::default(),
            deps: OnceLock::new(),
            account: var(ACCOUNT_ENV),
        }
    }

    /// With these tunables instead of the defaults.
    pub fn with_settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// The handler's dependencies; the first call takes the account from `function_arn` (the
    /// invocation context's ARN of this function).
    pub fn deps(&self, function_arn: &str) -> Result<&Deps<P>, Error> {
        if let Some(d) = self.deps.get() {
            return Ok(d);
        }
        let account = match &self.account {
            Some(a) => a.clone(),
            None => account_of_function_arn(function_arn)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "the invocation's function ARN {function_arn:?} names no account; set {ACCOUNT_ENV} to the account the functions run in"
                    ))
                })?
                .to_string(),
        };
        let mut parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((aws, policy)) = parts.take() {
            tracing::info!(account, rules = policy.rules.len(), "ready");
            let mut deps = Deps::new(aws, policy, account);
            deps.settings = self.settings.clone();
            let _ = self.deps.set(deps);
        }
        self.deps.get().ok_or_else(|| {
            Error::Config("the function's dependencies were lost at start (a bug)".into())
        })
    }
}

/// Everything a handler needs, built once per Lambda execution environment, without a
/// network call.
pub async fn load(workload: Workload) -> Result<Ready<AwsPorts>, Error> {
    let policy = policy_from_env()?;
    let role = var(ORG_ROLE_ENV);
    if let Some(r) = &role {
        if !r.starts_with("arn:") || !r.contains(":role/") {
            return Err(Error::Config(format!(
                "{ORG_ROLE_ENV}={r:?} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"
            )));
        }
    }
    let target_role = target_role_name(var(TARGET_ROLE_ENV))?;
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(workload.retry_config())
        .load()
        .await;
    let (rate, settings, concurrency) = match workload {
        Workload::Event => {
            let n = event_concurrency(var(EVENT_CONCURRENCY_ENV).as_deref())?;
            (
                RateLimits::for_events(policy.rate_limits.clone(), n),
                event_settings(n),
                n,
            )
        }
        Workload::Batch => (
            RateLimits::new(policy.rate_limits.clone()),
            Settings {
                mark_key_id: var(MARK_KEY_ENV).unwrap_or_else(|| DEFAULT_MARK_KEY.to_string()),
                ..Settings::default()
            },
            1,
        ),
    };
    let mut aws = AwsPorts::new(sdk, role.as_deref(), rate)
        .await
        .with_target_role(target_role);
    if let Some(line) = var(COPY_LINE_ENV) {
        aws = aws.with_copy_line(line);
    }
    if let Some(line) = var(TARGET_LINE_ENV) {
        aws = aws.with_target_line(line);
    }
    tracing::info!(
        rules = policy.rules.len(),
        org_role = role.as_deref().unwrap_or(""),
        concurrency,
        "initialised"
    );
    Ok(Ready::new(aws, policy).with_settings(settings))
}

/// The target-account role's name from `AMI_SHARE_TARGET_ROLE_NAME` (a name, not an ARN: the
/// role has the same name in every target account).
pub fn target_role_name(value: Option<String>) -> Result<Option<String>, Error> {
    match value {
        Some(v)
            if v.is_empty()
                || v.len() > 64
                || !v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)) =>
        {
            Err(Error::Config(format!(
                "{TARGET_ROLE_ENV}={v:?} is not an IAM role name (1 to 64 letters, digits and +=,.@_-; a name, not an ARN: the role has this name in every target account)"
            )))
        }
        other => Ok(other),
    }
}

/// The event functions' concurrency bound from `AMI_SHARE_EVENT_CONCURRENCY` (unset: 1).
pub fn event_concurrency(value: Option<&str>) -> Result<u32, Error> {
    let Some(v) = value else { return Ok(1) };
    match v.trim().parse::<u32>() {
        Ok(n) if (1..=1000).contains(&n) => Ok(n),
        _ => Err(Error::Config(format!(
            "{EVENT_CONCURRENCY_ENV}={v:?} is not a concurrency bound (a whole number from 1 to 1000: the event queue's maximum concurrency, the template's EventConcurrency)"
        ))),
    }
}

/// An event invocation's tunables when at most `concurrency` run at once: KMS takes 50
/// `CreateGrant` a second per account and Region, so each invocation keeps its part in flight.
pub fn event_settings(concurrency: u32) -> Settings {
    let d = Settings::default();
    Settings {
        grant_concurrency: (d.grant_concurrency / concurrency.max(1) as usize).max(1),
        ..d
    }
}

/// Tell Lambda why the function could not start (the Runtime API's `/runtime/init/error`): the
/// console and `aws lambda invoke` then show `message` for the failed init, not a bare exit
/// status. Also logged. Outside Lambda (no `AWS_LAMBDA_RUNTIME_API`) it is only logged.
pub async fn report_init_error(error: &Error) {
    tracing::error!(error_type = %error.error_type(), error = %error, "init failed");
    let Some(api) = var("AWS_LAMBDA_RUNTIME_API") else {
        return;
    };
    let body = serde_json::json!({
        "errorType": error.error_type(),
        "errorMessage": error.to_string(),
        "stackTrace": [],
    });
    let sent = async {
        let client = lambda_runtime_api_client::Client::builder().build()?;
        let req = lambda_runtime_api_client::build_request()
            .method("POST")
            .uri("/2018-06-01/runtime/init/error")
            .header(
                "Lambda-Runtime-Function-Error-Type",
                format!("Runtime.{}", error.error_type()),
            )
            .header("Content-Type", "application/json")
            .body(lambda_runtime_api_client::body::Body::from(
                body.to_string(),
            ))?;
        let resp = client.call(req).await?;
        Ok::<_, lambda_runtime::Error>(resp.status())
    };
    match sent.await {
        Ok(status) if status.is_success() => {}
        Ok(status) => {
            tracing::error!(%status, api, "the Runtime API refused the init error report")
        }
        Err(e) => tracing::error!(error = %e, api, "could not report the init error"),
    }
}

/// Initialise logging the way the runtime recommends (JSON when the Lambda's log format is
/// JSON).
pub fn init_logging() {
    lambda_runtime::tracing::init_default_subscriber();
}

/// Where the operator's CLI (`ami-share status` / `plan`) reads from: a Region and a named
/// profile, or the usual AWS chain.
#[derive(Debug, Clone, Default)]
pub struct OperatorTarget {
    pub region: Option<String>,
    pub profile: Option<String>,
}

/// The operator CLI's dependencies: the usual AWS credential chain (or `profile`), the
/// Region given (or the chain's), the account from `sts:GetCallerIdentity` (or
/// `AMI_SHARE_ACCOUNT_ID`), and the functions' own environment variables for the roles, the
/// lines and the marks' key. Returns the deps and the Region.
pub async fn operator(
    target: &OperatorTarget,
    policy: Policy,
) -> Result<(Deps<AwsPorts>, String), Error> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(Workload::Batch.retry_config());
    if let Some(p) = &target.profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = &target.region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    }
    let sdk = loader.load().await;
    let region = sdk.region().map(|r| r.to_string()).ok_or_else(|| {
        Error::Config(
            "no AWS Region: pass --region or set AWS_REGION / the profile's region".into(),
        )
    })?;
    let account = match var(ACCOUNT_ENV) {
        Some(a) => a,
        None => crate::aws::caller_account(&sdk).await?,
    };
    let role = var(ORG_ROLE_ENV);
    let mut aws = AwsPorts::new(
        sdk,
        role.as_deref(),
        RateLimits::new(policy.rate_limits.clone()),
    )
    .await
    .with_target_role(target_role_name(var(TARGET_ROLE_ENV))?);
    if let Some(line) = var(COPY_LINE_ENV) {
        aws = aws.with_copy_line(line);
    }
    if let Some(line) = var(TARGET_LINE_ENV) {
        aws = aws.with_target_line(line);
    }
    let mut deps = Deps::new(aws, policy, account);
    deps.settings.mark_key_id = var(MARK_KEY_ENV).unwrap_or_else(|| DEFAULT_MARK_KEY.to_string());
    Ok((deps, region))
}
