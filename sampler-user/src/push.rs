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

/// Commits the queue's inbox (and the counter totals `totals()` gives)
/// every `every`, until `stop`, and every [`PRUNE_EVERY`] forgets the
/// series and totals unused for `retention`. The last commit, after the
/// drain's last pass, is the daemon's (see `daemon::run`).
pub async fn flush_loop(
    queue: Arc<Queue>,
    every: Duration,
    retention: Duration,
    totals: Arc<dyn Fn() -> Vec<(String, f64)> + Send + Sync>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let q = queue.clone();
        let t = totals.clone();
        match tokio::task::spawn_blocking(move || q.commit(&t())).await {
            Ok(Ok((_, dropped))) if dropped > 0 => warn!(
                dropped,
                "push queue full (--push-buffer): dropped the oldest samples (counted in ergon_push_samples_dropped_total)"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => error!(error = %e, "committing the push queue failed; retrying at the next interval"),
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
