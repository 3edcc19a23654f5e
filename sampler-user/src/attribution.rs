//! The attribution engine: splits each package's energy across the cgroups
//! that ran on its CPUs, by the time each one spent in the interval, with
//! idle time as its own bucket. Pure bookkeeping, no I/O.
//!
//! Inputs arrive out of step: every CPU's time table comes in spans
//! `[start, end]` (one per kernel record, each CPU's spans chained without
//! gaps), and every energy counter in readings `(ts, cumulative counts)`.
//! For each package the engine keeps a *frontier* `F`: the time up to which
//! every CPU's timeline and every counter of the package are known. Each
//! [`Attributor::advance`] moves `F` to `F'` and books exactly the energy of
//! `[F, F']`:
//!
//! 1. each counter's energy at `F'` is interpolated between its readings;
//! 2. the package's ΔE goes to its CPUs: a per-CPU counter to its CPU, a
//!    package counter to every CPU in equal parts (each CPU's timeline spans
//!    the whole interval, so that is the split by time, idle included) — or,
//!    where per-core counters exist (AMD's `power_core`), to the cores in
//!    proportion to each core's own energy, equally within a core;
//! 3. each CPU's ΔE is split over what ran on it in `[F, F']` — the cgroups'
//!    on-CPU ns, idle ns and untracked (`other`) ns — in proportion to time.
//!    A span that straddles `F'` is split pro rata; its rest waits.
//!
//! Once a package's idle power is known (declared, or learned from its
//! near-idle intervals), steps 2–3 follow the power instead of the clock
//! for a package-wide counter: the interval's energy is a static part
//! (idle power × the interval) and a dynamic part, which goes to what ran
//! by its on-CPU time across the package, and to each CPU with it
//! ([`cause`]).
//!
//! Energy is kept in integer units (counts × 2^16) and every split uses the
//! largest-remainder method, so at every step Σ cgroups + idle = Σ CPUs =
//! package, exactly, however long the daemon runs.

use std::collections::VecDeque;

// Cgroup and CPU ids are trusted small integers from the kernel: the Fx hash
// is several times cheaper than SipHash on this hot path.
use rustc_hash::FxHashMap as HashMap;

use sampler_common::{CgroupTime, TickRecord};

/// Fractional bits of the energy unit: one unit = 2^-16 counts.
pub const FRAC_BITS: u32 = 16;
const ONE: u128 = 1 << FRAC_BITS;

/// Pseudo cgroup id for time whose cgroup is unknown (kernel table full).
pub const OTHER_CGROUP: u64 = u64::MAX;

/// The `reason` of a table id that stands for time no task ran on the
/// scheduler's clock (the kernel programs' `STEAL_CGROUP` and
/// `IRQ_CGROUP` slots, `crate::kernel_layout`): booked like a cgroup, so
/// the books balance, and exported as
/// `ergon_unattributed_energy_joules_total{package,reason}`, not as one.
pub fn unattributed_reason(id: u64) -> Option<&'static str> {
    match id {
        sampler_common::STEAL_CGROUP => Some("steal"),
        sampler_common::IRQ_CGROUP => Some("irq"),
        _ => None,
    }
}

/// A table id that is no cgroup of the tree: `other` or an unattributed one.
pub fn is_pseudo_cgroup(id: u64) -> bool {
    id == OTHER_CGROUP || unattributed_reason(id).is_some()
}

/// One span of a CPU's timeline; its `n` cgroup entries are the next `n`
/// in the CPU's `entries` queue (kept apart so a span costs what it holds,
/// not the record's 16 slots).
#[derive(Clone, Copy, Debug)]
struct Span {
    start: u64,
    end: u64,
    idle_ns: u64,
    other_ns: u64,
    n: usize,
}

#[derive(Clone, Debug, Default)]
struct CpuLine {
    package: usize,
    /// End of the last span received.
    closed_until: Option<u64>,
    spans: VecDeque<Span>,
    entries: VecDeque<CgroupTime>,
    /// Energy booked to this CPU (units).
    energy: u128,
    /// The part of the CPU's next kernel record already booked by
    /// [`Attributor::close_idle`].
    consumed: Option<Consumed>,
    /// The timeline was started by [`Attributor::start_unreported`] on a
    /// CPU that had run no program yet: until its first record, a kernel
    /// table that starts after `closed_until` began with that CPU's first
    /// event, and the time before it was idle (no record is in flight).
    idle_until_first_event: bool,
}

