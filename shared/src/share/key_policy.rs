//! KMS access by key policy (`kms_access: key_policy`): whether a customer managed key's policy
//! lets the accounts of an organization or OU use the key for launching and copying, and the
//! exact statement to add when it does not. Pure: the policy document comes in as text.
//!
//! A target is covered when, for every action consumers need (aws-facts §4), some `Allow`
//! statement with principal `*` (or `{"AWS": "*"}`) lists the action (wildcards allowed) under
//! a condition that admits the target:
//!
//! - an organization `o-x`: `aws:PrincipalOrgID` equal to `o-x` (`StringEquals`,
//!   `StringEqualsIgnoreCase` or `StringLike`, with or without `ForAnyValue:`), or
//!   `aws:PrincipalOrgPaths` like `o-x/*`;
//! - an OU `ou-y` of `o-x`: the same, or `aws:PrincipalOrgPaths` like a path that starts with
//!   `o-x/` and ends with `/ou-y/*` (`o-x/*/ou-y/*`, or its full path from the root).
//!
//! Conservative on purpose: a statement with `NotAction`, `NotPrincipal`, or a condition on
//! any other key than the ones above and `kms:ViaService` / `kms:GrantIsForAWSResource` is not
//! counted; an unconditional `Deny` of a needed action to everyone makes the key uncovered.
//! An OU admitted only through an ancestor's path is not recognised (the path is not known
//! without Organizations calls): the message says what to add.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::config::{parse_org_arn, parse_ou_arn};

/// The actions consumers of a shared encrypted image need (launching and copying).
pub const NEEDED_ACTIONS: &[&str] = &[
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:CreateGrant",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:GenerateDataKeyWithoutPlaintext",
];

/// The actions of the statement the product suggests.
pub const STATEMENT_ACTIONS: &[&str] = &[
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:CreateGrant",
    "kms:ReEncrypt*",
    "kms:GenerateDataKey*",
];

/// The `Sid` of the suggested statement for organizations.
pub const ORG_SID: &str = "AmiShareOrganizationAccess";
/// The `Sid` of the suggested statement for OUs.
pub const OU_SID: &str = "AmiShareOrganizationalUnitAccess";

/// Condition keys that restrict a statement without taking EC2's use of the key away.
const NEUTRAL_KEYS: &[&str] = &["kms:viaservice", "kms:grantisforawsresource"];

/// An organization or OU the key policy must admit, parsed from its ARN.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum OrgTarget {
    Organization { org: String },
    Unit { org: String, ou: String },
}

impl OrgTarget {
    /// From an organization or OU ARN of the policy (`None` for anything else).
    pub fn from_arn(arn: &str) -> Option<OrgTarget> {
        if let Some(org) = parse_org_arn(arn) {
            return Some(OrgTarget::Organization {
                org: org.to_string(),
            });
        }
        let (org, ou) = parse_ou_arn(arn)?;
        Some(OrgTarget::Unit {
            org: org.to_string(),
            ou: ou.to_string(),
        })
    }

    fn org(&self) -> &str {
        match self {
            OrgTarget::Organization { org } | OrgTarget::Unit { org, .. } => org,
        }
    }

    fn label(&self) -> String {
        match self {
            OrgTarget::Organization { org } => format!("organization {org}"),
            OrgTarget::Unit { org, ou } => format!("OU {ou} of {org}"),
        }
    }
}

/// What a key policy does not give: the targets left out, and the statements to add.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyPolicyGap {
    pub uncovered: Vec<OrgTarget>,
    /// Set when the document could not be read as a policy at all.
    pub unreadable: Option<String>,
    pub statements: Vec<Value>,
}

impl KeyPolicyGap {
    /// The operator's message: what is missing and the exact statement(s) to add.
    pub fn message(&self, key_arn: &str) -> String {
        let who: Vec<String> = self.uncovered.iter().map(OrgTarget::label).collect();
        let why = match &self.unreadable {
            Some(e) => format!("its key policy could not be read as a policy document ({e})"),
            None => format!(
                "its key policy does not let {} use the key for launching and copying ({})",
                who.join(", "),
                NEEDED_ACTIONS.join(", ")
            ),
        };
        let statements = self
            .statements
            .iter()
            .map(|s| serde_json::to_string(s).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "kms_access is key_policy, but {why}. Add to the \"Statement\" list of the key policy of {key_arn} \
             (aws kms put-key-policy --key-id {key_arn} --policy-name default --policy file://policy.json): {statements} \
             — or set \"kms_access\": \"grants\" for the rule"
        )
    }
}

