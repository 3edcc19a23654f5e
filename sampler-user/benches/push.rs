//! The push path: building + encoding + compressing remote_write requests,
//! and the durable queue's append/commit and peek/acknowledge, plus its
//! bytes on disk per sample. `cargo bench -p sampler-user --bench push`.

use std::{hint::black_box, sync::Arc, time::Duration};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ergon::{
    config::RemoteWrite,
    push::{
        client::Remote,
        proto,
        queue::{descriptor, Queue},
        sender::Sender,
        stats::PushStats,
    },
};

const N: usize = 10_000;

/// One package series at 1 ms and 100 cgroup series at 100 ms, as queued.
fn descriptors() -> Vec<Arc<str>> {
    let mut d: Vec<Arc<str>> = vec![descriptor(
        "ergon_package_energy_joules_total",
        &[("package", "0"), ("domain", "pkg")],
    )
    .into()];
    for c in 0..100 {
        let id = format!("{c:064x}");
        let path = format!("/kubepods.slice/pod{c}/cri-containerd-{id}.scope");
        d.push(
            descriptor(
                "ergon_cgroup_energy_joules_total",
                &[
                    ("cgroup", &path),
                    ("runtime", "containerd"),
                    ("container_id", &id),
                ],
            )
            .into(),
        );
    }
    d
}

fn fill(q: &Queue, d: &[Arc<str>], n: usize, t0: i64) {
    let mut ts = t0;
    let mut i = 0;
    while i < n {
        q.append(&d[0], ts, ts as f64 * 0.01);
        i += 1;
        if ts % 100 == 0 {
            for s in &d[1..] {
                if i < n {
                    q.append(s, ts, ts as f64 * 0.0001);
                    i += 1;
                }
            }
        }
        ts += 1;
    }
}

fn bench(c: &mut Criterion) {
    let d = descriptors();
    let mut g = c.benchmark_group("push");
    g.throughput(Throughput::Elements(N as u64));

    let dir = tempfile::tempdir().expect("tempdir");
    let q = Arc::new(Queue::open(dir.path(), 100_000_000).expect("queue"));
    fill(&q, &d, N, 1_790_000_000_000);
    q.commit(&[]).expect("commit");
    let samples = q.peek(N).expect("peek");
    let rw = RemoteWrite {
        url: "http://127.0.0.1:9/api/v1/write".into(),
        auth: None,
        ca_file: None,
        max_samples: N,
        headers: vec![],
        external_labels: vec![("node".into(), "web-1".into())],
        interval: Duration::from_secs(15),
    };
    let sender = Sender {
        queue: q.clone(),
        remote: Remote::new(&rw).expect("client"),
        stats: Arc::new(PushStats::default()),
        interval: rw.interval,
        max_samples: N,
        external_labels: rw.external_labels.clone(),
    };
    let (req, _) = sender.build(&samples);
    let body = proto::encode(&req).expect("encode");
    eprintln!(
        "push: {N} samples → {} bytes protobuf, {} bytes snappy ({:.2} bytes/sample on the wire)",
        prost::Message::encoded_len(&req),
        body.len(),
        body.len() as f64 / N as f64
    );
    g.bench_function("build_encode_compress_10k", |b| {
        b.iter(|| {
            let (req, _) = sender.build(black_box(&samples));
            black_box(proto::encode(&req).expect("encode").len())
        })
    });

    g.bench_function("queue_append_commit_10k", |b| {
        let mut t0 = 1_800_000_000_000i64;
        b.iter(|| {
            fill(&q, &d, N, t0);
            t0 += 1_000_000;
            black_box(q.commit(&[]).expect("commit"))
        })
    });

    g.bench_function("queue_peek_ack_10k", |b| {
        b.iter_batched(
            || {
                fill(&q, &d, N, 1_810_000_000_000);
                q.commit(&[]).expect("commit");
            },
            |()| {
                let s = q.peek(N).expect("peek");
                let last = s.last().map_or(0, |x| x.seq);
                black_box(q.remove_through(last, &[]).expect("ack"))
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    // Disk bytes per queued sample, with 1,000,000 queued.
    let dir = tempfile::tempdir().expect("tempdir");
    let q = Queue::open(dir.path(), 100_000_000).expect("queue");
    for chunk in 0..100 {
        fill(&q, &d, N, 1_790_000_000_000 + chunk * 10_000_000);
        q.commit(&[]).expect("commit");
    }
    let bytes = std::fs::metadata(q.path()).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "push queue: {} samples in {} bytes on disk ({:.1} bytes/sample)",
        q.len(),
        bytes,
        bytes as f64 / q.len().max(1) as f64
    );
    churn();
}

/// What a container that came and went leaves in the state, and what
/// `--state-retention` gives back: 10,000 cgroup series, each pushed once,
/// acknowledged, and its two totals committed; then all forgotten, and
/// 10,000 new ones.
fn churn() {
    const DAY: i64 = 24 * 3_600_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let q = Queue::open(dir.path(), 100_000_000).expect("queue");
    let size = |q: &Queue| std::fs::metadata(q.path()).map_or(0, |m| m.len());
    let wave = |first: usize, at: i64| {
        let mut totals = Vec::new();
        for c in first..first + 10_000 {
            let id = format!("{c:064x}");
            let path = format!("/kubepods.slice/pod{c}/cri-containerd-{id}.scope");
            let labels = [
                ("cgroup", path.as_str()),
                ("runtime", "containerd"),
                ("container_id", id.as_str()),
            ];
            let d: Arc<str> = descriptor("ergon_cgroup_energy_joules_total", &labels).into();
            q.append(&d, at, 1.0);
            totals.push((
                format!("ergon_cgroup_energy_joules_total{{cgroup=\"{path}\"}}"),
                1.0,
            ));
            totals.push((
                format!("ergon_cgroup_cpu_seconds_total{{cgroup=\"{path}\"}}"),
                0.1,
            ));
        }
        q.commit_at(&totals, at).expect("commit");
        let s = q.peek(20_000).expect("peek");
        let acked: Vec<(u64, i64)> = s.iter().map(|x| (x.series, x.ts)).collect();
        let last = s.last().map_or(0, |x| x.seq);
        q.remove_through(last, &acked).expect("ack");
    };
    let empty = size(&q);
    wave(0, 0);
    let one = size(&q);
    // Four more waves, a week apart, each after the retention forgot the last.
    let mut forgot = (0, 0);
    let mut sizes = Vec::new();
    for w in 1..=4 {
        let p = q.prune(w * 8 * DAY, 7 * DAY).expect("prune");
        forgot = (forgot.0 + p.series, forgot.1 + p.totals);
        wave(w as usize * 10_000, w * 8 * DAY);
        sizes.push(size(&q));
    }
    eprintln!(
        "state churn: 10,000 gone cgroups keep {} bytes on disk ({:.0} bytes each); \
         with --state-retention forgetting them ({} series, {} totals forgotten in all), \
         four more waves of 10,000 leave the file at {:?} bytes",
        one - empty,
        (one - empty) as f64 / 10_000.0,
        forgot.0,
        forgot.1,
        sizes
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
