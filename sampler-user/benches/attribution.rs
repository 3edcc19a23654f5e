//! The attribution engine: records per second per core, with the frontier
//! advanced as the drain does (every 10 ms of simulated time): split by
//! time, with the batch grid, and by cause (a declared idle power, so the
//! split spans the package's CPUs from the first interval).
//! `cargo bench -p sampler-user --bench attribution`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ergon::attribution::{Attributor, Cause, GridConfig, IdleWatts, PackageSpec};
use sampler_common::TickRecord;

#[path = "common/mod.rs"]
mod common;

const PERIOD: u64 = 500_000;

/// `ticks` timer periods on `cpus` CPUs; each record carries `per_record`
/// cgroups drawn from `cgroups` live ones.
fn records(cpus: u32, ticks: u64, cgroups: u64, per_record: usize) -> Vec<TickRecord> {
    let mut out = Vec::with_capacity((cpus as u64 * ticks) as usize);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let share = PERIOD / (per_record as u64 + 1);
    for t in 1..=ticks {
        for cpu in 0..cpus {
            let ids: Vec<u64> = (0..per_record)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    1000 + seed % cgroups
                })
                .collect();
            out.push(common::tick(cpu, t, PERIOD, &ids, share));
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("attribution");
    for (cpus, cgroups, per_record) in [(2u32, 20u64, 4usize), (128, 1000, 4)] {
        let ticks = 200_000 / u64::from(cpus);
        let recs = records(cpus, ticks, cgroups, per_record);
        let spec = PackageSpec {
            package: 0,
            joules_per_count: 2.0f64.powi(-32),
            cpus: (0..cpus).collect(),
            counters: vec![(0, None)],
            core_counters: Vec::new(),
        };
        g.throughput(Throughput::Elements(recs.len() as u64));
        g.sample_size(10);
        for (grid, by_cause) in [(false, false), (true, false), (false, true)] {
            let name = match (grid, by_cause) {
                (true, _) => format!("{cpus}cpus/{cgroups}cgroups/with-batch-grid"),
                (_, true) => format!("{cpus}cpus/{cgroups}cgroups/by-cause"),
                _ => format!("{cpus}cpus/{cgroups}cgroups"),
            };
            g.bench_function(name, |b| {
                b.iter(|| {
                    let mut a = Attributor::new(vec![spec.clone()]);
                    if by_cause {
                        a = a.with_cause(Cause {
                            idle_watts: IdleWatts {
                                all: Some(20.0),
                                ..IdleWatts::default()
                            },
                            ..Cause::default()
                        });
                    }
                    if grid {
                        // The daemon's defaults: 1 ms package, 100 ms cgroup points.
                        a = a.with_grid(GridConfig {
                            package_res_ns: 1_000_000,
                            cgroup_res_ns: 100_000_000,
                        });
                    }
                    let per_drain = 20 * cpus as usize; // 10 ms of records
                    for (i, r) in recs.iter().enumerate() {
                        a.on_span(black_box(r));
                        if r.cpu == 0 {
                            // The package counter, read by cpu 0 every tick (≈ 50 W).
                            a.on_reading(0, r.ts_ns, u128::from(r.ts_ns) * 107);
                        }
                        if (i + 1) % per_drain == 0 {
                            a.advance();
                            black_box(a.take_points());
                        }
                    }
                    a.advance();
                    a
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
