//! Unit and property tests of the attribution engine.

use super::*;
use proptest::prelude::*;
use sampler_common::{CGROUP_SLOTS, MAX_DOMAINS, RECORD_TICK};

pub(super) fn rec(cpu: u32, start: u64, end: u64, idle: u64, cgroups: &[(u64, u64)]) -> TickRecord {
    let mut cg = [CgroupTime::default(); CGROUP_SLOTS];
    for (slot, &(id, ns)) in cg.iter_mut().zip(cgroups) {
        *slot = CgroupTime { cgroup_id: id, ns };
    }
    TickRecord {
        kind: RECORD_TICK,
        cpu,
        ts_ns: end,
        span_start_ns: start,
        valid_mask: 0,
        error_mask: 0,
        values: [0; MAX_DOMAINS],
        idle_ns: idle,
        other_ns: 0,
        n_cgroups: cgroups.len() as u32,
        _pad: 0,
        cgroups: cg,
    }
}

fn package_counter(cpus: &[u32]) -> Attributor {
    Attributor::new(vec![PackageSpec {
        package: 0,
        joules_per_count: 1.0,
        cpus: cpus.to_vec(),
        counters: vec![(0, None)],
        core_counters: Vec::new(),
    }])
}

fn joules_of(a: &Attributor, id: u64) -> f64 {
    a.cgroups().get(&id).map_or(0.0, |t| a.joules(t))
}

#[test]
fn split_is_exact_and_proportional() {
    assert_eq!(split(10, &[1, 1]), vec![5, 5]);
    assert_eq!(split(10, &[1, 2, 2]), vec![2, 4, 4]);
    assert_eq!(split(7, &[1, 1, 1]).iter().sum::<u128>(), 7);
    assert_eq!(split(5, &[0, 0]), vec![0, 0]);
    assert_eq!(split(0, &[3, 4]), vec![0, 0]);
}

#[test]
fn package_energy_is_split_by_time_with_idle_apart() {
    let mut a = package_counter(&[0, 1]);
    a.on_reading(0, 0, 0);
    a.on_span(&rec(0, 0, 0, 0, &[]));
    a.on_span(&rec(1, 0, 0, 0, &[]));
    assert_eq!(a.advance(), 1, "frontier starts at 0");
    // 1000 ns: cpu 0 runs cgroup 7 for 750 ns and idles 250;
    // cpu 1 runs cgroup 9 for 500 and idles 500. 400 J in the package.
    a.on_span(&rec(0, 0, 1000, 250, &[(7, 750)]));
    a.on_span(&rec(1, 0, 1000, 500, &[(9, 500)]));
    a.on_reading(0, 1000, 400);
    assert_eq!(a.advance(), 1);
    // Each CPU gets 200 J; cgroup 7: 150, cgroup 9: 100, idle 50 + 100.
    assert!((joules_of(&a, 7) - 150.0).abs() < 1e-9);
    assert!((joules_of(&a, 9) - 100.0).abs() < 1e-9);
    let (_, pkg, idle) = a.packages()[0];
    assert!((pkg - 400.0).abs() < 1e-9 && (idle - 150.0).abs() < 1e-9);
    let cpus: Vec<(u32, f64)> = a.cpus().iter().map(|c| (c.cpu, c.joules.0)).collect();
    assert_eq!(cpus, vec![(0, 200.0), (1, 200.0)]);
    assert_eq!(a.cgroups()[&7].cpu_ns, 750);
}

#[test]
fn frontier_waits_for_the_slowest_input_and_splits_straddling_spans() {
    let mut a = package_counter(&[0, 1]);
    a.on_reading(0, 0, 0);
    a.on_span(&rec(0, 0, 0, 0, &[]));
    a.on_span(&rec(1, 0, 0, 0, &[]));
    a.advance();
    a.on_span(&rec(0, 0, 1000, 0, &[(7, 1000)]));
    a.on_reading(0, 1000, 100);
    assert_eq!(a.advance(), 0, "cpu 1 has not reported: no progress");
    // cpu 1 reports a long span to 2000 (idle): frontier moves to 1000 only
    // (the counter and cpu 0 reach 1000), half of cpu 1's span is booked.
    a.on_span(&rec(1, 0, 2000, 2000, &[]));
    assert_eq!(a.advance(), 1);
    assert_eq!(a.frontiers(), vec![Some(1000)]);
    assert!((joules_of(&a, 7) - 50.0).abs() < 1e-9);
    assert!((a.packages()[0].2 - 50.0).abs() < 1e-9, "cpu 1's idle half");
    a.on_span(&rec(0, 1000, 2000, 0, &[(7, 1000)]));
    a.on_reading(0, 2000, 300);
    a.advance();
    assert!((joules_of(&a, 7) - 150.0).abs() < 1e-9);
    assert!((a.packages()[0].2 - 150.0).abs() < 1e-9);
}

