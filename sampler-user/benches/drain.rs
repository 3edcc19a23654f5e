//! The drain's hot path: decoding a ring-buffer record and applying it to the
//! energy books. `cargo bench -p sampler-user --bench drain`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ergon::{
    decode::decode,
    energy::EnergyBooks,
    source::{
        synthetic::{self, Layout, Synthetic},
        Plan,
    },
    topology::{CpuInfo, Topology},
};
use sampler_common::{CgroupTime, TickRecord, CGROUP_SLOTS, RECORD_TICK};

fn records(cpus: u32, n: usize, cgroups: u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut cg = [CgroupTime::default(); CGROUP_SLOTS];
            for (j, slot) in cg.iter_mut().enumerate().take(cgroups as usize) {
                *slot = CgroupTime {
                    cgroup_id: 1000 + j as u64,
                    ns: 10_000,
                };
            }
            let ts = 1_000_000 + i as u64 * 500_000;
            let r = TickRecord {
                kind: RECORD_TICK,
                cpu: i as u32 % cpus,
                ts_ns: ts,
                span_start_ns: ts - 500_000,
                valid_mask: 1,
                error_mask: 0,
                values: [i as u64 * 500_000, 0, 0, 0, 0],
                idle_ns: 500_000 - u64::from(cgroups) * 10_000,
                other_ns: 0,
                n_cgroups: cgroups,
                _pad: 0,
                cgroups: cg,
            };
            // As the kernel sends it: the header and the slots in use.
            // SAFETY: TickRecord is repr(C) plain data with explicit padding.
            unsafe {
                std::slice::from_raw_parts(
                    (&r as *const TickRecord).cast::<u8>(),
                    TickRecord::wire_len(cgroups as usize),
                )
            }
            .to_vec()
        })
        .collect()
}

fn plan(cpus: u32) -> (Plan, Vec<(u32, u32)>) {
    let topo = Topology {
        cpus: (0..cpus).map(|cpu| CpuInfo { cpu, package: 0 }).collect(),
    };
    let spec = Synthetic::constant(10.0, Layout::PerCpu);
    let cpus = topo.cpus.iter().map(|c| (c.cpu, c.package)).collect();
    (synthetic::plan(&topo, spec, String::new()), cpus)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("drain");
    for (cpus, cgroups) in [(2u32, 4u32), (128, 16)] {
        let recs = records(cpus, 10_000, cgroups);
        let (plan, cpu_list) = plan(cpus);
        g.throughput(Throughput::Elements(recs.len() as u64));
        g.bench_function(format!("decode+apply/{cpus}cpus/{cgroups}cgroups"), |b| {
            b.iter(|| {
                let mut books = EnergyBooks::new(&plan, &cpu_list);
                for r in &recs {
                    let ev = decode(black_box(r)).expect("a valid bench record");
                    black_box(books.apply(&ev));
                }
                books
            })
        });
        // One snapshot (per drain), not per record.
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("snapshot/{cpus}cpus"), |b| {
            let mut books = EnergyBooks::new(&plan, &cpu_list);
            for r in &recs {
                books.apply(&decode(r).expect("a valid bench record"));
            }
            b.iter(|| black_box(books.packages()))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