/// A prefix `[start, end]` of a CPU's next kernel record that was booked
/// early, and what it held; subtracted exactly when the record arrives.
#[derive(Clone, Debug, Default)]
struct Consumed {
    start: u64,
    end: u64,
    idle: u64,
    other: u64,
    cgroups: Vec<(u64, u64)>,
}

/// A CPU's accounting state as the kernel keeps it (`CPU_STATE`), read by the
/// daemon to close the timeline of a CPU that has been silent.
#[derive(Clone, Copy, Debug)]
pub struct IdleState<'a> {
    /// Start of the table not yet flushed.
    pub span_start: u64,
    /// Time of the CPU's last event (switch or timer).
    pub since: u64,
    pub idle_ns: u64,
    pub other_ns: u64,
    pub cgroups: &'a [CgroupTime],
}

#[derive(Clone, Debug, Default)]
struct CounterLine {
    /// Readings (ts, cumulative units), oldest first; keeps one at or before
    /// the frontier for interpolation.
    readings: VecDeque<(u64, u128)>,
}

#[derive(Clone, Debug)]
struct PackageLine {
    spec: PackageSpec,
    cpu_lines: Vec<usize>,
    frontier: Option<u64>,
    /// Counter values (units) at the frontier.
    at_frontier: Vec<u128>,
    energy: u128,
    idle: u128,
    /// Rotates which CPU gets the rounding remainder of an equal split.
    rr: usize,
    /// The package's idle power, declared or being learned.
    idle_power: IdlePower,
}

impl PackageLine {
    /// Measured by package-wide counters only: no per-CPU counter, no
    /// per-core ones (those already follow each CPU's power).
    fn package_wide(&self) -> bool {
        self.spec.counters.iter().all(|c| c.1.is_none()) && self.spec.core_counters.is_empty()
    }
}

/// Totals of one cgroup.
#[derive(Clone, Debug, Default)]
pub struct CgroupTotals {
    /// Energy in units, per package index (inline for up to two packages:
    /// crediting a cgroup then touches its table entry only).
    pub units: PerPackage<u128>,
    pub cpu_ns: u128,
    /// Per package index, the grid's report count + 1 when this cgroup was
    /// last listed as touched: listed once per instant without a set.
    listed: PerPackage<u64>,
}

/// One value per package index, inline for up to two packages.
pub type PerPackage<T> = smallvec::SmallVec<[T; 2]>;

impl PartialEq for CgroupTotals {
    /// The totals; the grid's bookkeeping is not part of them.
    fn eq(&self, other: &Self) -> bool {
        self.units == other.units && self.cpu_ns == other.cpu_ns
    }
}

/// Composition of one CPU's time over an interval.
#[derive(Default)]
struct Mix {
    idle: u64,
    other: u64,
    cgroups: Vec<(u64, u64)>,
}

impl Mix {
    fn clear(&mut self) {
        self.idle = 0;
        self.other = 0;
        self.cgroups.clear();
    }

    /// Entries are not merged: a cgroup listed twice gets two exact parts
    /// that add up in its totals, which is cheaper than a lookup per span.
    fn add(&mut self, id: u64, ns: u64) {
        self.cgroups.push((id, ns));
    }

    /// Time of everything but the idle task.
    fn busy(&self) -> u64 {
        self.other + self.cgroups.iter().map(|&(_, ns)| ns).sum::<u64>()
    }

    /// Time tasks ran: [`Self::busy`] without the steal and irq slots. The
    /// idle-power learner counts this, since steal that falls while a vCPU
    /// idles draws no dynamic power.
    fn running(&self) -> u64 {
        self.other
            + self
                .cgroups
                .iter()
                .filter(|&&(id, _)| unattributed_reason(id).is_none())
                .map(|&(_, ns)| ns)
                .sum::<u64>()
    }
}

/// Where cgroup `id`'s energy goes: itself, or the end of its chain of
/// folds. A chain ends: each fold moves a cgroup out of the books for good,
/// into one that was in them (or `other`, never folded).
fn folded_to(folded: &HashMap<u64, u64>, mut id: u64) -> u64 {
    while let Some(&to) = folded.get(&id) {
        id = to;
    }
    id
}

