//! Tests of the grid points: exact totals at wall-clock instants.

use super::tests::rec;
use super::*;

const MS: u64 = 1_000_000;

fn engine(packages: &[(u32, &[u32])], cg_res_ms: u64) -> Attributor {
    let specs = packages
        .iter()
        .enumerate()
        .map(|(i, &(package, cpus))| PackageSpec {
            package,
            joules_per_count: 1e-3,
            cpus: cpus.to_vec(),
            counters: vec![(i, None)],
            core_counters: Vec::new(),
        })
        .collect();
    Attributor::new(specs).with_grid(GridConfig {
        package_res_ns: MS,
        cgroup_res_ns: cg_res_ms * MS,
    })
}

/// One package, one CPU running cgroup 7 without pause, 1 W (one count per
/// ms); records and readings every 500 µs from `t0` to `t1`.
fn run_at_one_watt(a: &mut Attributor, t0: u64, t1: u64, step: u64) {
    let mut t = t0;
    a.on_reading(0, t0, u128::from(t0 / MS));
    a.on_span(&rec(0, t0, t0, 0, &[]));
    while t < t1 {
        let next = (t + step).min(t1);
        a.on_span(&rec(0, t, next, 0, &[(7, next - t)]));
        // counts are whole: read only on whole ms (the interpolation fills in)
        if next.is_multiple_of(MS) {
            a.on_reading(0, next, u128::from(next / MS));
        }
        t = next;
        a.advance();
    }
}

#[test]
fn package_points_fall_on_every_wall_millisecond_with_exact_values() {
    let mut a = engine(&[(0, &[0])], 100);
    // Wall clock = boot + 0.25 ms: instants are whole wall ms.
    a.set_clock_offset(250_000);
    run_at_one_watt(&mut a, 10 * MS, 60 * MS, MS / 2);
    let pts = a.take_points().packages;
    // Frontier starts at boot 10 ms (wall 10.25) and reaches boot 60 ms (wall 60.25).
    let ms: Vec<i64> = pts.iter().map(|p| p.1).collect();
    assert_eq!(
        ms,
        (11..=60).collect::<Vec<i64>>(),
        "one point per wall ms, none missing"
    );
    for &(pkg, t, j) in &pts {
        assert_eq!(pkg, 0);
        // 1 W since boot 10 ms: at wall t ms, boot is t - 0.25 ms.
        let truth = (t as f64 - 0.25) - 10.0;
        assert!(
            (j * 1000.0 - truth).abs() < 1e-9,
            "at {t} ms: {j} J, truth {truth} mJ"
        );
    }
    assert!(a.take_points().packages.is_empty(), "points are taken once");
}

#[test]
fn cgroup_points_are_the_books_at_each_instant() {
    let mut a = engine(&[(0, &[0])], 100);
    run_at_one_watt(&mut a, 50 * MS, 450 * MS, MS / 2);
    let pts = a.take_points().cgroups;
    let at: Vec<(u64, i64)> = pts.iter().map(|p| (p.0, p.1)).collect();
    assert_eq!(at, vec![(7, 100), (7, 200), (7, 300), (7, 400)]);
    for &(_, t, j) in &pts {
        let truth = (t - 50) as f64 / 1000.0;
        assert!((j - truth).abs() < 1e-12, "at {t} ms: {j} J, truth {truth}");
    }
    // The live books went on to 450 ms.
    assert!((joules_of(&a, 7) - 0.4).abs() < 1e-12);
}

fn joules_of(a: &Attributor, id: u64) -> f64 {
    a.cgroups().get(&id).map_or(0.0, |t| a.joules(t))
}

#[test]
fn an_idle_cgroup_is_repeated_only_as_a_heartbeat() {
    let mut a = engine(&[(0, &[0])], 100);
    run_at_one_watt(&mut a, 0, 150 * MS, 10 * MS);
    // Then the CPU idles for 70 s, in 100 ms records.
    let mut t = 150 * MS;
    while t < 70_150 * MS {
        a.on_span(&rec(0, t, t + 100 * MS, 100 * MS, &[]));
        t += 100 * MS;
        a.on_reading(0, t, u128::from(t / MS));
        a.advance();
    }
    let pts = a.take_points().cgroups;
    let at: Vec<i64> = pts.iter().map(|p| p.1).collect();
    assert_eq!(
        at,
        vec![100, 200, 60_200],
        "changes, then one heartbeat after 60 s"
    );
    assert!(
        (pts[2].2 - 0.15).abs() < 1e-12,
        "the heartbeat repeats the total"
    );
}

