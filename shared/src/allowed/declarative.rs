//! The Allowed AMIs settings in an effective EC2 declarative policy (Organizations
//! `DescribeEffectivePolicy`, `DECLARATIVE_POLICY_EC2`): `ec2_attributes.allowed_images_settings`
//! with its `state` (`enabled`, `disabled`, `audit_mode`) and `image_criteria` (`criteria_1` to
//! `criteria_10`), as the Organizations User Guide's "Declarative policy syntax" gives them.
//! Values may be given as they are or under an operator (`@@assign`, `@@append`,
//! `@@prepend`). A field this version does not know makes its
//! criterion `unknown`, never a guess.

use serde_json::Value;

use super::{Criterion, Settings, Source, State, WatermarkFilter};
use crate::ports::Org;

/// An account's Allowed AMIs as its effective EC2 declarative policy sets them (one
/// `DescribeEffectivePolicy`); `Err`: none set, or why it could not be read.
pub async fn read_for<P: Org + ?Sized>(org: &P, account: &str) -> Result<Settings, String> {
    match org.effective_ec2_policy(account).await {
        Ok(Some(doc)) => from_effective_policy(&doc)?.ok_or_else(|| none_set(account)),
        Ok(None) => Err(none_set(account)),
        Err(e) => Err(format!("{}: {}", e.code, e.message)),
    }
}

fn none_set(account: &str) -> String {
    format!(
        "no organization policy sets Allowed AMIs for {account}; its own setting is read only through a copy_into role"
    )
}

/// The settings the policy gives; `None` when it says nothing of Allowed AMIs; `Err` when the
/// document cannot be read.
pub fn from_effective_policy(document: &str) -> Result<Option<Settings>, String> {
    let doc: Value = serde_json::from_str(document).map_err(|e| format!("not JSON: {e}"))?;
    let Some(s) = doc
        .get("ec2_attributes")
        .and_then(|a| a.get("allowed_images_settings"))
    else {
        return Ok(None);
    };
    let state = value(s.get("state"))
        .and_then(Value::as_str)
        .and_then(State::parse)
        .ok_or_else(|| {
            format!(
                "allowed_images_settings.state is not a known state: {:?}",
                s.get("state")
            )
        })?;
    let mut criteria = Vec::new();
    if let Some(Value::Object(all)) = value(s.get("image_criteria")) {
        let mut names: Vec<&String> = all.keys().collect();
        names.sort();
        for name in names {
            criteria.push(criterion(&all[name]));
        }
    }
    Ok(Some(Settings {
        state,
        criteria,
        source: Source::DeclarativePolicy,
    }))
}

/// A value, or the value under the policy syntax's operator (`@@assign`; `@@append` and
/// `@@prepend` for lists, as AWS's own example of this attribute writes its providers).
fn value(v: Option<&Value>) -> Option<&Value> {
    let v = v?;
    Some(
        ["@@assign", "@@append", "@@prepend"]
            .iter()
            .find_map(|op| v.get(*op))
            .unwrap_or(v),
    )
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    match value(v)? {
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect(),
        ),
        Value::String(s) => Some(vec![s.clone()]),
        _ => None,
    }
}

fn days(v: Option<&Value>, field: &str) -> Option<i64> {
    let v = value(v)?;
    let inner = v.get(field).map(|x| value(Some(x))).unwrap_or(Some(v))?;
    inner.as_i64().or_else(|| inner.as_str()?.parse().ok())
}

fn criterion(c: &Value) -> Criterion {
    let mut out = Criterion::default();
    let Some(fields) = c.as_object() else {
        out.unknown_fields.push("(not an object)".into());
        return out;
    };
    for (k, v) in fields {
        match k.as_str() {
            "allowed_image_providers" | "image_providers" => out.providers = strings(Some(v)),
            "image_names" => out.names = strings(Some(v)),
            "marketplace_product_codes" => out.product_codes = strings(Some(v)),
            "creation_date_condition" => {
                out.max_days_since_created = days(Some(v), "maximum_days_since_created")
            }
            "deprecation_time_condition" => {
                out.max_days_since_deprecated = days(Some(v), "maximum_days_since_deprecated")
            }
            "image_watermarks" | "allowed_image_watermarks" => out.watermarks = Some(watermarks(v)),
            "scan_result_condition" => out.scan_result = true,
            other => out.unknown_fields.push(other.to_string()),
        }
    }
    out
}

fn watermarks(v: &Value) -> Vec<WatermarkFilter> {
    let items = match value(Some(v)) {
        Some(Value::Array(items)) => items.clone(),
        Some(other) => vec![other.clone()],
        None => Vec::new(),
    };
    items
        .iter()
        .map(|i| match i {
            Value::String(k) => WatermarkFilter {
                key: Some(k.clone()),
                other_conditions: false,
            },
            Value::Object(o) => WatermarkFilter {
                key: o
                    .get("watermark_key")
                    .and_then(|k| value(Some(k))?.as_str().map(str::to_string)),
                other_conditions: o.keys().any(|k| k != "watermark_key"),
            },
            _ => WatermarkFilter {
                key: None,
                other_conditions: true,
            },
        })
        .collect()
}
