//! The copies' waiting line: one SQS FIFO queue per destination Region (the stack's
//! `CopyLine`), read and written by the functions themselves (no event source mapping), so a
//! copy starts the moment a slot frees (see [`crate::copy::line`]).

use async_trait::async_trait;

use super::AwsResult;

/// One waiting copy as the line hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineEntry {
    /// What deletes it or hands it back (this receive's).
    pub receipt: String,
    /// Its message group: whose cap it waits for (`self`, or a target account's id).
    pub group: String,
    pub body: String,
}

#[async_trait]
pub trait CopyLine: Send + Sync {
    /// `SendMessage` to the Region's line: `group` orders it, `dedup_id` (the copy's client
    /// token) makes a second send within five minutes a no-op.
    async fn line_send(
        &self,
        region: &str,
        group: &str,
        dedup_id: &str,
        body: &str,
    ) -> AwsResult<()>;
    /// `ReceiveMessage`: up to `max` (at most 10) entries, oldest first within a group, hidden
    /// from other readers for `hide_seconds`. While a group's entries are hidden, no reader
    /// gets that group's later entries: the line's lock.
    async fn line_receive(
        &self,
        region: &str,
        max: usize,
        hide_seconds: u32,
    ) -> AwsResult<Vec<LineEntry>>;
    /// `DeleteMessage`: the entry is done (started, or dropped).
    async fn line_delete(&self, region: &str, receipt: &str) -> AwsResult<()>;
    /// `ChangeMessageVisibility` to 0: the entry waits again, at its place.
    async fn line_release(&self, region: &str, receipt: &str) -> AwsResult<()>;
    /// `GetQueueAttributes`: entries in the line (waiting or being looked at).
    async fn line_length(&self, region: &str) -> AwsResult<usize>;
    /// `SendMessageBatch` (10 a call) to the target line, the function's own Region's queue
    /// of the copies into target accounts to start and follow (`copy_into`): each body is
    /// delivered to on-image-available after its delay (at most 900 seconds).
    async fn follow_send(&self, entries: &[(String, u32)]) -> AwsResult<()>;
}
