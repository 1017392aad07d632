//! What became of one copy.

use serde::Serialize;

/// A copy started (or found already there) in another Region, or a same-Region re-encryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyReport {
    pub region: String,
    /// The copy's image id, when one was started or found.
    pub image_id: Option<String>,
    /// `started`, `exists`, `deferred` (ResourceLimitExceeded: the nightly run starts it),
    /// `same-region` (the Region of the source: nothing to copy), `refused`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}
