//! What retirement did tonight: its part of the night's report.

use serde::Serialize;

use super::stage::Stage;
use crate::night::Ledger;

/// Retirement tonight (rules with `retire`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetireReport {
    /// `complete`, `partial` (the night's limit or the deadline came first); empty when no rule
    /// retires.
    pub status: String,
    /// Images the rules' keep / age settings select (in every stage).
    pub selected: usize,
    /// Stages taken (`mode: act`).
    pub done: usize,
    pub deprecated: usize,
    pub disabled: usize,
    pub deregistered: usize,
    /// Stages that would be taken (`mode: report`).
    pub would: usize,
    /// Images whose due stage something still prevents (see their `protected_by`).
    pub protected: usize,
    /// Of those, waiting for a consumer usage report (requested tonight, or not ready).
    pub usage_reports_pending: usize,
    /// Consumer accounts whose Allowed AMIs refuse images deprecated for longer than the
    /// rule's retirement waits to disable them: there the image stops being usable first
    /// (the night's look at the consumers, crate::sweep::consumers).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub consumers_refuse_sooner: Vec<String>,
    /// Images whose next stage is not due yet.
    pub waiting: usize,
    /// Copies waiting for their source to reach the stage first.
    pub held: usize,
    /// Due stages left for the next night (`sweeper.max_retirements`, or the deadline).
    pub not_reached: usize,
    /// The first images, with what happened or would happen.
    pub items: Vec<RetireItem>,
    /// Stage marks whose proof did not hold (a stage or time changed or copied by hand, or a
    /// time before the image or in the future): tampering, reported, the wait started again.
    pub marks_tampered: usize,
    /// Stage marks without proof (an earlier version's): the wait started again from now.
    pub marks_unsigned: usize,
    /// The first tampered marks, `<image>: <why>`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tampered: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetireItem {
    pub image_id: String,
    pub image_name: String,
    pub rule: String,
    pub stage: Option<Stage>,
    /// `done`, `would`, `protected`, `waiting`, `held`, `limit`, `recorded`, `would-record`.
    pub status: &'static str,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub protected_by: Vec<String>,
}

/// Where retirement writes: its own part of the night's report, and the night's ledger.
pub trait RetireLog: Ledger {
    fn retirement(&mut self) -> &mut RetireReport;
}