#[test]
fn readings_are_interpolated_at_the_frontier() {
    let mut a = package_counter(&[0]);
    a.on_reading(0, 0, 0);
    a.on_span(&rec(0, 0, 0, 0, &[]));
    a.advance();
    a.on_span(&rec(0, 0, 500, 0, &[(3, 500)]));
    a.on_reading(0, 1000, 1000);
    a.advance();
    // Frontier 500: half of the 1000 counts.
    assert!((joules_of(&a, 3) - 500.0).abs() < 1e-9);
}

/// Package 400 J over 1000 ns on 4 CPUs in two cores ({0,1}, {2,3}), the
/// first core's counter 90 counts, the second's 30; cgroup 7 on cpu 0.
fn cores_split(core_counters: Vec<(usize, Vec<u32>)>) -> Attributor {
    let mut a = Attributor::new(vec![PackageSpec {
        package: 0,
        joules_per_count: 1.0,
        cpus: vec![0, 1, 2, 3],
        counters: vec![(0, None)],
        core_counters,
    }]);
    for k in 0..3 {
        a.on_reading(k, 0, 0);
    }
    for c in 0..4 {
        a.on_span(&rec(c, 0, 0, 0, &[]));
    }
    a.advance();
    a.on_span(&rec(0, 0, 1000, 0, &[(7, 1000)]));
    for c in 1..4 {
        a.on_span(&rec(c, 0, 1000, 1000, &[]));
    }
    a.on_reading(0, 1000, 400);
    a.on_reading(1, 1000, 90);
    a.on_reading(2, 1000, 30);
    a.advance();
    let (_, pkg, _) = a.packages()[0];
    assert!(
        (pkg - 400.0).abs() < 1e-9,
        "the package total is the package counter's"
    );
    a
}

#[test]
fn per_core_counters_weigh_the_split_of_the_package_over_cpus() {
    let a = cores_split(vec![(1, vec![0, 1]), (2, vec![2, 3])]);
    // Core 0 drew 3/4 of the cores' energy: 300 J, 150 J per CPU; core 1
    // 100 J, 50 per CPU. Cgroup 7 ran on cpu 0 all along.
    let cpus: Vec<(u32, f64)> = a.cpus().iter().map(|c| (c.cpu, c.joules.0)).collect();
    assert_eq!(cpus, vec![(0, 150.0), (1, 150.0), (2, 50.0), (3, 50.0)]);
    assert!((joules_of(&a, 7) - 150.0).abs() < 1e-9);
    assert!((a.packages()[0].2 - 250.0).abs() < 1e-9, "the rest is idle");

    // Core counters that leave a CPU out cannot weigh every CPU: equal parts.
    let a = cores_split(vec![(1, vec![0, 1]), (2, vec![2])]);
    let cpus: Vec<f64> = a.cpus().iter().map(|c| c.joules.0).collect();
    assert_eq!(cpus, vec![100.0; 4]);
}

