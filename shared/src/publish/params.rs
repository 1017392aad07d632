//! The one way a latest-image parameter is written, in the publisher account or in a target
//! account (`publish.in_target_accounts`): Parameter Store keeps 100 versions and refuses a
//! new one when the oldest is labelled (the oldest label is removed and the write retried), and
//! an `aws:ec2:image` version becomes readable only once Parameter Store has validated the
//! image (labelling it before then is a retry, never a failure).

use async_trait::async_trait;

use super::decide::VERSION_LIMIT_CODE;
use crate::error::{AwsError, Error, Result};
use crate::ports::AwsResult;

/// The code Parameter Store answers when a version is not (yet) readable.
pub const VERSION_NOT_FOUND_CODE: &str = "ParameterVersionNotFound";

/// One parameter store: the publisher's in a Region, or a target account's in a Region.
#[async_trait]
pub trait ParameterStore: Send + Sync {
    /// Where it is, for the logs.
    fn whereabouts(&self) -> String;
    /// `PutParameter` of an image id (`aws:ec2:image`, overwrite): the new version.
    async fn put(&self, name: &str, image_id: &str, description: &str) -> AwsResult<i64>;
    /// `LabelParameterVersion`.
    async fn label(&self, name: &str, version: i64, label: &str) -> AwsResult<()>;
    /// `GetParameterHistory`, oldest first: (version, labels).
    async fn history(&self, name: &str) -> AwsResult<Vec<(i64, Vec<String>)>>;
    /// `UnlabelParameterVersion`.
    async fn unlabel(&self, name: &str, version: i64, labels: &[String]) -> AwsResult<()>;
}

/// `PutParameter`, making room when Parameter Store keeps 100 versions and the oldest is
/// labelled (it then refuses a new version): that label is removed and the write retried.
pub async fn put_with_room(
    store: &impl ParameterStore,
    name: &str,
    image_id: &str,
    description: &str,
) -> Result<i64> {
    match store.put(name, image_id, description).await {
        Err(e) if e.code == VERSION_LIMIT_CODE => {
            let history = store.history(name).await?;
            if let Some((v, labels)) = history.into_iter().find(|(_, l)| !l.is_empty()) {
                tracing::info!(parameter = name, at = %store.whereabouts(), version = v, ?labels, "unlabelling the oldest version: Parameter Store keeps 100 versions and deletes the oldest only when it has no label");
                store.unlabel(name, v, &labels).await?;
            }
            Ok(store.put(name, image_id, description).await?)
        }
        Err(e) => Err(e.into()),
        Ok(v) => Ok(v),
    }
}

/// Label the version; a version not found yet is transient (Parameter Store validates an
/// `aws:ec2:image` value asynchronously and creates the version only when it is valid).
pub async fn label_version(
    store: &impl ParameterStore,
    name: &str,
    version: i64,
    label: &str,
) -> Result<()> {
    match store.label(name, version, label).await {
        Err(e) if e.code == VERSION_NOT_FOUND_CODE => Err(Error::Transient(AwsError {
            message: format!(
                "{}; Parameter Store validates aws:ec2:image values asynchronously and creates the version only when the image is valid and available: the retry finishes the publication",
                e.message
            ),
            ..e
        })),
        other => Ok(other?),
    }
}
