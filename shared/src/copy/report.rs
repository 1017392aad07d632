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
    /// Whether the copy is on its way or needs nothing: started, exists, waiting in its
    /// Region's line (kept durably; the line clears the source's fingerprint if EC2 refuses it
    /// for good), not needed, or refused. A `failed` copy is not: the source's fingerprint stays
    /// unrecorded, so the night looks again.
    pub fn is_settled(&self) -> bool {
        self.status != "failed"
    }
}
