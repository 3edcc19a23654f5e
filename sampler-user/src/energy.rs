//! The counter books: raw readings in, cumulative counts and joules per
//! package/domain out (the per-CPU and per-cgroup split is the attribution
//! engine's). Pure bookkeeping, no I/O.
//!
//! Every counter keeps its last reading and the sum of its deltas in raw
//! counts (`u128`, exact); joules are computed from counts only when a
//! snapshot is taken, so the books never drift. Readings can come from any
//! CPU that reads the counter and from the daemon's own reads of idle
//! counters: only a reading newer than the last one is applied, so an
//! out-of-order reading can never produce a backwards (or wrapped) delta.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;

use sampler_common::DOMAIN_NAMES;

use crate::{
    decode::Event,
    source::{CounterPlan, Plan},
    units::{bounded_delta, counter_delta, Joules},
};

/// Where a counter's count comes from: the perf PMU hands out 64-bit counts.
const COUNTER_BITS: u32 = 64;

/// A 64-bit perf count never advances 2^62 between two reads: a "delta" that
/// large is a reading lower than the last one (cross-CPU timestamp skew, a
/// reset across suspend), not energy.
const MAX_SANE_DELTA: u64 = 1 << 62;

/// The most power a package is taken to draw per CPU it has, when the books
/// judge whether a 32-bit (msr) or ranged (powercap) counter really wrapped:
/// a wrap is accepted only if the energy it implies over the interval stays
/// within this × the package's CPUs × the interval. 50 W per CPU is several
/// times any CPU's share of its package's power (a 500 W, 128-thread
/// package draws ~4 W a thread), so a real wrap always passes; a counter
/// that jumped back (a reset, a misread) implies almost a whole range and
/// fails. docs/sources.md.
pub const PLAUSIBLE_WATTS_PER_CPU: f64 = 50.0;

/// A counter that has not advanced for this long while its package's CPUs
/// ran tasks for at least [`STALL_BUSY_NS`] has stopped
/// (`ergon_energy_counter_stalls_total`, `/health`).
pub const STALL_AFTER_NS: u64 = 1_000_000_000;
/// CPU time the package's CPUs must have run tasks since the counter last
/// advanced for its silence to count as a stall (an idle package's counter
/// may legitimately crawl).
pub const STALL_BUSY_NS: u64 = 100_000_000;

#[derive(Clone, Debug)]
struct Book {
    plan: CounterPlan,
    last: Option<(u64, u64)>,
    counts: u128,
    /// Watts above which a wrap of this counter is implausible.
    ceiling_watts: f64,
    /// Readings applied.
    reads: u64,
    /// When the count last advanced (boot ns), and the package's busy time
    /// then.
    moved: Option<(u64, u64)>,
    /// The counter's CPU is offline and the counter died with it
    /// ([`EnergyBooks::park`]): it stands still without being stalled.
    parked: bool,
}

/// Readings the books refused to count, by reason (`ergon_energy_readings_rejected_total`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rejected {
    /// A 64-bit count lower than the last one: ignored, the last one kept.
    pub backwards: u64,
    /// A 32-bit or ranged counter whose wrap would mean more energy than the
    /// package can draw in the interval: ignored, the last one kept.
    pub implausible_wraps: u64,
}

/// Kernel-accounted time of one CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTime {
    pub busy_ns: u64,
    pub idle_ns: u64,
}

/// Energy of one (package, domain).
#[derive(Clone, Debug, PartialEq)]
pub struct PackageEnergy {
    pub package: u32,
    pub domain: &'static str,
    pub joules: Joules,
}

/// Energy of one CPU.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuEnergy {
    pub cpu: u32,
    pub package: u32,
    pub joules: Joules,
}

/// What applying one record found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Readings applied.
    pub readings: u32,
    /// Readings ignored as not newer than what the book had.
    pub stale: u32,
    /// (cpu, counter index) pairs whose read failed in the kernel.
    pub failed_reads: Vec<(u32, usize)>,
    /// (cpu, counter index) pairs read successfully by a CPU other than the
    /// one the counter was opened on.
    pub remote_reads: Vec<(u32, usize)>,
}