#[test]
fn per_cpu_counters_go_to_their_cpu() {
    let mut a = Attributor::new(vec![PackageSpec {
        package: 0,
        joules_per_count: 1e-9 * 10.0,
        cpus: vec![0, 1],
        counters: vec![(0, Some(0)), (1, Some(1))],
        core_counters: Vec::new(),
    }]);
    for k in 0..2 {
        a.on_reading(k, 0, 0);
    }
    a.on_span(&rec(0, 0, 0, 0, &[]));
    a.on_span(&rec(1, 0, 0, 0, &[]));
    a.advance();
    // 10 W per CPU, counts are ns: cgroup 5 runs 0.3 s on cpu 0 → 3 J.
    a.on_span(&rec(0, 0, 1_000_000_000, 700_000_000, &[(5, 300_000_000)]));
    a.on_span(&rec(1, 0, 1_000_000_000, 1_000_000_000, &[]));
    a.on_reading(0, 1_000_000_000, 1_000_000_000);
    a.on_reading(1, 1_000_000_000, 1_000_000_000);
    a.advance();
    assert!((joules_of(&a, 5) - 3.0).abs() < 1e-9);
    assert!((a.packages()[0].1 - 20.0).abs() < 1e-9);
    assert!((a.packages()[0].2 - 17.0).abs() < 1e-9);
}

#[test]
fn kernel_other_time_is_booked_to_other() {
    let mut a = package_counter(&[0]);
    a.on_reading(0, 0, 0);
    a.on_span(&rec(0, 0, 0, 0, &[]));
    a.advance();
    let mut r = rec(0, 0, 100, 0, &[(4, 60)]);
    r.other_ns = 40;
    a.on_span(&r);
    a.on_reading(0, 100, 100);
    a.advance();
    assert!((joules_of(&a, OTHER_CGROUP) - 40.0).abs() < 1e-9);
    assert!((joules_of(&a, 4) - 60.0).abs() < 1e-9);
}

/// One CPU, 1 J per count: cgroups 4 and 5 ran 60 and 40 of the first 100 ns.
fn cgroups_4_and_5_booked() -> Attributor {
    let mut a = package_counter(&[0]);
    a.on_reading(0, 0, 0);
    a.on_span(&rec(0, 0, 0, 0, &[]));
    a.advance();
    a.on_span(&rec(0, 0, 100, 0, &[(4, 60), (5, 40)]));
    a.on_reading(0, 100, 100);
    a.advance();
    a
}

#[test]
fn folding_keeps_the_books_and_redirects_future_energy() {
    let mut a = cgroups_4_and_5_booked();
    assert!(a.fold(5));
    assert!(!a.fold(5), "already folded");
    assert!(!a.fold(OTHER_CGROUP));
    assert!((joules_of(&a, OTHER_CGROUP) - 40.0).abs() < 1e-9);
    a.on_span(&rec(0, 100, 200, 0, &[(5, 100)]));
    a.on_reading(0, 200, 200);
    a.advance();
    assert!(
        a.cgroups().get(&5).is_none(),
        "folded cgroups do not come back"
    );
    assert!((joules_of(&a, OTHER_CGROUP) - 140.0).abs() < 1e-9);
    let (pkg, idle, cg) = a.ledger()[0];
    assert_eq!(pkg, idle + cg);
}

#[test]
fn a_recreated_cgroup_takes_over_the_dead_ones_joules_and_late_energy() {
    // Cgroup 5 ran, died; 9 is made at its path.
    let mut a = cgroups_4_and_5_booked();
    assert!(a.fold_into(5, 9));
    assert!(!a.fold_into(9, 9), "not into itself");
    assert!((joules_of(&a, 9) - 40.0).abs() < 1e-9);
    // A late span of the dead id and the new one's own time both land in 9.
    a.on_span(&rec(0, 100, 200, 0, &[(5, 30), (9, 70)]));
    a.on_reading(0, 200, 200);
    a.advance();
    assert!(a.cgroups().get(&5).is_none());
    assert!((joules_of(&a, 9) - 140.0).abs() < 1e-9);
    // 9 folds into other later: 5's stragglers follow the chain, and a fold
    // into 9 goes where 9 went.
    assert!(a.fold(9));
    assert!(a.fold_into(4, 9));
    assert!((joules_of(&a, OTHER_CGROUP) - 200.0).abs() < 1e-9);
    a.on_span(&rec(0, 200, 300, 0, &[(5, 100)]));
    a.on_reading(0, 300, 300);
    a.advance();
    assert!(a.cgroups().get(&5).is_none() && a.cgroups().get(&9).is_none());
    assert!((joules_of(&a, OTHER_CGROUP) - 300.0).abs() < 1e-9);
    let (pkg, idle, cg) = a.ledger()[0];
    assert_eq!(pkg, idle + cg, "the books balance");
}

