//! The kernel programs, loaded through the library: attachment and cadence.

use std::time::{Duration, Instant};

use ergon::{
    bpf::{LoadOptions, Sampler, Timer},
    config::TimerChoice,
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

fn load(period: Duration, timer: Timer) -> (Sampler, Topology) {
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
            timer,
            // As the daemon loads them: steal and irq time booked apart
            // where this kernel's BTF shows where to read them.
            rq_layout: ergon::kernel_layout::rq_layout(std::path::Path::new(
                ergon::kernel_layout::KERNEL_BTF,
            ))
            .unwrap_or_default(),
        },
    )
    .expect("the kernel programs load and attach (kernel 5.8+ with BTF)");
    (s, topo)
}

/// The silent path where this kernel has it: `ergon check`'s probe
/// (`bpf::timer_path`). None, with the reason printed, on a kernel older
/// than 5.15 (no `bpf_timer` for tp_btf programs); on 5.15 or newer its
/// failure is a defect and fails the test.
fn silent_timer() -> Option<Timer> {
    require_root();
    match ergon::bpf::timer_path(TimerChoice::Bpf) {
        Ok((t, _)) => Some(t),
        Err(e) => {
            let release = aya::util::KernelVersion::current().expect("kernel version");
            assert!(
                release < aya::util::KernelVersion::new(5, 15, 0),
                "--timer bpf does not load on {release:?} (5.15 has bpf_timer): {}",
                ergon::source::chain(&e)
            );
            println!("skipped: kernel {release:?} predates bpf_timer (5.15): {e}");
            None
        }
    }
}

/// Both timer paths this kernel runs: perf always, bpf where it loads.
fn timers() -> Vec<Timer> {
    let mut t = vec![Timer::Perf];
    t.extend(silent_timer());
    t
}

#[test]
fn programs_attach_on_every_online_cpu_and_every_cpu_reports() {
    for timer in timers() {
        programs_attach_and_report(timer);
    }
}

fn programs_attach_and_report(timer: Timer) {
    let (mut s, topo) = load(Duration::from_micros(500), timer);
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
    let programs: &[&str] = match timer {
        Timer::Perf => &["on_timer", "sched_switch"],
        // The kernel keeps 16 characters of a name.
        Timer::Bpf => &["sched_switch_si"],
    };
    for p in programs {
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
    assert_eq!(
        s.kernel_stats().expect("stats")[sampler_common::STAT_TIMER_ERRORS as usize],
        0,
        "{timer:?}: no timer failed to start"
    );
}

#[test]
fn busy_cpu_delivers_at_least_95_percent_of_nominal_rate_at_500us() {
    for timer in timers() {
        busy_cpu_rate(timer);
    }
}

fn busy_cpu_rate(timer: Timer) {
    let (mut s, _) = load(Duration::from_micros(500), timer);
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
    println!(
        "{timer:?}: busy cpu {cpu}: {ticks} ticks in {secs:.3} s = {rate:.0}/s (nominal 2000/s)"
    );
    assert!(
        rate >= 0.95 * 2000.0,
        "{timer:?}: delivered {rate:.0}/s, below 95% of 2000/s"
    );
}

#[test]
fn time_tables_cover_each_cpus_timeline_exactly() {
    for timer in timers() {
        timelines_exact(timer);
    }
}

fn timelines_exact(timer: Timer) {
    let (mut s, _) = load(Duration::from_micros(500), timer);
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
    assert!(
        checked > 100,
        "{timer:?}: only {checked} consecutive records checked"
    );
}

/// Local timer interrupts (`LOC` in /proc/interrupts) per CPU, by CPU number.
fn local_timer_interrupts() -> Vec<u64> {
    let text = std::fs::read_to_string("/proc/interrupts").expect("/proc/interrupts");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("LOC:"))
        .expect("a LOC line in /proc/interrupts (x86)");
    line.split_whitespace()
        .skip(1)
        .map_while(|v| v.parse().ok())
        .collect()
}

/// LOC interrupts per second of each CPU over `window`.
fn interrupt_rates(window: Duration) -> Vec<f64> {
    let a = local_timer_interrupts();
    std::thread::sleep(window);
    let b = local_timer_interrupts();
    a.iter()
        .zip(&b)
        .map(|(a, b)| (b - a) as f64 / window.as_secs_f64())
        .collect()
}

/// The wake-up target, as counts: on an idle machine, each CPU's
/// local timer interrupts per second with the silent path loaded stay
/// within 10% (+10/s) of the same CPU without it (the higher of a window
/// before and one after), once the interrupts that sampled a *busy* CPU
/// are taken out: a background task that runs for a few ms while the
/// window is open is a busy CPU, which the timer must sample (one tick
/// record per expiry, counted from the ring buffer). What is left is what
/// Ergon did to idle CPUs. The perf path on the same machine is measured
/// too and printed: it shows what the count catches (about one interrupt
/// per period per idle CPU where its hrtimer is not throttled).
#[test]
fn the_silent_path_adds_no_interrupts_to_idle_cpus() {
    let Some(timer) = silent_timer() else {
        return;
    };
    let window = Duration::from_secs(4);
    let before = interrupt_rates(window);
    let (with, ticks) = {
        let (mut s, _) = load(Duration::from_micros(500), timer);
        let mut ring = s.take_ringbuf().expect("ring buffer");
        // Past the first switches, which arm each CPU's timer once.
        std::thread::sleep(Duration::from_millis(300));
        while ring.next().is_some() {}
        let r = interrupt_rates(window);
        let mut ticks = vec![0u64; r.len()];
        while let Some(item) = ring.next() {
            let ev = decode(&item).expect("well-formed record");
            if ev.kind == Kind::Tick {
                if let Some(n) = ticks.get_mut(ev.record.cpu as usize) {
                    *n += 1;
                }
            }
        }
        assert_eq!(
            s.kernel_stats().expect("stats")[sampler_common::STAT_TIMER_ERRORS as usize],
            0,
            "no timer failed to start"
        );
        (r, ticks)
    };
    let after = interrupt_rates(window);
    let perf = {
        let _s = load(Duration::from_micros(500), Timer::Perf);
        std::thread::sleep(Duration::from_millis(300));
        interrupt_rates(window)
    };
    for (cpu, w) in with.iter().enumerate() {
        let base = before[cpu].max(after[cpu]);
        let busy = ticks[cpu] as f64 / window.as_secs_f64();
        let idle = (w - busy).max(0.0);
        println!(
            "cpu {cpu}: {base:.1}/s without, {w:.1}/s with --timer bpf ({busy:.1}/s of them sampled a busy CPU), {:.1}/s with --timer perf",
            perf[cpu]
        );
        assert!(
            idle <= base * 1.1 + 10.0,
            "cpu {cpu}: {idle:.1} LOC/s with the silent path (besides {busy:.1}/s that sampled a busy CPU) against {base:.1}/s without it"
        );
    }
}
