//! The ledger: the drain's books, with no kernel and no I/O of its own but
//! the cgroup tree it names cgroups from.
//!
//! Invariant: the ledger's state is a function of the events it was given
//! and the clock readings that came with them. [`Ledger::apply`] takes what
//! the kernel side ([`crate::ingest`]) collected, [`Ledger::settle`] books it
//! up to the frontier every input has reached and hands out the batch
//! points of the instants that closed ([`Output`]), and [`Ledger::snapshot`]
//! states the books as one consistent [`Snapshot`]. The questions the ledger
//! asks the kernel side back (which counters went stale, which CPUs fell
//! silent) are answered with more events. Nothing here waits, reads a clock
//! or touches a map, so every rule is unit-tested from fixture event streams
//! (`ledger/tests.rs`).
//!
//! The one fork of the energy books is settled here, once: the base domain
//! (`pkg`, else `psys`) comes from the attribution books (up to their
//! frontier, so one snapshot balances), other domains straight from their
//! counters' books.

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use sampler_common::{
    CpuState, IRQ_CGROUP, RUNNING_IDLE, STAT_CGROUP_OVERFLOW, STAT_COUNT, STAT_READ_ERRORS,
    STAT_RINGBUF_DROPS, STAT_TIMER_ERRORS, STEAL_CGROUP,
};
use tracing::{debug, info, warn};

use crate::{
    attribution::{unattributed_reason, Attributor, IdleState},
    batch::{domains::DomainGrid, SeriesKey},
    bpf::ProgramStats,
    cgroups::{CgroupLabels, Registry},
    complaint::Complaint,
    continuity::Continuity,
    decode::{self, DecodeError},
    energy::{EnergyBooks, PackageEnergy},
    snapshot::{CgroupEnergy, Snapshot},
    units::Joules,
};

#[cfg(test)]
mod tests;

/// A counter not read by any timer program for this long (its CPUs are idle)
/// is read by the daemon itself. Longer means fewer wake-ups of idle CPUs,
/// shorter means fresher package totals.
pub const IDLE_READ_AFTER: Duration = Duration::from_millis(50);

/// Cgroup retention and `--max-cgroups` are checked this often (it walks
/// every cgroup's totals, so not on every drain).
const MAINTAIN_EVERY: Duration = Duration::from_secs(1);

/// A CPU whose timeline lags this far behind is checked for being idle.
pub const CLOSE_SILENT_AFTER: Duration = Duration::from_millis(100);

/// The wall-clock offset of the batch timestamps is re-read on every drain
/// but only changed when it moved by this much (NTP slew, a step).
pub const OFFSET_HYSTERESIS_NS: i128 = 1_000_000;

/// One reading of the clocks, taken by the caller: the ledger never reads
/// a clock itself.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// `CLOCK_BOOTTIME` ns, the kernel records' time base.
    pub boot_ns: u64,
    /// Wall-clock ns since the epoch.
    pub wall_ns: i128,
    /// For the retention and rate-limit timers.
    pub instant: Instant,
}

impl Clock {
    pub fn now() -> Self {
        Self {
            boot_ns: crate::perf::boot_ns(),
            wall_ns: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i128),
            instant: Instant::now(),
        }
    }

    fn wall_seconds(&self) -> f64 {
        self.wall_ns as f64 * 1e-9
    }
}

/// What the kernel side saw, in the order it saw it.
// Records are nearly every event: boxing them would allocate per record.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Event {
    /// A record from the ring buffer.
    Record(decode::Event),
    /// Bytes in the ring buffer that are not a record.
    Malformed(DecodeError),
    /// A counter read outside the timer programs: by a userspace source's
    /// poller, or by the daemon for a counter whose CPUs sleep
    /// (`idle_read`), stamped after the read.
    Reading {
        counter: usize,
        ts_ns: u64,
        raw: u64,
        idle_read: bool,
    },
    /// The counter died with its offline CPU (a software event): parked,
    /// so it is not a stall.
    Parked { counter: usize },
    /// The kernel moved a package counter off an offline CPU to `to`.
    Moved { counter: usize, to: u32 },
    /// A CPU went offline: it runs nothing until it is back, so its
    /// timeline closes as idle from its last switch.
    Offline { cpu: u32 },
    /// A CPU came back online.
    Online { cpu: u32 },
    /// A counter reopened when its CPU came back, with its first count:
    /// its book is rebased on it.
    Reopened {
        counter: usize,
        ts_ns: u64,
        raw: u64,
    },
}

