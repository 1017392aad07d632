//! Client-side request rates that stay below EC2's per-API token buckets.
//!
//! EC2 throttles per account, per Region and per API action (aws-facts §8): non-mutating
//! actions refill 20 tokens a second, mutating ones (`Modify*`, `CreateTags`, `DeleteTags`,
//! `DeleteSnapshot`, `CopyImage`, …) 5. The bucket is the customer's whole account, shared with
//! every other tool, so the product takes only a share of each refill rate
//! (`rate_limits.share`, default 0.8). The night never spends EC2's burst: its requests are
//! evenly spaced, so no one-second window holds more than its rate. An event invocation, one of
//! at most `EventConcurrency` at once, paces itself to `rate_limits.events_share /
//! EventConcurrency` of the rate and may spend the same share of the bucket's burst first (a
//! burst of images is what it is for); together they never take more than that share of the
//! bucket. KMS operations (`kms:<Operation>`) have per-second quotas: one second of the share at
//! once, then evenly spaced. Accounts with raised quotas name their rates in
//! `rate_limits.requests_per_second`.
//!
//! Callers reserve the next free slot of their (Region, action) bucket and sleep until it: no
//! polling, and concurrent callers are served in order.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::RateLimitConfig;

/// EC2's documented sustained rate (tokens a second) of an action's bucket; for a KMS
/// operation named `kms:<Operation>`, KMS's request quota (per account and Region): 50 a
/// second for the grant operations, 10 for tagging, 100 for `ListGrants`.
pub fn documented_rate(action: &str) -> f64 {
    if action.starts_with("organizations:") {
        // Organizations throttles per account at a low rate: the night's per-account reads
        // (DescribeEffectivePolicy) keep to 10 a second (rate_limits.requests_per_second).
        return 10.0;
    }
    if let Some(op) = action.strip_prefix("kms:") {
        return match op {
            "CreateGrant" | "RevokeGrant" | "RetireGrant" => 50.0,
            "TagResource" | "UntagResource" => 10.0,
            "ListGrants" => 100.0,
            _ => 1000.0,
        };
    }
    if is_mutating(action) {
        5.0
    } else {
        20.0
    }
}

/// Whether EC2 counts the action against the mutating buckets.
pub fn is_mutating(action: &str) -> bool {
    !["Describe", "List", "Get"]
        .iter()
        .any(|p| action.starts_with(p))
}

#[derive(Debug)]
struct Bucket {
    /// Seconds between two requests.
    interval: f64,
    /// How far behind `now` an idle bucket's next slot may lie: the burst it saves up (zero
    /// for EC2, one second of the rate for KMS).
    tolerance: Duration,
    /// The earliest time the next request may be sent.
    next: Instant,
}

/// The buckets of one process, keyed by (Region, action).
#[derive(Debug)]
pub struct RateLimits {
    config: Option<RateLimitConfig>,
    /// The share of each action's rate this process may use.
    share: f64,
    /// Whether this process may spend its share of EC2's burst too (an event invocation: a
    /// burst of images is what the burst is for) or only its rate (the night: never bunched).
    ec2_burst: bool,
    buckets: Mutex<HashMap<(String, String), Bucket>>,
}

