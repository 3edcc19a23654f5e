//! The drain task: it moves what the kernel side holds ([`crate::ingest`])
//! through the books ([`crate::ledger`]) into the stores and the snapshot
//! ([`crate::export`]). It holds no state of its own but when it last
//! published and read the statistics.
//!
//! It wakes on data, not on a fast clock: when a reader asks for the books
//! as of now ([`crate::snapshot::Demand`]: a scrape, `/metrics/batch`,
//! `/health`), when the ring buffer is half full (the kernel program that
//! takes it past half wakes the drain), and every `--drain-interval` (a
//! slow safety tick: 1 s by default, 100 ms while pushing). A snapshot is built only when a
//! reader asked, the last one is [`PUBLISH_EVERY`] old, or there are points
//! for the push queue: a drain nobody reads moves records into the books
//! and the batch store, nothing else.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{
    export::Export,
    ingest::{Ingest, IngestError},
    ledger::{Clock, Ledger},
};

/// Kernel map statistics and program run statistics are refreshed at most
/// this often (when a snapshot is built).
const STATS_EVERY: Duration = Duration::from_millis(250);

/// A snapshot is built at least this often even if nobody asks (and on
/// every drain with points for the push queue, which go with one).
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// The slow tick's longest wait on a quiet machine (see [`next_wait`]).
/// Below `/health`'s default staleness bound (1 s), which a reader's own
/// drain meets anyway.
pub const QUIET_DRAIN_MAX: Duration = Duration::from_millis(500);

/// Whether the records of one drain, covering `over`, say the machine is
/// quiet: at most 1% of what every CPU busy would write in that time
/// (`full_rate` records a second: CPUs / `--period`). With the silent
/// timer an idle CPU writes nothing; the daemon's own drain and the odd
/// kernel thread write a few.
pub fn quiet(records: u64, full_rate: f64, over: Duration) -> bool {
    records as f64 <= 0.01 * full_rate * over.as_secs_f64()
}

/// The wait before the next slow tick: `every` (`--drain-interval`) while
/// the machine works, doubled after each drain that found it [`quiet`], up to
/// [`QUIET_DRAIN_MAX`]. A quiet machine is then woken by Ergon's drain
/// twice a second instead of ten times; a reader (`/metrics`,
/// `/metrics/batch`, `/health`) still gets fresh books at once, and the
/// first record's half-full wake-up or the next tick brings the cadence
/// back. Not while pushing: remote_write's durability window is one drain.
pub fn next_wait(wait: Duration, every: Duration, quiet: bool) -> Duration {
    if quiet {
        (wait * 2).min(QUIET_DRAIN_MAX.max(every))
    } else {
        every
    }
}

pub struct Drainer {
    ingest: Ingest,
    ledger: Ledger,
    export: Export,
    /// Incremented by every `/metrics` response written: dead cgroups leave
    /// only after being exported at least once.
    export_epoch: Arc<AtomicU64>,
    /// Reused by every drain: no allocation once it has grown.
    events: Vec<crate::ledger::Event>,
    /// Records a second with every CPU busy (CPUs / `--period`), for [`quiet`].
    full_rate: f64,
    last_stats: Option<Instant>,
    last_publish: Option<Instant>,
}

impl Drainer {
    pub fn new(
        ingest: Ingest,
        ledger: Ledger,
        export: Export,
        export_epoch: Arc<AtomicU64>,
        full_rate: f64,
    ) -> Self {
        Self {
            ingest,
            ledger,
            export,
            export_epoch,
            events: Vec::new(),
            full_rate,
            last_stats: None,
            last_publish: None,
        }
    }

    /// Runs until `stop`; drains and publishes one last time before
    /// returning, then drops the sampler (detaching the programs).
    pub async fn run(
        mut self,
        every: Duration,
        stop: CancellationToken,
    ) -> Result<(), IngestError> {
        let demand = self.export.demand().clone();
        let mut wait = every;
        let mut last = tokio::time::Instant::now();
        let mut next = last + wait;
        loop {
            let asked = tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(next) => false,
                r = self.ingest.readable() => {
                    r?;
                    false
                }
                _ = demand.asked() => true,
            };
            let (before, since) = (self.ledger.records_decoded(), last);
            self.drain_once(asked)?;
            last = tokio::time::Instant::now();
            let records = self.ledger.records_decoded() - before;
            let calm = quiet(records, self.full_rate, last - since) && !self.export.pushing();
            wait = next_wait(wait, every, calm);
            next = last + wait;
        }
        self.drain_once(true)?;
        info!(
            records = self.ledger.records_decoded(),
            "drain stopped; detaching kernel programs"
        );
        Ok(())
    }

    /// One drain: records, idle counters, silent CPUs, booking, export;
    /// then, when a reader `asked` or one is due, statistics and snapshot.
    pub fn drain_once(&mut self, asked: bool) -> Result<(), IngestError> {
        let failed = self.ledger.apply(self.ingest.events());
        for (cpu, idx) in self.ingest.narrow(failed)? {
            self.ledger.forget_reader(cpu, idx);
        }
        let stale = self.ledger.stale_counters(crate::perf::boot_ns());
        self.ingest.read_counters(&stale, &mut self.events);
        self.ledger.apply(self.events.drain(..));
        self.ledger.book_readings(&Clock::now());
        let now_ns = crate::perf::boot_ns();
        if let Some(silent) = self.ledger.silent_cpus(now_ns) {
            let states = self.ingest.cpu_states()?;
            self.ledger.close_silent(silent, &states, now_ns);
        }
        let clock = Clock::now();
        let epoch = self.export_epoch.load(Ordering::Relaxed);
        self.export.write(self.ledger.settle(&clock, epoch));
        let due = |last: Option<Instant>, every| {
            last.is_none_or(|t| clock.instant.duration_since(t) >= every)
        };
        // Points for the push queue go with a snapshot: pushing, every
        // drain that booked some publishes (the queue's durability window
        // is --fsync-interval plus one drain).
        if !asked && !due(self.last_publish, PUBLISH_EVERY) && !self.export.pushes_pending() {
            return Ok(());
        }
        self.last_publish = Some(clock.instant);
        if due(self.last_stats, STATS_EVERY) {
            self.last_stats = Some(clock.instant);
            let (stats, programs) = self.ingest.stats()?;
            self.ledger.kernel_stats(stats, programs);
        }
        self.export.publish(self.ledger.snapshot(&Clock::now()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_machine_is_drained_less_often_and_a_record_brings_the_cadence_back() {
        let every = Duration::from_millis(100);
        let mut w = every;
        let mut seen = Vec::new();
        for _ in 0..5 {
            w = next_wait(w, every, true);
            seen.push(w.as_millis());
        }
        assert_eq!(seen, [200, 400, 500, 500, 500]);
        assert_eq!(next_wait(w, every, false), every);
        // 2 CPUs at 500 us write 4,000 records a second busy: 4 in 100 ms
        // is quiet, 5 is not.
        let over = Duration::from_millis(100);
        assert!(quiet(4, 4000.0, over));
        assert!(!quiet(5, 4000.0, over));
        // A --drain-interval above the quiet bound is kept as it is.
        let slow = Duration::from_secs(1);
        assert_eq!(next_wait(slow, slow, true), slow);
    }
}