#[test]
fn a_silent_cpu_is_closed_early_and_its_late_record_is_not_counted_twice() {
    let mut a = package_counter(&[0, 1]);
    a.on_reading(0, 0, 0);
    a.on_span(&rec(0, 0, 0, 0, &[]));
    a.on_span(&rec(1, 0, 0, 0, &[]));
    a.advance();
    // cpu 0 busy with cgroup 3 up to 1000; cpu 1 ran cgroup 7 for 100 ns,
    // then went idle and has not reported.
    a.on_span(&rec(0, 0, 1000, 0, &[(3, 1000)]));
    a.on_reading(0, 1000, 2000);
    assert_eq!(a.advance(), 0, "cpu 1 holds the frontier back");
    let table = [CgroupTime {
        cgroup_id: 7,
        ns: 100,
    }];
    let st = IdleState {
        span_start: 0,
        since: 100,
        idle_ns: 0,
        other_ns: 0,
        cgroups: &table,
    };
    assert!(a.close_idle(1, &st, 1000));
    assert!(
        !a.close_idle(
            1,
            &IdleState {
                span_start: 999,
                ..st
            },
            1000
        ),
        "nothing new to close"
    );
    assert_eq!(a.advance(), 1);
    // 1000 J per CPU: cgroup 7 got 100, idle 900.
    assert!((joules_of(&a, 7) - 100.0).abs() < 1e-9);
    assert!((joules_of(&a, 3) - 1000.0).abs() < 1e-9);
    // Still silent: the closure extends as idle.
    assert!(a.close_idle(1, &st, 1500));
    // The late record covers [0, 2000]: cgroup 7 100 ns, idle 1900 ns.
    a.on_span(&rec(1, 0, 2000, 1900, &[(7, 100)]));
    a.on_span(&rec(0, 1000, 2000, 0, &[(3, 1000)]));
    a.on_reading(0, 2000, 4000);
    a.advance();
    assert!(
        (joules_of(&a, 7) - 100.0).abs() < 1e-9,
        "cgroup 7's 100 ns booked once"
    );
    assert!((joules_of(&a, 3) - 2000.0).abs() < 1e-9);
    assert!(
        (a.packages()[0].2 - 1900.0).abs() < 1e-9,
        "idle booked once"
    );
    assert_eq!(a.closure_stats(), (2, 0));
    let (pkg, idle, cg) = a.ledger()[0];
    assert_eq!(pkg, idle + cg);
}

#[test]
fn a_closure_the_record_contradicts_is_counted_and_the_books_still_balance() {
    let mut a = package_counter(&[0]);
    a.on_reading(0, 0, 0);
    a.on_span(&rec(0, 0, 0, 0, &[]));
    a.advance();
    let st = IdleState {
        span_start: 0,
        since: 0,
        idle_ns: 0,
        other_ns: 0,
        cgroups: &[],
    };
    assert!(a.close_idle(0, &st, 1000));
    a.on_reading(0, 1000, 1000);
    a.advance();
    // The record says cgroup 5 ran the whole time (e.g. the timer was throttled).
    a.on_span(&rec(0, 0, 2000, 0, &[(5, 2000)]));
    a.on_reading(0, 2000, 2000);
    a.advance();
    assert_eq!(a.closure_stats(), (1, 1));
    let (pkg, idle, cg) = a.ledger()[0];
    assert_eq!(pkg, idle + cg);
    assert_eq!(pkg, 2000 << FRAC_BITS);
}

