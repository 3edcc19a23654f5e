//! One drain's work as a node fills with cgroups: 10, 1,000 and 10,000 live
//! cgroups (10,000 processes do not fit on the machines the daemon is
//! measured on, so the node is simulated). `cargo bench -p sampler-user
//! --bench scale`.
//!
//! The node does what its CPUs can: 2 CPUs at the default 500 µs period,
//! each timer record carrying 5 cgroups, drawn in turn from the live ones,
//! so the records and their cgroup entries per second are the same at every
//! count, and what grows with the count is what the daemon keeps per
//! cgroup: its books, its grid entry, its batch series. A step is one drain
//! (10 ms of records): the records applied to the attribution engine with
//! the batch grid (1 ms package, 100 ms cgroup points), the books advanced,
//! and the points of the instants that closed pushed into a batch store of
//! the default 1,000,000 samples. A 60 s heartbeat point of every cgroup
//! and the store's drops once full are part of the steady state the
//! iterations run into. The ledger's and export's glue around these steps
//! (labels, the push queue) is not in it.

use std::{hint::black_box, time::Duration};

use criterion::{criterion_group, criterion_main, Criterion};
use ergon::{
    attribution::{Attributor, GridConfig, PackageSpec},
    batch::{Family, SeriesKey, Store},
};
use sampler_common::TickRecord;

#[path = "common/mod.rs"]
mod common;

const PERIOD: u64 = 500_000;
const CPUS: u32 = 2;
const PER_RECORD: usize = 5;
/// Ticks per drain: 10 ms.
const TICKS_PER_DRAIN: u64 = 20;

struct Node {
    attribution: Attributor,
    store: Store,
    live: u64,
    next_cgroup: u64,
    tick: u64,
}

impl Node {
    fn new(live: u64) -> Self {
        let spec = PackageSpec {
            package: 0,
            joules_per_count: 2.0f64.powi(-32),
            cpus: (0..CPUS).collect(),
            counters: vec![(0, None)],
            core_counters: Vec::new(),
        };
        let attribution = Attributor::new(vec![spec]).with_grid(GridConfig {
            package_res_ns: 1_000_000,
            cgroup_res_ns: 100_000_000,
        });
        Self {
            attribution,
            store: Store::new(1_000_000, Duration::from_secs(600)),
            live,
            next_cgroup: 0,
            tick: 0,
        }
    }

    fn record(&mut self, cpu: u32) -> TickRecord {
        let share = PERIOD / (PER_RECORD as u64 + 1);
        // An array, not a Vec: this runs inside the measured step.
        let mut ids = [0u64; PER_RECORD];
        for id in &mut ids {
            *id = 1000 + self.next_cgroup;
            self.next_cgroup = (self.next_cgroup + 1) % self.live;
        }
        common::tick(cpu, self.tick, PERIOD, &ids, share)
    }

    /// One drain: 10 ms of records, the books advanced, the points stored.
    fn drain(&mut self) {
        for _ in 0..TICKS_PER_DRAIN {
            self.tick += 1;
            for cpu in 0..CPUS {
                let r = self.record(cpu);
                self.attribution.on_span(black_box(&r));
                if cpu == 0 {
                    // The package counter, read by cpu 0 every tick (≈ 50 W).
                    self.attribution
                        .on_reading(0, r.ts_ns, u128::from(r.ts_ns) * 107);
                }
            }
        }
        self.attribution.advance();
        let points = self.attribution.take_points();
        for (package, ms, j) in points.packages {
            self.store.push(
                &SeriesKey::Package {
                    package,
                    domain: "pkg",
                },
                Family::Package,
                || format!("{{package=\"{package}\",domain=\"pkg\"}}"),
                ms,
                j,
            );
        }
        for (id, ms, j) in points.cgroups {
            self.store.push(
                &SeriesKey::Cgroup(id),
                Family::Cgroup,
                || format!("{{cgroup=\"/c{id}\"}}"),
                ms,
                j,
            );
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("scale");
    g.sample_size(20);
    for live in [10u64, 1_000, 10_000] {
        let mut node = Node::new(live);
        // 2 s: every cgroup has run and has a series.
        for _ in 0..200 {
            node.drain();
        }
        g.bench_function(format!("drain/{live}-live-cgroups"), |b| {
            b.iter(|| node.drain())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
