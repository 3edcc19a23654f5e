//! The drain task: every `--drain-interval` it empties the ring buffer,
//! decodes the records, applies them to the energy books, reads counters
//! whose CPUs all sleep, and publishes a new snapshot.

use std::{
    collections::{HashMap, HashSet},
    sync::mpsc::Receiver,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use aya::maps::{MapData, RingBuf};
use sampler_common::{STAT_CGROUP_OVERFLOW, STAT_READ_ERRORS, STAT_RINGBUF_DROPS};
use tokio::io::unix::AsyncFd;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    attribution::{Attributor, IdleState},
    batch::{self, domains::DomainGrid, encode::render_labels, Family, SeriesKey, SharedStore},
    bpf::{BpfError, Sampler},
    cgroups::{CgroupLabels, Registry},
    continuity::{self, Continuity},
    decode::decode,
    energy::{EnergyBooks, PackageEnergy},
    hotplug::{Change, Watch},
    perf::boot_ns,
    push::queue::{descriptor, Queue},
    snapshot::{CgroupEnergy, SharedSnapshot, Snapshot},
    source::poll::Reading,
    units::Joules,
};

/// A counter not read by any timer program for this long (its CPUs are idle)
/// is read by the daemon itself. Longer means fewer wake-ups of idle CPUs,
/// shorter means fresher package totals.
pub const IDLE_READ_AFTER: Duration = Duration::from_millis(50);

/// Cgroup retention and `--max-cgroups` are checked this often (it walks
/// every cgroup's totals, so not on every drain).
const MAINTAIN_EVERY: Duration = Duration::from_secs(1);

/// A CPU whose timeline lags this far behind is checked for being idle.
const CLOSE_SILENT_AFTER: Duration = Duration::from_millis(100);

/// The wall-clock offset of the batch timestamps is re-read on every drain
/// but only changed when it moved by this much (NTP slew, a step).
const OFFSET_HYSTERESIS_NS: i128 = 1_000_000;

