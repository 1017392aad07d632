//! The copies' waiting line in memory: one FIFO queue per Region with SQS's rules that the
//! product relies on — order within a message group; a group's later messages not handed out
//! while one of its messages is hidden (received, not yet deleted or released); a repeated
//! deduplication id accepted but not queued again — and EC2's copy cap per destination Region
//! ([`FakeAws::set_copy_cap`], 20 by default: a slot per snapshot of each pending image).

use std::collections::{BTreeMap, BTreeSet};

use amishare::ports::{AwsResult, CopyLine, Image, ImageState, LineEntry};
use async_trait::async_trait;

use crate::{err, FakeAws, World, OWN_ACCOUNT};

/// One Region's line.
#[derive(Debug, Default, Clone)]
pub struct FakeLine {
    pub entries: Vec<FakeEntry>,
    pub dedup_seen: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct FakeEntry {
    pub id: u64,
    pub group: String,
    pub body: String,
    /// Received and neither deleted nor released (nor its hiding expired).
    pub hidden: bool,
    pub receives: u32,
}

/// The line and the copy cap.
#[derive(Debug, Default)]
pub struct FakeLines {
    pub lines: BTreeMap<String, FakeLine>,
    /// Most snapshot copies in flight per destination Region (`None`: 20, EBS's quota).
    pub copy_cap: Option<usize>,
    /// The target line: (body, delay in seconds), in the order sent.
    pub follows: Vec<(String, u32)>,
    next: u64,
}

/// EBS's concurrent snapshot copies per destination Region.
pub const EBS_COPY_CAP: usize = 20;

/// Slots in use in `region`: a slot per snapshot of each pending image.
pub(crate) fn in_flight(w: &World, region: &str) -> usize {
    pending_images(w, region)
        .iter()
        .map(|i| i.volumes.len().max(1))
        .sum()
}

impl FakeAws {
    /// Most snapshot copies in flight per destination Region (EC2 answers
    /// `ResourceLimitExceeded` past it).
    pub fn set_copy_cap(&self, cap: usize) {
        self.world().lines.copy_cap = Some(cap);
    }

    /// The entries waiting in `region`'s line (bodies, in order).
    pub fn line(&self, region: &str) -> Vec<String> {
        self.world()
            .lines
            .lines
            .get(region)
            .map(|l| l.entries.iter().map(|e| e.body.clone()).collect())
            .unwrap_or_default()
    }

    /// The target line's messages sent so far, taken out of it, as the SQS batch the event
    /// source mapping would deliver to on-image-available (their delays passed).
    pub fn take_follows(&self) -> serde_json::Value {
        let follows = std::mem::take(&mut self.world().lines.follows);
        let records: Vec<serde_json::Value> = follows
            .iter()
            .enumerate()
            .map(|(i, (body, _))| {
                serde_json::json!({
                    "messageId": format!("follow-{i}"),
                    "receiptHandle": format!("r-{i}"),
                    "body": body,
                    "attributes": {},
                    "messageAttributes": {},
                    "md5OfBody": "",
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ami-share-target-line",
                    "awsRegion": "us-east-1"
                })
            })
            .collect();
        serde_json::json!({ "Records": records })
    }

    /// How many messages wait in the target line.
    pub fn follows_waiting(&self) -> usize {
        self.world().lines.follows.len()
    }

    /// SQS's visibility timeout passes: every hidden entry waits again.
    pub fn expire_line_hides(&self) {
        for l in self.world().lines.lines.values_mut() {
            for e in &mut l.entries {
                e.hidden = false;
            }
        }
    }

