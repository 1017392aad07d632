//! Pure decisions: which rules apply, what to share, what to copy. No async, no I/O.

pub mod matching;
pub mod names;
pub mod orphans;
pub mod plan;
pub mod retire;
