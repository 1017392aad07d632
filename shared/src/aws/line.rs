//! The copies' waiting line over SQS: one FIFO queue of the same name in each Region, found by
//! `GetQueueUrl` once per Region and warm Lambda.

use async_trait::async_trait;
use aws_sdk_sqs::types::{
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};

use super::{aws_error, AwsPorts};
use crate::error::AwsError;
use crate::ports::{AwsResult, CopyLine, LineEntry};

impl AwsPorts {
    /// The line's URL in `region`.
    async fn line_url(&self, region: &str) -> AwsResult<String> {
        let Some(name) = self.copy_line.clone() else {
            return Err(AwsError::new(
                "sqs",
                "GetQueueUrl",
                "CopyLineNotConfigured",
                "no copy line is configured: set AMI_SHARE_COPY_LINE to the name of the stack's FIFO queue (<stack>-copy-line.fifo), which the template does",
                region,
            ));
        };
        self.queue_url(region, &name).await
    }

    /// The URL of the queue `name` in `region` (`GetQueueUrl` once per queue and warm Lambda).
    async fn queue_url(&self, region: &str, name: &str) -> AwsResult<String> {
        let key = format!("{region}/{name}");
        if let Some(url) = self
            .line_urls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(url.clone());
        }
        let out = self
            .sqs(region)
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| {
                let mut e = aws_error("sqs", "GetQueueUrl", &format!("{name} in {region}"), e);
                e.message = format!(
                    "{}; the stack deploys its queue {name} in every Region it runs in, and must run in every Region copies go to",
                    e.message
                );
                e
            })?;
        let url = out.queue_url().unwrap_or_default().to_string();
        self.line_urls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, url.clone());
        Ok(url)
    }
}

#[async_trait]
impl CopyLine for AwsPorts {
    async fn line_send(
        &self,
        region: &str,
        group: &str,
        dedup_id: &str,
        body: &str,
    ) -> AwsResult<()> {
        let url = self.line_url(region).await?;
        self.sqs(region)
            .send_message()
            .queue_url(&url)
            .message_group_id(group)
            .message_deduplication_id(dedup_id)
            .message_body(body)
            .send()
            .await
            .map_err(|e| aws_error("sqs", "SendMessage", &url, e))?;
        Ok(())
    }

    async fn line_receive(
        &self,
        region: &str,
        max: usize,
        hide_seconds: u32,
    ) -> AwsResult<Vec<LineEntry>> {
        let url = self.line_url(region).await?;
        let out = self
            .sqs(region)
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .visibility_timeout(hide_seconds as i32)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .map_err(|e| aws_error("sqs", "ReceiveMessage", &url, e))?;
        Ok(out
            .messages()
            .iter()
            .map(|m| LineEntry {
                receipt: m.receipt_handle().unwrap_or_default().to_string(),
                group: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                    .cloned()
                    .unwrap_or_default(),
                body: m.body().unwrap_or_default().to_string(),
            })
            .collect())
    }

    async fn line_delete(&self, region: &str, receipt: &str) -> AwsResult<()> {
        let url = self.line_url(region).await?;
        self.sqs(region)
            .delete_message()
            .queue_url(&url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| aws_error("sqs", "DeleteMessage", &url, e))?;
        Ok(())
    }

    async fn line_release(&self, region: &str, receipt: &str) -> AwsResult<()> {
        let url = self.line_url(region).await?;
        self.sqs(region)
            .change_message_visibility()
            .queue_url(&url)
            .receipt_handle(receipt)
            .visibility_timeout(0)
            .send()
            .await
            .map_err(|e| aws_error("sqs", "ChangeMessageVisibility", &url, e))?;
        Ok(())
    }

    async fn line_length(&self, region: &str) -> AwsResult<usize> {
        let url = self.line_url(region).await?;
        let out = self
            .sqs(region)
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| aws_error("sqs", "GetQueueAttributes", &url, e))?;
        let n = |k: QueueAttributeName| {
            out.attributes()
                .and_then(|a| a.get(&k))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0)
        };
        Ok(n(QueueAttributeName::ApproximateNumberOfMessages)
            + n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
    }

    async fn follow_send(&self, entries: &[(String, u32)]) -> AwsResult<()> {
        let region = self.home_region().unwrap_or_default();
        let url = self.queue_url(&region, &self.target_line).await?;
        for chunk in entries.chunks(10) {
            let batch: Vec<SendMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .map(|(i, (body, delay))| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .delay_seconds((*delay).min(900) as i32)
                        .build()
                })
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    AwsError::new(
                        "sqs",
                        "SendMessageBatch",
                        "ConstructionFailure",
                        e.to_string(),
                        &url,
                    )
                })?;
            let out = self
                .sqs(&region)
                .send_message_batch()
                .queue_url(&url)
                .set_entries(Some(batch))
                .send()
                .await
                .map_err(|e| aws_error("sqs", "SendMessageBatch", &url, e))?;
            if let Some(f) = out.failed().first() {
                return Err(AwsError::new(
                    "sqs",
                    "SendMessageBatch",
                    f.code(),
                    f.message().unwrap_or_default(),
                    &url,
                ));
            }
        }
        Ok(())
    }
}
