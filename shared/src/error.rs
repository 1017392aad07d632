//! One error type for the whole product, grouped by what the caller must do about it.
//!
//! - [`Error::Config`]: the policy or the environment is wrong. Fail the function's init.
//! - [`Error::BadEvent`]: the event can never be processed. Log, report, do not retry.
//! - [`Error::Permanent`]: AWS refused for a reason a retry will not fix (image gone, access
//!   denied, a key that cannot be shared). Log, report, do not retry.
//! - [`Error::Transient`]: throttling, 5xx, timeouts — after the SDK's own retries. Return the
//!   error so Lambda retries the event and, in the end, the failure destination gets it.
//!
//! AWS errors always keep the service's error code (`RequestLimitExceeded`,
//! `InvalidAMIID.NotFound`, ...): it is in the message, in the log and in the Lambda
//! `errorType`.

use std::fmt;

/// An error reported by an AWS API (or by the transport on the way to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    /// `ec2`, `kms`, `organizations`, `sts`, `autoscaling`.
    pub service: &'static str,
    /// The API operation, e.g. `ModifySnapshotAttribute`.
    pub operation: &'static str,
    /// The AWS error code, e.g. `RequestLimitExceeded`; for transport failures one of
    /// `TimeoutError`, `DispatchFailure`, `ResponseError`, `ConstructionFailure`.
    pub code: String,
    pub message: String,
    /// The resource the call was about (image id, snapshot id, key ARN, OU id, Region).
    pub resource: String,
}

impl AwsError {
    pub fn new(
        service: &'static str,
        operation: &'static str,
        code: impl Into<String>,
        message: impl Into<String>,
        resource: impl Into<String>,
    ) -> Self {
        Self {
            service,
            operation,
            code: code.into(),
            message: message.into(),
            resource: resource.into(),
        }
    }

    /// Whether a later retry may succeed where this call failed.
    pub fn is_transient(&self) -> bool {
        is_transient_code(&self.code)
    }
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} on {} failed with {}",
            self.service, self.operation, self.resource, self.code
        )?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// Error codes (and transport failure kinds) that a retry can cure.
pub fn is_transient_code(code: &str) -> bool {
    matches!(
        code,
        "RequestLimitExceeded"
            | "Throttling"
            | "ThrottlingException"
            | "TooManyRequestsException"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "SlowDown"
            | "ProvisionedThroughputExceededException"
            | "ConcurrentModificationException"
            | "InternalError"
            | "InternalFailure"
            | "InternalErrorException"
            | "KMSInternalException"
            | "ServiceException"
            | "ServiceUnavailable"
            | "ServiceUnavailableException"
            | "Unavailable"
            | "DependencyTimeoutException"
            | "RequestTimeout"
            | "RequestTimeoutException"
            | "RequestExpired"
            | "IDPCommunicationError"
            | "TimeoutError"
            | "DispatchFailure"
            | "ResponseError"
    )
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The policy or the function's environment is wrong: fix the configuration.
    #[error("configuration error: {0}")]
    Config(String),
    /// The event cannot be processed, ever (missing or malformed field).
    #[error("bad event: {field}: {message}")]
    BadEvent { field: String, message: String },
    /// A rule of the product or of AWS makes this image impossible to share as asked; nothing
    /// was changed. The message says what to do.
    #[error("{resource}: {message}")]
    Refused { resource: String, message: String },
    /// AWS said no for a reason that a retry will not fix.
    #[error("{0}")]
    Permanent(AwsError),
    /// Throttling, server errors, timeouts: retry later.
    #[error("{0} (transient: a later attempt may succeed)")]
    Transient(AwsError),
}

impl Error {
    pub fn refused(resource: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Refused {
            resource: resource.into(),
            message: message.into(),
        }
    }

    pub fn bad_event(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::BadEvent {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Transient(_))
    }

    /// The Lambda `errorType`: the group, and for AWS errors the AWS error code.
    pub fn error_type(&self) -> String {
        match self {
            Error::Config(_) => "ConfigError".into(),
            Error::BadEvent { .. } => "BadEvent".into(),
            Error::Refused { .. } => "Refused".into(),
            Error::Permanent(e) => format!("Permanent.{}", e.code),
            Error::Transient(e) => format!("Transient.{}", e.code),
        }
    }

    /// The AWS error code, when the error came from AWS.
    pub fn aws_code(&self) -> Option<&str> {
        match self {
            Error::Permanent(e) | Error::Transient(e) => Some(&e.code),
            _ => None,
        }
    }
}

impl From<AwsError> for Error {
    fn from(e: AwsError) -> Self {
        if e.is_transient() {
            Error::Transient(e)
        } else {
            Error::Permanent(e)
        }
    }
}

impl From<Error> for lambda_runtime::Diagnostic {
    fn from(e: Error) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.error_type(),
            error_message: e.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_timeouts_are_transient_everything_else_permanent() {
        for code in [
            "RequestLimitExceeded",
            "ThrottlingException",
            "TimeoutError",
            "InternalError",
        ] {
            let e: Error = AwsError::new("ec2", "DescribeImages", code, "", "ami-1").into();
            assert!(e.is_transient(), "{code}");
            assert_eq!(e.error_type(), format!("Transient.{code}"));
        }
        for code in [
            "InvalidAMIID.NotFound",
            "AccessDeniedException",
            "NotFoundException",
            "AWSOrganizationsNotInUseException",
        ] {
            let e: Error = AwsError::new("ec2", "DescribeImages", code, "", "ami-1").into();
            assert!(!e.is_transient(), "{code}");
            assert_eq!(e.aws_code(), Some(code));
        }
    }

    #[test]
    fn display_names_operation_resource_and_code() {
        let e = AwsError::new(
            "kms",
            "CreateGrant",
            "NotFoundException",
            "Key not found",
            "arn:aws:kms:us-east-1:123456789012:key/k",
        );
        assert_eq!(
            e.to_string(),
            "kms:CreateGrant on arn:aws:kms:us-east-1:123456789012:key/k failed with NotFoundException: Key not found"
        );
        let d: lambda_runtime::Diagnostic = Error::from(e).into();
        assert_eq!(d.error_type, "Permanent.NotFoundException");
    }
}