/// The parts of the ledger, built by [`crate::pipeline`].
pub struct Parts {
    pub energy: EnergyBooks,
    pub attribution: Attributor,
    pub cgroups: Registry,
    /// Batch points of the domains outside the attribution books.
    pub domains: DomainGrid,
    /// Counter totals of the previous run, added to every energy counter.
    pub continuity: Continuity,
}

/// One batch point: the series' counter total (joules, previous runs
/// included) at a wall-clock instant, for a package
/// ([`crate::series::Series::Package`]) or a cgroup
/// ([`crate::series::Series::Cgroup`], whose labels travel in
/// [`Output::labels`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub key: SeriesKey,
    pub ms: i64,
    pub joules: f64,
}

/// What one [`Ledger::settle`] hands to export.
#[derive(Debug, Default)]
pub struct Output {
    /// Cgroups folded into the one made again at their path: their series
    /// end before this step's points.
    pub recreated: Vec<u64>,
    /// The label set of each cgroup with points in this step whose labels
    /// are new or changed since it last had points (labels change only
    /// before booking, so they hold for every point of the step). A label
    /// set travels once, not with each point: cloning it per point cost a
    /// cache miss per point at 1,000 cgroups.
    pub labels: Vec<(u64, Arc<CgroupLabels>)>,
    /// The batch points of the instants this step closed.
    pub points: Vec<Point>,
    /// Cgroups folded into `other` (retention, `--max-cgroups`): their
    /// series end after this step's points.
    pub folded: Vec<u64>,
    /// Set when the ledger's maintenance ran: the batch store expires what
    /// is older than its retention as of this (wall-clock ms, instant).
    pub expire: Option<(i64, Instant)>,
}

/// CPUs whose timelines lag ([`Ledger::silent_cpus`]): their kernel state is
/// read and handed to [`Ledger::close_silent`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Silent {
    pub lagging: Vec<u32>,
    /// CPUs that never sent a record since sampling began.
    pub unreported: Vec<u32>,
}

pub struct Ledger {
    books: EnergyBooks,
    attribution: Attributor,
    cgroups: Registry,
    domains: DomainGrid,
    continuity: Continuity,
    /// CPUs offline now (`Event::Offline`).
    offline: HashSet<u32>,
    /// Counters, snapshots' constant fields and kernel statistics that the
    /// books do not hold, carried from snapshot to snapshot.
    base: Snapshot,
    /// Boot ns when sampling began (the programs were attached just
    /// before): a CPU that ran no program since is idle since then.
    started_ns: u64,
    /// Wall-clock ns minus boot ns, as the batch grid uses it.
    clock_offset: Option<i128>,
    /// Boot time of the newest counter reading.
    last_reading_ns: u64,
    /// Batch points of the other domains, from the readings booked since
    /// the last settle.
    domain_points: Vec<(u32, &'static str, i64, f64)>,
    last_maintain: Option<Instant>,
    /// Counters some CPU other than their opener read (PMU read scope):
    /// logged once each.
    remote_ok: HashSet<usize>,
    /// Energy counters that stopped advancing while their CPUs ran tasks:
    /// logged once, then at most once a minute.
    stall_complaint: Complaint,
    /// Packages whose idle power was logged as known.
    idle_power_logged: HashSet<u32>,
    /// Packages split by cause: once all are logged, nothing is checked.
    idle_power_packages: usize,
}

impl Ledger {
    /// `base` carries the snapshot's constant fields (source, base domain,
    /// period); `started_ns` is when sampling began.
    pub fn new(parts: Parts, base: Snapshot, started_ns: u64) -> Self {
        Self {
            books: parts.energy,
            attribution: parts.attribution,
            cgroups: parts.cgroups,
            domains: parts.domains,
            continuity: parts.continuity,
            offline: HashSet::new(),
            base,
            started_ns,
            clock_offset: None,
            last_reading_ns: 0,
            domain_points: Vec::new(),
            last_maintain: None,
            remote_ok: HashSet::new(),
            stall_complaint: Complaint::default(),
            idle_power_logged: HashSet::new(),
            idle_power_packages: 0,
        }
        .announce_idle_power()
    }

