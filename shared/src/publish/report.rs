//! What a publication did: the invocation summaries and the night's report carry it.

use serde::Serialize;

/// What publishing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PublishStatus {
    /// The parameter now names the image.
    Published,
    /// It named the image already, labelled and announced: nothing written.
    Current,
    /// It named the image already; the run that wrote it stopped before the event or the
    /// label, which this one sent and wrote.
    Finished,
    /// It names a newer image of the rule, which stays.
    NewerKept,
}

/// What happened to the rule's resource share.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShareChange {
    pub share_arn: Option<String>,
    pub created: bool,
    pub principals_added: Vec<String>,
    pub resource_added: bool,
    /// Principals no rule names any more, removed (`prune_unlisted_shares`).
    pub principals_removed: Vec<String>,
    /// The same, left in place because pruning is off.
    pub would_remove: Vec<String>,
}

impl ShareChange {
    pub fn changes(&self) -> usize {
        usize::from(self.created)
            + self.principals_added.len()
            + usize::from(self.resource_added)
            + self.principals_removed.len()
    }
}

/// One rule's publication in one Region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Publication {
    pub rule: String,
    pub region: String,
    pub parameter: String,
    pub parameter_arn: String,
    /// The image this publication was for.
    pub image_id: String,
    pub status: PublishStatus,
    /// The image the parameter names now.
    pub current_image_id: String,
    /// What it named before this publication.
    pub previous_image_id: Option<String>,
    pub version: Option<i64>,
    pub share: ShareChange,
    pub events_sent: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}
