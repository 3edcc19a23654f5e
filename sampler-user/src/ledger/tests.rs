//! The ledger driven by fixture event streams: no kernel, no root.

use std::{collections::HashMap, os::unix::fs::MetadataExt, path::Path};

use sampler_common::{CgroupTime, RUNNING_TASK};

use super::*;
use crate::{
    attribution::{GridConfig, PackageSpec},
    continuity,
    decode::{blank_record, decode, record_bytes},
    source::{CounterPlan, Plan, Resolved},
    topology::{CpuInfo, Topology},
};

const MS: u64 = 1_000_000;
/// Boot ns at which the fixtures begin (sampling started).
const T0: u64 = 1_000 * MS;
/// Wall-clock ns minus boot ns in the fixtures.
const OFFSET: i128 = 1_700_000_000_000_000_000;
/// One count of the fixture counter is 1 µJ.
const JOULES_PER_COUNT: f64 = 1e-6;

/// One package of `cpus` CPUs with one package counter opened on cpu 0
/// and read by every CPU.
fn plan(cpus: u32) -> (Plan, Topology) {
    let plan = Plan {
        source: Resolved::Rapl,
        reason: String::new(),
        counters: vec![CounterPlan {
            domain: 0,
            package: 0,
            open_cpu: 0,
            readers: (0..cpus).collect(),
            pmu_type: 0,
            config: 0,
            joules_per_count: JOULES_PER_COUNT,
            user: None,
        }],
        per_cpu: false,
    };
    let topo = Topology {
        cpus: (0..cpus).map(|cpu| CpuInfo { cpu, package: 0 }).collect(),
    };
    (plan, topo)
}

struct Fixture {
    ledger: Ledger,
    /// The instant that stands for boot ns [`T0`].
    at_t0: Instant,
}

impl Fixture {
    fn new(
        cpus: u32,
        cgroup_root: Option<&Path>,
        max_cgroups: usize,
        bases: HashMap<String, f64>,
    ) -> Self {
        let (plan, topo) = plan(cpus);
        let pairs: Vec<(u32, u32)> = topo.cpus.iter().map(|c| (c.cpu, c.package)).collect();
        let parts = Parts {
            energy: EnergyBooks::new(&plan, &pairs),
            attribution: Attributor::new(PackageSpec::from_plan(&plan, &topo)).with_grid(
                GridConfig {
                    package_res_ns: 10 * MS,
                    cgroup_res_ns: 10 * MS,
                },
            ),
            cgroups: Registry::new(
                cgroup_root.map(Path::to_path_buf),
                Duration::from_secs(60),
                max_cgroups,
            ),
            domains: DomainGrid::default(),
            continuity: Continuity::new(bases),
        };
        let base = Snapshot {
            source: "rapl",
            base_domain: "pkg",
            ..Snapshot::default()
        };
        Self {
            ledger: Ledger::new(parts, base, T0),
            at_t0: Instant::now(),
        }
    }

    fn clock(&self, boot_ns: u64) -> Clock {
        Clock {
            boot_ns,
            wall_ns: i128::from(boot_ns) + OFFSET,
            instant: self.at_t0 + Duration::from_nanos(boot_ns - T0),
        }
    }

    /// One drain as the drain task runs it, with no silent CPUs to read.
    fn drain(&mut self, events: Vec<Event>, boot_ns: u64) -> (Output, Snapshot) {
        assert!(self.ledger.apply(events).is_empty(), "no read failed");
        let clock = self.clock(boot_ns);
        self.ledger.book_readings(&clock);
        let out = self.ledger.settle(&clock, 0);
        (out, self.ledger.snapshot(&clock))
    }
}