#[test]
fn with_two_packages_an_instant_waits_for_both_and_sums_them() {
    let mut a = engine(&[(0, &[0]), (1, &[1])], 100);
    for (cpu, c) in [(0u32, 0usize), (1, 1)] {
        a.on_reading(c, 0, 0);
        a.on_span(&rec(cpu, 0, 0, 0, &[]));
    }
    a.advance();
    // Package 0 reaches 250 ms, package 1 only 150 ms; cgroup 7 runs on both, 1 W each.
    a.on_span(&rec(0, 0, 250 * MS, 0, &[(7, 250 * MS)]));
    a.on_reading(0, 250 * MS, 250);
    a.on_span(&rec(1, 0, 150 * MS, 0, &[(7, 150 * MS)]));
    a.on_reading(1, 150 * MS, 150);
    a.advance();
    let pts = a.take_points().cgroups;
    assert_eq!(pts, vec![(7, 100, 0.2)], "200 ms waits for package 1");
    a.on_span(&rec(1, 150 * MS, 300 * MS, 0, &[(7, 150 * MS)]));
    a.on_reading(1, 300 * MS, 300);
    a.advance();
    let pts = a.take_points().cgroups;
    assert_eq!(pts, vec![(7, 200, 0.4)]);
    let pkgs = a.take_points().packages;
    assert!(pkgs.is_empty(), "already taken");
}

#[test]
fn a_folded_cgroup_moves_into_other_without_going_back() {
    let mut a = engine(&[(0, &[0])], 100);
    run_at_one_watt(&mut a, 0, 250 * MS, 10 * MS);
    a.take_points();
    assert!(a.fold(7));
    run_at_one_watt_from(&mut a, 250 * MS, 350 * MS);
    let pts = a.take_points().cgroups;
    assert_eq!(pts.len(), 1, "{pts:?}");
    let (id, t, j) = pts[0];
    assert_eq!((id, t), (OTHER_CGROUP, 300));
    assert!(
        (j - 0.3).abs() < 1e-12,
        "other holds all of cgroup 7's energy: {j}"
    );
}

fn run_at_one_watt_from(a: &mut Attributor, t0: u64, t1: u64) {
    let mut t = t0;
    while t < t1 {
        let next = t + 10 * MS;
        a.on_span(&rec(0, t, next, 0, &[(7, 10 * MS)]));
        a.on_reading(0, next, u128::from(next / MS));
        t = next;
        a.advance();
    }
}

#[test]
fn a_wall_clock_step_never_sends_a_series_back_in_time() {
    let mut a = engine(&[(0, &[0])], 100);
    a.set_clock_offset(0);
    run_at_one_watt(&mut a, 0, 20 * MS, MS / 2);
    let before = a.take_points().packages;
    assert_eq!(before.last().map(|p| p.1), Some(20));
    // The wall clock steps back 2 s: nothing until it passes 20 ms again.
    a.set_clock_offset(-2_000 * MS as i128);
    run_at_one_watt_from_ms(&mut a, 20, 2_030);
    let after = a.take_points().packages;
    let ms: Vec<i64> = after.iter().map(|p| p.1).collect();
    assert!(ms.windows(2).all(|w| w[1] > w[0]), "strictly increasing");
    assert_eq!(
        ms.first(),
        Some(&21),
        "resumes after the last sample sent: {:?}",
        &ms[..3]
    );
    // Then steps forward 5 s: timestamps jump, never repeat.
    a.set_clock_offset(3_000 * MS as i128);
    run_at_one_watt_from_ms(&mut a, 2_030, 2_040);
    let jumped = a.take_points().packages;
    assert_eq!(jumped.first().map(|p| p.1), Some(5_031));
}

/// Continues [`run_at_one_watt`]'s CPU 0 pattern from `from` to `to` ms (boot).
fn run_at_one_watt_from_ms(a: &mut Attributor, from: u64, to: u64) {
    let mut t = from * MS;
    while t < to * MS {
        let next = t + MS / 2;
        a.on_span(&rec(0, t, next, 0, &[(7, MS / 2)]));
        if next.is_multiple_of(MS) {
            a.on_reading(0, next, u128::from(next / MS));
        }
        t = next;
        a.advance();
    }
}