proptest! {
    #[test]
    fn split_always_adds_up(total in 0u128..1 << 110, weights in proptest::collection::vec(0u64..1 << 58, 1..20)) {
        let parts = split(total, &weights);
        let sum: u128 = parts.iter().sum();
        if weights.iter().any(|&w| w > 0) {
            prop_assert_eq!(sum, total);
        } else {
            prop_assert_eq!(sum, 0);
        }
        for (p, w) in parts.iter().zip(&weights) {
            if *w == 0 { prop_assert_eq!(*p, 0); }
        }
    }

    /// Whatever the interleaving of spans, readings and advances, at every
    /// step Σ cgroups + idle = package = Σ CPUs exactly, and once every input
    /// reaches the end, the package holds exactly the counter's advance.
    #[test]
    fn books_balance_at_every_step(
        steps in proptest::collection::vec((0u32..3, 1u64..50_000, proptest::collection::vec((1u64..6, 0u64..1000), 0..5), 0u64..1_000_000, any::<bool>()), 1..120),
        per_cpu in any::<bool>(),
        cause in proptest::option::of((0.0f64..20.0, any::<bool>())),
    ) {
        let cpus = [0u32, 1, 2];
        let counters: Vec<(usize, Option<u32>)> = if per_cpu {
            cpus.iter().map(|&c| (c as usize, Some(c))).collect()
        } else {
            vec![(0, None)]
        };
        let mut a = Attributor::new(vec![PackageSpec { package: 0, joules_per_count: 2.5e-10, cpus: cpus.to_vec(), counters: counters.clone(), core_counters: Vec::new() }]);
        // With a declared idle power the package counter is split by cause.
        if let Some((watts, share)) = cause {
            a = a.with_cause(Cause {
                idle_energy: if share { IdleEnergy::Share } else { IdleEnergy::Separate },
                idle_watts: IdleWatts { all: Some(watts), packages: Default::default() },
            });
        }
        let mut end = [0u64; 3];
        let mut clock = 0u64;
        let mut value = vec![0u128; counters.len()];
        let mut seen: std::collections::HashMap<u64, u128> = Default::default();
        let (mut last_pkg, mut last_idle) = (0u128, 0u128);
        for &(k, _) in &counters { a.on_reading(k, 0, 0); }
        for &c in &cpus { a.on_span(&rec(c, 0, 0, 0, &[])); }
        for (cpu, len, cgs, energy, adv) in steps {
            let c = cpu as usize;
            // A span of `len` ns: the cgroups' time (scaled to fit), idle the rest.
            let start = end[c];
            let stop = start + len;
            let want: u64 = cgs.iter().map(|&(_, ns)| ns).sum();
            let mut used = 0;
            let mut list = Vec::new();
            for &(id, ns) in &cgs {
                // Id 5 stands for the kernel's steal slot: booked like any.
                let id = if id == 5 { sampler_common::STEAL_CGROUP } else { id };
                let ns = if want > len { ns * len / want } else { ns };
                used += ns;
                list.push((id, ns));
            }
            a.on_span(&rec(cpu, start, stop, len - used, &list));
            end[c] = stop;
            clock = clock.max(stop);
            let k = if per_cpu { c } else { 0 };
            value[k] += u128::from(energy);
            a.on_reading(counters[k].0, if per_cpu { stop } else { clock }, value[k]);
            if adv { a.advance(); }
            for (pkg, idle, cg) in a.ledger() {
                prop_assert_eq!(pkg, idle + cg);
            }
            // Continuity: nothing goes backwards.
            for (id, t) in a.cgroups() {
                let u = t.units[0];
                let prev = seen.insert(*id, u).unwrap_or(0);
                prop_assert!(u >= prev, "cgroup {} went from {} to {}", id, prev, u);
            }
            let (pkg_now, idle_now, _) = a.ledger()[0];
            prop_assert!(pkg_now >= last_pkg && idle_now >= last_idle);
            last_pkg = pkg_now;
            last_idle = idle_now;
        }
        // Close every input at one time T with a final reading there.
        let t = end.iter().copied().max().unwrap_or(0) + 1;
        for &c in &cpus {
            let ci = c as usize;
            a.on_span(&rec(c, end[ci], t, t - end[ci], &[]));
        }
        for (i, &(k, _)) in counters.iter().enumerate() {
            a.on_reading(k, t, value[i]);
        }
        a.advance();
        let (pkg, idle, cg) = a.ledger()[0];
        prop_assert_eq!(pkg, idle + cg);
        let total: u128 = value.iter().sum();
        prop_assert_eq!(pkg, total << FRAC_BITS, "all energy booked once every input reached T");
        let cpu_sum: f64 = a.cpus().iter().map(|c| c.joules.0).sum();
        let pkg_j = a.packages()[0].1;
        prop_assert!((cpu_sum - pkg_j).abs() <= 1e-9 * pkg_j.max(1e-12));
    }
}

