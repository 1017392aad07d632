//! Whether an image is allowed in a consumer account, from its Allowed AMIs settings: allowed
//! when it matches any one criterion; a criterion matches when every field it gives matches.
//! The account's own images are always allowed there.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Criterion, Settings, State, WatermarkFilter};
use crate::ports::Image;

/// The answer for one image in one consumer account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    Allowed,
    /// Not discoverable nor launchable there; `why`: each criterion and the field that
    /// excludes the image.
    NotAllowed {
        why: String,
    },
    /// Audit mode: allowed, but EC2 would refuse it were the setting enabled.
    AuditWouldRefuse {
        why: String,
    },
    /// Could not be told (a scan-result condition, a field not known, nothing read).
    Unknown {
        why: String,
    },
}

impl Verdict {
    pub fn code(&self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::NotAllowed { .. } => "not-allowed",
            Verdict::AuditWouldRefuse { .. } => "audit-mode",
            Verdict::Unknown { .. } => "unknown",
        }
    }
}

/// One criterion's answer.
enum Fit {
    Yes,
    No(String),
    Unknown(String),
}

/// The verdict for `image` in `consumer` under `settings` (`None`: nothing could be read).
pub fn judge(
    image: &Image,
    consumer: &str,
    settings: Option<&Settings>,
    now: DateTime<Utc>,
) -> Verdict {
    if image.owner_id == consumer {
        return Verdict::Allowed; // an account's own images are never restricted there
    }
    let Some(s) = settings else {
        return Verdict::Unknown {
            why: "the account's Allowed AMIs settings could not be read".into(),
        };
    };
    if s.state == State::Disabled {
        return Verdict::Allowed;
    }
    let mut no = Vec::new();
    let mut unknown = Vec::new();
    for (i, c) in s.criteria.iter().enumerate() {
        match fits(c, image, consumer, now) {
            Fit::Yes => return Verdict::Allowed,
            Fit::No(why) => no.push(format!("criterion {}: {why}", i + 1)),
            Fit::Unknown(why) => unknown.push(format!("criterion {}: {why}", i + 1)),
        }
    }
    if !unknown.is_empty() {
        return Verdict::Unknown {
            why: unknown.join("; "),
        };
    }
    let why = if no.is_empty() {
        "the settings list no criterion: no image of another account is allowed".to_string()
    } else {
        no.join("; ")
    };
    match s.state {
        State::AuditMode => Verdict::AuditWouldRefuse { why },
        _ => Verdict::NotAllowed { why },
    }
}

fn fits(c: &Criterion, image: &Image, consumer: &str, now: DateTime<Utc>) -> Fit {
    if let Some(f) = c.unknown_fields.first() {
        return Fit::Unknown(format!("its field {f:?} is not judged by this version"));
    }
    if let Some(p) = &c.providers {
        let own = p.iter().any(|x| x == "none") && image.owner_id == consumer;
        if !own && !p.contains(&image.owner_id) {
            return Fit::No(format!(
                "provider {} is not among {}",
                image.owner_id,
                p.join(", ")
            ));
        }
    }
    if let Some(names) = &c.names {
        if !names.iter().any(|n| glob(n, &image.name)) {
            return Fit::No(format!(
                "name {:?} matches none of {}",
                image.name,
                names.join(", ")
            ));
        }
    }
    if c.product_codes.is_some() {
        return Fit::No("a Marketplace product code is required; the image has none".into());
    }
    if let Some(max) = c.max_days_since_created {
        match days_since(image.creation_date.as_deref(), now) {
            Some(d) if d > max => {
                return Fit::No(format!("created {d} days ago, more than the {max} allowed"))
            }
            Some(_) => {}
            None => return Fit::Unknown("the image's creation date is unknown".into()),
        }
    }
    if let Some(max) = c.max_days_since_deprecated {
        if let Some(d) = days_since(image.deprecation_time.as_deref(), now).filter(|d| *d >= 0) {
            if d > max {
                return Fit::No(format!(
                    "deprecated {d} days ago, more than the {max} allowed"
                ));
            }
        }
    }
    if let Some(filters) = &c.watermarks {
        if let Some(f) = watermark_fit(filters, image) {
            return f;
        }
    }
    if c.scan_result {
        return Fit::Unknown("an Amazon Inspector scan-result condition (not read)".into());
    }
    Fit::Yes
}

/// `None` when a filter admits the image; otherwise why not (or why it cannot be told).
fn watermark_fit(filters: &[WatermarkFilter], image: &Image) -> Option<Fit> {
    let mut unknown = false;
    for f in filters {
        let key_ok = f
            .key
            .as_deref()
            .is_none_or(|k| image.watermarks.iter().any(|w| glob(k, w)));
        if key_ok && !f.other_conditions {
            return None;
        }
        unknown |= key_ok && f.other_conditions;
    }
    let keys: Vec<&str> = filters.iter().filter_map(|f| f.key.as_deref()).collect();
    Some(if unknown {
        Fit::Unknown("a watermark filter's Region or age condition (not judged)".into())
    } else if image.watermarks.is_empty() {
        Fit::No(format!(
            "the image carries no watermark; {} required",
            keys.join(" or ")
        ))
    } else {
        Fit::No(format!(
            "its watermarks {} match none of {}",
            image.watermarks.join(", "),
            keys.join(", ")
        ))
    })
}

/// EC2's wildcards: `*` any run of characters, `?` one; everything else literal.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // matches[j]: the pattern so far matches text[..j].
    let mut matches = vec![false; t.len() + 1];
    matches[0] = true;
    for pc in p {
        let mut next = vec![false; t.len() + 1];
        for j in 0..=t.len() {
            next[j] = match pc {
                '*' => matches[j] || (j > 0 && next[j - 1]),
                '?' => j > 0 && matches[j - 1],
                c => j > 0 && matches[j - 1] && t[j - 1] == c,
            };
        }
        matches = next;
    }
    matches[t.len()]
}

/// Whole days from `at` (RFC 3339) to `now`; negative for a time to come.
fn days_since(at: Option<&str>, now: DateTime<Utc>) -> Option<i64> {
    let t = DateTime::parse_from_rfc3339(at?).ok()?.with_timezone(&Utc);
    Some((now - t).num_days())
}