pub struct Attributor {
    packages: Vec<PackageLine>,
    cpus: Vec<CpuLine>,
    /// cpu id → index in `cpus`.
    cpu_index: HashMap<u32, usize>,
    counters: HashMap<usize, CounterLine>,
    cgroups: HashMap<u64, CgroupTotals>,
    /// Cgroups folded into another (`other`, or the cgroup made again at
    /// their path): their future energy goes there too, following chains.
    folded: HashMap<u64, u64>,
    idle_closures: u64,
    closure_corrections: u64,
    mix: Mix,
    /// One mix per CPU of a package, for the split by cause.
    mixes: Vec<Mix>,
    /// `--idle-energy`.
    idle_energy: IdleEnergy,
    /// Sample points for the batch exporters (None: not recorded).
    grid: Option<GridState>,
}

impl Attributor {
    pub fn new(specs: Vec<PackageSpec>) -> Self {
        let mut cpus = Vec::new();
        let mut cpu_index = HashMap::default();
        let mut counters = HashMap::default();
        let packages = specs
            .into_iter()
            .enumerate()
            .map(|(p, spec)| {
                let mut lines = Vec::new();
                for &cpu in &spec.cpus {
                    cpu_index.insert(cpu, cpus.len());
                    lines.push(cpus.len());
                    cpus.push(CpuLine {
                        package: p,
                        ..CpuLine::default()
                    });
                }
                for k in spec
                    .counters
                    .iter()
                    .map(|c| c.0)
                    .chain(spec.core_counters.iter().map(|c| c.0))
                {
                    counters.insert(k, CounterLine::default());
                }
                PackageLine {
                    at_frontier: vec![0; spec.counters.len()],
                    spec,
                    cpu_lines: lines,
                    frontier: None,
                    energy: 0,
                    idle: 0,
                    rr: 0,
                    idle_power: IdlePower::new(None),
                }
            })
            .collect();
        Self {
            packages,
            cpus,
            cpu_index,
            counters,
            cgroups: HashMap::default(),
            folded: Default::default(),
            idle_closures: 0,
            closure_corrections: 0,
            mix: Mix::default(),
            mixes: Vec::new(),
            idle_energy: IdleEnergy::default(),
            grid: None,
        }
    }

    /// Splits package-wide counters by cause ([`cause`]) once each
    /// package's idle power is known: declared here, or learned.
    pub fn with_cause(mut self, cause: Cause) -> Self {
        self.idle_energy = cause.idle_energy;
        for p in &mut self.packages {
            p.idle_power = IdlePower::new(cause.idle_watts.of(p.spec.package));
        }
        self
    }

    /// The packages split by cause once their idle power is known (those
    /// measured by package-wide counters only), with their idle power once
    /// known and where it comes from.
    pub fn idle_powers(&self) -> Vec<(u32, Option<(f64, IdleOrigin)>)> {
        self.packages
            .iter()
            .filter(|p| p.package_wide())
            .map(|p| (p.spec.package, p.idle_power.known()))
            .collect()
    }

    /// Records timestamped totals on a wall-clock grid (see [`grid`]).
    pub fn with_grid(mut self, cfg: GridConfig) -> Self {
        self.grid = Some(GridState::new(cfg, self.packages.len()));
        self
    }

    /// Wall-clock ns minus boot-time ns, for the grid's timestamps.
    pub fn set_clock_offset(&mut self, offset_ns: i128) {
        if let Some(g) = &mut self.grid {
            g.offset_ns = offset_ns;
        }
    }

    /// The grid points produced since the last call.
    pub fn take_points(&mut self) -> GridPoints {
        self.grid
            .as_mut()
            .map(|g| std::mem::take(&mut g.out))
            .unwrap_or_default()
    }