impl RateLimits {
    /// Rates from the policy, for the one process of the night (`rate_limits.share`).
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            share: config.share,
            ec2_burst: false,
            config: Some(config),
            buckets: Mutex::default(),
        }
    }

    /// Rates for one of at most `concurrency` event invocations that run at once (the queue's
    /// concurrency bound): together they stay within `rate_limits.events_share`.
    pub fn for_events(config: RateLimitConfig, concurrency: u32) -> Self {
        Self {
            share: config.events_share / f64::from(concurrency.max(1)),
            ec2_burst: true,
            config: Some(config),
            buckets: Mutex::default(),
        }
    }

    /// No limit at all (adapter tests that are about something else).
    pub fn unlimited() -> Self {
        Self {
            config: None,
            share: 1.0,
            ec2_burst: false,
            buckets: Mutex::default(),
        }
    }

    /// The rate (requests a second) the product allows itself for an action; `None`: no limit.
    pub fn rate(&self, action: &str) -> Option<f64> {
        let c = self.config.as_ref()?;
        let quota = c
            .requests_per_second
            .get(action)
            .copied()
            .unwrap_or_else(|| documented_rate(action));
        Some((quota * self.share).max(0.01))
    }

    /// Wait until one more `action` request may be sent in `region`.
    pub async fn acquire(&self, region: &str, action: &str) {
        let Some(rate) = self.rate(action) else {
            return;
        };
        let wait = {
            let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let interval = 1.0 / rate;
            let b = buckets
                .entry((region.to_string(), action.to_string()))
                .or_insert_with(|| {
                    let tolerance = self.burst_tolerance(action, rate);
                    Bucket {
                        interval,
                        tolerance,
                        next: now.checked_sub(tolerance).unwrap_or(now),
                    }
                });
            // EC2: evenly spaced, never bunched (an idle bucket saves up no burst: EC2's is
            // the account's, for every tool). KMS: at most one second of the rate at once,
            // then evenly spaced: within a quota that KMS enforces per second, for a share
            // of the rate and of its burst alike.
            let earliest = now.checked_sub(b.tolerance).unwrap_or(now);
            if b.next < earliest {
                b.next = earliest;
            }
            let slot = b.next;
            b.next = slot + Duration::from_secs_f64(b.interval);
            slot.saturating_duration_since(now)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

impl RateLimits {
    /// The burst a bucket may save up: one second of the rate for KMS's per-second quotas; for
    /// EC2 the process's share of the action's documented burst (50 tokens for mutating
    /// actions, 100 for the others) when it may spend one, none otherwise.
    fn burst_tolerance(&self, action: &str, rate: f64) -> Duration {
        let tokens = if action.starts_with("kms:") {
            rate.floor()
        } else if self.ec2_burst {
            (documented_burst(action) * self.share).floor()
        } else {
            0.0
        };
        Duration::from_secs_f64((tokens - 1.0).max(0.0) / rate)
    }
}

/// EC2's documented bucket size (tokens) of an action.
pub fn documented_burst(action: &str) -> f64 {
    if is_mutating(action) {
        50.0
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn limits(share: f64, raised: &[(&str, f64)]) -> RateLimits {
        RateLimits::new(RateLimitConfig {
            share,
            events_share: 0.8,
            requests_per_second: raised
                .iter()
                .map(|(a, r)| (a.to_string(), *r))
                .collect::<BTreeMap<_, _>>(),
            copies_in_flight: 20,
            consumer_reads_per_invocation: 10,
            unknown: BTreeMap::new(),
        })
    }

    #[test]
    fn rates_follow_the_documented_buckets_a_share_and_raised_quotas() {
        let l = limits(0.8, &[("DeleteSnapshot", 20.0)]);
        assert_eq!(l.rate("DescribeImages"), Some(16.0));
        assert_eq!(l.rate("CreateTags"), Some(4.0));
        assert_eq!(l.rate("ModifySnapshotAttribute"), Some(4.0));
        assert_eq!(l.rate("DeleteSnapshot"), Some(16.0));
        assert_eq!(RateLimits::unlimited().rate("DescribeImages"), None);
        assert_eq!(l.rate("kms:CreateGrant"), Some(40.0));
        assert_eq!(l.rate("kms:TagResource"), Some(8.0));
    }

    #[test]
    fn event_invocations_divide_the_events_share_by_the_concurrency_bound() {
        let config = |events_share| RateLimitConfig {
            events_share,
            ..RateLimitConfig::default()
        };
        let l = RateLimits::for_events(config(0.8), 4);
        assert_eq!(l.rate("ModifyImageAttribute"), Some(1.0)); // 4 x 1.0 = 0.8 x 5
        assert_eq!(l.rate("DescribeImages"), Some(4.0));
        let l = RateLimits::for_events(config(0.5), 2);
        assert_eq!(l.rate("CopyImage"), Some(1.25));
        // No bound known (a local run): one process may use the whole events share.
        assert_eq!(
            RateLimits::for_events(config(0.8), 0).rate("CreateTags"),
            Some(4.0)
        );
    }

    /// Counts the calls of every one-second window: never more than the rate, however many
    /// callers wait at once, and the buckets of different actions do not slow each other.
    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_never_exceed_the_rate_in_any_second() {
        let l = Arc::new(limits(0.8, &[]));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let l = l.clone();
            let action = if i % 2 == 0 {
                "CreateTags"
            } else {
                "DescribeImages"
            };
            tasks.push(tokio::spawn(async move {
                l.acquire("us-east-1", action).await;
                (action, Instant::now().duration_since(start))
            }));
        }
        let mut at: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
        for t in tasks {
            let (action, when) = t.await.unwrap();
            at.entry(action).or_default().push(when);
        }
        for (action, per_second) in [("CreateTags", 4usize), ("DescribeImages", 16)] {
            let mut times = at.remove(action).unwrap();
            times.sort();
            for (i, t) in times.iter().enumerate() {
                let in_window = times[i..]
                    .iter()
                    .take_while(|u| **u < *t + Duration::from_secs(1))
                    .count();
                assert!(
                    in_window <= per_second,
                    "{action}: {in_window} calls in the second after {t:?}"
                );
            }
            // 100 calls at the rate take (100 - 1) / rate seconds: nobody waits longer either.
            let last = *times.last().unwrap();
            let expected = Duration::from_secs_f64(99.0 / per_second as f64);
            assert!(
                last <= expected + Duration::from_millis(5),
                "{action}: {last:?}"
            );
        }
    }

    /// An event invocation spends its share of EC2's burst, then its share of the rate: with
    /// 2 invocations at once and 0.8 for events, 20 mutating calls at once, then 2 a second.
    #[tokio::test(start_paused = true)]
    async fn event_invocations_spend_their_share_of_ec2_burst_then_pace() {
        let l = RateLimits::for_events(RateLimitConfig::default(), 2);
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..24 {
            l.acquire("us-east-1", "ModifySnapshotAttribute").await;
            at.push(Instant::now() - start);
        }
        assert!(at[..20].iter().all(|t| t.is_zero()), "{at:?}");
        assert_eq!(at[20], Duration::from_millis(500));
        assert_eq!(at[23], Duration::from_millis(2000));
    }

    /// KMS: one second of the rate at once, then evenly spaced; never more than the quota
    /// share in the first second beyond the burst, and 50 grants at 40 a second take 250 ms.
    #[tokio::test(start_paused = true)]
    async fn kms_buckets_allow_one_second_of_burst_then_pace() {
        let l = limits(0.8, &[]);
        tokio::time::sleep(Duration::from_secs(60)).await;
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..50 {
            l.acquire("us-east-1", "kms:CreateGrant").await;
            at.push(Instant::now() - start);
        }
        assert!(at[..40].iter().all(|t| t.is_zero()), "{at:?}");
        assert_eq!(at[40], Duration::from_millis(25));
        assert_eq!(*at.last().unwrap(), Duration::from_millis(250));
        // EC2 saves up nothing, however long idle.
        l.acquire("us-east-1", "CreateTags").await;
        let t = Instant::now();
        l.acquire("us-east-1", "CreateTags").await;
        assert_eq!(Instant::now() - t, Duration::from_millis(250));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_bucket_saves_no_burst_and_regions_have_their_own() {
        let l = limits(1.0, &[]);
        tokio::time::sleep(Duration::from_secs(60)).await;
        let start = Instant::now();
        for _ in 0..5 {
            l.acquire("us-east-1", "CreateTags").await;
        }
        assert_eq!(Instant::now() - start, Duration::from_millis(800));
        l.acquire("eu-west-1", "CreateTags").await;
        assert_eq!(Instant::now() - start, Duration::from_millis(800));
    }
}
