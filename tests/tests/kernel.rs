//! The kernel programs, loaded through the library: attachment and cadence.

use std::time::{Duration, Instant};

use ergon::{
    bpf::{LoadOptions, Sampler, Timer},
    decode::{decode, Kind},
    source::{
        self,
        model::Model,
        synthetic::{Layout, Synthetic},
        Declared, SourceKind,
    },
    sysroot::SysRoot,
    topology::Topology,
};
use tests::{online_cpus, require_root, Busy};

fn load(period: Duration) -> (Sampler, Topology) {
    require_root();
    let root = SysRoot::default();
    let topo = Topology::read(&root).expect("topology");
    let plan = source::select(
        SourceKind::Synthetic,
        &root,
        &topo,
        &Declared {
            synthetic: Synthetic::constant(10.0, Layout::PerCpu),
            model: Model::default(),
        },
        &source::liveness::Reads::default(),
    )
    .expect("synthetic plan");
    let s = Sampler::load(
        &plan,
        &topo,
        &LoadOptions {
            period_ns: period.as_nanos() as u64,
            ringbuf_bytes: 16 << 20,
            bpf_stats: false,
            synthetic: None,
            timer: Timer::Perf,
        },
    )
    .expect("the kernel programs load and attach (kernel 5.8+ with BTF)");
    (s, topo)
}

#[test]
fn programs_attach_on_every_online_cpu_and_every_cpu_reports() {
    let (mut s, topo) = load(Duration::from_micros(500));
    let online = online_cpus();
    assert_eq!(
        s.attached_cpus, online,
        "the timer is attached on every online CPU"
    );
    assert_eq!(topo.cpus.len(), online.len());
    // Both programs are in the kernel under their names.
    let names: Vec<String> = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|p| p.name_as_str().map(str::to_string))
        .collect();
    for p in ["on_timer", "sched_switch"] {
        assert!(names.iter().any(|n| n == p), "{p} not loaded: {names:?}");
    }
    let mut ring = s.take_ringbuf().expect("ring buffer");
    let busy = Busy::on(&online);
    std::thread::sleep(Duration::from_millis(500));
    drop(busy);
    let mut seen = vec![0u32; online.iter().max().map_or(1, |m| *m as usize + 1)];
    let mut readings = 0;
    while let Some(item) = ring.next() {
        let ev = decode(&item).expect("well-formed record");
        seen[ev.record.cpu as usize] += 1;
        readings += ev.readings().count();
    }
    for &cpu in &online {
        assert!(
            seen[cpu as usize] > 100,
            "cpu {cpu} sent only {} records in 0.5 s busy",
            seen[cpu as usize]
        );
    }
    assert!(readings > 0, "records carry counter readings");
    let stats = s.program_stats();
    assert!(
        stats.iter().all(|p| p.run_count > 0),
        "BPF run stats enabled and counting: {stats:?}"
    );
}

#[test]
fn busy_cpu_delivers_at_least_95_percent_of_nominal_rate_at_500us() {
    let (mut s, _) = load(Duration::from_micros(500));
    let mut ring = s.take_ringbuf().expect("ring buffer");
    let cpu = *online_cpus().last().expect("a cpu");
    let busy = Busy::on(&[cpu]);
    std::thread::sleep(Duration::from_millis(200));
    while ring.next().is_some() {}
    let mut first = None;
    let mut last = 0u64;
    let mut ticks = 0u64;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        while let Some(item) = ring.next() {
            let ev = decode(&item).expect("well-formed record");
            if ev.record.cpu == cpu && ev.kind == Kind::Tick {
                first.get_or_insert(ev.record.ts_ns);
                last = ev.record.ts_ns;
                ticks += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(busy);
    let first = first.expect("records from the busy CPU");
    let secs = (last - first) as f64 * 1e-9;
    let rate = (ticks - 1) as f64 / secs;
    println!("busy cpu {cpu}: {ticks} ticks in {secs:.3} s = {rate:.0}/s (nominal 2000/s)");
    assert!(
        rate >= 0.95 * 2000.0,
        "delivered {rate:.0}/s, below 95% of 2000/s"
    );
}

#[test]
fn time_tables_cover_each_cpus_timeline_exactly() {
    let (mut s, _) = load(Duration::from_micros(500));
    let mut ring = s.take_ringbuf().expect("ring buffer");
    let online = online_cpus();
    let busy = Busy::on(&online);
    std::thread::sleep(Duration::from_millis(300));
    drop(busy);
    // Records of one CPU chain without gaps or overlap: each span starts where
    // the previous ended, and its parts add up to its length.
    let mut last_end: std::collections::HashMap<u32, u64> = Default::default();
    let mut checked = 0;
    while let Some(item) = ring.next() {
        let ev = decode(&item).expect("well-formed record");
        let r = ev.record;
        let span = r.ts_ns - r.span_start_ns;
        assert_eq!(
            ev.busy_ns() + r.idle_ns,
            span,
            "cpu {} parts != span",
            r.cpu
        );
        if let Some(prev) = last_end.insert(r.cpu, r.ts_ns) {
            assert_eq!(
                r.span_start_ns, prev,
                "cpu {}: span does not start where the last ended",
                r.cpu
            );
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} consecutive records checked");
}