/// A timer record of `cpu` for the span `start..end`, reading the counter
/// at `value` counts, with the time in `cgroups` and the rest idle.
fn tick(cpu: u32, start: u64, end: u64, value: Option<u64>, cgroups: &[(u64, u64)]) -> Event {
    let mut r = blank_record();
    r.cpu = cpu;
    r.span_start_ns = start;
    r.ts_ns = end;
    if let Some(v) = value {
        r.valid_mask = 1;
        r.values[0] = v;
    }
    for (slot, &(id, ns)) in r.cgroups.iter_mut().zip(cgroups) {
        *slot = CgroupTime { cgroup_id: id, ns };
    }
    r.n_cgroups = cgroups.len() as u32;
    r.idle_ns = (end - start) - cgroups.iter().map(|c| c.1).sum::<u64>();
    Event::Record(decode(&record_bytes(&r)).expect("a valid fixture record"))
}

/// The counter's first reading, then 100 ms at 10 W: cpu 0 runs cgroup
/// `busy` all the time, cpu 1 runs cgroup `light` a quarter of the time;
/// records every 10 ms.
fn steady(busy: u64, light: u64) -> Vec<Event> {
    let mut out = vec![first_reading()];
    for k in 0..10u64 {
        let (a, b) = (T0 + k * 10 * MS, T0 + (k + 1) * 10 * MS);
        // 10 W = 10 J/s = 1e7 µJ/s = 1e5 counts per 10 ms.
        let value = Some(1_000_000 + (k + 1) * 100_000);
        out.push(tick(0, a, b, value, &[(busy, 10 * MS)]));
        out.push(tick(1, a, b, value, &[(light, 10 * MS / 4)]));
    }
    out
}

fn first_reading() -> Event {
    Event::Reading {
        counter: 0,
        ts_ns: T0,
        raw: 1_000_000,
        idle_read: false,
    }
}

fn cgroup_joules(s: &Snapshot, name: &str) -> f64 {
    s.cgroups
        .iter()
        .filter(|c| c.labels.cgroup == name)
        .map(|c| c.joules)
        .sum()
}

fn package_joules(s: &Snapshot) -> f64 {
    s.packages
        .iter()
        .filter(|p| p.domain == "pkg")
        .map(|p| p.joules.0)
        .sum()
}

#[test]
fn a_snapshot_balances_and_splits_by_time() {
    let mut f = Fixture::new(2, None, 100, HashMap::new());
    let events = steady(7, 8);
    let (_, s) = f.drain(events, T0 + 100 * MS);
    // 10 W for 100 ms.
    assert!((package_joules(&s) - 1.0).abs() < 1e-9, "{:?}", s.packages);
    let idle: f64 = s.idle.iter().map(|i| i.1).sum();
    let booked: f64 = s.cgroups.iter().map(|c| c.joules).sum::<f64>() + idle;
    assert!(
        (booked - package_joules(&s)).abs() < 1e-9,
        "cgroups + idle = package"
    );
    // 10 ms of cgroup 7 for every 2.5 ms of cgroup 8.
    let (a, b) = (
        cgroup_joules(&s, "unresolved:7"),
        cgroup_joules(&s, "unresolved:8"),
    );
    assert!((a / b - 4.0).abs() < 1e-6, "{a} J vs {b} J");
    assert_eq!(s.records_decoded, 20);
    assert_eq!(
        s.last_drain_unix,
        (i128::from(T0 + 100 * MS) + OFFSET) as f64 * 1e-9
    );
}

