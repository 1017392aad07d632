//! The double's KMS keys and grants.

use async_trait::async_trait;

use amishare::ports::*;

use crate::{err, resolve_key, FakeAws};
use amishare::config::parse_key_ref;

#[async_trait]
impl Keys for FakeAws {
    /// Any key id is an HMAC key of the double's (the MAC is a hash of the key id and the
    /// message), unless it is one of the double's customer keys (symmetric: KMS refuses).
    async fn generate_mac(
        &self,
        _region: &str,
        key_id: &str,
        message: &[u8],
    ) -> AwsResult<Vec<u8>> {
        use sha2::Digest;
        self.call("kms:GenerateMac")?;
        if self.world().keys.contains_key(key_id) {
            return Err(err(
                "kms",
                "GenerateMac",
                "InvalidKeyUsageException",
                "the key is not an HMAC key",
                key_id,
            ));
        }
        let mut h = sha2::Sha256::new();
        h.update(key_id.as_bytes());
        h.update([0]);
        h.update(message);
        Ok(h.finalize().to_vec())
    }

    async fn describe_key(&self, region: &str, key_id: &str) -> AwsResult<KeyInfo> {
        self.call("kms:DescribeKey")?;
        let w = self.world();
        if parse_key_ref(key_id).is_none() && !key_id.starts_with("alias/aws/") {
            return Err(err(
                "kms",
                "DescribeKey",
                "ValidationException",
                "not a key id",
                key_id,
            ));
        }
        resolve_key(&w, region, key_id)
            .and_then(|arn| w.keys.get(&arn).map(|k| k.info.clone()))
            .ok_or_else(|| {
                err(
                    "kms",
                    "DescribeKey",
                    "NotFoundException",
                    "Key not found",
                    key_id,
                )
            })
    }

    async fn key_policy(&self, _region: &str, key_arn: &str) -> AwsResult<String> {
        self.call("kms:GetKeyPolicy")?;
        self.world()
            .keys
            .get(key_arn)
            .map(|k| k.policy.clone())
            .ok_or_else(|| {
                err(
                    "kms",
                    "GetKeyPolicy",
                    "NotFoundException",
                    "Key not found",
                    key_arn,
                )
            })
    }

    async fn key_tag(&self, _region: &str, key_arn: &str, tag: &str) -> AwsResult<Option<String>> {
        self.call("kms:ListResourceTags")?;
        let w = self.world();
        let k = w.keys.get(key_arn).ok_or_else(|| {
            err(
                "kms",
                "ListResourceTags",
                "NotFoundException",
                "Key not found",
                key_arn,
            )
        })?;
        Ok(k.tags.get(tag).cloned())
    }

    async fn set_key_tag(
        &self,
        _region: &str,
        key_arn: &str,
        tag: &str,
        value: &str,
    ) -> AwsResult<()> {
        self.call("kms:TagResource")?;
        let mut w = self.world();
        let k = w.keys.get_mut(key_arn).ok_or_else(|| {
            err(
                "kms",
                "TagResource",
                "NotFoundException",
                "Key not found",
                key_arn,
            )
        })?;
        if value.len() > 256 {
            return Err(err(
                "kms",
                "TagResource",
                "TagException",
                "tag value longer than 256 characters",
                key_arn,
            ));
        }
        k.tags.insert(tag.into(), value.into());
        Ok(())
    }

    async fn remove_key_tag(&self, _region: &str, key_arn: &str, tag: &str) -> AwsResult<()> {
        self.call("kms:UntagResource")?;
        if let Some(k) = self.world().keys.get_mut(key_arn) {
            k.tags.remove(tag);
        }
        Ok(())
    }

    async fn list_grants(&self, _region: &str, key_arn: &str) -> AwsResult<Vec<Grant>> {
        let grants = self
            .world()
            .keys
            .get(key_arn)
            .map(|k| k.grants.clone())
            .ok_or_else(|| {
                err(
                    "kms",
                    "ListGrants",
                    "NotFoundException",
                    "Key not found",
                    key_arn,
                )
            })?;
        // The adapter asks for KMS's largest page, 100 grants.
        for _ in 0..grants.len().div_ceil(100).max(1) {
            self.call("kms:ListGrants")?;
        }
        Ok(grants)
    }

    async fn create_grant(&self, _region: &str, g: &GrantRequest) -> AwsResult<()> {
        self.call("kms:CreateGrant")?;
        let mut w = self.world();
        w.next_id += 1;
        let id = format!("grant-{:x}", w.next_id);
        let key = w.keys.get_mut(&g.key_arn).ok_or_else(|| {
            err(
                "kms",
                "CreateGrant",
                "NotFoundException",
                "Key not found",
                &g.key_arn,
            )
        })?;
        // KMS: the same name and details return the existing grant instead of a new one.
        if !key.grants.iter().any(|x| {
            x.name.as_deref() == Some(&g.name) && x.grantee_principal == g.grantee_principal
        }) {
            key.grants.push(Grant {
                grant_id: id,
                name: Some(g.name.clone()),
                grantee_principal: g.grantee_principal.clone(),
            });
        }
        Ok(())
    }

    async fn revoke_grant(&self, _region: &str, key_arn: &str, grant_id: &str) -> AwsResult<()> {
        self.call("kms:RevokeGrant")?;
        let mut w = self.world();
        let k = w.keys.get_mut(key_arn).ok_or_else(|| {
            err(
                "kms",
                "RevokeGrant",
                "NotFoundException",
                "Key not found",
                key_arn,
            )
        })?;
        k.grants.retain(|g| g.grant_id != grant_id);
        Ok(())
    }
}

impl FakeAws {
    /// The marks' key the sweeper derives from the double (its `GenerateMac` of the default
    /// marks' key): what tests sign their marks with, as the product would.
    pub fn mark_key(&self) -> amishare::marks::MarkKey {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(amishare::deps::DEFAULT_MARK_KEY.as_bytes());
        h.update([0]);
        h.update(amishare::marks::DERIVATION_MESSAGE);
        amishare::marks::MarkKey::from_secret(&h.finalize())
    }

    /// A mark as the product writes it: `value` signed for `kind` and `resource`.
    pub fn signed_mark(&self, kind: &str, resource: &str, value: &str) -> String {
        self.mark_key().sign(kind, resource, value)
    }
}