#[derive(Clone, Debug)]
pub struct EnergyBooks {
    books: Vec<Book>,
    slots: HashMap<(u32, usize), usize>,
    cpu_time: BTreeMap<u32, CpuTime>,
    /// Readings applied since the last `take_applied`: (counter, ts, cumulative counts).
    applied: Vec<(usize, u64, u128)>,
    rejected: Rejected,
    /// The attribution base domain ([`Plan::base_domain`]), whose readings
    /// [`EnergyBooks::reads`] counts.
    base_domain: usize,
    /// Package of each CPU, and the busy time each package's CPUs have
    /// accounted, for the stall rule.
    cpu_package: HashMap<u32, u32>,
    package_busy_ns: BTreeMap<u32, u64>,
}

impl EnergyBooks {
    /// `cpus` are the (cpu, package) pairs of the machine.
    pub fn new(plan: &Plan, cpus: &[(u32, u32)]) -> Self {
        let mut slots = HashMap::default();
        for (idx, c) in plan.counters.iter().enumerate() {
            for &r in &c.readers {
                slots.insert((r, c.domain), idx);
            }
        }
        let cpus_of = |package: u32| cpus.iter().filter(|&&(_, p)| p == package).count().max(1);
        Self {
            books: plan
                .counters
                .iter()
                .map(|p| Book {
                    plan: p.clone(),
                    last: None,
                    counts: 0,
                    ceiling_watts: p.user.as_ref().and_then(|u| u.max_watts).unwrap_or(
                        PLAUSIBLE_WATTS_PER_CPU
                            * if plan.per_cpu { 1 } else { cpus_of(p.package) } as f64,
                    ),
                    reads: 0,
                    moved: None,
                    parked: false,
                })
                .collect(),
            slots,
            cpu_time: cpus.iter().map(|&(c, _)| (c, CpuTime::default())).collect(),
            applied: Vec::new(),
            rejected: Rejected::default(),
            base_domain: plan.base_domain(),
            cpu_package: cpus.iter().copied().collect(),
            package_busy_ns: cpus.iter().map(|&(_, p)| (p, 0)).collect(),
        }
    }