/// Time the kernel programs booked as steal and irq (their `STEAL_CGROUP`
/// and `IRQ_CGROUP` slots) is served per package and reason, is no cgroup
/// (no series, no batch point, no registry entry) and keeps the books
/// balanced: cgroups + idle + unattributed = package.
#[test]
fn steal_and_irq_time_is_unattributed_and_the_books_still_balance() {
    use sampler_common::{IRQ_CGROUP, STEAL_CGROUP};
    let mut f = Fixture::new(2, None, 100, HashMap::new());
    let mut events = vec![first_reading()];
    for k in 0..10u64 {
        let (a, b) = (T0 + k * 10 * MS, T0 + (k + 1) * 10 * MS);
        let value = Some(1_000_000 + (k + 1) * 100_000);
        // cpu 0: 8 ms of cgroup 7, 1 ms stolen, 1 ms of irq; cpu 1 idle.
        events.push(tick(
            0,
            a,
            b,
            value,
            &[(7, 8 * MS), (STEAL_CGROUP, MS), (IRQ_CGROUP, MS)],
        ));
        events.push(tick(1, a, b, value, &[]));
    }
    let (out, s) = f.drain(events, T0 + 100 * MS);
    let idle: f64 = s.idle.iter().map(|i| i.1).sum();
    let cgroups: f64 = s.cgroups.iter().map(|c| c.joules).sum();
    let unattributed: f64 = s.unattributed.iter().map(|u| u.2).sum();
    assert!(
        (cgroups + idle + unattributed - package_joules(&s)).abs() < 1e-9,
        "cgroups {cgroups} + idle {idle} + unattributed {unattributed} = package {}",
        package_joules(&s)
    );
    let reasons: Vec<(u32, &str)> = s.unattributed.iter().map(|u| (u.0, u.1)).collect();
    assert_eq!(reasons, vec![(0, "irq"), (0, "steal")]);
    // By time: 1 ms each against cgroup 7's 8 ms.
    for u in &s.unattributed {
        let r = cgroup_joules(&s, "unresolved:7") / u.2;
        assert!((r - 8.0).abs() < 1e-6, "{u:?}: cgroup 7 / {} = {r}", u.1);
    }
    assert_eq!(s.cgroups.len(), 1, "{:?}", s.cgroups);
    assert!(out.points.iter().all(|p| match p.key {
        SeriesKey::Cgroup(id) => id == 7,
        _ => true,
    }));
    assert!(out.labels.iter().all(|(id, _)| *id == 7));
}

#[test]
fn points_and_snapshot_carry_the_previous_runs_totals() {
    let bases = HashMap::from([(continuity::package_key(0, "pkg"), 5.0)]);
    let mut f = Fixture::new(2, None, 100, bases);
    let events = steady(7, 8);
    let (out, s) = f.drain(events, T0 + 100 * MS);
    assert!(
        (package_joules(&s) - 6.0).abs() < 1e-9,
        "5 J before + 1 J now"
    );
    let last = out
        .points
        .iter()
        .rev()
        .find(|p| {
            p.key
                == SeriesKey::Package {
                    package: 0,
                    domain: "pkg",
                }
        })
        .map(|p| p.joules)
        .expect("package points");
    assert!(
        (last - 6.0).abs() < 1e-9,
        "the last point is the snapshot's total: {last}"
    );
    // Instants on the 10 ms grid, in wall-clock ms.
    let first_ms = ((i128::from(T0) + OFFSET) / i128::from(MS)) as i64;
    assert!(out.points.iter().all(|p| p.ms > first_ms && p.ms % 10 == 0));
}

#[test]
fn the_clock_offset_moves_only_past_the_hysteresis() {
    let mut f = Fixture::new(1, None, 100, HashMap::new());
    let mut clock = f.clock(T0);
    f.ledger.book_readings(&clock);
    assert_eq!(f.ledger.offset_ns(), Some(OFFSET));
    // Jitter between the two clock reads: kept.
    clock.wall_ns += OFFSET_HYSTERESIS_NS - 1;
    f.ledger.book_readings(&clock);
    assert_eq!(f.ledger.offset_ns(), Some(OFFSET));
    // A slew past it, or a step: followed.
    clock.wall_ns += 2;
    f.ledger.book_readings(&clock);
    assert_eq!(
        f.ledger.offset_ns(),
        Some(OFFSET + OFFSET_HYSTERESIS_NS + 1)
    );
    clock.wall_ns -= 5_000_000_000;
    f.ledger.book_readings(&clock);
    assert_eq!(
        f.ledger.offset_ns(),
        Some(OFFSET + OFFSET_HYSTERESIS_NS + 1 - 5_000_000_000)
    );
}

