//! The double's EBS snapshots.

use std::collections::BTreeSet;

use async_trait::async_trait;

use amishare::ports::*;

use crate::{err, FakeAws, World};

#[async_trait]
impl Snapshots for FakeAws {
    async fn describe_snapshots(
        &self,
        region: &str,
        snapshot_ids: &[String],
    ) -> AwsResult<Vec<Snapshot>> {
        self.call("ec2:DescribeSnapshots")?;
        let w = self.world();
        snapshot_ids
            .iter()
            .map(|id| {
                w.snapshots
                    .get(&(region.to_string(), id.clone()))
                    .map(|s| Snapshot {
                        description: crate::inventory::meta_of(&w, region, id).description,
                        ..s.snapshot.clone()
                    })
                    .ok_or_else(|| {
                        err(
                            "ec2",
                            "DescribeSnapshots",
                            "InvalidSnapshot.NotFound",
                            "no such snapshot",
                            id,
                        )
                    })
            })
            .collect()
    }

    async fn create_volume_permissions(
        &self,
        region: &str,
        snapshot_id: &str,
    ) -> AwsResult<BTreeSet<String>> {
        self.call("ec2:DescribeSnapshotAttribute")?;
        Ok(self.snapshot_permissions(region, snapshot_id))
    }

    async fn add_create_volume_permission(
        &self,
        region: &str,
        snapshot_id: &str,
        accounts: &[String],
    ) -> AwsResult<()> {
        self.call("ec2:ModifySnapshotAttribute")?;
        let mut w = self.world();
        if accounts.len() > 500 {
            return Err(err(
                "ec2",
                "ModifySnapshotAttribute",
                "InvalidParameterValue",
                "at most 500 modifications per call",
                snapshot_id,
            ));
        }
        let aws_managed = |w: &World, k: &Option<String>| {
            k.as_ref()
                .and_then(|k| w.keys.get(k))
                .is_some_and(|k| k.info.manager == KeyManager::Aws)
        };
        let key = w
            .snapshots
            .get(&(region.to_string(), snapshot_id.to_string()))
            .map(|s| s.snapshot.kms_key_id.clone());
        match key {
            None => Err(err(
                "ec2",
                "ModifySnapshotAttribute",
                "InvalidSnapshot.NotFound",
                "no such snapshot",
                snapshot_id,
            )),
            Some(k) if aws_managed(&w, &k) => Err(err(
                "ec2",
                "ModifySnapshotAttribute",
                "InvalidParameter",
                "Snapshots encrypted with the AWS Managed CMK can't be shared",
                snapshot_id,
            )),
            Some(_) => {
                if let Some(s) = w
                    .snapshots
                    .get_mut(&(region.to_string(), snapshot_id.to_string()))
                {
                    s.permissions.extend(accounts.iter().cloned());
                }
                Ok(())
            }
        }
    }

    async fn remove_create_volume_permission(
        &self,
        region: &str,
        snapshot_id: &str,
        accounts: &[String],
    ) -> AwsResult<()> {
        self.call("ec2:ModifySnapshotAttribute")?;
        if accounts.len() > 500 {
            return Err(err(
                "ec2",
                "ModifySnapshotAttribute",
                "InvalidParameterValue",
                "at most 500 modifications per call",
                snapshot_id,
            ));
        }
        let mut w = self.world();
        let s = w
            .snapshots
            .get_mut(&crate::inventory::key(region, snapshot_id))
            .ok_or_else(|| {
                err(
                    "ec2",
                    "ModifySnapshotAttribute",
                    "InvalidSnapshot.NotFound",
                    "no such snapshot",
                    snapshot_id,
                )
            })?;
        s.permissions.retain(|a| !accounts.contains(a));
        Ok(())
    }
}