    /// Counters that have stopped: no advance for over [`STALL_AFTER_NS`]
    /// before `now_ns` while their package's CPUs ran tasks for at least
    /// [`STALL_BUSY_NS`]. A real package never stands still that long.
    pub fn stalled(&self, now_ns: u64) -> Vec<usize> {
        self.books
            .iter()
            .enumerate()
            .filter(|(_, b)| {
                if b.parked {
                    return false;
                }
                let busy = self
                    .package_busy_ns
                    .get(&b.plan.package)
                    .copied()
                    .unwrap_or(0);
                b.moved.is_some_and(|(t, busy_then)| {
                    now_ns.saturating_sub(t) > STALL_AFTER_NS
                        && busy.saturating_sub(busy_then) >= STALL_BUSY_NS
                })
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Counter `idx` died with its CPU, which went offline (a software
    /// event: [`CounterPlan::dies_with_cpu`]): its count stands still until
    /// [`EnergyBooks::rebase`], and that is not a stall.
    pub fn park(&mut self, idx: usize) {
        if let Some(b) = self.books.get_mut(idx) {
            b.parked = true;
        }
    }

    /// Counter `idx` was opened again (its CPU came back online) and now
    /// counts from `raw`, read at `ts_ns`: the next delta is taken from
    /// there, so nothing is counted for the jump to the new count and the
    /// book's total goes on from where it stood.
    pub fn rebase(&mut self, idx: usize, ts_ns: u64, raw: u64) {
        let busy_now = self.package_busy(idx);
        if let Some(b) = self.books.get_mut(idx) {
            b.parked = false;
            b.last = Some((ts_ns, raw));
            b.moved = Some((ts_ns, busy_now));
        }
    }

    fn package_busy(&self, idx: usize) -> u64 {
        self.books
            .get(idx)
            .and_then(|b| self.package_busy_ns.get(&b.plan.package))
            .copied()
            .unwrap_or(0)
    }

    /// How many packages the machine has.
    pub fn package_count(&self) -> usize {
        self.package_busy_ns.len()
    }

    /// The plan of counter `idx`.
    pub fn plan(&self, idx: usize) -> Option<&CounterPlan> {
        self.books.get(idx).map(|b| &b.plan)
    }

    /// Readings applied per package of its base-domain counters, sorted by
    /// package (`ergon_energy_reads_total{package}`).
    pub fn reads(&self) -> Vec<(u32, u64)> {
        let mut per: BTreeMap<u32, u64> = BTreeMap::new();
        for b in self
            .books
            .iter()
            .filter(|b| b.plan.domain == self.base_domain)
        {
            *per.entry(b.plan.package).or_default() += b.reads;
        }
        per.into_iter().collect()
    }

    /// Readings refused so far.
    pub fn rejected(&self) -> Rejected {
        self.rejected
    }

    /// Applies a reading of counter `idx` taken at boot-time `ts_ns`.
    /// Returns false when it was ignored: not newer than the last one, or
    /// refused ([`Rejected`]: a 64-bit count that went back, an implausible
    /// wrap). A refused reading never becomes the base of the next delta, so
    /// the energy between the last good reading and the next one is counted
    /// once.
    pub fn reading(&mut self, idx: usize, ts_ns: u64, raw: u64) -> bool {
        let Some(b) = self.books.get_mut(idx) else {
            return false;
        };
        let busy_now = self
            .package_busy_ns
            .get(&b.plan.package)
            .copied()
            .unwrap_or(0);
        match b.last {
            None => {
                b.last = Some((ts_ns, raw));
                b.moved = Some((ts_ns, busy_now));
            }
            Some((t, prev)) if ts_ns > t => {
                let d = match &b.plan.user {
                    // A file or MSR counter wraps at its own maximum.
                    Some(u) => {
                        let d = bounded_delta(prev, raw, u.max);
                        let seconds = (ts_ns - t) as f64 * 1e-9;
                        if raw < prev
                            && d as f64 * b.plan.joules_per_count > b.ceiling_watts * seconds
                        {
                            self.rejected.implausible_wraps += 1;
                            return false;
                        }
                        d
                    }
                    None => {
                        let d = counter_delta(prev, raw, COUNTER_BITS);
                        if d >= MAX_SANE_DELTA {
                            self.rejected.backwards += 1;
                            return false;
                        }
                        d
                    }
                };
                b.counts += u128::from(d);
                b.last = Some((ts_ns, raw));
                if d > 0 {
                    b.moved = Some((ts_ns, busy_now));
                }
            }
            Some(_) => return false,
        }
        b.reads += 1;
        self.applied.push((idx, ts_ns, b.counts));
        true
    }

    /// Hands the readings applied since the last call to `f` (in order):
    /// counter index, boot-time ns, cumulative counts since start.
    pub fn take_applied(&mut self, mut f: impl FnMut(usize, u64, u128)) {
        for (idx, ts, counts) in self.applied.drain(..) {
            f(idx, ts, counts);
        }
    }

    /// Applies a kernel record: its counter readings and its time table.
    pub fn apply(&mut self, ev: &Event) -> Applied {
        let r = &ev.record;
        let mut out = Applied::default();
        for (domain, raw) in ev.readings() {
            if let Some(&idx) = self.slots.get(&(r.cpu, domain)) {
                if self.reading(idx, r.ts_ns, raw) {
                    out.readings += 1;
                } else {
                    out.stale += 1;
                }
                if self.books[idx].plan.open_cpu != r.cpu {
                    out.remote_reads.push((r.cpu, idx));
                }
            }
        }
        for domain in ev.read_errors() {
            if let Some(&idx) = self.slots.get(&(r.cpu, domain)) {
                out.failed_reads.push((r.cpu, idx));
            }
        }
        let t = self.cpu_time.entry(r.cpu).or_default();
        t.busy_ns += ev.busy_ns();
        t.idle_ns += r.idle_ns;
        if let Some(p) = self.cpu_package.get(&r.cpu) {
            *self.package_busy_ns.entry(*p).or_default() += ev.busy_ns();
        }
        out
    }

    /// Stops mapping `(cpu, domain of idx)` to counter `idx`.
    /// Counter `idx` was moved by the kernel to `cpu` (its open CPU went
    /// offline): `cpu`'s readings of it count, and are no remote reads.
    pub fn moved_to(&mut self, cpu: u32, idx: usize) {
        if let Some(b) = self.books.get_mut(idx) {
            b.plan.open_cpu = cpu;
            self.slots.insert((cpu, b.plan.domain), idx);
        }
    }

    pub fn forget_reader(&mut self, cpu: u32, idx: usize) {
        if let Some(b) = self.books.get(idx) {
            self.slots.remove(&(cpu, b.plan.domain));
        }
    }

    /// Counters whose last reading is older than `max_age_ns` at `now_ns`
    /// (all their readers are idle): the daemon reads those itself.
    pub fn stale(&self, now_ns: u64, max_age_ns: u64) -> Vec<usize> {
        self.books
            .iter()
            .enumerate()
            .filter(|(_, b)| {
                b.last
                    .is_none_or(|(t, _)| now_ns.saturating_sub(t) > max_age_ns)
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Joules per (package, domain), sorted.
    pub fn packages(&self) -> Vec<PackageEnergy> {
        let mut sums: BTreeMap<(u32, usize), f64> = BTreeMap::new();
        for b in &self.books {
            *sums.entry((b.plan.package, b.plan.domain)).or_default() += joules(b);
        }
        sums.into_iter()
            .map(|((package, d), j)| PackageEnergy {
                package,
                domain: DOMAIN_NAMES.get(d).copied().unwrap_or("unknown"),
                joules: Joules(j),
            })
            .collect()
    }

    pub fn cpu_time(&self) -> &BTreeMap<u32, CpuTime> {
        &self.cpu_time
    }
}

fn joules(b: &Book) -> f64 {
    b.counts as f64 * b.plan.joules_per_count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        decode::{blank_record, decode, record_bytes},
        source::Resolved,
    };
    use proptest::prelude::*;

    fn counter(
        domain: usize,
        package: u32,
        open_cpu: u32,
        readers: Vec<u32>,
        jpc: f64,
    ) -> CounterPlan {
        CounterPlan {
            domain,
            package,
            open_cpu,
            readers,
            pmu_type: 0,
            config: 0,
            joules_per_count: jpc,
            user: None,
        }
    }

    fn synthetic(cpus: u32, watts: f64) -> Plan {
        Plan {
            source: Resolved::Synthetic,
            reason: String::new(),
            counters: (0..cpus)
                .map(|c| counter(0, 0, c, vec![c], watts * 1e-9))
                .collect(),
            per_cpu: true,
        }
    }

    fn tick(cpu: u32, ts: u64, value: u64) -> Event {
        let mut r = blank_record();
        r.cpu = cpu;
        r.ts_ns = ts;
        r.span_start_ns = ts;
        r.valid_mask = 1;
        r.values[0] = value;
        decode(&record_bytes(&r)).expect("valid")
    }

    /// A record of `cpu` at `ts` reading `value`, whose span ran tasks for
    /// `busy` ns (in `other`).
    fn busy_tick(cpu: u32, ts: u64, value: u64, busy: u64) -> Event {
        let mut r = blank_record();
        r.cpu = cpu;
        r.ts_ns = ts;
        r.span_start_ns = ts.saturating_sub(busy);
        r.other_ns = busy;
        r.valid_mask = 1;
        r.values[0] = value;
        decode(&record_bytes(&r)).expect("valid")
    }

    #[test]
    fn a_counter_that_stops_while_its_cpus_are_busy_is_stalled() {
        let ms = 1_000_000u64;
        let plan = Plan {
            source: Resolved::Rapl,
            reason: String::new(),
            counters: vec![counter(0, 0, 0, vec![0], 1e-6)],
            per_cpu: false,
        };
        let mut b = EnergyBooks::new(&plan, &[(0, 0)]);
        // Moving for 1 s, busy all along.
        for i in 1..=1000 {
            b.apply(&busy_tick(0, i * ms, i * 100, ms));
        }
        assert!(b.stalled(1000 * ms).is_empty(), "it moves");
        // Then stuck at the same count for 1.5 s, CPU still busy.
        for i in 1001..=2500 {
            b.apply(&busy_tick(0, i * ms, 100_000, ms));
        }
        assert!(b.stalled(1900 * ms).is_empty(), "not yet a second");
        assert_eq!(b.stalled(2500 * ms), vec![0], "stuck 1.5 s while busy");
        // It moves again: no longer stalled.
        b.apply(&busy_tick(0, 2501 * ms, 100_100, ms));
        assert!(b.stalled(2600 * ms).is_empty());

        // Stuck as long but idle (no busy time): not a stall.
        let mut idle = EnergyBooks::new(&plan, &[(0, 0)]);
        idle.apply(&busy_tick(0, ms, 100, 0));
        idle.apply(&busy_tick(0, 2 * ms, 200, 0));
        for i in 3..=2000 {
            idle.apply(&busy_tick(0, i * ms, 200, 0));
        }
        assert!(
            idle.stalled(2000 * ms).is_empty(),
            "an idle package may crawl"
        );
    }

    #[test]
    fn a_counter_reopened_after_its_cpu_came_back_goes_on_from_its_total() {
        let ms = 1_000_000u64;
        // Two per-CPU counters; cpu 1 busy, then offline, then back.
        let mut b = EnergyBooks::new(&synthetic(2, 1.0), &[(0, 0), (1, 0)]);
        b.apply(&busy_tick(0, ms, 0, ms));
        b.apply(&busy_tick(1, ms, 5_000_000, ms));
        b.apply(&busy_tick(1, 2 * ms, 6_000_000, ms)); // 1 mJ
        b.park(1);
        // cpu 0 busy for 1.5 s while cpu 1's dead counter stands still.
        for i in 3..=1500 {
            b.apply(&busy_tick(0, i * ms, (i - 1) * ms, ms));
            assert!(b.reading(1, i * ms, 6_000_000));
        }
        assert!(b.stalled(1500 * ms).is_empty(), "parked, not stalled");
        // Reopened: counts from 1,000 again. No jump is counted, the total
        // goes on, and the jump back is no rejected reading.
        b.rebase(1, 1501 * ms, 1_000);
        assert!(b.reading(1, 1502 * ms, 1_001_000));
        let mut cpu1 = Vec::new();
        b.take_applied(|idx, ts, counts| {
            if idx == 1 && ts > 1500 * ms {
                cpu1.push(counts);
            }
        });
        assert_eq!(cpu1, vec![2_000_000], "1e6 counts before, 1e6 after");
        assert_eq!(b.rejected(), Rejected::default());
        for i in 1503..=3000 {
            b.apply(&busy_tick(0, i * ms, (i - 1) * ms, ms));
        }
        assert_eq!(b.stalled(3000 * ms), vec![1], "unparked: a stall again");
    }

    #[test]
    fn first_reading_is_a_baseline() {
        let mut b = EnergyBooks::new(&synthetic(1, 10.0), &[(0, 0)]);
        b.apply(&tick(0, 100, 5_000_000_000));
        assert_eq!(b.packages()[0].joules, Joules(0.0));
        b.apply(&tick(0, 200, 6_000_000_000));
        // 1e9 counts × 10e-9 J = 10 J.
        assert!((b.packages()[0].joules.0 - 10.0).abs() < 1e-9);
    }

    #[test]
    fn older_readings_are_ignored() {
        let mut b = EnergyBooks::new(&synthetic(1, 1.0), &[(0, 0)]);
        b.reading(0, 100, 1000);
        assert!(b.reading(0, 300, 3000));
        assert!(!b.reading(0, 200, 2000), "older reading must be ignored");
        assert!(!b.reading(0, 300, 3000), "same timestamp must be ignored");
        assert!(b.reading(0, 400, 4000));
        assert!((b.packages()[0].joules.0 - 3000e-9).abs() < 1e-15);
    }

    #[test]
    fn counter_wrap_is_an_advance() {
        let mut b = EnergyBooks::new(&synthetic(1, 1e9), &[(0, 0)]);
        b.reading(0, 1, u64::MAX - 9);
        b.reading(0, 2, 10);
        // 20 counts × 1 J.
        assert!((b.packages()[0].joules.0 - 20.0).abs() < 1e-9);
    }

    #[test]
    fn packages_sum_their_counters_per_domain() {
        let plan = Plan {
            source: Resolved::Rapl,
            reason: String::new(),
            counters: vec![
                counter(0, 0, 0, vec![0, 1], 0.5),
                counter(2, 0, 0, vec![0, 1], 0.25),
                counter(0, 1, 2, vec![2, 3], 1.0),
            ],
            per_cpu: false,
        };
        let mut b = EnergyBooks::new(&plan, &[(0, 0), (1, 0), (2, 1), (3, 1)]);
        b.reading(0, 1, 0);
        b.reading(0, 2, 100); // 50 J pkg 0
        b.reading(1, 1, 0);
        b.reading(1, 2, 100); // 25 J ram pkg 0
        b.reading(2, 1, 0);
        b.reading(2, 2, 30); // 30 J pkg 1
        assert!(!b.reading(2, 2, 31), "not newer: ignored, not counted");
        assert_eq!(
            b.reads(),
            vec![(0, 2), (1, 2)],
            "readings of each package's pkg counter (ram's not counted)"
        );
        let p = b.packages();
        assert_eq!(
            p,
            vec![
                PackageEnergy {
                    package: 0,
                    domain: "pkg",
                    joules: Joules(50.0)
                },
                PackageEnergy {
                    package: 0,
                    domain: "ram",
                    joules: Joules(25.0)
                },
                PackageEnergy {
                    package: 1,
                    domain: "pkg",
                    joules: Joules(30.0)
                },
            ]
        );
    }

    #[test]
    fn remote_reader_is_reported_and_can_be_forgotten() {
        let plan = Plan {
            source: Resolved::Rapl,
            reason: String::new(),
            counters: vec![counter(0, 0, 0, vec![0, 1], 1.0)],
            per_cpu: false,
        };
        let mut b = EnergyBooks::new(&plan, &[(0, 0), (1, 0)]);
        let a = b.apply(&tick(1, 10, 5));
        assert_eq!(a.remote_reads, vec![(1, 0)]);
        b.forget_reader(1, 0);
        let a = b.apply(&tick(1, 20, 6));
        assert_eq!(a.readings, 0);
    }

    #[test]
    fn stale_counters_are_listed() {
        let mut b = EnergyBooks::new(&synthetic(2, 1.0), &[(0, 0), (1, 0)]);
        b.reading(0, 1_000, 0);
        b.reading(1, 9_000, 0);
        assert_eq!(b.stale(10_000, 5_000), vec![0]);
    }

    proptest! {
        /// Package energy equals the exact count advance × scale, whatever
        /// the order and interleaving of readings.
        #[test]
        fn books_balance(steps in proptest::collection::vec((0u32..4, 1u64..1_000_000, any::<bool>()), 1..200)) {
            let plan = synthetic(4, 3.0);
            let cpus = [(0, 0), (1, 0), (2, 0), (3, 0)];
            let mut b = EnergyBooks::new(&plan, &cpus);
            let mut ts = [0u64; 4];
            let mut raw = [u64::MAX - 1_000; 4];
            let mut first = [true; 4];
            let mut truth = 0u128;
            for (cpu, adv, replay_old) in steps {
                let c = cpu as usize;
                ts[c] += 1;
                raw[c] = raw[c].wrapping_add(adv);
                if !first[c] { truth += u128::from(adv); }
                first[c] = false;
                b.reading(c, ts[c], raw[c]);
                if replay_old {
                    // A late, older reading must change nothing.
                    b.reading(c, ts[c] - 1, raw[c].wrapping_sub(adv));
                }
            }
            let pkg: f64 = b.packages().iter().map(|p| p.joules.0).sum();
            let expect = truth as f64 * 3e-9;
            prop_assert!((pkg - expect).abs() <= 1e-9 * expect.max(1.0));
        }

        /// A 64-bit count that reads lower than the last one (skew, a reset)
        /// is ignored and never becomes the base: the books hold exactly the
        /// true advance, and each such reading is counted as backwards.
        #[test]
        fn backwards_readings_are_ignored_not_rebased(
            steps in proptest::collection::vec((1u64..1_000_000, proptest::option::of(1u64..10_000_000)), 1..200)
        ) {
            let plan = synthetic(1, 3.0);
            let mut b = EnergyBooks::new(&plan, &[(0, 0)]);
            let (mut ts, mut raw) = (1u64, 5_000_000u64);
            b.reading(0, ts, raw);
            let (mut truth, mut glitches) = (0u128, 0u64);
            for (adv, glitch) in steps {
                if let Some(back) = glitch {
                    ts += 1;
                    prop_assert!(!b.reading(0, ts, raw.saturating_sub(back).min(raw - 1)));
                    glitches += 1;
                }
                ts += 1;
                raw += adv;
                truth += u128::from(adv);
                prop_assert!(b.reading(0, ts, raw));
            }
            let pkg = b.packages()[0].joules.0;
            let expect = truth as f64 * 3e-9;
            prop_assert!((pkg - expect).abs() <= 1e-9 * expect.max(1.0), "{} vs {}", pkg, expect);
            prop_assert_eq!(b.rejected(), Rejected { backwards: glitches, implausible_wraps: 0 });
        }

        /// A ranged counter (powercap's `max_energy_range_uj`, a 32-bit MSR):
        /// every wrap at a package's power is counted exactly; a reading that
        /// jumps back by more than the package could draw in the interval is
        /// refused and counted, and the books still hold the true advance.
        #[test]
        fn wraps_are_counted_and_implausible_ones_refused(
            steps in proptest::collection::vec((1u64..20_000, any::<bool>()), 1..300)
        ) {
            // 1 µJ counts wrapping at 1 J; one reading per ms; a 2-CPU
            // package (ceiling 100 W = 100,000 µJ per ms): every step is
            // plausible (< 20 W), every jump back (half a range in 1 ms,
            // 500 W) is not.
            let max = 1_000_000u64;
            let plan = Plan {
                source: Resolved::Powercap,
                reason: String::new(),
                counters: vec![CounterPlan {
                    user: Some(crate::source::UserCounter {
                        read: crate::source::UserRead::File("energy_uj".into()),
                        max,
                        max_watts: None,
                    }),
                    ..counter(0, 0, 0, vec![0], 1e-6)
                }],
                per_cpu: false,
            };
            let mut b = EnergyBooks::new(&plan, &[(0, 0), (1, 0)]);
            let ms = 1_000_000u64;
            let (mut ts, mut raw) = (ms, 900_000u64);
            b.reading(0, ts, raw);
            let (mut truth, mut jumps) = (0u128, 0u64);
            for (adv, jump) in steps {
                if jump && raw > 0 {
                    ts += ms;
                    // Back to half its value, as a reset or misread: taken as
                    // a wrap it would mean more than half a range in 1 ms.
                    let back = raw / 2;
                    prop_assert!(!b.reading(0, ts, back));
                    jumps += 1;
                }
                ts += ms;
                raw = (raw + adv) % (max + 1);
                truth += u128::from(adv);
                prop_assert!(b.reading(0, ts, raw));
            }
            let pkg = b.packages()[0].joules.0;
            let expect = truth as f64 * 1e-6;
            prop_assert!((pkg - expect).abs() <= 1e-9 * expect.max(1.0), "{} vs {}", pkg, expect);
            prop_assert_eq!(b.rejected(), Rejected { backwards: 0, implausible_wraps: jumps });
        }
    }
}