#[test]
fn malformed_records_and_idle_reads_are_counted() {
    let mut f = Fixture::new(1, None, 100, HashMap::new());
    let bad = DecodeError::Kind { kind: 99 };
    let idle = |ts_ns, raw| Event::Reading {
        counter: 0,
        ts_ns,
        raw,
        idle_read: true,
    };
    let (_, s) = f.drain(
        vec![
            Event::Malformed(bad.clone()),
            idle(T0, 10),
            // Not newer than what the book has: not applied, not counted.
            idle(T0, 11),
            Event::Malformed(bad),
            idle(T0 + MS, 12),
        ],
        T0 + MS,
    );
    assert_eq!(s.records_malformed, 2);
    assert_eq!(s.idle_counter_reads, 2);
    assert_eq!(s.records_decoded, 0);
}

#[test]
fn a_counter_no_program_reads_goes_stale_and_a_failed_read_is_handed_back() {
    let mut f = Fixture::new(2, None, 100, HashMap::new());
    f.ledger.apply([first_reading()]);
    let after = IDLE_READ_AFTER.as_nanos() as u64;
    assert!(f.ledger.stale_counters(T0 + after / 2).is_empty());
    assert_eq!(f.ledger.stale_counters(T0 + after + 1), vec![0]);
    // cpu 1's read failed: handed back for the kernel side to narrow.
    let mut r = blank_record();
    (r.cpu, r.span_start_ns, r.ts_ns, r.error_mask) = (1, T0, T0 + MS, 1);
    let failed = f
        .ledger
        .apply([Event::Record(decode(&record_bytes(&r)).expect("valid"))]);
    assert_eq!(failed, vec![(1, 0)]);
}

/// A consistent copy of a CPU's kernel state: `running` since `since`,
/// its table flushed at `span_start` holding `cgroups` and idle otherwise.
fn cpu_state(span_start: u64, since: u64, running: u32, cgroups: &[(u64, u64)]) -> CpuState {
    let mut record = sampler_common::TickRecord::zeroed();
    record.span_start_ns = span_start;
    for (slot, &(id, ns)) in record.cgroups.iter_mut().zip(cgroups) {
        *slot = CgroupTime { cgroup_id: id, ns };
    }
    record.n_cgroups = cgroups.len() as u32;
    record.idle_ns = (since - span_start) - cgroups.iter().map(|c| c.1).sum::<u64>();
    CpuState {
        seq_done: 4,
        since_ns: since,
        idle_task: 0xffff_8880_0000_0000,
        running,
        _pad: 0,
        record,
        rq: 0,
        steal_seen: 0,
        irq_seen: 0,
        steal_owed: 0,
        irq_owed: 0,
        seq_begun: 4,
    }
}

/// A fixture where only cpu 0 reports, 100 ms of it, and the books wait
/// for cpu 1; with the silent CPUs at `now`.
fn cpu_1_silent(now: u64) -> (Fixture, Silent) {
    let mut f = Fixture::new(2, None, 100, HashMap::new());
    let events: Vec<Event> = steady(7, 8)
        .into_iter()
        .filter(|e| match e {
            Event::Record(r) => r.record.cpu == 0,
            _ => true,
        })
        .collect();
    let (_, s) = f.drain(events, now);
    assert_eq!(
        package_joules(&s),
        0.0,
        "nothing booked while cpu 1 is unknown"
    );
    let silent = f.ledger.silent_cpus(now).expect("cpu 1 is silent");
    assert_eq!(silent.unreported, vec![1]);
    (f, silent)
}

