//! The push task: every `--push-interval`, post the committed queue to the
//! receiver in requests of at most `--remote-write-max-samples`, and remove
//! what it acknowledged. Failures follow seed document 001:
//!
//! - network errors, time-outs, 5xx, 429: exponential backoff with full
//!   jitter (or the server's `Retry-After`) until the next push is due; the
//!   samples stay queued;
//! - 401/403: an authentication error in the log, retried up to 3 times
//!   with backoff, then kept for the next push;
//! - 400 naming bad samples (out of order, out of bounds, duplicate): the
//!   request is halved until the bad samples are alone; those are dropped
//!   and counted, the good ones stored — never a whole batch for one sample;
//! - any other 4xx: the server's message in the log, samples kept;
//! - 5 consecutive failed requests: a critical log line (sampling and
//!   buffering go on);
//! - nothing queued: no request, a warning.

use std::{
    collections::{HashMap, VecDeque},
    ops::Range,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use crate::units::now_unix_ms;

use super::{
    client::{Answer, Remote},
    proto::{self, Label, Sample, TimeSeries, WriteRequest},
    queue::{pairs, Queue, Queued},
    stats::PushStats,
};

/// Consecutive failed requests that make a critical log line.
pub const CRITICAL_AFTER: u64 = 5;
/// Retries of a request refused with 401/403 before it waits for the next push.
pub const AUTH_RETRIES: u32 = 3;
const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(30);

pub struct Sender {
    pub queue: Arc<Queue>,
    pub remote: Remote,
    pub stats: Arc<PushStats>,
    pub interval: Duration,
    pub max_samples: usize,
    pub external_labels: Vec<(String, String)>,
}

/// Full jitter: a uniform wait in [0, min(cap, base × 2^attempt)].
pub fn backoff(attempt: u32) -> Duration {
    let cap = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_CAP);
    rand::thread_rng().gen_range(Duration::ZERO..=cap)
}

impl Sender {
    pub async fn run(mut self, stop: CancellationToken) {
        let first = tokio::time::Instant::now() + self.interval;
        let mut tick = tokio::time::interval_at(first, self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            self.push_round(&stop).await;
        }
    }