    /// A kernel record's time table. Spans of one CPU must come in order;
    /// one that starts before the CPU's last end is trimmed to it.
    pub fn on_span(&mut self, r: &TickRecord) {
        let Some(&ci) = self.cpu_index.get(&r.cpu) else {
            return;
        };
        let line = &mut self.cpus[ci];
        line.idle_until_first_event = false;
        let n = (r.n_cgroups as usize).min(r.cgroups.len());
        let mut span = Span {
            start: r.span_start_ns,
            end: r.ts_ns,
            idle_ns: r.idle_ns,
            other_ns: r.other_ns,
            n,
        };
        let mut cgroups = r.cgroups;
        if let Some(c) = line.consumed.take() {
            if c.start == span.start && c.end < span.end {
                // This record's head was booked early: take exactly that out.
                // `deficit`: what the record holds less of than was booked
                // early; `missing`: a cgroup booked early is not in it.
                let mut deficit = 0u64;
                let mut sub = |have: &mut u64, took: u64| {
                    deficit += took.saturating_sub(*have);
                    *have = have.saturating_sub(took);
                };
                sub(&mut span.idle_ns, c.idle);
                sub(&mut span.other_ns, c.other);
                let mut missing = false;
                for &(id, ns) in &c.cgroups {
                    match cgroups[..n].iter_mut().find(|e| e.cgroup_id == id) {
                        Some(e) => sub(&mut e.ns, ns),
                        None => missing = true,
                    }
                }
                // The kernel books steal and irq time when its run queue
                // shows it, which can be after the head was closed from the
                // CPU's state (a vCPU stolen while idle learns it when it
                // wakes): that head's booking stands, and the same amount
                // comes out of the record's steal and irq slots. No guess
                // was wrong.
                for e in cgroups[..n]
                    .iter_mut()
                    .filter(|e| unattributed_reason(e.cgroup_id).is_some())
                {
                    let t = e.ns.min(deficit);
                    e.ns -= t;
                    deficit -= t;
                }
                if missing || deficit > 0 {
                    self.closure_corrections += 1;
                }
                span.start = c.end;
            }
        }
        if let Some(c) = line.closed_until {
            if span.end <= c {
                return;
            }
            if span.start < c {
                // Overlaps what is known: keep the part after `c`, pro rata.
                let (keep, len) = (span.end - c, span.end - span.start);
                let mut weights = vec![span.idle_ns, span.other_ns];
                weights.extend(cgroups[..n].iter().map(|e| e.ns));
                let parts = scaled(&weights, keep, len);
                span.idle_ns = parts[0];
                span.other_ns = parts[1];
                for (e, &p) in cgroups[..n].iter_mut().zip(&parts[2..]) {
                    e.ns = p;
                }
                span.start = c;
            }
        }
        line.closed_until = Some(span.end);
        line.entries.extend(&cgroups[..n]);
        line.spans.push_back(span);
    }

    /// A reading of counter `idx`: cumulative counts at boot time `ts`.
    pub fn on_reading(&mut self, idx: usize, ts: u64, cumulative_counts: u128) {
        if let Some(c) = self.counters.get_mut(&idx) {
            if c.readings.back().is_none_or(|&(t, _)| ts > t) {
                c.readings.push_back((ts, cumulative_counts * ONE));
            }
        }
    }

    /// Moves every package's frontier as far as its inputs allow and books
    /// the energy in between. Returns the number of packages that advanced.
    pub fn advance(&mut self) -> usize {
        let mut advanced = 0;
        for p in 0..self.packages.len() {
            if self.advance_package(p) {
                advanced += 1;
            }
        }
        if let Some(g) = &mut self.grid {
            let started: Vec<bool> = self.packages.iter().map(|p| p.frontier.is_some()).collect();
            let packages = &self.packages;
            g.emit_ready(&started, |p, u| {
                units_to_joules(u, packages[p].spec.joules_per_count)
            });
        }
        advanced
    }

    /// Books `[from, to]` for package `p`, cut at every cgroup grid instant
    /// so that the cgroup totals there are exact.
    fn book_until(&mut self, p: usize, from: u64, to: u64) -> bool {
        let cuts: Vec<(i64, u64)> = match &self.grid {
            Some(g) => g.instants(from, to, g.cfg.cgroup_res_ns).collect(),
            None => Vec::new(),
        };
        let mut cur = from;
        let mut booked = false;
        for (k, at) in cuts {
            booked |= self.book_interval(p, cur, at);
            cur = at;
            if let Some(g) = &mut self.grid {
                let cgroups = &self.cgroups;
                g.report(p, k, |id| {
                    cgroups.get(&id).and_then(|t| t.units.get(p)).copied()
                });
            }
        }
        booked | self.book_interval(p, cur, to)
    }