/// [`cpu_1_silent`] with cpu 1 closed from its kernel state at `now`: it
/// runs its idle task since sampling began, so it is idle up to the copy.
fn cpu_1_closed_idle(now: u64) -> Fixture {
    let (mut f, silent) = cpu_1_silent(now);
    let states = [
        cpu_state(T0, T0 + 10 * MS, RUNNING_TASK, &[(7, 10 * MS)]),
        cpu_state(T0, T0, RUNNING_IDLE, &[]),
    ];
    f.ledger.close_silent(silent, &states, now);
    f
}

#[test]
fn a_cpu_that_never_reports_is_closed_from_its_kernel_state() {
    let now = T0 + 200 * MS;
    let mut f = cpu_1_closed_idle(now);
    let (_, s) = f.drain(Vec::new(), now);
    assert!((package_joules(&s) - 1.0).abs() < 1e-9, "{:?}", s.packages);
    assert!((cgroup_joules(&s, "unresolved:7") + s.idle[0].1 - 1.0).abs() < 1e-9);
    assert!(s.idle_closures >= 1);
    assert_eq!(s.idle_closure_corrections, 0);
}

/// A vCPU stolen while idle learns it when it wakes: its first record
/// after an early close carries steal that fell in the head already booked
/// as idle. The head stands, the steal slot gives up the overlap, no
/// correction is counted and the books balance.
#[test]
fn steal_learned_after_an_early_close_is_not_a_correction() {
    use sampler_common::STEAL_CGROUP;
    let mut f = cpu_1_closed_idle(T0 + 200 * MS);
    // cpu 1's next record ends at T0 + 202 ms with 3 ms of steal, more
    // than the 2 ms after the early close; the counter reads 10 W.
    let end = T0 + 202 * MS;
    let value = Some(1_000_000 + 2_020_000);
    let events = vec![
        tick(0, T0 + 100 * MS, end, value, &[(7, 102 * MS)]),
        tick(1, T0, end, value, &[(STEAL_CGROUP, 3 * MS)]),
    ];
    let (_, s) = f.drain(events, end);
    assert_eq!(s.idle_closure_corrections, 0);
    let idle: f64 = s.idle.iter().map(|i| i.1).sum();
    let unattributed: f64 = s.unattributed.iter().map(|u| u.2).sum();
    let cgroups: f64 = s.cgroups.iter().map(|c| c.joules).sum();
    let pkg = package_joules(&s);
    assert!((pkg - 2.02).abs() < 1e-9, "{:?}", s.packages);
    assert!(
        (cgroups + idle + unattributed - pkg).abs() < 1e-9,
        "cgroups {cgroups} + idle {idle} + unattributed {unattributed} = {pkg}"
    );
    // Of the 3 ms, the 2 ms after the early close stay steal.
    assert!((unattributed - 0.01).abs() < 1e-9, "{unattributed} J");
}

#[test]
fn a_silent_cpu_that_runs_a_task_is_closed_up_to_its_last_switch_only() {
    // cpu 1 ran cgroup 9 for 10 ms, and a task since: nothing is guessed
    // about the task, so the books reach its last switch, 10 ms in.
    let now = T0 + 200 * MS;
    let (mut f, silent) = cpu_1_silent(now);
    let states = [
        cpu_state(T0, T0 + 10 * MS, RUNNING_TASK, &[(7, 10 * MS)]),
        cpu_state(T0, T0 + 10 * MS, RUNNING_TASK, &[(9, 10 * MS)]),
    ];
    f.ledger.close_silent(silent, &states, now);
    let (_, s) = f.drain(Vec::new(), now);
    // 10 W over the first 10 ms, half of it on each CPU's cgroup.
    assert!((package_joules(&s) - 0.1).abs() < 1e-9, "{:?}", s.packages);
    assert!((cgroup_joules(&s, "unresolved:9") - 0.05).abs() < 1e-9);
    assert_eq!(s.idle_closure_corrections, 0);
}

