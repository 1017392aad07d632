//! Marks that start a wait, signed so that only the product can have written them.
//!
//! The sweeper's destructive steps wait on marks it leaves on resources: an orphaned snapshot's
//! `ami-share:orphaned-since` date (the grace period) and a retiring image's
//! `ami-share:retire-stage-at` time (the wait before the next stage). Anyone who can tag in the
//! account can write a tag, so each mark carries an HMAC-SHA256 over what it says — its kind,
//! the resource it is on, and its value — keyed by a secret only the sweeper can derive:
//! `<value>/<32 hex digits>`.
//!
//! The secret is never stored: it is the MAC that the stack's KMS HMAC key (`MarkKey`, usable
//! for `kms:GenerateMac` by the sweeper's role alone) gives for a fixed message, derived once
//! per cold start ([`crate::deps::Deps::mark_key`]). A copied mark names another resource, a
//! changed date breaks the MAC, an unsigned mark (an earlier version's, or a forger's) proves
//! nothing: each is reported and the wait starts again from now, never trusted.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What [`crate::ports::Keys::generate_mac`] is asked to sign to give the marks' secret.
pub const DERIVATION_MESSAGE: &[u8] = b"ami-share marks v1";
/// Kind of mark: the date a snapshot was first found orphaned.
pub const ORPHANED_SINCE: &str = "orphaned-since";
/// Kind of mark: the stage a retiring image reached and when.
pub const RETIRE_STAGE: &str = "retire-stage";

/// Hex digits of the proof (128 bits).
const PROOF_HEX: usize = 32;

/// The secret marks are signed with.
#[derive(Clone)]
pub struct MarkKey([u8; 32]);

impl std::fmt::Debug for MarkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MarkKey(..)")
    }
}

/// Why a mark is not taken at its word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkProblem {
    /// No proof at all: an earlier version's mark, or one written by hand.
    Unsigned,
    /// A proof that does not match the resource, the kind or the value: tampering.
    BadProof,
}

impl MarkProblem {
    pub fn code(&self) -> &'static str {
        match self {
            MarkProblem::Unsigned => "unsigned",
            MarkProblem::BadProof => "bad-proof",
        }
    }
}

impl MarkKey {
    /// The key from the derivation's output (the MAC KMS gave for [`DERIVATION_MESSAGE`]).
    pub fn from_secret(secret: &[u8]) -> Self {
        use sha2::Digest;
        let mut k = [0u8; 32];
        k.copy_from_slice(&Sha256::digest(secret));
        MarkKey(k)
    }

    fn proof(&self, kind: &str, resource: &str, value: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return String::new(); // HMAC takes keys of any length: unreachable
        };
        for part in [kind, resource, value] {
            mac.update(part.as_bytes());
            mac.update(&[0]);
        }
        hex::encode(mac.finalize().into_bytes())[..PROOF_HEX].to_string()
    }

    /// `<value>/<proof>`: the mark's value, signed for this kind and resource.
    pub fn sign(&self, kind: &str, resource: &str, value: &str) -> String {
        format!("{value}/{}", self.proof(kind, resource, value))
    }

    /// The value of a signed mark, when its proof holds for this kind and resource.
    pub fn verify<'a>(
        &self,
        kind: &str,
        resource: &str,
        signed: &'a str,
    ) -> Result<&'a str, MarkProblem> {
        let Some((value, proof)) = signed.rsplit_once('/') else {
            return Err(MarkProblem::Unsigned);
        };
        if proof.len() != PROOF_HEX || !proof.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(MarkProblem::Unsigned);
        }
        let want = self.proof(kind, resource, value);
        // Constant-time enough for a tag anyone can read anyway: compare every byte.
        let same = want
            .bytes()
            .zip(proof.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b.to_ascii_lowercase()));
        if same == 0 {
            Ok(value)
        } else {
            Err(MarkProblem::BadProof)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bench stand-in signs marks the same way (bench/standin.py `signed_mark`, checked
    /// against the same value by tests/infra/test_tools.py).
    #[test]
    fn the_signature_is_pinned() {
        let key = MarkKey::from_secret(b"fixed-secret");
        assert_eq!(
            key.sign(ORPHANED_SINCE, "snap-1", "2026-12-01"),
            "2026-12-01/4531f7bc32e4459e3a9b887278fc2366"
        );
    }

    #[test]
    fn a_signed_mark_verifies_only_for_its_kind_resource_and_value() {
        let key = MarkKey::from_secret(b"secret");
        let other = MarkKey::from_secret(b"another");
        let m = key.sign(ORPHANED_SINCE, "snap-1", "2026-12-01");
        assert!(m.starts_with("2026-12-01/"));
        assert_eq!(key.verify(ORPHANED_SINCE, "snap-1", &m), Ok("2026-12-01"));
        let table: [(&MarkKey, &str, &str, String, MarkProblem); 6] = [
            (
                &key,
                ORPHANED_SINCE,
                "snap-2",
                m.clone(),
                MarkProblem::BadProof,
            ), // copied
            (
                &key,
                RETIRE_STAGE,
                "snap-1",
                m.clone(),
                MarkProblem::BadProof,
            ), // other kind
            (
                &other,
                ORPHANED_SINCE,
                "snap-1",
                m.clone(),
                MarkProblem::BadProof,
            ), // other key
            (
                &key,
                ORPHANED_SINCE,
                "snap-1",
                m.replace("2026-12-01", "2000-01-01"), // back-dated
                MarkProblem::BadProof,
            ),
            (
                &key,
                ORPHANED_SINCE,
                "snap-1",
                "2026-12-01".into(),
                MarkProblem::Unsigned,
            ),
            (
                &key,
                ORPHANED_SINCE,
                "snap-1",
                "2026-12-01/xyz".into(),
                MarkProblem::Unsigned,
            ),
        ];
        for (k, kind, resource, mark, problem) in table {
            assert_eq!(k.verify(kind, resource, &mark), Err(problem), "{mark}");
        }
    }
}
