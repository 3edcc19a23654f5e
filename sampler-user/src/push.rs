//! Push: remote_write 1.0 with retries, backoff and a durable queue.
//! The drain task appends every batch point (the same series as
//! `/metrics/batch`) to the queue's inbox; a flusher commits it every
//! `--fsync-interval`; the sender posts committed samples every
//! `--push-interval` and removes what the receiver acknowledged.

pub mod client;
pub mod proto;
pub mod queue;
pub mod sender;
pub mod stats;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use queue::{Pruned, Queue};

/// How often [`flush_loop`] forgets what `--state-retention` says is gone.
pub const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// The longest wait between two commits that fail.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The wait after `failures` failed commits in a row: `every` while they
/// succeed, then doubling up to [`MAX_BACKOFF`] (never below `every`).
pub fn backoff(every: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return every;
    }
    let doubled = every.saturating_mul(1 << failures.min(16));
    doubled.min(MAX_BACKOFF).max(every)
}

/// Commits the queue's inbox (and the counter totals `totals()` gives)
/// every `every`, until `stop`, and every [`PRUNE_EVERY`] forgets the
/// series and totals unused for `retention`. A failing commit is retried
/// with [`backoff`] (each retry reopens the database after an I/O error,
/// [`Queue::commit`]); the samples wait in memory meanwhile, bounded by
/// `--push-buffer`. The last commit, after the drain's last pass, is the
/// daemon's (see `daemon::run`).
pub async fn flush_loop(
    queue: Arc<Queue>,
    every: Duration,
    retention: Duration,
    totals: Arc<dyn Fn() -> Vec<(String, f64)> + Send + Sync>,
    stop: CancellationToken,
) {
    let mut last_prune = Instant::now();
    let mut failures: u32 = 0;
    let mut dropped_before = queue.dropped();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(backoff(every, failures)) => {}
        }
        let q = queue.clone();
        let t = totals.clone();
        match tokio::task::spawn_blocking(move || q.commit(&t())).await {
            Ok(Ok((committed, dropped))) => {
                if failures > 0 {
                    info!(
                        failed_commits = failures,
                        committed,
                        dropped = queue.dropped() - dropped_before,
                        "the durable state commits again; what was held in memory is on disk"
                    );
                    failures = 0;
                } else if dropped > 0 {
                    warn!(
                        dropped,
                        "push queue full (--push-buffer): dropped the oldest samples (counted in ergon_push_samples_dropped_total)"
                    );
                }
                dropped_before = queue.dropped();
            }
            Ok(Err(e)) => {
                failures = failures.saturating_add(1);
                let retry_in = backoff(every, failures);
                let held = queue.in_memory();
                if failures == 1 {
                    error!(error = %e, held, retry_in = ?retry_in, "committing the durable state failed; the samples stay in memory (at most --push-buffer, the oldest dropped beyond it) and the commit is retried, reopening the database after an I/O error; free space under --state-dir");
                } else {
                    warn!(error = %e, failed_commits = failures, held, dropped = queue.dropped() - dropped_before, retry_in = ?retry_in, "committing the durable state still fails");
                }
            }
            Err(e) => error!(error = %e, "committing the push queue panicked"),
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = Instant::now();
            let q = queue.clone();
            let retention_ms = crate::units::millis(retention);
            let now = crate::units::now_unix_ms();
            match tokio::task::spawn_blocking(move || q.prune(now, retention_ms)).await {
                Ok(Ok(p)) if p != Pruned::default() => info!(
                    series = p.series,
                    totals = p.totals,
                    retention = %humantime::format_duration(retention),
                    "forgot series and counter totals unused for --state-retention"
                ),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    error!(error = %e, "pruning the durable state failed; retrying later")
                }
                Err(e) => error!(error = %e, "pruning the durable state panicked"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_interval_to_its_ceiling() {
        let every = Duration::from_millis(200);
        let waits: Vec<u128> = (0..8).map(|n| backoff(every, n).as_millis()).collect();
        assert_eq!(waits, [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
        assert_eq!(backoff(every, u32::MAX), MAX_BACKOFF);
        // An interval above the ceiling is never shortened.
        let slow = Duration::from_secs(30);
        assert_eq!(backoff(slow, 3), slow);
    }
}