    /// Says at start how each package's energy will be split.
    fn announce_idle_power(mut self) -> Self {
        let packages = self.attribution.idle_powers();
        self.idle_power_packages = packages.len();
        for (package, known) in packages {
            match known {
                Some((w, _)) => {
                    self.idle_power_logged.insert(package);
                    info!(
                        package,
                        idle_watts = w,
                        "idle power declared (--package-idle-watts): the package's energy is split by cause"
                    );
                }
                None => info!(
                    package,
                    "idle power not declared: learned from the package's near-idle intervals (2 s of them, at most 2% busy); until then its energy is split by time"
                ),
            }
        }
        self
    }

    /// Logs each package's idle power when it becomes known.
    fn log_idle_power(&mut self) {
        if self.idle_power_logged.len() >= self.idle_power_packages {
            return;
        }
        for (package, known) in self.attribution.idle_powers() {
            if let Some((w, crate::attribution::IdleOrigin::Learned { samples })) = known {
                if self.idle_power_logged.insert(package) {
                    info!(
                        package,
                        idle_watts = format!("{w:.3}"),
                        samples,
                        "idle power learned from near-idle intervals: the package's energy is now split by cause (ergon_package_idle_power_watts)"
                    );
                }
            }
        }
    }

    /// Applies events in order. Returns the (cpu, counter) pairs whose read
    /// failed in the kernel: the kernel side narrows those it must
    /// ([`Ledger::forget_reader`]).
    pub fn apply(&mut self, events: impl IntoIterator<Item = Event>) -> Vec<(u32, usize)> {
        let mut failed = Vec::new();
        for ev in events {
            match ev {
                Event::Record(ev) => {
                    self.base.records_decoded += 1;
                    let applied = self.books.apply(&ev);
                    self.attribution.on_span(&ev.record);
                    failed.extend(applied.failed_reads);
                    for (cpu, idx) in applied.remote_reads {
                        if self.remote_ok.insert(idx) {
                            info!(cpu, counter = idx, "the kernel lets any CPU of the package read this energy counter (PMU read scope): sampling at every busy CPU's cadence");
                        }
                    }
                }
                Event::Malformed(e) => {
                    if self.base.records_malformed == 0 {
                        warn!(error = %e, "malformed kernel record (counted in ergon_records_malformed_total)");
                    }
                    self.base.records_malformed += 1;
                }
                Event::Reading {
                    counter,
                    ts_ns,
                    raw,
                    idle_read,
                } => {
                    if self.books.reading(counter, ts_ns, raw) && idle_read {
                        self.base.idle_counter_reads += 1;
                    }
                }
                Event::Offline { cpu } => {
                    self.offline.insert(cpu);
                }
                Event::Online { cpu } => {
                    self.offline.remove(&cpu);
                }
                Event::Parked { counter } => self.books.park(counter),
                Event::Moved { counter, to } => self.books.moved_to(to, counter),
                Event::Reopened {
                    counter,
                    ts_ns,
                    raw,
                } => self.books.rebase(counter, ts_ns, raw),
            }
        }
        failed
    }

    /// Records applied so far.
    pub fn records_decoded(&self) -> u64 {
        self.base.records_decoded
    }

    /// `cpu` no longer reads `counter` (the kernel refused it).
    pub fn forget_reader(&mut self, cpu: u32, counter: usize) {
        self.books.forget_reader(cpu, counter);
    }