#[test]
fn an_offline_cpu_is_closed_up_to_the_copy_whatever_it_ran_last() {
    let now = T0 + 200 * MS;
    let (mut f, silent) = cpu_1_silent(now);
    assert!(f.ledger.apply([Event::Offline { cpu: 1 }]).is_empty());
    let states = [
        cpu_state(T0, T0 + 10 * MS, RUNNING_TASK, &[(7, 10 * MS)]),
        cpu_state(T0, T0 + 10 * MS, RUNNING_TASK, &[(9, 10 * MS)]),
    ];
    f.ledger.close_silent(silent, &states, now);
    let (_, s) = f.drain(Vec::new(), now);
    // cpu 0's 100 ms are booked: cpu 1's closed span is its 200 ms, 10 ms
    // of cgroup 9 and the rest idle, and its first half is booked (a span
    // is spread evenly over its length, as every span is): 5 W × 5 ms.
    assert!((package_joules(&s) - 1.0).abs() < 1e-9, "{:?}", s.packages);
    assert!((cgroup_joules(&s, "unresolved:9") - 0.025).abs() < 1e-9);
    // Back online, it is a CPU like any other again.
    assert!(f.ledger.apply([Event::Online { cpu: 1 }]).is_empty());
    let silent = f.ledger.silent_cpus(T0 + 300 * MS).expect("silent");
    let states = [
        states[0],
        cpu_state(T0, T0 + 150 * MS, RUNNING_TASK, &[(9, 10 * MS)]),
    ];
    f.ledger.close_silent(silent, &states, T0 + 300 * MS);
    assert_eq!(f.ledger.snapshot(&f.clock(now)).idle_closure_corrections, 0);
}

#[test]
fn a_copy_taken_while_a_program_wrote_the_state_is_not_used() {
    let now = T0 + 200 * MS;
    let (mut f, silent) = cpu_1_silent(now);
    let mut torn = cpu_state(T0, T0, RUNNING_IDLE, &[]);
    torn.seq_begun += 1;
    let states = [cpu_state(T0, T0, RUNNING_IDLE, &[]), torn];
    f.ledger.close_silent(silent, &states, now);
    let (_, s) = f.drain(Vec::new(), now);
    assert_eq!(s.idle_closures, 0);
    assert_eq!(package_joules(&s), 0.0);
}

#[test]
fn beyond_max_cgroups_the_smallest_fold_into_other_and_their_series_end() {
    let mut f = Fixture::new(2, None, 1, HashMap::new());
    let events = steady(7, 8);
    let (out, s) = f.drain(events, T0 + 100 * MS);
    assert_eq!(out.folded, vec![8], "the smaller consumer folds");
    assert!(out.expire.is_some());
    assert_eq!(s.cgroup_folds, 1);
    let other = cgroup_joules(&s, "other");
    assert!(other > 0.0 && cgroup_joules(&s, "unresolved:8") == 0.0);
    let idle: f64 = s.idle.iter().map(|i| i.1).sum();
    let booked = cgroup_joules(&s, "unresolved:7") + other + idle;
    assert!((booked - package_joules(&s)).abs() < 1e-9, "still balances");
}

fn inode(p: &Path) -> u64 {
    std::fs::metadata(p).expect("fixture cgroup").ino()
}

