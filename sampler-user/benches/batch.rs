//! The batch path: encoding timestamped lines, and serving 100,000
//! buffered samples to a consumer (lease + encode).
//! `cargo bench -p sampler-user --bench batch`.

use std::{
    hint::black_box,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ergon::batch::{
    encode::{encode, render_labels, Format},
    Family, SeriesKey, Store,
};

const SAMPLES: usize = 100_000;

/// 100,000 samples as a 2-package node holds them after ~45 s at the
/// defaults: 1 ms package points and 100 ms points of 100 cgroups.
fn store() -> Store {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut s = Store::new(SAMPLES, Duration::from_secs(600));
    let start = now - 60_000;
    let mut ts = start;
    let mut j = 0.0;
    while s.len() < SAMPLES {
        for package in 0..2u32 {
            let key = SeriesKey::Package {
                package,
                domain: "pkg",
            };
            let p = package.to_string();
            s.push(
                &key,
                Family::Package,
                || render_labels(&[("package", &p), ("domain", "pkg")]),
                ts,
                j,
            );
        }
        if (ts - start) % 100 == 0 {
            for c in 0..100u64 {
                let path = format!("/kubepods.slice/pod{c}/cri-containerd-{c:064x}.scope");
                s.push(
                    &SeriesKey::Cgroup(c),
                    Family::Cgroup,
                    || {
                        render_labels(&[
                            ("cgroup", &path),
                            ("unit", ""),
                            ("runtime", "containerd"),
                            ("container_id", &format!("{c:064x}")),
                            ("pod_uid", "7d3e5f0a-1b2c-4d5e-8f90-a1b2c3d4e5f6"),
                        ])
                    },
                    ts,
                    j * 0.01,
                );
            }
        }
        ts += 1;
        j += 0.0123456789;
    }
    s
}

fn bench(c: &mut Criterion) {
    let mut s = store();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let lease = s
        .lease("bench", true, now_ms, Instant::now())
        .expect("lease");
    assert_eq!(lease.samples(), SAMPLES);
    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Elements(SAMPLES as u64));
    for (name, format) in [
        ("encode_text", Format::Text),
        ("encode_openmetrics", Format::OpenMetrics),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| black_box(encode(black_box(&lease), format, None).body.len()))
        });
    }
    // A consumer that has everything pending (never commits): lease + encode.
    g.bench_function("serve_100k", |b| {
        b.iter(|| {
            let l = s
                .lease("bench", true, now_ms, Instant::now())
                .expect("lease");
            black_box(encode(&l, Format::Text, None).body.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