    /// Counters no timer program read for [`IDLE_READ_AFTER`]: the kernel
    /// side reads them and hands back [`Event::Reading`]s.
    pub fn stale_counters(&self, now_ns: u64) -> Vec<usize> {
        self.books.stale(now_ns, IDLE_READ_AFTER.as_nanos() as u64)
    }

    /// Moves the readings applied so far into the attribution books and the
    /// other domains' grid, on the batch grid of the wall clock.
    pub fn book_readings(&mut self, clock: &Clock) {
        let offset = self.clock_offset(clock);
        let (attribution, domains, points) = (
            &mut self.attribution,
            &mut self.domains,
            &mut self.domain_points,
        );
        let mut newest = self.last_reading_ns;
        self.books.take_applied(|idx, ts, counts| {
            attribution.on_reading(idx, ts, counts);
            domains.on_reading(idx, ts, counts, offset, points);
            newest = newest.max(ts);
        });
        self.last_reading_ns = newest;
    }

    /// Wall-clock ns minus boot ns, as of `clock`; a step of more than 1 s
    /// is logged. Batch timestamps follow the new clock, and a series never
    /// goes back in time (instants not after its last one are skipped).
    fn clock_offset(&mut self, clock: &Clock) -> i128 {
        let measured = clock.wall_ns - i128::from(clock.boot_ns);
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

    /// The offset [`Ledger::book_readings`] last used.
    #[cfg(test)]
    pub fn offset_ns(&self) -> Option<i128> {
        self.clock_offset
    }

    /// CPUs whose records lag by [`CLOSE_SILENT_AFTER`] (idle, or switching
    /// with their timer throttled), and CPUs that never reported; `None`
    /// when there are none, so the kernel state is not read for nothing.
    pub fn silent_cpus(&self, now_ns: u64) -> Option<Silent> {
        let after = CLOSE_SILENT_AFTER.as_nanos() as u64;
        let lagging = self.attribution.lagging_cpus(now_ns.saturating_sub(after));
        // A CPU that has sent no record at all (its timer throttled from the
        // start) would hold the books back for ever: its timeline starts from
        // its kernel state.
        let unreported = if now_ns.saturating_sub(self.started_ns) > after {
            self.attribution.unreported_cpus()
        } else {
            Vec::new()
        };
        (!lagging.is_empty() || !unreported.is_empty()).then_some(Silent {
            lagging,
            unreported,
        })
    }

    /// Closes the timelines of silent CPUs from one copy of the kernel's
    /// per-CPU state (taken after `now_ns`), so the books do not wait for
    /// their next record (a tickless idle CPU can sleep for seconds).
    /// Nothing is guessed: a consistent copy's table covers `[span_start,
    /// since]` exactly, and a CPU whose idle task runs since `since` was
    /// idle up to the copy, so up to `now_ns`, as was an offline CPU; a CPU
    /// that runs a task (or
    /// whose idle task is not known yet) closes up to `since`, and its
    /// timer run brings the rest. A copy taken while a program was writing
    /// is not used (the next drain reads again). The one assumption left is
    /// for a CPU no program has run on since load (see below).
    pub fn close_silent(&mut self, silent: Silent, states: &[CpuState], now_ns: u64) {
        let state = |cpu: u32| -> Option<(IdleState<'_>, bool)> {
            let x = states.get(cpu as usize).filter(|x| x.consistent())?;
            let r = &x.record;
            let n = (r.n_cgroups as usize).min(r.cgroups.len());
            Some((
                IdleState {
                    span_start: r.span_start_ns,
                    since: x.since_ns,
                    idle_ns: r.idle_ns,
                    other_ns: r.other_ns,
                    cgroups: &r.cgroups[..n],
                },
                x.running == RUNNING_IDLE,
            ))
        };
        let Silent {
            mut lagging,
            unreported,
        } = silent;
        for cpu in unreported {
            let Some((st, _)) = state(cpu) else { continue };
            if self.attribution.start_unreported(cpu, &st, self.started_ns) {
                info!(cpu, "cpu sent no record since sampling began (idle, or its timer throttled on a tickless CPU): its timeline starts from its kernel state");
                lagging.push(cpu);
            }
        }
        for cpu in lagging {
            let Some((st, idle)) = state(cpu) else {
                continue;
            };
            // An offline CPU runs nothing after its last program run.
            // `since == 0`: no program has run on the CPU since load, no
            // switch and no timer run: taken as idle all along (a CPU that
            // runs one task throughout, never switching, would be the
            // exception on the silent path, whose timer is armed at a switch).
            let to = if idle || st.since == 0 || self.offline.contains(&cpu) {
                now_ns.max(st.since)
            } else {
                st.since
            };
            self.attribution.close_idle(cpu, &st, to);
        }
    }

    /// Books everything applied up to the frontier every input has reached
    /// and returns the batch points of the instants that closed. Cgroups are
    /// named here (the only place the cgroup tree is walked, so labels never
    /// change between booking and publishing); `export_epoch` is the number
    /// of `/metrics` bodies written so far (a dead cgroup leaves only after
    /// being exported once).
    pub fn settle(&mut self, clock: &Clock, export_epoch: u64) -> Output {
        let mut out = Output::default();
        // A dead cgroup folds into the one made again at its path: one
        // series per path goes on, never back, never twice.
        let recreated = self.cgroups.prepare(
            self.attribution.pending_cgroups(),
            clock.instant,
            export_epoch,
        );
        for (old, new) in recreated {
            debug!(
                old,
                new, "a cgroup was made again at a dead one's path: its series goes on"
            );
            self.attribution.fold_into(old, new);
            self.continuity.forget_cgroup(old);
            out.recreated.push(old);
        }
        self.attribution.advance();
        self.log_idle_power();
        self.points(&mut out);
        if self
            .last_maintain
            .is_none_or(|t| clock.instant.duration_since(t) >= MAINTAIN_EVERY)
        {
            self.last_maintain = Some(clock.instant);
            out.folded = self.maintain(clock.instant, export_epoch);
            out.expire = Some(((clock.wall_ns / 1_000_000) as i64, clock.instant));
        }
        out
    }

    /// The points of the instants the books closed, with the previous
    /// runs' totals added.
    fn points(&mut self, out: &mut Output) {
        let points = self.attribution.take_points();
        out.points
            .reserve(points.packages.len() + self.domain_points.len() + points.cgroups.len());
        let base = self.base.base_domain;
        let packages = points
            .packages
            .iter()
            .map(|&(package, ms, j)| (package, base, ms, j))
            .chain(std::mem::take(&mut self.domain_points));
        for (package, domain, ms, j) in packages {
            out.points.push(Point {
                key: SeriesKey::Package { package, domain },
                ms,
                joules: j + self.continuity.package(package, domain),
            });
        }
        for &(id, ms, j) in &points.cgroups {
            if unattributed_reason(id).is_some() {
                // Served on /metrics only, as idle is.
                continue;
            }
            let (labels, fresh) = self.cgroups.labels_to_send(id);
            let joules = j + self.continuity.cgroup(id, labels).0;
            if fresh {
                out.labels.push((id, labels.clone()));
            }
            out.points.push(Point {
                key: SeriesKey::Cgroup(id),
                ms,
                joules,
            });
        }
    }

    /// Retention and cardinality: folds what the registry says into
    /// `other`; returns the cgroups folded.
    fn maintain(&mut self, now: Instant, export_epoch: u64) -> Vec<u64> {
        let live: Vec<(u64, f64)> = self
            .attribution
            .cgroups()
            .iter()
            .map(|(&id, t)| (id, self.attribution.joules(t)))
            .collect();
        let d = self.cgroups.maintain(&live, now, export_epoch);
        if d.over_limit > 0 && self.cgroups.folds() == d.over_limit {
            warn!(
                folded = d.over_limit,
                "more cgroups than --max-cgroups: the smallest consumers fold into cgroup=\"other\" (counted in ergon_cgroup_folds_total)"
            );
        }
        for &id in &d.fold {
            self.attribution.fold(id);
            self.continuity.forget_cgroup(id);
        }
        d.fold
    }

    /// The kernel's map statistics and the programs' run statistics, for
    /// the next snapshots.
    pub fn kernel_stats(&mut self, stats: [u64; STAT_COUNT as usize], programs: Vec<ProgramStats>) {
        self.base.ringbuf_dropped = stats[STAT_RINGBUF_DROPS as usize];
        self.base.counter_read_errors = stats[STAT_READ_ERRORS as usize];
        self.base.cgroup_table_overflows = stats[STAT_CGROUP_OVERFLOW as usize];
        self.base.timer_errors = stats[STAT_TIMER_ERRORS as usize];
        self.base.programs = programs;
    }

    /// The books as one consistent snapshot, as of `clock`.
    pub fn snapshot(&mut self, clock: &Clock) -> Snapshot {
        self.note_rejected();
        self.note_stalls(clock);
        let mut s = self.base.clone();
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
        s.idle_power = self
            .attribution
            .idle_powers()
            .into_iter()
            .filter_map(|(p, known)| Some((p, known?.0)))
            .collect();
        s.cpus = self.attribution.cpus();
        s.unattributed.clear();
        for id in [IRQ_CGROUP, STEAL_CGROUP] {
            let (Some(t), Some(reason)) =
                (self.attribution.cgroups().get(&id), unattributed_reason(id))
            else {
                continue;
            };
            for (package, j) in self.attribution.joules_by_package(t) {
                s.unattributed.push((package, reason, j));
            }
        }
        s.unattributed.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let mut cgroups: Vec<CgroupEnergy> = self
            .attribution
            .cgroups()
            .iter()
            .filter(|&(&id, _)| unattributed_reason(id).is_none())
            .map(|(&id, t)| CgroupEnergy {
                id,
                labels: self.cgroups.known_labels(id),
                joules: self.attribution.joules(t),
                cpu_seconds: t.cpu_ns as f64 * 1e-9,
            })
            .collect();
        cgroups.sort_by(|a, b| a.labels.cgroup.cmp(&b.labels.cgroup));
        s.cgroups = cgroups;
        s.cgroup_folds = self.cgroups.folds();
        (s.idle_closures, s.idle_closure_corrections) = self.attribution.closure_stats();
        s.cgroups_dead = self.cgroups.dead() as u64;
        s.cpu_time = self
            .books
            .cpu_time()
            .iter()
            .map(|(&c, &t)| (c, t))
            .collect();
        s.energy_reads = self.books.reads();
        s.last_drain_unix = clock.wall_seconds();
        // The books are complete up to the oldest package frontier; say when
        // that was in wall-clock time (boot ns → wall via this clock).
        let ago = |ns: u64| clock.boot_ns.saturating_sub(ns) as f64 * 1e-9;
        s.books_complete_unix = self
            .attribution
            .frontiers()
            .into_iter()
            .map(|f| f.unwrap_or(0))
            .min()
            .filter(|&f| f > 0)
            .map_or(0.0, |f| s.last_drain_unix - ago(f));
        s.last_reading_unix = if self.last_reading_ns > 0 {
            s.last_drain_unix - ago(self.last_reading_ns)
        } else {
            0.0
        };
        self.continuity.apply(&mut s);
        s
    }

    /// Readings the books refused: logged the first time for each reason,
    /// counted always.
    fn note_rejected(&mut self) {
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
    }

    /// Counters that stopped advancing while their CPUs ran tasks: counted
    /// when they stop (`ergon_energy_counter_stalls_total`), named while they
    /// stay stopped (`/health` is unhealthy with them), logged rate-limited.
    fn note_stalls(&mut self, clock: &Clock) {
        let packages = self.books.package_count();
        let stalled: Vec<String> = self
            .books
            .stalled(clock.boot_ns)
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
            if let Some(failures) = self.stall_complaint.failed(clock.instant) {
                warn!(
                    counters = %stalled.join("; "),
                    stalls = failures,
                    "an energy counter stopped advancing for over 1 s while its CPUs were busy (its register stopped counting?); /health reports it until it moves again (logged at most once a minute)"
                );
            }
        }
        self.base.stalled_counters = stalled;
    }
}