    /// Slots in use in `region` (pending images owned by the account, a slot per snapshot).
    pub fn copies_in_flight(&self, region: &str) -> usize {
        in_flight(&self.world(), region)
    }
}

/// Whether EC2 refuses one more copy of `slots` into `region`.
pub(crate) fn over_cap(w: &World, region: &str, slots: usize) -> bool {
    let cap = w.lines.copy_cap.unwrap_or(EBS_COPY_CAP);
    let used = in_flight(w, region);
    used > 0 && used + slots > cap
}

fn receipt(region: &str, id: u64) -> String {
    format!("{region}/{id}")
}

#[async_trait]
impl CopyLine for FakeAws {
    async fn line_send(
        &self,
        region: &str,
        group: &str,
        dedup_id: &str,
        body: &str,
    ) -> AwsResult<()> {
        self.call("sqs:SendMessage")?;
        let mut w = self.world();
        w.lines.next += 1;
        let id = w.lines.next;
        let line = w.lines.lines.entry(region.to_string()).or_default();
        if line.dedup_seen.insert(dedup_id.to_string()) {
            line.entries.push(FakeEntry {
                id,
                group: group.to_string(),
                body: body.to_string(),
                hidden: false,
                receives: 0,
            });
        }
        Ok(())
    }

    async fn line_receive(
        &self,
        region: &str,
        max: usize,
        _hide_seconds: u32,
    ) -> AwsResult<Vec<LineEntry>> {
        self.call("sqs:ReceiveMessage")?;
        let mut w = self.world();
        let Some(line) = w.lines.lines.get_mut(region) else {
            return Ok(Vec::new());
        };
        let locked: BTreeSet<String> = line
            .entries
            .iter()
            .filter(|e| e.hidden)
            .map(|e| e.group.clone())
            .collect();
        let mut out = Vec::new();
        for e in line.entries.iter_mut() {
            if out.len() >= max.min(10) {
                break;
            }
            if e.hidden || locked.contains(&e.group) {
                continue;
            }
            e.hidden = true;
            e.receives += 1;
            out.push(LineEntry {
                receipt: receipt(region, e.id),
                group: e.group.clone(),
                body: e.body.clone(),
            });
        }
        Ok(out)
    }

    async fn line_delete(&self, region: &str, receipt_handle: &str) -> AwsResult<()> {
        self.call("sqs:DeleteMessage")?;
        let mut w = self.world();
        if let Some(line) = w.lines.lines.get_mut(region) {
            line.entries
                .retain(|e| receipt(region, e.id) != receipt_handle);
        }
        Ok(())
    }

    async fn line_release(&self, region: &str, receipt_handle: &str) -> AwsResult<()> {
        self.call("sqs:ChangeMessageVisibility")?;
        let mut w = self.world();
        let found = w.lines.lines.get_mut(region).and_then(|l| {
            l.entries
                .iter_mut()
                .find(|e| receipt(region, e.id) == receipt_handle)
        });
        match found {
            Some(e) => {
                e.hidden = false;
                Ok(())
            }
            None => Err(err(
                "sqs",
                "ChangeMessageVisibility",
                "ReceiptHandleIsInvalid",
                "no such message",
                receipt_handle,
            )),
        }
    }

    async fn follow_send(&self, entries: &[(String, u32)]) -> AwsResult<()> {
        for _ in entries.chunks(10) {
            self.call("sqs:SendMessageBatch")?;
        }
        self.world().lines.follows.extend(entries.iter().cloned());
        Ok(())
    }

    async fn line_length(&self, region: &str) -> AwsResult<usize> {
        self.call("sqs:GetQueueAttributes")?;
        Ok(self
            .world()
            .lines
            .lines
            .get(region)
            .map_or(0, |l| l.entries.len()))
    }
}

/// The pending images of `region` as EC2 lists them (a copy shows its source's snapshots).
pub(crate) fn pending_images(w: &World, region: &str) -> Vec<Image> {
    w.images
        .values()
        .filter(|i| {
            i.image.region == region
                && i.image.owner_id == OWN_ACCOUNT
                && i.image.state == ImageState::Pending
        })
        .map(|i| {
            let mut image = i.image.clone();
            if image.volumes.is_empty() {
                if let Some(r) = &i.copied_from {
                    if let Some(s) = w
                        .images
                        .get(&(r.source_region.clone(), r.source_image_id.clone()))
                    {
                        image.volumes = s.image.volumes.clone();
                    }
                }
            }
            image
        })
        .collect()
}