/// One CPU as the kernel sees it: the table not yet flushed and when its
/// current span began.
#[derive(Clone, Default)]
struct KernelCpu {
    end: u64,
    since: u64,
    idle: u64,
    table: Vec<(u64, u64)>,
    /// A closure booked the CPU as idle up to here.
    idle_until: u64,
}

impl KernelCpu {
    /// The CPU's next event: if a closure said it idled, it did.
    fn catch_up(&mut self) {
        if self.idle_until > self.since {
            self.idle += self.idle_until - self.since;
            self.since = self.idle_until;
        }
    }

    fn run(&mut self, id: u64, ns: u64) {
        self.catch_up();
        match self.table.iter_mut().find(|(c, _)| *c == id) {
            Some((_, t)) => *t += ns,
            None => self.table.push((id, ns)),
        }
        self.since += ns;
    }

    fn idle_for(&mut self, ns: u64) {
        self.catch_up();
        self.idle += ns;
        self.since += ns;
    }

    fn flush(&mut self, cpu: u32) -> TickRecord {
        self.catch_up();
        let r = rec(cpu, self.end, self.since, self.idle, &self.table);
        self.end = self.since;
        self.idle = 0;
        self.table.clear();
        r
    }
}

proptest! {
    /// Early closures of silent CPUs never count time twice or lose it: with
    /// closures at random points, every cgroup's booked time equals the time
    /// it ran, and the books balance at every step.
    #[test]
    fn closures_book_every_nanosecond_exactly_once(
        steps in proptest::collection::vec((0u32..2, 0u8..4, 1u64..5, 1u64..20_000), 1..150),
    ) {
        let cpus = [0u32, 1];
        let mut a = Attributor::new(vec![PackageSpec {
            package: 0,
            joules_per_count: 1e-9,
            cpus: cpus.to_vec(),
            counters: vec![(0, Some(0)), (1, Some(1))],
            core_counters: Vec::new(),
        }]);
        let mut k = [KernelCpu::default(), KernelCpu::default()];
        let mut truth: std::collections::HashMap<u64, u128> = Default::default();
        for c in 0..2 {
            a.on_reading(c, 0, 0);
            a.on_span(&rec(c as u32, 0, 0, 0, &[]));
        }
        for (cpu, action, id, ns) in steps {
            let c = cpu as usize;
            match action {
                0 => {
                    k[c].run(id, ns);
                    *truth.entry(id).or_default() += u128::from(ns);
                }
                1 => k[c].idle_for(ns),
                2 => {
                    let r = k[c].flush(cpu);
                    a.on_span(&r);
                }
                _ => {
                    // The daemon closes a silent CPU up to `to`.
                    let kc = &k[c];
                    let to = kc.since.max(kc.idle_until) + ns;
                    let cg: Vec<CgroupTime> = kc.table.iter().map(|&(cgroup_id, ns)| CgroupTime { cgroup_id, ns }).collect();
                    let st = IdleState { span_start: kc.end, since: kc.since, idle_ns: kc.idle, other_ns: 0, cgroups: &cg };
                    if a.close_idle(cpu, &st, to) {
                        k[c].idle_until = to;
                    }
                }
            }
            // Per-CPU counters: one count per ns of each CPU's known time.
            for (i, kc) in k.iter().enumerate() {
                let t = kc.since.max(kc.idle_until);
                a.on_reading(i, t, u128::from(t));
            }
            a.advance();
            let (pkg, idle, cgs) = a.ledger()[0];
            prop_assert_eq!(pkg, idle + cgs);
        }
        // Flush everything up to a common end and book it.
        let t = k.iter().map(|kc| kc.since.max(kc.idle_until)).max().unwrap_or(0) + 1;
        for (i, kc) in k.iter_mut().enumerate() {
            kc.catch_up();
            let gap = t - kc.since;
            kc.idle_for(gap);
            let r = kc.flush(i as u32);
            a.on_span(&r);
            a.on_reading(i, t, u128::from(t));
        }
        a.advance();
        for (id, ns) in &truth {
            let booked = a.cgroups().get(id).map_or(0, |c| c.cpu_ns);
            prop_assert_eq!(booked, *ns, "cgroup {} booked {} ns, ran {} ns", id, booked, ns);
            // Each CPU counts one per ns, so a cgroup's energy is its time,
            // unless some time (idle or busy) was counted twice and diluted it.
            let units = a.cgroups().get(id).map_or(0, |c| c.units[0]);
            let want = *ns << FRAC_BITS;
            prop_assert!(units.abs_diff(want) <= 1 << 12, "cgroup {}: {} units for {} ns", id, units, ns);
        }
        prop_assert_eq!(a.closure_stats().1, 0, "consistent closures are never contradicted");
        let (pkg, idle, cgs) = a.ledger()[0];
        prop_assert_eq!(pkg, idle + cgs);
        prop_assert_eq!(pkg, (2 * u128::from(t)) << FRAC_BITS);
    }
}