/// Kernel map statistics and program run statistics are refreshed this often.
const STATS_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("watching the ring buffer failed")]
    Poll {
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Bpf(#[from] BpfError),
}

/// The drain's bookkeeping, handed over by the daemon.
pub struct Books {
    pub energy: EnergyBooks,
    pub attribution: Attributor,
    pub cgroups: Registry,
    /// Incremented by every `/metrics` response written: dead cgroups leave
    /// only after being exported at least once.
    pub export_epoch: Arc<AtomicU64>,
    /// A CPU without any event for this long is idle (a busy CPU takes a
    /// timer sample every period): its timeline may be closed from its state.
    pub idle_silence: Duration,
    /// Where the timestamped batch points go.
    pub store: SharedStore,
    /// Batch points of the domains outside the attribution books.
    pub domains: DomainGrid,
    /// The remote_write queue, when pushing.
    pub push: Option<Arc<Queue>>,
    /// Counter totals of the previous run, added to every energy counter.
    pub continuity: Continuity,
    /// Readings of a userspace source's counters, from its poller.
    pub user_readings: Option<Receiver<Reading>>,
    /// CPUs going offline and coming back, when followed.
    pub hotplug: Option<Watch>,
}

pub struct Drainer {
    sampler: Sampler,
    ring: AsyncFd<RingBuf<MapData>>,
    books: EnergyBooks,
    attribution: Attributor,
    cgroups: Registry,
    export_epoch: Arc<AtomicU64>,
    snapshot: SharedSnapshot,
    base: Snapshot,
    records_decoded: u64,
    records_malformed: u64,
    idle_counter_reads: u64,
    idle_read_complaint: crate::complaint::Complaint,
    /// Energy counters that stopped advancing while their CPUs ran tasks:
    /// logged once, then at most once a minute.
    stall_complaint: crate::complaint::Complaint,
    /// Boot ns when draining began (the programs were attached just before):
    /// a CPU that ran no program since is idle since then.
    started_ns: u64,
    /// Batch points for remote_write, handed over after the snapshot.
    pending_push: Vec<(Arc<str>, i64, f64)>,
    last_stats: Option<Instant>,
    last_maintain: Option<Instant>,
    idle_silence: Duration,
    narrowed: HashSet<usize>,
    remote_ok: HashSet<usize>,
    store: SharedStore,
    domains: DomainGrid,
    /// Wall-clock ns minus boot ns at the last drain.
    clock_offset: Option<i128>,
    /// Each cgroup's batch series: its label set and push descriptor.
    cgroup_series: HashMap<u64, CgroupSeries>,
    /// Boot time of the newest counter reading.
    last_reading_ns: u64,
    push: Option<Arc<Queue>>,
    continuity: Continuity,
    /// remote_write descriptor of each package series.
    package_descriptors: HashMap<(u32, &'static str), Arc<str>>,
    user_readings: Option<Receiver<Reading>>,
    hotplug: Option<Watch>,
}

/// What the drain keeps for a cgroup's batch series: the label set it was
/// last given (a new one starts a new series) and, once pushed, its
/// remote_write descriptor.
struct CgroupSeries {
    labels: Arc<CgroupLabels>,
    descriptor: Option<Arc<str>>,
}

impl Drainer {
    pub fn new(
        sampler: Sampler,
        ring: RingBuf<MapData>,
        books: Books,
        snapshot: SharedSnapshot,
    ) -> Result<Self, DrainError> {
        let idle_silence = books.idle_silence;
        // SAFETY: the RingBuf owns its map fd and neither closes nor replaces
        // it while registered.
        let ring = unsafe { AsyncFd::register(ring) }
            .map_err(|e| DrainError::Poll { source: e.into() })?;
        let base = (**snapshot.load()).clone();
        Ok(Self {
            sampler,
            ring,
            books: books.energy,
            attribution: books.attribution,
            cgroups: books.cgroups,
            export_epoch: books.export_epoch,
            snapshot,
            base,
            records_decoded: 0,
            records_malformed: 0,
            idle_counter_reads: 0,
            idle_read_complaint: Default::default(),
            stall_complaint: Default::default(),
            started_ns: boot_ns(),
            pending_push: Vec::new(),
            last_stats: None,
            last_maintain: None,
            idle_silence,
            narrowed: HashSet::new(),
            remote_ok: HashSet::new(),
            store: books.store,
            domains: books.domains,
            clock_offset: None,
            cgroup_series: HashMap::new(),
            last_reading_ns: 0,
            push: books.push,
            continuity: books.continuity,
            package_descriptors: HashMap::new(),
            user_readings: books.user_readings,
            hotplug: books.hotplug,
        })
    }

    /// Runs until `stop`; drains one last time before returning, then drops
    /// the sampler (detaching the programs).
    pub async fn run(mut self, every: Duration, stop: CancellationToken) -> Result<(), DrainError> {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
                // Records are submitted without wake-ups; this wakes early only
                // if the kernel ever signals (e.g. a future program that does).
                r = self.ring.readable_mut() => match r {
                    Ok(mut guard) => guard.clear_ready(),
                    Err(source) => return Err(DrainError::Poll { source }),
                },
            }
            self.drain_once()?;
        }
        self.drain_once()?;
        info!(
            records = self.records_decoded,
            "drain stopped; detaching kernel programs"
        );
        Ok(())
    }

    /// One drain: records, idle counters, statistics, snapshot.
    pub fn drain_once(&mut self) -> Result<(), DrainError> {
        self.follow_hotplug();
        let mut failed = Vec::new();
        {
            let ring = self.ring.get_mut();
            while let Some(item) = ring.next() {
                match decode(&item) {
                    Ok(ev) => {
                        self.records_decoded += 1;
                        let applied = self.books.apply(&ev);
                        self.attribution.on_span(&ev.record);
                        failed.extend(applied.failed_reads);
                        for (cpu, idx) in applied.remote_reads {
                            if self.remote_ok.insert(idx) {
                                info!(cpu, counter = idx, "the kernel lets any CPU of the package read this energy counter (PMU read scope): sampling at every busy CPU's cadence");
                            }
                        }
                    }
                    Err(e) => {
                        if self.records_malformed == 0 {
                            warn!(error = %e, "malformed kernel record (counted in ergon_records_malformed_total)");
                        }
                        self.records_malformed += 1;
                    }
                }
            }
        }
        for (cpu, idx) in failed {
            let Some(c) = self.sampler.counters.get(idx) else {
                continue;
            };
            if cpu != c.plan.open_cpu {
                let open_cpu = c.plan.open_cpu;
                self.sampler.narrow(cpu, idx)?;
                self.books.forget_reader(cpu, idx);
                if self.narrowed.insert(idx) {
                    info!(cpu, open_cpu, counter = idx, "the kernel refuses to read this energy counter from other CPUs than the one it was opened on (no PMU read scope): reading it on cpu {open_cpu} only");
                }
            }
        }
        if let Some(rx) = &self.user_readings {
            while let Ok((idx, ts, raw)) = rx.try_recv() {
                self.books.reading(idx, ts, raw);
            }
        }
        self.read_idle_counters();
        let offset = self.clock_offset();
        let attribution = &mut self.attribution;
        let domains = &mut self.domains;
        let mut domain_points = Vec::new();
        let mut newest = self.last_reading_ns;
        self.books.take_applied(|idx, ts, counts| {
            attribution.on_reading(idx, ts, counts);
            domains.on_reading(idx, ts, counts, offset, &mut domain_points);
            newest = newest.max(ts);
        });
        self.last_reading_ns = newest;
        let now = Instant::now();
        self.close_silent_cpus()?;
        self.prepare_cgroups(now);
        self.attribution.advance();
        self.store_points(domain_points);
        if self
            .last_maintain
            .is_none_or(|t| now.duration_since(t) >= MAINTAIN_EVERY)
        {
            self.last_maintain = Some(now);
            self.maintain_cgroups(now);
        }
        if self
            .last_stats
            .is_none_or(|t| now.duration_since(t) >= STATS_EVERY)
        {
            self.last_stats = Some(now);
            let k = self.sampler.kernel_stats()?;
            self.base.ringbuf_dropped = k[STAT_RINGBUF_DROPS as usize];
            self.base.counter_read_errors = k[STAT_READ_ERRORS as usize];
            self.base.cgroup_table_overflows = k[STAT_CGROUP_OVERFLOW as usize];
            self.base.programs = self.sampler.program_stats();
        }
        self.publish();
        if let Some(q) = &self.push {
            // The samples with the totals of the snapshot just published,
            // which are at or past every one of them.
            let snap = self.snapshot.load_full();
            let samples = std::mem::take(&mut self.pending_push);
            q.append_with_totals(samples, Box::new(move || continuity::totals(&snap)));
        }
        Ok(())
    }

    /// Wall-clock ns minus boot ns, read now; a step of more than 1 s is
    /// logged. Batch timestamps follow the new clock, and a series never
    /// goes back in time (instants not after its last one are skipped).
    fn clock_offset(&mut self) -> i128 {
        let measured = wall_ns() - i128::from(boot_ns());
        let offset = match self.clock_offset {
            // Reading two clocks jitters by microseconds (more when the
            // thread is preempted between them): a new offset on every
            // drain would move the grid and skip an instant now and then.
            // Keep it until the clocks have really moved apart.
            Some(prev) if (measured - prev).abs() < OFFSET_HYSTERESIS_NS => prev,
            Some(prev) => {
                let step = measured - prev;
                if step.abs() > 1_000_000_000 {
                    warn!(
                        step_seconds = step as f64 * 1e-9,
                        "the wall clock stepped; batch timestamps follow it (a series never goes back: after a step back it resumes once the clock passes its last sample)"
                    );
                }
                measured
            }
            None => measured,
        };
        self.clock_offset = Some(offset);
        self.attribution.set_clock_offset(offset);
        offset
    }

    /// Moves the grid points of this drain into the batch store.
    fn store_points(&mut self, domain_points: Vec<(u32, &'static str, i64, f64)>) {
        let points = self.attribution.take_points();
        if points.packages.is_empty() && points.cgroups.is_empty() && domain_points.is_empty() {
            return;
        }
        let mut labels = Vec::new();
        for &(id, ..) in &points.cgroups {
            let l = self.cgroups.known_labels(id);
            let changed = self
                .cgroup_series
                .get(&id)
                .is_none_or(|old| !Arc::ptr_eq(&old.labels, &l) && *old.labels != *l);
            if changed {
                // A new series: its descriptor is made again when pushed.
                self.cgroup_series.insert(
                    id,
                    CgroupSeries {
                        labels: l.clone(),
                        descriptor: None,
                    },
                );
            }
            labels.push((l, changed));
        }
        let base = self.base.base_domain;
        let mut store = batch::lock(&self.store);
        let pkg = points
            .packages
            .iter()
            .map(|&(package, ms, j)| (package, base, ms, j))
            .chain(domain_points);
        for (package, domain, ms, j) in pkg {
            let key = SeriesKey::Package { package, domain };
            let j = j + self.continuity.package(package, domain);
            let labels = || render_labels(&[("package", &package.to_string()), ("domain", domain)]);
            store.push(&key, Family::Package, labels, ms, j);
            if self.push.is_some() {
                let d = self
                    .package_descriptors
                    .entry((package, domain))
                    .or_insert_with(|| {
                        let p = package.to_string();
                        descriptor(continuity::PACKAGE, &[("package", &p), ("domain", domain)])
                            .into()
                    });
                self.pending_push.push((d.clone(), ms, j));
            }
        }
        for (&(id, ms, j), (l, changed)) in points.cgroups.iter().zip(labels) {
            let key = SeriesKey::Cgroup(id);
            if changed {
                // A new label set (e.g. a cgroup resolved late) is a new series.
                store.retire(&key);
            }
            let j = j + self.continuity.cgroup(id, &l).0;
            store.push(&key, Family::Cgroup, || cgroup_labels(&l), ms, j);
            if let (true, Some(series)) = (self.push.is_some(), self.cgroup_series.get_mut(&id)) {
                let d = series
                    .descriptor
                    .get_or_insert_with(|| descriptor(continuity::CGROUP, &l.pairs()).into());
                self.pending_push.push((d.clone(), ms, j));
            }
        }
    }

    /// Detaches a CPU that went offline and attaches one that came back
    /// ([`crate::hotplug`]), before this drain's records are read: a
    /// reopened counter's books are rebased before its first reading. A
    /// failure is logged and leaves that CPU silent (its timeline is then
    /// closed from its kernel state); the daemon goes on.
    fn follow_hotplug(&mut self) {
        let Some(watch) = self.hotplug.as_mut() else {
            return;
        };
        for change in watch.poll(Instant::now()) {
            match change {
                Change::Offline(cpu) => match self.sampler.detach_cpu(cpu) {
                    Ok(d) => {
                        for &idx in &d.died {
                            self.books.park(idx);
                        }
                        for &(idx, to) in &d.moved {
                            self.books.moved_to(to, idx);
                            info!(cpu, counter = idx, to, "the kernel moved a package counter off the offline cpu: cpu {to} reads it");
                        }
                        info!(cpu, counters_parked = d.died.len(), "cpu went offline: its timer is detached and its timeline is idle until it returns");
                    }
                    Err(e) => {
                        warn!(cpu, error = %crate::source::chain(&e), "cpu went offline; detaching its timer failed")
                    }
                },
                Change::Online(cpu) => {
                    let mut reopened = Vec::new();
                    let r = self.sampler.attach_cpu(cpu, &mut reopened);
                    for &(idx, ts, raw) in &reopened {
                        self.books.rebase(idx, ts, raw);
                    }
                    match r {
                        Ok(()) => info!(
                            cpu,
                            counters_reopened = reopened.len(),
                            "cpu came back online: its timer and counters are attached again"
                        ),
                        Err(e) => {
                            warn!(cpu, error = %crate::source::chain(&e), "cpu came back online but attaching it failed: its timeline is closed from its kernel state and what failed to reopen stays parked until ergon restarts")
                        }
                    }
                }
            }
        }
    }

    fn read_idle_counters(&mut self) {
        let now = boot_ns();
        for idx in self.books.stale(now, IDLE_READ_AFTER.as_nanos() as u64) {
            let Some(c) = self.sampler.counters.get(idx) else {
                continue;
            };
            match c.counter.read() {
                Ok(raw) => {
                    // Stamp after the read: a kernel reading stamped earlier
                    // than this is then ignored, never double counted.
                    let ts = boot_ns();
                    if self.books.reading(idx, ts, raw) {
                        self.idle_counter_reads += 1;
                    }
                }
                Err(e) => {
                    if let Some(failures) = self.idle_read_complaint.failed(Instant::now()) {
                        warn!(error = %e, counter = idx, failures, "reading an idle energy counter failed (logged at most once a minute)");
                    }
                }
            }
        }
    }

    /// Closes the timelines of CPUs whose records lag (idle, or switching
    /// with their timer throttled), from the kernel's per-CPU state, so the
    /// books do not wait for their next record (a tickless idle CPU can
    /// sleep for seconds).
    fn close_silent_cpus(&mut self) -> Result<(), DrainError> {
        let now = boot_ns();
        let after = CLOSE_SILENT_AFTER.as_nanos() as u64;
        let mut lagging = self.attribution.lagging_cpus(now.saturating_sub(after));
        // A CPU that has sent no record at all (its timer throttled from the
        // start) would hold the books back for ever: its timeline starts from
        // its kernel state.
        let unreported = if now.saturating_sub(self.started_ns) > after {
            self.attribution.unreported_cpus()
        } else {
            Vec::new()
        };
        if lagging.is_empty() && unreported.is_empty() {
            return Ok(());
        }
        // Read twice: a CPU whose state changed in between is not idle.
        let first = self.sampler.cpu_states()?;
        let second = self.sampler.cpu_states()?;
        // A CPU's state as the books take it, when both reads agree.
        let state = |cpu: u32| -> Option<IdleState<'_>> {
            let (x, y) = (first.get(cpu as usize)?, second.get(cpu as usize)?);
            let stable = x.since_ns == y.since_ns
                && x.span_start_ns == y.span_start_ns
                && x.n_cgroups == y.n_cgroups;
            let n = (x.n_cgroups as usize).min(x.cgroups.len());
            stable.then(|| IdleState {
                span_start: x.span_start_ns,
                since: x.since_ns,
                idle_ns: x.idle_ns,
                other_ns: x.other_ns,
                cgroups: &x.cgroups[..n],
            })
        };
        for cpu in unreported {
            let Some(st) = state(cpu) else { continue };
            if self.attribution.start_unreported(cpu, &st, self.started_ns) {
                info!(cpu, "cpu sent no record since sampling began (its timer throttled on a tickless CPU?): its timeline starts from its kernel state");
                lagging.push(cpu);
            }
        }
        let silence = self.idle_silence.as_nanos() as u64;
        for cpu in lagging {
            let Some(st) = state(cpu) else { continue };
            // Silent for several periods: idle, so close up to now. A CPU
            // that keeps switching without timer samples (its timer throttled
            // on a tickless CPU, with no tick to lift it) closes up to its
            // last switch: exact, no guess.
            let to = if now.saturating_sub(st.since) >= silence {
                now
            } else {
                st.since
            };
            self.attribution.close_idle(cpu, &st, to);
        }
        Ok(())
    }

    /// Counters that stopped advancing while their CPUs ran tasks: counted
    /// when they stop (`ergon_energy_counter_stalls_total`), named while they
    /// stay stopped (`/health` is unhealthy with them), logged rate-limited.
    fn publish_stalls(&mut self, s: &mut Snapshot) {
        let packages = self.books.package_count();
        let stalled: Vec<String> = self
            .books
            .stalled(boot_ns())
            .into_iter()
            .filter_map(|idx| self.books.plan(idx))
            .map(|p| crate::source::liveness::describe(p, packages))
            .collect();
        let new = stalled
            .iter()
            .filter(|c| !self.base.stalled_counters.contains(c))
            .count() as u64;
        self.base.counter_stalls += new;
        if new > 0 {
            if let Some(failures) = self.stall_complaint.failed(Instant::now()) {
                warn!(
                    counters = %stalled.join("; "),
                    stalls = failures,
                    "an energy counter stopped advancing for over 1 s while its CPUs were busy (its register stopped counting?); /health reports it until it moves again (logged at most once a minute)"
                );
            }
        }
        self.base.stalled_counters = stalled.clone();
        s.counter_stalls = self.base.counter_stalls;
        s.stalled_counters = stalled;
    }

    /// Readies the labels of the cgroups about to be booked (the only place
    /// the cgroup tree is walked, so labels never change between booking and
    /// publishing), and folds a dead cgroup into the one made again at its
    /// path: one series per path goes on, never back, never twice.
    fn prepare_cgroups(&mut self, now: Instant) {
        let epoch = self.export_epoch.load(Ordering::Relaxed);
        let recreated = self
            .cgroups
            .prepare(self.attribution.pending_cgroups(), now, epoch);
        if recreated.is_empty() {
            return;
        }
        let mut store = batch::lock(&self.store);
        for (old, new) in recreated {
            debug!(
                old,
                new, "a cgroup was made again at a dead one's path: its series goes on"
            );
            self.attribution.fold_into(old, new);
            store.retire(&SeriesKey::Cgroup(old));
            self.cgroup_series.remove(&old);
            self.continuity.forget_cgroup(old);
        }
    }

    /// Retention and cardinality: folds what the registry says into `other`.
    fn maintain_cgroups(&mut self, now: Instant) {
        let live: Vec<(u64, f64)> = self
            .attribution
            .cgroups()
            .iter()
            .map(|(&id, t)| (id, self.attribution.joules(t)))
            .collect();
        let epoch = self.export_epoch.load(Ordering::Relaxed);
        let d = self.cgroups.maintain(&live, now, epoch);
        if d.over_limit > 0 && self.cgroups.folds() == d.over_limit {
            warn!(
                folded = d.over_limit,
                "more cgroups than --max-cgroups: the smallest consumers fold into cgroup=\"other\" (counted in ergon_cgroup_folds_total)"
            );
        }
        let mut store = batch::lock(&self.store);
        for id in d.fold {
            self.attribution.fold(id);
            store.retire(&SeriesKey::Cgroup(id));
            self.cgroup_series.remove(&id);
            self.continuity.forget_cgroup(id);
        }
        let now_ms = (wall_ns() / 1_000_000) as i64;
        store.expire(now_ms, now);
    }

    fn publish(&mut self) {
        let mut s = self.base.clone();
        // The base domain (`pkg`, else `psys`) comes from the attribution
        // books (up to their frontier, so one snapshot balances); other
        // domains straight from the counters.
        let base = s.base_domain;
        let pkgs = self.attribution.packages();
        s.packages = pkgs
            .iter()
            .map(|&(package, joules, _)| PackageEnergy {
                package,
                domain: base,
                joules: Joules(joules),
            })
            .chain(
                self.books
                    .packages()
                    .into_iter()
                    .filter(|p| p.domain != base),
            )
            .collect();
        s.packages
            .sort_by(|a, b| (a.package, a.domain).cmp(&(b.package, b.domain)));
        s.idle = pkgs.iter().map(|&(p, _, idle)| (p, idle)).collect();
        s.cpus = self.attribution.cpus();
        let mut cgroups: Vec<(u64, CgroupEnergy)> = self
            .attribution
            .cgroups()
            .iter()
            .map(|(&id, t)| {
                let e = CgroupEnergy {
                    labels: self.cgroups.known_labels(id),
                    joules: self.attribution.joules(t),
                    cpu_seconds: t.cpu_ns as f64 * 1e-9,
                };
                (id, e)
            })
            .collect();
        cgroups.sort_by(|a, b| a.1.labels.cgroup.cmp(&b.1.labels.cgroup));
        let ids: Vec<u64> = cgroups.iter().map(|c| c.0).collect();
        s.cgroups = cgroups.into_iter().map(|c| c.1).collect();
        s.cgroup_folds = self.cgroups.folds();
        (s.idle_closures, s.idle_closure_corrections) = self.attribution.closure_stats();
        s.cgroups_dead = self.cgroups.dead() as u64;
        s.cpu_time = self
            .books
            .cpu_time()
            .iter()
            .map(|(&c, &t)| (c, t))
            .collect();
        s.records_decoded = self.records_decoded;
        s.records_malformed = self.records_malformed;
        s.idle_counter_reads = self.idle_counter_reads;
        // Logged the first time for each reason, counted always.
        let rejected = self.books.rejected();
        let seen = self.base.readings_rejected;
        if (rejected.backwards > 0 && seen.backwards == 0)
            || (rejected.implausible_wraps > 0 && seen.implausible_wraps == 0)
        {
            warn!(
                backwards = rejected.backwards,
                implausible_wraps = rejected.implausible_wraps,
                "energy counter readings refused: a count lower than the last one, or a wrap implying more than the package can draw; the last good reading is kept (counted in ergon_energy_readings_rejected_total, logged once per reason)"
            );
        }
        self.base.readings_rejected = rejected;
        s.readings_rejected = rejected;
        s.energy_reads = self.books.reads();
        self.publish_stalls(&mut s);
        s.last_drain_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        // The books are complete up to the oldest package frontier; say when
        // that was in wall-clock time (boot ns → wall via the current offset).
        let boot_now = boot_ns();
        s.books_complete_unix = self
            .attribution
            .frontiers()
            .into_iter()
            .map(|f| f.unwrap_or(0))
            .min()
            .filter(|&f| f > 0)
            .map_or(0.0, |f| {
                s.last_drain_unix - boot_now.saturating_sub(f) as f64 * 1e-9
            });
        s.last_reading_unix = if self.last_reading_ns > 0 {
            s.last_drain_unix - boot_now.saturating_sub(self.last_reading_ns) as f64 * 1e-9
        } else {
            0.0
        };
        self.continuity.apply(&mut s, &ids);
        self.snapshot.store(std::sync::Arc::new(s));
    }
}

/// Wall-clock ns since the epoch.
fn wall_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Labels of a cgroup's batch series: the same as on `/metrics`.
pub fn cgroup_labels(l: &CgroupLabels) -> String {
    render_labels(&l.pairs())
}