    fn advance_package(&mut self, p: usize) -> bool {
        let pkg = &self.packages[p];
        // How far every input of the package reaches.
        let mut reach = u64::MAX;
        for &ci in &pkg.cpu_lines {
            match self.cpus[ci].closed_until {
                Some(t) => reach = reach.min(t),
                None => return false,
            }
        }
        for &(k, _) in &pkg.spec.counters {
            match self.counters.get(&k).and_then(|c| c.readings.back()) {
                Some(&(t, _)) => reach = reach.min(t),
                None => return false,
            }
        }
        let Some(from) = pkg.frontier else {
            // Start where every input has begun: drop what came before.
            let mut start = 0u64;
            for &ci in &pkg.cpu_lines {
                if let Some(s) = self.cpus[ci].spans.front() {
                    start = start.max(s.start);
                }
            }
            for &(k, _) in &pkg.spec.counters {
                if let Some(&(t, _)) = self.counters.get(&k).and_then(|c| c.readings.front()) {
                    start = start.max(t);
                }
            }
            if start > reach {
                return false;
            }
            let values: Vec<u128> = pkg
                .spec
                .counters
                .iter()
                .map(|&(k, _)| self.value_at(k, start))
                .collect();
            let lines = pkg.cpu_lines.clone();
            for ci in lines {
                self.take_mix(ci, start);
            }
            let pkg = &mut self.packages[p];
            pkg.at_frontier = values;
            pkg.frontier = Some(start);
            self.book_until(p, start, reach);
            return true;
        };
        if reach <= from {
            return false;
        }
        self.book_until(p, from, reach)
    }

    /// Books the energy of package `p` over `[from, to]` and moves its frontier to `to`.
    fn book_interval(&mut self, p: usize, from: u64, to: u64) -> bool {
        if to <= from {
            return false;
        }
        let pkg = &self.packages[p];
        // 1. Counter energy over [from, to].
        let mut shared: u128 = 0;
        let mut own: Vec<(u32, u128)> = Vec::new();
        let mut new_values = Vec::with_capacity(pkg.spec.counters.len());
        for (i, &(k, cpu)) in pkg.spec.counters.iter().enumerate() {
            let v = self.value_at(k, to);
            let d = v.saturating_sub(pkg.at_frontier[i]);
            new_values.push(v);
            match cpu {
                Some(c) => own.push((c, d)),
                None => shared += d,
            }
        }
        self.package_points(p, from, to);
        let pkg = &self.packages[p];
        let lines = pkg.cpu_lines.clone();
        let by_core = self.by_core_energy(p, from, to, shared);
        // The split by cause: a package-wide counter, whose package's idle
        // power is known.
        let package_wide = pkg.package_wide();
        let idle_watts = match (package_wide, pkg.idle_power.known()) {
            (true, Some((w, _))) => Some(w),
            _ => None,
        };
        let (energy_total, idle_total, running) = match idle_watts {
            Some(w) => self.book_by_cause(p, &lines, to, shared, w, to - from),
            None => self.book_by_time(p, &lines, to, shared, by_core, own),
        };
        if package_wide {
            let joules = units_to_joules(energy_total, self.packages[p].spec.joules_per_count);
            self.packages[p]
                .idle_power
                .observe(joules, to - from, running, lines.len());
        }
        // Readings before the last one at or before `to` are no longer needed.
        let spec = &self.packages[p].spec;
        for k in spec
            .counters
            .iter()
            .map(|c| c.0)
            .chain(spec.core_counters.iter().map(|c| c.0))
        {
            if let Some(c) = self.counters.get_mut(&k) {
                while c.readings.len() > 1 && c.readings[1].0 <= to {
                    c.readings.pop_front();
                }
            }
        }
        let pkg = &mut self.packages[p];
        pkg.at_frontier = new_values;
        pkg.frontier = Some(to);
        pkg.energy += energy_total;
        pkg.idle += idle_total;
        pkg.rr = pkg.rr.wrapping_add(1);
        true
    }