    /// One push: everything committed, chunk by chunk, until done, or until
    /// the next push is due, or a failure that waits for the next push.
    pub async fn push_round(&mut self, stop: &CancellationToken) {
        let until = Instant::now() + self.interval;
        let mut sent_any = false;
        // Samples the sampler made since the last commit (the committer runs
        // every --fsync-interval) are committed now, with the totals handed
        // over with them, so a push sees everything made before it: a push
        // that found only the committed part logged "no new samples" while
        // thousands were buffered. Not while commits fail: the committer
        // retries those with backoff.
        if self.queue.in_memory() > 0 && self.queue.outage().is_none() {
            let queue = self.queue.clone();
            match tokio::task::spawn_blocking(move || queue.commit(&[])).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    warn!(error = %e, "committing before the push failed; pushing what is committed")
                }
                Err(e) => error!(error = %e, "committing before the push panicked"),
            }
        }
        loop {
            let queue = self.queue.clone();
            let max = self.max_samples;
            let chunk = match tokio::task::spawn_blocking(move || queue.peek(max)).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    error!(error = %e, "reading the push queue failed");
                    return;
                }
                Err(e) => {
                    error!(error = %e, "reading the push queue panicked");
                    return;
                }
            };
            // Never send a timestamp in the future: stop before the first one.
            let now = now_unix_ms();
            let due = chunk.iter().position(|q| q.ts > now).unwrap_or(chunk.len());
            let chunk = &chunk[..due];
            if chunk.is_empty() {
                if !sent_any {
                    self.stats.skipped_empty.fetch_add(1, Ordering::Relaxed);
                    warn!("push interval reached but no new samples since the last push: skipping it (is the sampler producing data? see /health)");
                }
                return;
            }
            if !self.send_chunk(chunk, until, stop).await {
                return;
            }
            sent_any = true;
        }
    }

    /// The request for `samples`: series in first-seen order, each in time
    /// order, without what the receiver already acknowledged. Also the
    /// newest timestamp per series.
    pub fn build(&self, samples: &[Queued]) -> (WriteRequest, Vec<(u64, i64)>) {
        let mut order: Vec<u64> = Vec::new();
        let mut by_series: HashMap<u64, Vec<Sample>> = HashMap::new();
        for q in samples {
            let v = by_series.entry(q.series).or_insert_with(|| {
                order.push(q.series);
                Vec::new()
            });
            if v.last().is_none_or(|s| q.ts > s.timestamp) {
                v.push(Sample {
                    value: q.value,
                    timestamp: q.ts,
                });
            }
        }
        let mut newest = Vec::with_capacity(order.len());
        let mut timeseries = Vec::with_capacity(order.len());
        for id in order {
            let Some(desc) = self.queue.descriptor_of(id) else {
                continue;
            };
            let mut samples = by_series.remove(&id).unwrap_or_default();
            // Nothing at or before what the receiver acknowledged (one
            // lookup per series; dropping these after the in-order filter
            // above keeps the same samples, as none of them is newer).
            if let Some(t) = self.queue.acked(id) {
                samples.retain(|s| s.timestamp > t);
            }
            if samples.is_empty() {
                continue;
            }
            if let Some(s) = samples.last() {
                newest.push((id, s.timestamp));
            }
            let mut labels: Vec<(String, String)> = pairs(&desc);
            for (k, v) in &self.external_labels {
                if !labels.iter().any(|(n, _)| n == k) {
                    labels.push((k.clone(), v.clone()));
                }
            }
            labels.sort();
            timeseries.push(TimeSeries {
                labels: labels
                    .into_iter()
                    .map(|(name, value)| Label { name, value })
                    .collect(),
                samples,
            });
        }
        (WriteRequest { timeseries }, newest)
    }

    async fn remove(&self, seq: u64, acked: Vec<(u64, i64)>) -> bool {
        let queue = self.queue.clone();
        match tokio::task::spawn_blocking(move || queue.remove_through(seq, &acked)).await {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                error!(error = %e, "removing acknowledged samples from the push queue failed; they will be sent again");
                false
            }
            Err(e) => {
                error!(error = %e, "removing acknowledged samples panicked");
                false
            }
        }
    }

    fn failed(&self, cause: &'static str) {
        self.stats.failed(cause);
        let n = self
            .stats
            .consecutive_failures
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        if n >= CRITICAL_AFTER && n.is_multiple_of(CRITICAL_AFTER) {
            error!(
                consecutive_failures = n,
                queued = self.queue.len(),
                "CRITICAL: remote_write has failed {n} times in a row; sampling and buffering go on (oldest samples are dropped once --push-buffer is full)"
            );
        }
    }

    /// Waits `d` unless that passes `until` or `stop`; false if it did not wait.
    async fn wait(d: Duration, until: Instant, stop: &CancellationToken) -> bool {
        if Instant::now() + d > until {
            return false;
        }
        tokio::select! {
            _ = stop.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }

    /// Sends one chunk; true when all of it was stored or rejected.
    async fn send_chunk(
        &mut self,
        chunk: &[Queued],
        until: Instant,
        stop: &CancellationToken,
    ) -> bool {
        let mut work: VecDeque<Range<usize>> = VecDeque::new();
        work.push_back(0..chunk.len());
        let mut attempt = 0u32;
        let mut auth_tries = 0u32;
        while let Some(r) = work.pop_front() {
            let part = &chunk[r.clone()];
            let last_seq = part[part.len() - 1].seq;
            let (req, newest) = self.build(part);
            let n: u64 = req.timeseries.iter().map(|t| t.samples.len() as u64).sum();
            if n == 0 {
                // All already acknowledged (sent before a crash): just drop them.
                if !self.remove(last_seq, Vec::new()).await {
                    return false;
                }
                continue;
            }
            let body = match proto::encode(&req) {
                Ok(b) => b,
                Err(e) => {
                    error!(error = %e, "snappy encoding failed");
                    return false;
                }
            };
            self.stats.attempts.fetch_add(1, Ordering::Relaxed);
            match self.remote.send(body).await {
                Answer::Stored => {
                    if !self.remove(last_seq, newest).await {
                        return false;
                    }
                    self.stats.sent.fetch_add(n, Ordering::Relaxed);
                    self.stats.consecutive_failures.store(0, Ordering::Relaxed);
                    self.stats
                        .last_push_ms
                        .store(now_unix_ms(), Ordering::Relaxed);
                    attempt = 0;
                }
                Answer::Retry {
                    cause,
                    retry_after,
                    message,
                } => {
                    self.failed(cause);
                    let d = retry_after.unwrap_or_else(|| backoff(attempt));
                    warn!(cause, %message, retry_in = ?d, queued = self.queue.len(), "remote_write failed; the samples stay queued and the push is retried");
                    attempt += 1;
                    work.push_front(r);
                    if !Self::wait(d, until, stop).await {
                        return false;
                    }
                }
                Answer::Auth { status, message } => {
                    self.failed("auth");
                    auth_tries += 1;
                    error!(status, %message, attempt = auth_tries, "remote_write authentication failed: check --remote-write-username and the password (or the bearer token)");
                    if auth_tries > AUTH_RETRIES {
                        warn!(
                            queued = self.queue.len(),
                            "giving up until the next push interval; the samples stay queued"
                        );
                        return false;
                    }
                    work.push_front(r);
                    if !Self::wait(backoff(auth_tries), until, stop).await {
                        return false;
                    }
                }
                Answer::BadSamples { message } if r.len() == 1 => {
                    self.stats.rejected.fetch_add(n, Ordering::Relaxed);
                    warn!(%message, ts = part[0].ts, "the receiver rejected a sample (counted in ergon_push_samples_rejected_total); the others go on");
                    if !self.remove(last_seq, Vec::new()).await {
                        return false;
                    }
                }
                Answer::BadSamples { .. } | Answer::TooLarge { .. } if r.len() > 1 => {
                    // Halve: the good part is stored, the bad part halves again.
                    let mid = r.start + r.len() / 2;
                    work.push_front(mid..r.end);
                    work.push_front(r.start..mid);
                }
                Answer::Refused { status, message } => {
                    self.failed("refused");
                    error!(status, %message, url = ?self.remote_url(), "remote_write refused the request; the samples stay queued (check --remote-write-url and the receiver's configuration)");
                    return false;
                }
                Answer::BadSamples { message } | Answer::TooLarge { message } => {
                    self.failed("refused");
                    error!(%message, url = ?self.remote_url(), "remote_write refused the request; the samples stay queued (check --remote-write-url and the receiver's configuration)");
                    return false;
                }
            }
        }
        debug!(samples = chunk.len(), "remote_write chunk done");
        true
    }

    fn remote_url(&self) -> String {
        self.remote.url()
    }
}

#[cfg(test)]
#[path = "sender_tests.rs"]
mod tests;