/// A CPU that has sent no record at all (its timer throttled from the
/// start) no longer holds the books back: its timeline starts from its
/// kernel state — idle since sampling began while no program has run on
/// it, then its table from its first event — and its late record is not
/// counted twice.
#[test]
fn a_cpu_that_never_reported_is_started_from_its_kernel_state() {
    let mut a = package_counter(&[0, 1]);
    a.on_reading(0, 0, 0);
    a.on_span(&rec(0, 0, 0, 0, &[]));
    a.on_span(&rec(0, 0, 1000, 0, &[(3, 1000)]));
    a.on_reading(0, 1000, 2000);
    assert_eq!(a.advance(), 0, "cpu 1 has not started: the books wait");
    assert_eq!(a.unreported_cpus(), vec![1]);
    // No program has run on cpu 1 yet: idle since sampling began (0).
    let none = IdleState {
        span_start: 0,
        since: 0,
        idle_ns: 0,
        other_ns: 0,
        cgroups: &[],
    };
    assert!(a.start_unreported(1, &none, 0));
    assert!(!a.start_unreported(1, &none, 0), "started once");
    assert!(a.close_idle(1, &none, 1000));
    assert_eq!(a.advance(), 1, "the books start");
    // 2000 J over [0, 1000]: cpu 0's 1000 to cgroup 3, cpu 1's 1000 idle.
    assert!((joules_of(&a, 3) - 1000.0).abs() < 1e-9);
    assert!((a.packages()[0].2 - 1000.0).abs() < 1e-9);
    // Its first event at 1500, then cgroup 7 ran 100 ns (a switch at 1600),
    // still no record: idle up to 1500, then the table, exactly.
    let table = [CgroupTime {
        cgroup_id: 7,
        ns: 100,
    }];
    let st = IdleState {
        span_start: 1500,
        since: 1600,
        idle_ns: 0,
        other_ns: 0,
        cgroups: &table,
    };
    assert!(a.close_idle(1, &st, 1600));
    a.on_span(&rec(0, 1000, 2000, 0, &[(3, 1000)]));
    a.on_reading(0, 2000, 4000);
    // The late record of cpu 1 covers [1500, 2000]: cgroup 7 100, idle 400.
    a.on_span(&rec(1, 1500, 2000, 400, &[(7, 100)]));
    a.advance();
    assert!((joules_of(&a, 7) - 100.0).abs() < 1e-9, "cgroup 7 once");
    assert!((joules_of(&a, 3) - 2000.0).abs() < 1e-9);
    assert!(
        (a.packages()[0].2 - 1900.0).abs() < 1e-9,
        "idle: 1000 + 500 + 400"
    );
    assert_eq!(a.closure_stats().1, 0, "nothing contradicted");
    let (pkg, idle, cg) = a.ledger()[0];
    assert_eq!(pkg, idle + cg);
}