    /// Steps 2–3 by time: a package counter's `shared` energy to the CPUs
    /// in equal parts (or by core energy), own counters to their CPUs, and
    /// each CPU's energy over what ran on it by time. Returns (energy,
    /// idle part, ns tasks ran) of the interval.
    fn book_by_time(
        &mut self,
        p: usize,
        lines: &[usize],
        to: u64,
        shared: u128,
        by_core: Option<Vec<u128>>,
        own: Vec<(u32, u128)>,
    ) -> (u128, u128, u64) {
        let n_cpus = lines.len();
        let rr = self.packages[p].rr;
        let mut cpu_energy = by_core.unwrap_or_else(|| equal_split(shared, n_cpus, rr));
        for (c, d) in own {
            if let Some(&ci) = self.cpu_index.get(&c) {
                if let Some(j) = lines.iter().position(|&l| l == ci) {
                    cpu_energy[j] += d;
                }
            }
        }
        let (mut idle_total, mut energy_total, mut running) = (0u128, 0u128, 0u64);
        for (j, &ci) in lines.iter().enumerate() {
            self.take_mix(ci, to);
            running += self.mix.running();
            let e = cpu_energy[j];
            energy_total += e;
            self.cpus[ci].energy += e;
            idle_total += self.book_mix(p, e);
        }
        (energy_total, idle_total, running)
    }

    /// Steps 2–3 by cause ([`cause`]): of the package counter's `shared`
    /// energy over an interval of `ns`, the static part (`idle_watts` × the
    /// interval, at most `shared`) goes to the CPUs in equal parts and to
    /// the idle bucket (or, under `share`, to what ran by on-CPU time); the
    /// dynamic rest to what ran, by its on-CPU time across the package, and
    /// to the CPU it ran on. With nothing run, all of it is idle, in equal
    /// parts. Returns (energy, idle part, ns tasks ran) of the interval.
    fn book_by_cause(
        &mut self,
        p: usize,
        lines: &[usize],
        to: u64,
        shared: u128,
        idle_watts: f64,
        ns: u64,
    ) -> (u128, u128, u64) {
        let n_cpus = lines.len();
        let pkg = &self.packages[p];
        let rr = pkg.rr;
        let joules_per_count = pkg.spec.joules_per_count;
        // Each CPU's mix of the interval, kept apart (the split spans CPUs).
        let mut mixes = std::mem::take(&mut self.mixes);
        mixes.resize_with(n_cpus, Mix::default);
        for (j, &ci) in lines.iter().enumerate() {
            self.take_mix(ci, to);
            std::mem::swap(&mut self.mix, &mut mixes[j]);
        }
        let busy: u64 = mixes.iter().map(Mix::busy).sum();
        let static_units = if joules_per_count > 0.0 {
            let units = idle_watts * ns as f64 * 1e-9 / joules_per_count * ONE as f64;
            (units.max(0.0) as u128).min(shared)
        } else {
            0
        };
        let (static_units, dynamic) = if busy == 0 {
            (shared, 0)
        } else {
            (static_units, shared - static_units)
        };
        let mut cpu_energy = equal_split(static_units, n_cpus, rr);
        // Weights: every CPU's `other` and cgroup entries, CPU by CPU.
        let mut weights = Vec::new();
        for m in &mixes {
            weights.push(m.other);
            weights.extend(m.cgroups.iter().map(|&(_, ns)| ns));
        }
        let dyn_parts = split(dynamic, &weights);
        let shares = match self.idle_energy {
            IdleEnergy::Share if busy > 0 => Some(split(static_units, &weights)),
            _ => None,
        };
        let idle_total = static_units - shares.as_ref().map_or(0, |s| s.iter().sum::<u128>());
        // The entries in the order of `weights`.
        let entries = mixes.iter().enumerate().flat_map(|(j, m)| {
            std::iter::once((j, OTHER_CGROUP, m.other))
                .chain(m.cgroups.iter().map(move |&(id, ns)| (j, id, ns)))
        });
        for (k, (j, id, ns)) in entries.enumerate() {
            if id == OTHER_CGROUP && ns == 0 {
                continue;
            }
            cpu_energy[j] += dyn_parts[k];
            let share = shares.as_ref().map_or(0, |s| s[k]);
            self.credit(p, id, dyn_parts[k] + share, ns);
        }
        for (j, &ci) in lines.iter().enumerate() {
            self.cpus[ci].energy += cpu_energy[j];
        }
        let running = mixes.iter().map(Mix::running).sum();
        self.mixes = mixes;
        (shared, idle_total, running)
    }

