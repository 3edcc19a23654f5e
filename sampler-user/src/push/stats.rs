//! Self-metrics of the push path.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use prometheus_client::{collector::Collector, encoding::DescriptorEncoder};

use super::queue::Queue;
use crate::families::{counter, counter1, gauge1};

#[derive(Debug, Default)]
pub struct PushStats {
    pub attempts: AtomicU64,
    pub sent: AtomicU64,
    pub rejected: AtomicU64,
    pub skipped_empty: AtomicU64,
    pub consecutive_failures: AtomicU64,
    /// Wall-clock ms of the last stored request (0: never).
    pub last_push_ms: AtomicI64,
    failures: Mutex<BTreeMap<&'static str, u64>>,
}

impl PushStats {
    pub fn failed(&self, cause: &'static str) {
        *self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(cause)
            .or_default() += 1;
    }

    pub fn failures(&self) -> BTreeMap<&'static str, u64> {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Seconds since the epoch of the last stored request.
    pub fn last_push_unix(&self) -> Option<f64> {
        let ms = self.last_push_ms.load(Ordering::Relaxed);
        (ms > 0).then(|| ms as f64 / 1000.0)
    }
}

#[derive(Debug)]
pub struct PushCollector {
    pub stats: Arc<PushStats>,
    pub queue: Arc<Queue>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Queue({})", self.path().display())
    }
}

impl Collector for PushCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.stats;
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        counter1(
            &mut enc,
            "ergon_push_requests",
            "remote_write requests sent (attempts, including retries).",
            c(&s.attempts),
        )?;
        counter(
            &mut enc,
            "ergon_push_failures",
            "Failed remote_write requests by cause: network, timeout, server (5xx), throttled (429), auth (401/403), refused (other 4xx).",
            s.failures()
                .into_iter()
                .map(|(cause, n)| (vec![("cause", cause.to_string())], n as f64)),
        )?;
        counter1(
            &mut enc,
            "ergon_push_samples_sent",
            "Samples the remote_write receiver acknowledged.",
            c(&s.sent),
        )?;
        counter1(&mut enc, "ergon_push_samples_rejected", "Samples the receiver rejected one by one (out of order, out of bounds, duplicate); the rest of their requests were stored.", c(&s.rejected))?;
        counter1(
            &mut enc,
            "ergon_push_samples_dropped",
            "Samples dropped from the full push queue (--push-buffer), oldest first, on disk or in memory while commits fail.",
            self.queue.dropped() as f64,
        )?;
        counter1(
            &mut enc,
            "ergon_push_skipped",
            "Push intervals with nothing new to send (no request made).",
            c(&s.skipped_empty),
        )?;
        gauge1(
            &mut enc,
            "ergon_push_consecutive_failures",
            "Failed remote_write requests since the last stored one.",
            c(&s.consecutive_failures),
        )?;
        gauge1(
            &mut enc,
            "ergon_push_queue_samples",
            "Samples committed to the push queue and not yet acknowledged.",
            self.queue.len() as f64,
        )?;
        gauge1(
            &mut enc,
            "ergon_push_queue_memory_samples",
            "Samples not yet committed to disk: one --fsync-interval of them, more while commits fail (at most --push-buffer).",
            self.queue.in_memory() as f64,
        )?;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let age = self
            .queue
            .oldest_ts()
            .map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0);
        gauge1(
            &mut enc,
            "ergon_push_oldest_sample_age_seconds",
            "Age of the oldest queued sample (0 when the queue is empty).",
            age,
        )?;
        gauge1(
            &mut enc,
            "ergon_push_last_success_timestamp_seconds",
            "Wall-clock time of the last acknowledged remote_write request (0: never).",
            s.last_push_unix().unwrap_or(0.0),
        )?;
        Ok(())
    }
}