/// A package of two CPUs over one second: cpu 0 runs cgroup 7 throughout,
/// cpu 1 idles; the counter (1 J per count) moves 14 J; 4 W declared idle.
fn by_cause(idle_energy: IdleEnergy) -> Attributor {
    let mut a = package_counter(&[0, 1]).with_cause(Cause {
        idle_energy,
        idle_watts: IdleWatts {
            all: None,
            packages: [(0, 4.0)].into(),
        },
    });
    assert_eq!(
        a.idle_powers(),
        vec![(0, Some((4.0, IdleOrigin::Declared)))]
    );
    a.on_reading(0, 0, 0);
    a.on_span(&rec(0, 0, 0, 0, &[]));
    a.on_span(&rec(1, 0, 0, 0, &[]));
    a.advance();
    a.on_span(&rec(0, 0, 1_000_000_000, 0, &[(7, 1_000_000_000)]));
    a.on_span(&rec(1, 0, 1_000_000_000, 1_000_000_000, &[]));
    a.on_reading(0, 1_000_000_000, 14);
    a.advance();
    a
}

fn cpu_joules(a: &Attributor) -> Vec<f64> {
    a.cpus().iter().map(|c| c.joules.0).collect()
}

#[test]
fn under_separate_the_work_gets_the_dynamic_energy_and_idle_the_static() {
    let a = by_cause(IdleEnergy::Separate);
    assert_eq!(joules_of(&a, 7), 10.0, "14 J − 4 W × 1 s");
    assert_eq!(a.packages()[0], (0, 14.0, 4.0));
    // Each CPU: half the static power, and the dynamic energy of what ran on it.
    assert_eq!(cpu_joules(&a), vec![12.0, 2.0]);
}

#[test]
fn under_share_the_static_energy_follows_the_work_too() {
    let a = by_cause(IdleEnergy::Share);
    assert_eq!(joules_of(&a, 7), 14.0);
    assert_eq!(a.packages()[0], (0, 14.0, 0.0));
    assert_eq!(
        cpu_joules(&a),
        vec![12.0, 2.0],
        "the CPUs' energy is physical"
    );
}

#[test]
fn the_static_part_is_never_more_than_the_interval_drew() {
    // 3 J drawn against 4 W declared: all static, none dynamic.
    let mut a = package_counter(&[0]).with_cause(Cause {
        idle_energy: IdleEnergy::Separate,
        idle_watts: IdleWatts {
            all: Some(4.0),
            packages: Default::default(),
        },
    });
    a.on_reading(0, 0, 0);
    a.on_span(&rec(0, 0, 0, 0, &[]));
    a.advance();
    a.on_span(&rec(0, 0, 1_000_000_000, 0, &[(7, 1_000_000_000)]));
    a.on_reading(0, 1_000_000_000, 3);
    a.advance();
    assert_eq!(joules_of(&a, 7), 0.0);
    assert_eq!(a.packages()[0], (0, 3.0, 3.0));
}

#[test]
fn without_a_known_idle_power_the_split_is_by_time_and_learning_begins() {
    // 1 mJ per count.
    let mut a = Attributor::new(vec![PackageSpec {
        package: 0,
        joules_per_count: 1e-3,
        cpus: vec![0, 1],
        counters: vec![(0, None)],
        core_counters: Vec::new(),
    }]);
    assert_eq!(a.idle_powers(), vec![(0, None)]);
    a.on_reading(0, 0, 0);
    a.on_span(&rec(0, 0, 0, 0, &[]));
    a.on_span(&rec(1, 0, 0, 0, &[]));
    a.advance();
    // 3 s of an idle package at 4 W, booked 100 ms at a time.
    for k in 1..=30u64 {
        let t = k * 100_000_000;
        a.on_span(&rec(0, t - 100_000_000, t, 100_000_000, &[]));
        a.on_span(&rec(1, t - 100_000_000, t, 100_000_000, &[]));
        a.on_reading(0, t, u128::from(400 * k));
        a.advance();
        if k < cause::MIN_SAMPLES as u64 {
            assert_eq!(a.idle_powers()[0].1, None, "after {k} samples");
        }
    }
    let (w, origin) = a.idle_powers()[0].1.expect("learned");
    assert!((w - 4.0).abs() < 1e-6, "{w}");
    assert_eq!(origin, IdleOrigin::Learned { samples: 30 });
    // A per-CPU counter is not split by cause: nothing to learn.
    let per_cpu = Attributor::new(vec![PackageSpec {
        package: 0,
        joules_per_count: 1.0,
        cpus: vec![0],
        counters: vec![(0, Some(0))],
        core_counters: Vec::new(),
    }]);
    assert!(per_cpu.idle_powers().is_empty());
}
