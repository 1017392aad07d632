//! The syntax every policy section checks: account ids, Region codes, organization and OU
//! ARNs, KMS key references.

use super::Problems;

pub(crate) fn check_key(at: &str, key: &str, region: Option<&str>, p: &mut Problems) {
    match parse_key_ref(key) {
        None => p.add(
            at,
            format!("{key:?} is not a KMS key id, key ARN, alias name (alias/…) or alias ARN"),
        ),
        Some(KeyRef { region: Some(kr), .. }) if region.is_some_and(|r| r != kr) => p.add(
            at,
            format!(
                "{key:?} is in Region {kr} but is used for {}; KMS keys are regional: name a key (or multi-Region replica) in {}",
                region.unwrap_or_default(),
                region.unwrap_or_default()
            ),
        ),
        Some(_) => {}
    }
}

/// A Region of a list (`copy_to`, `copy_into.regions`): a Region code, listed once.
pub(crate) fn check_listed_region<'a>(
    at: &str,
    region: &'a str,
    seen: &mut std::collections::BTreeSet<&'a str>,
    list: &str,
    p: &mut Problems,
) {
    if !is_region(region) {
        p.add(
            at,
            format!("{region:?} is not a Region code (like \"us-west-2\")"),
        );
    } else if !seen.insert(region) {
        p.add(at, format!("{region:?} is listed twice in this {list}"));
    }
}

/// `123456789012`.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`, `ap-southeast-4`, `cn-north-1`.
pub fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    if parts.len() < 3 || parts.len() > 4 {
        return false;
    }
    let (first, rest) = (parts[0], &parts[1..]);
    let last = rest[rest.len() - 1];
    first.len() == 2
        && first.bytes().all(|b| b.is_ascii_lowercase())
        && rest[..rest.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && !last.is_empty()
        && last.len() <= 2
        && last.bytes().all(|b| b.is_ascii_digit())
}

fn is_lower_alnum(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn org_id_ok(s: &str) -> bool {
    s.strip_prefix("o-")
        .is_some_and(|r| is_lower_alnum(r, 10, 32))
}

/// The parts of `arn:<partition>:organizations::<account>:<resource>`.
fn org_arn_resource(arn: &str) -> Option<&str> {
    let mut it = arn.splitn(6, ':');
    let (arn_, partition, service, region, account, resource) = (
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
    );
    (arn_ == "arn"
        && partition.starts_with("aws")
        && service == "organizations"
        && region.is_empty()
        && is_account_id(account))
    .then_some(resource)
}

/// `arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5` → `o-a1b2c3d4e5`.
pub fn parse_org_arn(arn: &str) -> Option<&str> {
    let org = org_arn_resource(arn)?.strip_prefix("organization/")?;
    org_id_ok(org).then_some(org)
}

/// `arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456` →
/// (`o-a1b2c3d4e5`, `ou-ab12-cdef3456`).
pub fn parse_ou_arn(arn: &str) -> Option<(&str, &str)> {
    let rest = org_arn_resource(arn)?.strip_prefix("ou/")?;
    let (org, ou) = rest.split_once('/')?;
    let (root, id) = ou.strip_prefix("ou-")?.split_once('-')?;
    (org_id_ok(org) && is_lower_alnum(root, 4, 32) && is_lower_alnum(id, 8, 32))
        .then_some((org, ou))
}

/// A reference to a KMS key as a user may write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef<'a> {
    /// The Region, when the reference is an ARN.
    pub region: Option<&'a str>,
    pub is_alias: bool,
}

/// Key id (`1234abcd-…` or `mrk-…`), key ARN, `alias/name`, or alias ARN.
pub fn parse_key_ref(s: &str) -> Option<KeyRef<'_>> {
    fn key_id_ok(id: &str) -> bool {
        let uuid = |u: &str| {
            u.len() == 36
                && u.char_indices().all(|(i, c)| {
                    if matches!(i, 8 | 13 | 18 | 23) {
                        c == '-'
                    } else {
                        c.is_ascii_hexdigit()
                    }
                })
        };
        uuid(id)
            || id
                .strip_prefix("mrk-")
                .is_some_and(|m| m.len() == 32 && m.bytes().all(|b| b.is_ascii_hexdigit()))
    }
    fn alias_ok(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 250
            && !name.starts_with("aws/")
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-'))
    }
    if let Some(name) = s.strip_prefix("alias/") {
        return alias_ok(name).then_some(KeyRef {
            region: None,
            is_alias: true,
        });
    }
    if let Some(rest) = s.strip_prefix("arn:") {
        let mut it = rest.splitn(5, ':');
        let (partition, service, region, account, resource) =
            (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
        if !partition.starts_with("aws")
            || service != "kms"
            || !is_region(region)
            || !is_account_id(account)
        {
            return None;
        }
        if let Some(id) = resource.strip_prefix("key/") {
            return key_id_ok(id).then_some(KeyRef {
                region: Some(region),
                is_alias: false,
            });
        }
        if let Some(name) = resource.strip_prefix("alias/") {
            return alias_ok(name).then_some(KeyRef {
                region: Some(region),
                is_alias: true,
            });
        }
        return None;
    }
    key_id_ok(s).then_some(KeyRef {
        region: None,
        is_alias: false,
    })
}
