//! The recorded writes told as a plan: one section per kind of change, each with its count,
//! the principals that gain or lose access (with counts), the rules whose images it touches
//! (with counts) and the first items; `--json` carries every item.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Serialize;

use super::recorder::{Change, Write};
use crate::config::Policy;
use crate::plan::{classify, matching_rules, ImageKind};
use crate::ports::Image;

/// Items shown per section in the text form.
pub const SHOWN: usize = 10;

/// What the next night would do in one Region.
#[derive(Debug, Clone, Serialize)]
pub struct NightPlan {
    pub region: String,
    /// Writes in all.
    pub writes: usize,
    pub sections: BTreeMap<Change, Section>,
}

/// One kind of change.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Section {
    pub count: usize,
    /// Principal → writes that give it (or take from it) access.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub by_principal: BTreeMap<String, usize>,
    /// Rule → writes on its images (`(copies)`: on copies, whose rules are their sources';
    /// `(no rule)`: on images no rule selects any more).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub by_rule: BTreeMap<String, usize>,
    pub items: Vec<Write>,
}

impl NightPlan {
    /// The plan from the writes the night would make, attributed to rules through the images
    /// its listings returned.
    pub fn of(
        region: &str,
        writes: Vec<Write>,
        images: &HashMap<String, Image>,
        policy: &Policy,
        account: &str,
    ) -> Self {
        let by_snapshot: HashMap<&str, &Image> = images
            .values()
            .flat_map(|i| i.volumes.iter().map(move |v| (v.snapshot_id.as_str(), i)))
            .collect();
        let mut sections: BTreeMap<Change, Section> = BTreeMap::new();
        let total = writes.len();
        for w in writes {
            let s = sections.entry(w.change).or_default();
            s.count += 1;
            for p in &w.principals {
                *s.by_principal.entry(p.clone()).or_insert(0) += 1;
            }
            let image = images
                .get(&w.resource)
                .or_else(|| by_snapshot.get(w.resource.as_str()).copied());
            if let Some(image) = image {
                for rule in rules_of(image, policy, account) {
                    *s.by_rule.entry(rule).or_insert(0) += 1;
                }
            }
            s.items.push(w);
        }
        Self {
            region: region.to_string(),
            writes: total,
            sections,
        }
    }

    pub fn count(&self, change: Change) -> usize {
        self.sections.get(&change).map_or(0, |s| s.count)
    }

    /// The plan for people: counts per section, principals and rules, the first items.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if self.sections.is_empty() {
            let _ = writeln!(
                out,
                "{}: nothing to do: the next night writes nothing",
                self.region
            );
            return out;
        }
        let _ = writeln!(
            out,
            "{}: the next night would make {} writes",
            self.region, self.writes
        );
        for (change, s) in &self.sections {
            let name = serde_json::to_value(change)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let _ = writeln!(out, "\n  {name}: {}", s.count);
            if !s.by_rule.is_empty() {
                let _ = writeln!(out, "    by rule: {}", counts(&s.by_rule));
            }
            if !s.by_principal.is_empty() {
                let _ = writeln!(out, "    by principal: {}", counts(&s.by_principal));
            }
            for w in s.items.iter().take(SHOWN) {
                let whom = if w.principals.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", w.principals.join(", "))
                };
                let account = w
                    .account
                    .as_deref()
                    .map(|a| format!(" in {a}"))
                    .unwrap_or_default();
                let _ = writeln!(out, "    {} {}{whom}{account}", w.action, w.resource);
            }
            if s.items.len() > SHOWN {
                let _ = writeln!(
                    out,
                    "    … and {} more (--json lists all)",
                    s.items.len() - SHOWN
                );
            }
        }
        out
    }
}

fn counts(m: &BTreeMap<String, usize>) -> String {
    m.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rules an image is distributed under, for the plan's counts: a source's matching rules;
/// a copy is counted as `(copies)` (its rules are its source's, in another Region).
fn rules_of(image: &Image, policy: &Policy, account: &str) -> Vec<String> {
    if let ImageKind::OurCopy(_) = classify(image) {
        return vec!["(copies)".to_string()];
    }
    match matching_rules(policy, image, account) {
        Ok(rules) if !rules.is_empty() => rules.iter().map(|r| r.name.clone()).collect(),
        _ => vec!["(no rule)".to_string()],
    }
}