/// Whether `document` (a key policy) admits every target; the gap and the statements to add
/// when it does not.
pub fn check(document: &str, targets: &BTreeSet<OrgTarget>) -> Result<(), KeyPolicyGap> {
    let statements = match parse_statements(document) {
        Ok(s) => s,
        Err(e) => {
            let uncovered: Vec<OrgTarget> = targets.iter().cloned().collect();
            return Err(KeyPolicyGap {
                statements: statements_for(&uncovered),
                uncovered,
                unreadable: Some(e),
            });
        }
    };
    let denied = NEEDED_ACTIONS
        .iter()
        .any(|a| statements.iter().any(|s| s.denies_everyone(a)));
    let uncovered: Vec<OrgTarget> = targets
        .iter()
        .filter(|t| {
            denied
                || !NEEDED_ACTIONS
                    .iter()
                    .all(|a| statements.iter().any(|s| s.allows(a, t)))
        })
        .cloned()
        .collect();
    if uncovered.is_empty() {
        Ok(())
    } else {
        Err(KeyPolicyGap {
            statements: statements_for(&uncovered),
            uncovered,
            unreadable: None,
        })
    }
}

/// The statements that admit `targets`: one `aws:PrincipalOrgID` statement for the
/// organizations, one `aws:PrincipalOrgPaths` statement for the OUs of other organizations.
pub fn statements_for(targets: &[OrgTarget]) -> Vec<Value> {
    let orgs: BTreeSet<&str> = targets
        .iter()
        .filter_map(|t| match t {
            OrgTarget::Organization { org } => Some(org.as_str()),
            OrgTarget::Unit { .. } => None,
        })
        .collect();
    let paths: BTreeSet<String> = targets
        .iter()
        .filter_map(|t| match t {
            OrgTarget::Unit { org, ou } if !orgs.contains(org.as_str()) => {
                Some(format!("{org}/*/{ou}/*"))
            }
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    if !orgs.is_empty() {
        out.push(json!({
            "Sid": ORG_SID,
            "Effect": "Allow",
            "Principal": {"AWS": "*"},
            "Action": STATEMENT_ACTIONS,
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:PrincipalOrgID": orgs.into_iter().collect::<Vec<_>>()}}
        }));
    }
    if !paths.is_empty() {
        out.push(json!({
            "Sid": OU_SID,
            "Effect": "Allow",
            "Principal": {"AWS": "*"},
            "Action": STATEMENT_ACTIONS,
            "Resource": "*",
            "Condition": {"ForAnyValue:StringLike": {"aws:PrincipalOrgPaths": paths.into_iter().collect::<Vec<_>>()}}
        }));
    }
    out
}

/// One statement, as far as the check needs it.
struct Statement {
    allow: bool,
    everyone: bool,
    /// `None`: the statement uses `NotAction` (never counted as an allow).
    actions: Option<Vec<String>>,
    /// (operator, key lower-cased, values); `None`: no condition.
    conditions: Option<Vec<(String, String, Vec<String>)>>,
    has_not_principal: bool,
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn parse_statements(document: &str) -> Result<Vec<Statement>, String> {
    let doc: Value = serde_json::from_str(document).map_err(|e| e.to_string())?;
    let list = match doc.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(s @ Value::Object(_)) => vec![s.clone()],
        _ => return Err("no \"Statement\"".into()),
    };
    Ok(list
        .iter()
        .map(|s| {
            let everyone = match s.get("Principal") {
                Some(Value::String(p)) => p == "*",
                Some(Value::Object(o)) => o.get("AWS").is_some_and(|a| strings(a) == ["*"]),
                _ => false,
            };
            let conditions = s.get("Condition").and_then(Value::as_object).map(|ops| {
                ops.iter()
                    .flat_map(|(op, keys)| {
                        keys.as_object()
                            .into_iter()
                            .flatten()
                            .map(move |(k, v)| (op.clone(), k.to_ascii_lowercase(), strings(v)))
                    })
                    .collect()
            });
            Statement {
                allow: s.get("Effect").and_then(Value::as_str) == Some("Allow"),
                everyone,
                actions: s.get("Action").map(strings),
                conditions,
                has_not_principal: s.get("NotPrincipal").is_some(),
            }
        })
        .collect())
}

impl Statement {
    fn lists(&self, action: &str) -> bool {
        self.actions
            .as_ref()
            .is_some_and(|list| list.iter().any(|p| wildcard(p, action)))
    }

    fn allows(&self, action: &str, target: &OrgTarget) -> bool {
        if !self.allow || !self.everyone || self.has_not_principal || !self.lists(action) {
            return false;
        }
        let Some(conditions) = &self.conditions else {
            // Everyone, unconditionally: covers every organization (and every account).
            return true;
        };
        let mut admits = false;
        for (op, key, values) in conditions {
            let base = op
                .strip_prefix("ForAnyValue:")
                .unwrap_or(op)
                .to_ascii_lowercase();
            match key.as_str() {
                "aws:principalorgid" => {
                    let ok = matches!(
                        base.as_str(),
                        "stringequals" | "stringequalsignorecase" | "stringlike"
                    ) && values.iter().any(|v| {
                        if base == "stringlike" {
                            wildcard(v, target.org())
                        } else {
                            v.eq_ignore_ascii_case(target.org())
                        }
                    });
                    if !ok {
                        return false;
                    }
                    admits = true;
                }
                "aws:principalorgpaths" => {
                    let ok = base == "stringlike" && values.iter().any(|v| path_admits(v, target));
                    if !ok {
                        return false;
                    }
                    admits = true;
                }
                k if NEUTRAL_KEYS.contains(&k) => {}
                _ => return false,
            }
        }
        admits
    }

    fn denies_everyone(&self, action: &str) -> bool {
        !self.allow && self.everyone && self.conditions.is_none() && self.lists(action)
    }
}

/// Whether an `aws:PrincipalOrgPaths` pattern admits every account of `target`.
fn path_admits(pattern: &str, target: &OrgTarget) -> bool {
    let org = target.org();
    if pattern == format!("{org}/*") {
        return true;
    }
    match target {
        OrgTarget::Organization { .. } => false,
        OrgTarget::Unit { ou, .. } => {
            pattern.starts_with(&format!("{org}/")) && pattern.ends_with(&format!("/{ou}/*"))
        }
    }
}

/// IAM's `*` / `?` wildcards, case-insensitive (action names are).
fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let t: Vec<char> = text.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const ORG_ARN: &str = "arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5";
    const OU_ARN: &str = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456";

    fn targets(arns: &[&str]) -> BTreeSet<OrgTarget> {
        arns.iter()
            .map(|a| OrgTarget::from_arn(a).unwrap_or_else(|| panic!("{a}")))
            .collect()
    }

    fn policy(statements: Value) -> String {
        json!({"Version": "2012-10-17", "Statement": statements}).to_string()
    }

    fn owner() -> Value {
        json!({"Sid": "Enable IAM User Permissions", "Effect": "Allow",
               "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*"})
    }

    #[test]
    fn the_suggested_statements_cover_what_they_are_suggested_for() {
        for arns in [&[ORG_ARN][..], &[OU_ARN], &[ORG_ARN, OU_ARN]] {
            let t = targets(arns);
            let gap = check(&policy(json!([owner()])), &t).unwrap_err();
            assert_eq!(gap.uncovered.len(), t.len());
            let mut statements = vec![owner()];
            statements.extend(gap.statements.clone());
            assert_eq!(check(&policy(json!(statements)), &t), Ok(()), "{arns:?}");
        }
    }

    #[test]
    fn an_org_statement_covers_its_ous_but_an_ou_statement_not_the_org() {
        let org_only = statements_for(&[OrgTarget::from_arn(ORG_ARN).unwrap()]);
        assert_eq!(check(&policy(json!(org_only)), &targets(&[OU_ARN])), Ok(()));
        let ou_only = statements_for(&[OrgTarget::from_arn(OU_ARN).unwrap()]);
        assert_eq!(ou_only[0]["Sid"], OU_SID);
        assert_eq!(
            ou_only[0]["Condition"]["ForAnyValue:StringLike"]["aws:PrincipalOrgPaths"],
            json!(["o-a1b2c3d4e5/*/ou-ab12-cdef3456/*"])
        );
        assert!(check(&policy(json!(ou_only)), &targets(&[ORG_ARN])).is_err());
    }

    #[test]
    fn full_paths_wildcard_actions_and_neutral_conditions_are_accepted() {
        let s = json!([{"Effect": "Allow", "Principal": "*", "Action": ["kms:*"], "Resource": "*",
            "Condition": {"ForAnyValue:StringLike": {"aws:PrincipalOrgPaths": ["o-a1b2c3d4e5/r-ab12/ou-ab12-cdef3456/*"]},
                          "StringLike": {"kms:ViaService": "ec2.*.amazonaws.com"}}}]);
        assert_eq!(check(&policy(s), &targets(&[OU_ARN])), Ok(()));
    }

    #[test]
    fn what_does_not_count() {
        let t = targets(&[ORG_ARN]);
        let allow = |extra: Value| {
            let mut s = json!({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": STATEMENT_ACTIONS,
                "Resource": "*", "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}}});
            for (k, v) in extra.as_object().unwrap() {
                s[k] = v.clone();
            }
            s
        };
        // the base statement counts
        assert_eq!(check(&policy(json!([allow(json!({}))])), &t), Ok(()));
        for (what, statement) in [
            (
                "another organization",
                allow(
                    json!({"Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-zzzzzzzzzz"}}}),
                ),
            ),
            (
                "a missing action",
                allow(json!({"Action": ["kms:Decrypt", "kms:DescribeKey"]})),
            ),
            (
                "a named principal",
                allow(json!({"Principal": {"AWS": "arn:aws:iam::111122223333:root"}})),
            ),
            (
                "an unknown condition",
                allow(
                    json!({"Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5", "aws:SourceIp": "10.0.0.0/8"}}}),
                ),
            ),
            (
                "a negated operator",
                allow(
                    json!({"Condition": {"StringNotEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}}}),
                ),
            ),
            ("a Deny", allow(json!({"Effect": "Deny"}))),
        ] {
            assert!(
                check(&policy(json!([statement])), &t).is_err(),
                "{what} counted"
            );
        }
        let deny = json!({"Effect": "Deny", "Principal": "*", "Action": "kms:CreateGrant", "Resource": "*"});
        assert!(
            check(&policy(json!([allow(json!({})), deny])), &t).is_err(),
            "an unconditional deny of a needed action"
        );
        let gap = check("not json", &t).unwrap_err();
        assert!(gap.unreadable.is_some());
        assert!(gap.message("arn:k").contains("could not be read"));
    }

    #[test]
    fn the_message_names_the_targets_the_key_and_the_exact_statement() {
        let gap = check(&policy(json!([owner()])), &targets(&[OU_ARN])).unwrap_err();
        let key = "arn:aws:kms:us-east-1:123456789012:key/k1";
        let m = gap.message(key);
        assert!(m.contains("OU ou-ab12-cdef3456 of o-a1b2c3d4e5"), "{m}");
        assert!(m.contains(&format!("put-key-policy --key-id {key}")), "{m}");
        assert!(
            m.contains(&serde_json::to_string(&gap.statements[0]).unwrap()),
            "{m}"
        );
        assert!(m.contains("\"kms_access\": \"grants\""), "{m}");
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("kms:ReEncrypt*", "kms:ReEncryptFrom"));
        assert!(wildcard("KMS:*", "kms:Decrypt"));
        assert!(wildcard(
            "kms:Gen?rateDataKey*",
            "kms:GenerateDataKeyWithoutPlaintext"
        ));
        assert!(!wildcard("kms:Decrypt", "kms:DecryptX"));
        assert!(!wildcard("kms:Re*From", "kms:ReEncryptTo"));
    }
}
