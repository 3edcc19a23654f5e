//! The drain task: it moves what the kernel side holds ([`crate::ingest`])
//! through the books ([`crate::ledger`]) into the stores and the snapshot
//! ([`crate::export`]). It holds no state of its own but when it last
//! published and read the statistics.
//!
//! It wakes on data, not on a fast clock: when a reader asks for the books
//! as of now ([`crate::snapshot::Demand`]: a scrape, `/metrics/batch`,
//! `/health`), when the ring buffer is half full (the kernel program that
//! takes it past half wakes the drain), and every `--drain-interval` (a
//! slow safety tick, 100 ms by default). A snapshot is built only when a
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

pub struct Drainer {
    ingest: Ingest,
    ledger: Ledger,
    export: Export,
    /// Incremented by every `/metrics` response written: dead cgroups leave
    /// only after being exported at least once.
    export_epoch: Arc<AtomicU64>,
    /// Reused by every drain: no allocation once it has grown.
    events: Vec<crate::ledger::Event>,
    last_stats: Option<Instant>,
    last_publish: Option<Instant>,
}

impl Drainer {
    pub fn new(
        ingest: Ingest,
        ledger: Ledger,
        export: Export,
        export_epoch: Arc<AtomicU64>,
    ) -> Self {
        Self {
            ingest,
            ledger,
            export,
            export_epoch,
            events: Vec::new(),
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
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let demand = self.export.demand().clone();
        loop {
            let asked = tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => false,
                r = self.ingest.readable() => {
                    r?;
                    false
                }
                _ = demand.asked() => true,
            };
            self.drain_once(asked)?;
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
            let (first, second) = self.ingest.cpu_states_twice()?;
            self.ledger.close_silent(silent, &first, &second, now_ns);
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
