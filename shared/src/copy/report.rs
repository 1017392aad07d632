//! What became of one copy.

use serde::Serialize;

/// A copy started (or found already there) in another Region, or a same-Region re-encryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyReport {
    pub region: String,
    /// The copy's image id, when one was started or found.
    pub image_id: Option<String>,
    /// `started`, `exists`, `waiting` (in the destination Region's line until a copy slot is
    /// free), `same-region` (the Region of the source: nothing to copy), `refused`, `failed`
    /// (EC2 refused the copy; the source's fingerprint stays unrecorded, so the night looks
    /// again).
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl CopyReport {
    /// Whether nothing is left to do for this copy now: it was started, exists, needs none, or
    /// was refused (a waiting copy is not settled: the source's fingerprint stays unrecorded).
    pub fn is_settled(&self) -> bool {
        !matches!(self.status.as_str(), "waiting" | "failed")
    }
}