    /// A package counter's energy `shared` over `[from, to]` split by the
    /// package's per-core counters ([`PackageSpec::core_counters`]): over
    /// the cores in proportion to each core's energy in the interval, then
    /// equally over the core's CPUs, exactly (largest remainder). `None`
    /// (an equal split) without per-core counters, when they do not cover
    /// every CPU of the package exactly once, or when no core's count moved.
    /// A core counter not yet read up to `to` weighs by what it has shown
    /// so far: the weights move energy between CPUs, never in or out.
    fn by_core_energy(&self, p: usize, from: u64, to: u64, shared: u128) -> Option<Vec<u128>> {
        let pkg = &self.packages[p];
        let cores = &pkg.spec.core_counters;
        if cores.is_empty() {
            return None;
        }
        let lines = &pkg.cpu_lines;
        let mut covered = vec![false; lines.len()];
        let mut members = Vec::with_capacity(cores.len());
        for (_, cpus) in cores {
            let mut js = Vec::with_capacity(cpus.len());
            for cpu in cpus {
                let ci = self.cpu_index.get(cpu)?;
                let j = lines.iter().position(|l| l == ci)?;
                if std::mem::replace(&mut covered[j], true) {
                    return None;
                }
                js.push(j);
            }
            members.push(js);
        }
        if covered.contains(&false) {
            return None;
        }
        // Counts (not units) per core, capped so the weights sum below 2^64.
        let weights: Vec<u64> = cores
            .iter()
            .map(|&(k, _)| {
                let d = self.value_at(k, to).saturating_sub(self.value_at(k, from)) >> FRAC_BITS;
                u64::try_from(d.min(1 << 48)).unwrap_or(1 << 48)
            })
            .collect();
        if weights.iter().all(|&w| w == 0) {
            return None;
        }
        let mut out = vec![0u128; lines.len()];
        for (part, js) in split(shared, &weights).into_iter().zip(&members) {
            for (share, &j) in split(part, &vec![1; js.len()]).into_iter().zip(js) {
                out[j] += share;
            }
        }
        Some(out)
    }

    /// Grid points of package `p`'s energy in `(from, to]` (before the
    /// frontier moves: energy at `t` = energy at the frontier + each
    /// counter's increase from the frontier to `t`).
    fn package_points(&mut self, p: usize, from: u64, to: u64) {
        let Some(g) = &self.grid else { return };
        let res = g.cfg.package_res_ns;
        let last = g.packages[p].last_ms;
        let pkg = &self.packages[p];
        let mut points = Vec::new();
        for (k, at) in g.instants(from, to, res) {
            let ms = GridState::ms(k, res);
            if last.is_some_and(|l| ms <= l) {
                continue;
            }
            let mut units = pkg.energy;
            for (i, &(c, _)) in pkg.spec.counters.iter().enumerate() {
                units += self.value_at(c, at).saturating_sub(pkg.at_frontier[i]);
            }
            points.push((
                pkg.spec.package,
                ms,
                units_to_joules(units, pkg.spec.joules_per_count),
            ));
        }
        if let (Some(g), Some(&(_, ms, _))) = (&mut self.grid, points.last()) {
            g.packages[p].last_ms = Some(ms);
            g.out.packages.extend(points);
        }
    }

    /// Cumulative units of counter `k` at `t`, interpolated between readings
    /// (clamped to the first/last reading outside them).
    fn value_at(&self, k: usize, t: u64) -> u128 {
        let Some(c) = self.counters.get(&k) else {
            return 0;
        };
        let mut prev: Option<(u64, u128)> = None;
        for &(ts, v) in &c.readings {
            if ts >= t {
                return match prev {
                    None => v,
                    Some((pt, pv)) if ts > pt && v >= pv => {
                        pv + (v - pv) * u128::from(t - pt) / u128::from(ts - pt)
                    }
                    Some(_) => v,
                };
            }
            prev = Some((ts, v));
        }
        prev.map_or(0, |(_, v)| v)
    }