#[test]
fn a_cgroup_made_again_at_its_path_continues_its_series() {
    let tree = tempfile::tempdir().expect("tempdir");
    let path = tree.path().join("unit.service");
    std::fs::create_dir(&path).expect("mkdir");
    let old = inode(&path);
    let mut f = Fixture::new(1, Some(tree.path()), 100, HashMap::new());
    let half = |id, k: u64, value| {
        let (a, b) = (T0 + k * 10 * MS, T0 + (k + 1) * 10 * MS);
        tick(0, a, b, Some(value), &[(id, 5 * MS)])
    };
    let (_, s) = f.drain(vec![first_reading(), half(old, 0, 1_100_000)], T0 + 10 * MS);
    let before = cgroup_joules(&s, "/unit.service");
    assert!(before > 0.0, "{:?}", s.cgroups);
    // The unit restarts: a new directory at the same path. The old one is
    // moved out of the tree rather than removed, so the file system cannot
    // hand its inode to the new one (cgroup ids are never reused).
    let outside = tempfile::tempdir_in(tree.path().parent().expect("tmp")).expect("tempdir");
    std::fs::rename(&path, outside.path().join("gone")).expect("mv");
    std::fs::create_dir(&path).expect("mkdir");
    let new = inode(&path);
    assert_ne!(old, new);
    // Past the rescan interval, so the unknown id walks the tree.
    let later = T0 + 10 * MS + 2 * crate::cgroups::MIN_RESCAN.as_nanos() as u64;
    let (out, s) = f.drain(vec![half(new, 1, 1_200_000)], later);
    assert_eq!(out.recreated, vec![old]);
    let series: Vec<_> = s
        .cgroups
        .iter()
        .filter(|c| c.labels.cgroup == "/unit.service")
        .collect();
    assert_eq!(series.len(), 1, "one series per path");
    assert!(
        (series[0].joules - 2.0 * before).abs() < 1e-9,
        "{} J then {} J",
        before,
        series[0].joules
    );
}

#[test]
fn a_cgroups_labels_go_once_before_its_points_and_again_when_they_change() {
    let tree = tempfile::tempdir().expect("tempdir");
    let (a_path, c_path) = (tree.path().join("a.service"), tree.path().join("c.service"));
    std::fs::create_dir(&a_path).expect("mkdir");
    let a = inode(&a_path);
    let mut f = Fixture::new(1, Some(tree.path()), 100, HashMap::new());
    let run = |k: u64, ids: &[u64]| {
        let (s, e) = (T0 + k * 10 * MS, T0 + (k + 1) * 10 * MS);
        let each = 5 * MS / ids.len() as u64;
        let time: Vec<(u64, u64)> = ids.iter().map(|&id| (id, each)).collect();
        tick(0, s, e, Some(1_000_000 + (k + 1) * 100_000), &time)
    };
    let mut sent: HashMap<u64, String> = HashMap::new();
    let mut check = |out: &Output| -> Vec<(u64, String)> {
        let fresh: Vec<(u64, String)> = out
            .labels
            .iter()
            .map(|(id, l)| (*id, l.cgroup.clone()))
            .collect();
        sent.extend(fresh.iter().cloned());
        for p in &out.points {
            if let SeriesKey::Cgroup(id) = p.key {
                assert!(sent.contains_key(&id), "a point of {id} before its labels");
            }
        }
        fresh
    };
    let (out, _) = f.drain(
        vec![first_reading(), run(0, &[a]), run(1, &[a])],
        T0 + 20 * MS,
    );
    assert!(out.points.iter().any(|p| p.key == SeriesKey::Cgroup(a)));
    assert_eq!(check(&out), vec![(a, "/a.service".to_string())]);
    let (out, _) = f.drain(vec![run(2, &[a])], T0 + 30 * MS);
    assert!(out.points.iter().any(|p| p.key == SeriesKey::Cgroup(a)));
    assert_eq!(check(&out), vec![], "unchanged labels are not sent again");
    // Renamed, and a new cgroup whose id walks the tree: a's labels change.
    std::fs::rename(&a_path, tree.path().join("b.service")).expect("mv");
    std::fs::create_dir(&c_path).expect("mkdir");
    let c = inode(&c_path);
    let later = T0 + 40 * MS + crate::cgroups::MIN_RESCAN.as_nanos() as u64;
    let (out, _) = f.drain(vec![run(3, &[a, c])], later);
    let mut fresh = check(&out);
    fresh.sort();
    let mut want = vec![(a, "/b.service".to_string()), (c, "/c.service".to_string())];
    want.sort();
    assert_eq!(fresh, want);
}
