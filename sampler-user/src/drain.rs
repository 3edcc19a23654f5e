//! The drain task: every `--drain-interval` it moves what the kernel side
//! holds ([`crate::ingest`]) through the books ([`crate::ledger`]) into the
//! stores and the snapshot ([`crate::export`]). It holds no state of its
//! own but when the statistics were last read.

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

/// Kernel map statistics and program run statistics are refreshed this often.
const STATS_EVERY: Duration = Duration::from_millis(250);

pub struct Drainer {
    ingest: Ingest,
    ledger: Ledger,
    export: Export,
    /// Incremented by every `/metrics` response written: dead cgroups leave
    /// only after being exported at least once.
    export_epoch: Arc<AtomicU64>,
    events: Vec<crate::ledger::Event>,
    last_stats: Option<Instant>,
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
        }
    }

    /// Runs until `stop`; drains one last time before returning, then drops
    /// the sampler (detaching the programs).
    pub async fn run(
        mut self,
        every: Duration,
        stop: CancellationToken,
    ) -> Result<(), IngestError> {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
                r = self.ingest.readable() => r?,
            }
            self.drain_once()?;
        }
        self.drain_once()?;
        info!(
            records = self.ledger.records_decoded(),
            "drain stopped; detaching kernel programs"
        );
        Ok(())
    }

    /// One drain: records, idle counters, silent CPUs, booking, export,
    /// statistics, snapshot.
    pub fn drain_once(&mut self) -> Result<(), IngestError> {
        self.ingest.collect(&mut self.events);
        let failed = self.ledger.apply(self.events.drain(..));
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
        if self
            .last_stats
            .is_none_or(|t| clock.instant.duration_since(t) >= STATS_EVERY)
        {
            self.last_stats = Some(clock.instant);
            let (stats, programs) = self.ingest.stats()?;
            self.ledger.kernel_stats(stats, programs);
        }
        self.export.publish(self.ledger.snapshot(&Clock::now()));
        Ok(())
    }
}