    /// Collects into `self.mix` what CPU `ci` ran up to `to`, consuming its
    /// spans (splitting the one that straddles `to`).
    fn take_mix(&mut self, ci: usize, to: u64) {
        self.mix.clear();
        let line = &mut self.cpus[ci];
        let mix = &mut self.mix;
        while let Some(front) = line.spans.front_mut() {
            if front.start >= to {
                break;
            }
            let n = front.n.min(line.entries.len());
            if front.end <= to {
                mix.idle += front.idle_ns;
                mix.other += front.other_ns;
                for e in line.entries.drain(..n) {
                    if e.ns > 0 {
                        mix.add(e.cgroup_id, e.ns);
                    }
                }
                line.spans.pop_front();
            } else {
                // Straddles: book [start, to] pro rata, keep the exact rest.
                let mut weights = vec![front.idle_ns, front.other_ns];
                weights.extend(line.entries.iter().take(n).map(|e| e.ns));
                let head = scaled(&weights, to - front.start, front.end - front.start);
                front.idle_ns -= head[0];
                front.other_ns -= head[1];
                mix.idle += head[0];
                mix.other += head[1];
                for (e, &h) in line.entries.iter_mut().take(n).zip(&head[2..]) {
                    e.ns -= h;
                    if h > 0 {
                        mix.add(e.cgroup_id, h);
                    }
                }
                front.start = to;
                break;
            }
        }
    }

    /// Splits `e` units of package `p` over `self.mix`; returns the idle part.
    fn book_mix(&mut self, p: usize, e: u128) -> u128 {
        let mix = &self.mix;
        let mut weights: Vec<u64> = Vec::with_capacity(mix.cgroups.len() + 2);
        weights.push(mix.idle);
        weights.push(mix.other);
        weights.extend(mix.cgroups.iter().map(|&(_, ns)| ns));
        if weights.iter().all(|&w| w == 0) {
            // No time known (should not happen with chained spans): idle.
            weights[0] = 1;
        }
        let parts = split(e, &weights);
        let (other, cgroups) = (self.mix.other, std::mem::take(&mut self.mix.cgroups));
        if other > 0 || parts[1] > 0 {
            self.credit(p, OTHER_CGROUP, parts[1], other);
        }
        for (i, &(id, ns)) in cgroups.iter().enumerate() {
            self.credit(p, id, parts[i + 2], ns);
        }
        self.mix.cgroups = cgroups;
        parts[0]
    }

    /// Books `units` of package `p` and `ns` of on-CPU time to cgroup `id`
    /// (or where it was folded to).
    fn credit(&mut self, p: usize, id: u64, units: u128, ns: u64) {
        let id = if self.folded.is_empty() {
            id
        } else {
            folded_to(&self.folded, id)
        };
        let n_packages = self.packages.len();
        let t = self.cgroups.entry(id).or_default();
        if t.units.len() < n_packages {
            t.units.resize(n_packages, 0);
        }
        if t.listed.len() < n_packages {
            t.listed.resize(n_packages, 0);
        }
        t.units[p] += units;
        t.cpu_ns += u128::from(ns);
        if units > 0 {
            if let Some(g) = self.grid.as_mut() {
                let pg = &mut g.packages[p];
                let mark = pg.reports + 1;
                if t.listed[p] != mark {
                    t.listed[p] = mark;
                    pg.touched.push(id);
                }
            }
        }
    }
}

/// `total` in `n` equal parts, the remainder's units to the parts from `rr`
/// on (rotated by the caller so no CPU always gets them).
fn equal_split(total: u128, n: usize, rr: usize) -> Vec<u128> {
    let mut equal = vec![0u128; n];
    if n > 0 {
        let base = total / n as u128;
        let rem = (total % n as u128) as usize;
        for (j, e) in equal.iter_mut().enumerate() {
            *e = base + u128::from((j + n - rr % n) % n < rem);
        }
    }
    equal
}

fn units_to_joules(units: u128, joules_per_count: f64) -> f64 {
    let whole = (units >> FRAC_BITS) as f64;
    let frac = (units & (ONE - 1)) as f64 / ONE as f64;
    (whole + frac) * joules_per_count
}

pub mod cause;
mod exact;
pub mod grid;
mod idle;
mod spec;
mod totals;
use cause::IdlePower;
pub use cause::{Cause, IdleEnergy, IdleOrigin, IdleWatts};
use exact::scaled;
pub use exact::split;
use grid::GridState;
pub use grid::{GridConfig, GridPoints};
pub use spec::PackageSpec;

#[cfg(test)]
#[path = "attribution/tests.rs"]
mod tests;

#[cfg(test)]
#[path = "attribution/grid_tests.rs"]
mod grid_tests;
