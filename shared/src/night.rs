//! One night's run of the sweeper: its Region, "now", its deadline and the clock deadline
//! checks read, and how the night's report lists what it did. Every part of a night (orphans,
//! drift, retirement) starts new work only while [`Run::may_start`]; what it did not reach is
//! reported and left for the next invocation through a [`Ledger`].

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

use crate::error::Error;
use crate::report::ErrorSummary;

/// At most this many items of each list are in the report one by one (all are counted): the
/// summary stays small at any size (CloudWatch Logs cuts an event at 256 KB).
pub const LISTED: usize = 50;

/// Stop starting new work this long before the invocation's deadline.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(60);

/// What one invocation is about: where, when, and until when.
/// Where "now" comes from for deadline checks: the system clock, or a test's own.
#[derive(Clone)]
pub struct Clock(pub std::sync::Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl Clock {
    pub fn system() -> Self {
        Clock(std::sync::Arc::new(SystemTime::now))
    }
    pub fn now(&self) -> SystemTime {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

#[derive(Debug, Clone)]
pub struct Run {
    /// The Region swept (the Region of the function's own configuration).
    pub region: String,
    /// "Now", for ages, marks and grace periods.
    pub now: DateTime<Utc>,
    /// The invocation's deadline (`None`: no deadline).
    pub deadline: Option<SystemTime>,
    /// No new work is started later than this before the deadline.
    pub margin: Duration,
    /// Delays before re-running a listing that failed with a transient error (after the SDK's
    /// own retries): one more attempt after each, while the deadline allows.
    pub listing_retry_delays: Vec<Duration>,
    /// The clock deadline checks read.
    pub clock: Clock,
}

/// Production delays before re-running a failed listing.
pub const LISTING_RETRY_DELAYS: [Duration; 3] = [
    Duration::from_secs(2),
    Duration::from_secs(10),
    Duration::from_secs(30),
];

impl Run {
    pub fn new(
        region: impl Into<String>,
        now: DateTime<Utc>,
        deadline: Option<SystemTime>,
    ) -> Self {
        Self {
            region: region.into(),
            now,
            deadline,
            margin: DEFAULT_MARGIN,
            listing_retry_delays: LISTING_RETRY_DELAYS.to_vec(),
            clock: Clock::system(),
        }
    }

    /// Time left before the margin; `None` without a deadline.
    /// A run with the deadline the runtime announced. A deadline already past when the
    /// invocation starts cannot be real (local emulators such as `cargo lambda watch` send a
    /// duration instead of an epoch time): it is ignored, with a warning, instead of making the
    /// sweep give up before it starts.
    pub fn for_invocation(
        region: impl Into<String>,
        now: DateTime<Utc>,
        deadline: SystemTime,
    ) -> Self {
        let deadline = if deadline <= SystemTime::now() {
            tracing::warn!(
                ?deadline,
                "the invocation's deadline is already past; running without one"
            );
            None
        } else {
            Some(deadline)
        };
        Self::new(region, now, deadline)
    }

    /// The same run, reading deadlines off this clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The same run, re-running failed listings after these delays.
    pub fn with_listing_retry_delays(mut self, delays: Vec<Duration>) -> Self {
        self.listing_retry_delays = delays;
        self
    }

    pub fn time_left(&self) -> Option<Duration> {
        self.deadline.map(|d| {
            d.duration_since(self.clock.now())
                .unwrap_or_default()
                .saturating_sub(self.margin)
        })
    }

    /// Whether new work may still be started.
    pub fn may_start(&self) -> bool {
        self.time_left().is_none_or(|left| !left.is_zero())
    }
}

/// Where a part of the night writes its errors and the work the deadline left for the next
/// invocation (the night's report).
pub trait Ledger {
    /// Count every error, list the first [`LISTED`].
    fn push_error(&mut self, e: ErrorSummary);
    /// Work the deadline left for the next invocation: reported, and a follow-up asked for.
    fn left_for_next(&mut self, what: String);
    fn error(&mut self, context: &str, e: &Error) {
        self.push_error(ErrorSummary {
            error_type: e.error_type(),
            message: format!("{context}: {e}"),
        });
    }
}
