//! `ergon run` and `ergon check` as a user runs them, against ground truth:
//! the synthetic source declares its wattage, so joules = W × CPUs × seconds.

use std::{process::Command, time::Duration};

use tests::{ergon_bin, online_cpus, require_root, sum_of, Busy, Daemon};

const PKG: &str = "ergon_package_energy_joules_total";
const CPU: &str = "ergon_cpu_energy_joules_total";
/// The energy series are complete up to this time: the exact time reference.
const BOOKS_TS: &str = "ergon_books_timestamp_seconds";

/// Package and per-CPU energy rates between two scrapes `secs` apart, timed by
/// the time up to which the daemon's books are complete.
fn rates(d: &Daemon, secs: u64) -> (f64, f64, Vec<f64>) {
    let a = d.metrics();
    std::thread::sleep(Duration::from_secs(secs));
    let b = d.metrics();
    assert!(a[BOOKS_TS] > 0.0, "the books have started");
    let dt = b[BOOKS_TS] - a[BOOKS_TS];
    // The books trail real time by the slowest CPU's last event (an idle CPU
    // can sleep for a second); the rate over `dt` is exact either way.
    assert!(dt > secs as f64 * 0.5, "the books advanced only {dt} s");
    let pkg = (sum_of(&b, PKG) - sum_of(&a, PKG)) / dt;
    let cpu_sum = (sum_of(&b, CPU) - sum_of(&a, CPU)) / dt;
    let per_cpu = online_cpus()
        .iter()
        .map(|c| {
            let k = format!("{CPU}{{cpu=\"{c}\"}}");
            (b[&k] - a[&k]) / dt
        })
        .collect();
    // Within one scrape, CPUs sum to the package.
    for m in [&a, &b] {
        let (p, c) = (sum_of(m, PKG), sum_of(m, CPU));
        assert!(
            (p - c).abs() <= 1e-6 * p.max(1.0),
            "one scrape: Σcpu {c} != package {p}"
        );
    }
    (pkg, cpu_sum, per_cpu)
}

#[test]
fn synthetic_watts_are_served_within_2_percent_busy() {
    require_root();
    let cpus = online_cpus();
    let _busy = Busy::on(&cpus);
    let d = Daemon::start(&["--source", "synthetic", "--synthetic-watts", "7"]);
    let m = d.metrics();
    assert_eq!(
        m.get("ergon_source_info{source=\"synthetic\",domain=\"pkg\"}"),
        Some(&1.0)
    );
    let (pkg, cpu_sum, per_cpu) = rates(&d, 5);
    let want = 7.0 * cpus.len() as f64;
    println!("package {pkg:.4} W, Σcpu {cpu_sum:.4} W, per cpu {per_cpu:?}, want {want} W");
    assert!(
        (pkg - want).abs() / want < 0.02,
        "package {pkg} W vs {want} W"
    );
    assert!(
        (cpu_sum - pkg).abs() / want < 1e-6,
        "Σcpu {cpu_sum} vs package {pkg}"
    );
    for (c, w) in cpus.iter().zip(per_cpu) {
        assert!((w - 7.0).abs() / 7.0 < 0.02, "cpu {c}: {w} W vs 7 W");
    }
}

#[test]
fn synthetic_watts_hold_on_idle_cpus_too() {
    require_root();
    // No load: timers barely fire on idle CPUs; the daemon reads their
    // counters itself so the package total still tracks W × CPUs × t.
    let d = Daemon::start(&["--source", "synthetic", "--synthetic-watts", "5"]);
    let (pkg, _, _) = rates(&d, 5);
    let want = 5.0 * online_cpus().len() as f64;
    println!("idle: package {pkg:.4} W, want {want} W");
    assert!(
        (pkg - want).abs() / want < 0.02,
        "package {pkg} W vs {want} W"
    );
}

#[test]
fn a_full_ring_buffer_counts_drops_and_loses_no_energy() {
    require_root();
    let cpus = online_cpus();
    let _busy = Busy::on(&cpus);
    // 4 KiB holds ~11 records; draining every 200 ms at 20 kHz per CPU overflows it.
    let d = Daemon::start(&[
        "--source",
        "synthetic",
        "--synthetic-watts",
        "10",
        "--period",
        "50us",
        "--ringbuf-size",
        "4096",
        "--drain-interval",
        "200ms",
    ]);
    let (pkg, _, _) = rates(&d, 4);
    let m = d.metrics();
    let dropped = m["ergon_ringbuf_dropped_total"];
    let decoded = m["ergon_records_decoded_total"];
    println!("dropped {dropped}, decoded {decoded}, package {pkg:.3} W");
    assert!(
        dropped > 0.0,
        "a 4 KiB ring buffer at 20 kHz must overflow, and say so"
    );
    // Counters are cumulative and time tables are kept on a failed reserve,
    // so energy is still exact: dropping records costs resolution, not joules.
    let want = 10.0 * cpus.len() as f64;
    assert!(
        (pkg - want).abs() / want < 0.02,
        "package {pkg} W vs {want} W with drops"
    );
}

#[test]
fn the_daemon_runs_in_process_on_port_0_until_its_shutdown_future() {
    require_root();
    use ergon::{config::RunArgs, daemon, source::SourceKind};
    let settings = RunArgs {
        source: Some(SourceKind::Synthetic),
        ..RunArgs::default()
    }
    .settings_with_env(&|_| None)
    .expect("the defaults with --source synthetic are valid");
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    // Port 0: the kernel picks a free port, nothing races for it.
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address").to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = rt.spawn(daemon::serve(settings, listener, async {
        let _ = stopped.await;
    }));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let scrape = || tests::http_get(&addr, "/metrics").map(|b| tests::parse_metrics(&b));
    let a = loop {
        match scrape() {
            Some(m) if m.get(BOOKS_TS).is_some_and(|&t| t > 0.0) => break m,
            _ => {
                assert!(
                    !daemon.is_finished(),
                    "the daemon stopped before serving: {:?}",
                    rt.block_on(daemon)
                );
                assert!(std::time::Instant::now() < deadline, "no books within 20 s");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    std::thread::sleep(Duration::from_secs(2));
    let b = scrape().expect("a second scrape");
    let (status, _) = tests::http_get_status(&addr, "/health", &[]).expect("GET /health");
    // Ground truth: the synthetic source declares 10 W per CPU.
    let dt = b[BOOKS_TS] - a[BOOKS_TS];
    let pkg = (sum_of(&b, PKG) - sum_of(&a, PKG)) / dt;
    let want = 10.0 * online_cpus().len() as f64;
    println!("in process on {addr}: {pkg:.3} W over {dt:.3} s (want {want} W), /health {status}");
    assert!(
        (pkg - want).abs() / want < 0.02,
        "package {pkg} W vs {want} W"
    );
    assert_eq!(status, 200, "/health of a running daemon");
    // The shutdown future stops it cleanly, and the port is released.
    stop.send(())
        .expect("the daemon is still waiting for its shutdown");
    let result = rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), daemon).await });
    match result {
        Ok(Ok(Ok(()))) => {}
        other => panic!("the daemon did not stop cleanly within 10 s: {other:?}"),
    }
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "{addr} still accepts connections after the shutdown"
    );
}

#[test]
fn sigterm_detaches_and_exits_cleanly() {
    require_root();
    let d = Daemon::start(&["--source", "synthetic"]);
    let pid = d.child.id();
    let (status, stderr) = d.stop();
    assert!(status.success(), "exit status {status}, stderr:\n{stderr}");
    assert!(stderr.contains("SIGTERM: stopping"), "{stderr}");
    assert!(stderr.contains("stopped cleanly"), "{stderr}");
    // No program of ours is left once the process is gone (the kernel frees
    // programs asynchronously, so give it a moment).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .filter(|p| p.name_as_str() == Some("on_timer"))
            .count();
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "on_timer still loaded 5 s after pid {pid} exited (is another ergon running?)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs counted by the kernel for every loaded `on_timer` program (ours:
/// the tests run one daemon at a time).
fn on_timer_runs() -> Vec<u64> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str() == Some("on_timer"))
        .map(|p| p.run_count())
        .collect()
}

#[test]
fn bpf_stats_are_off_unless_asked_for_and_then_count_every_run() {
    require_root();
    // Asked for: the kernel counts the programs' runs and the daemon serves
    // them, at the cadence (2 kHz per CPU at the default 500us). The perf
    // timer: the kernel does not count `--timer bpf`'s callback runs.
    let d = Daemon::start(&["--source", "synthetic", "--bpf-stats", "--timer", "perf"]);
    std::thread::sleep(Duration::from_secs(1));
    let a = d.metrics();
    std::thread::sleep(Duration::from_secs(1));
    let b = d.metrics();
    let kernel = on_timer_runs();
    let (status, stderr) = d.stop();
    assert!(status.success(), "{stderr}");
    let key = "ergon_bpf_program_runs_total{program=\"on_timer\"}";
    let served = b.get(key).copied().unwrap_or(0.0) - a.get(key).copied().unwrap_or(0.0);
    println!("--bpf-stats: {served} on_timer runs served in 1 s, kernel counts {kernel:?}");
    assert!(served > 0.0, "with --bpf-stats, {key} must grow: {b:?}");
    assert!(
        kernel.iter().any(|&k| k as f64 >= b[key]),
        "the kernel's count of our on_timer ({kernel:?}) is at least the served {}",
        b[key]
    );
    assert!(b.contains_key("ergon_bpf_program_run_seconds_total{program=\"sched_switch\"}"));

    // Not asked for (the default): the switch is host-wide, so it stays off
    // once the daemon that held it is gone, and nothing is served.
    let host_wide = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
        .map(|s| s.trim() == "1")
        .unwrap_or(false);
    // The kernel frees programs asynchronously: wait for the last one to go,
    // so the count read below is the new daemon's.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !on_timer_runs().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "on_timer still loaded 5 s after the daemon exited"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let d = Daemon::start(&["--source", "synthetic", "--timer", "perf"]);
    std::thread::sleep(Duration::from_secs(1));
    let m = d.metrics();
    let kernel = on_timer_runs();
    let (status, stderr) = d.stop();
    assert!(status.success(), "{stderr}");
    let served: Vec<_> = m
        .keys()
        .filter(|k| k.starts_with("ergon_bpf_program"))
        .collect();
    assert!(
        served.is_empty(),
        "without --bpf-stats nothing is served: {served:?}"
    );
    assert_eq!(kernel.len(), 1, "one on_timer loaded: {kernel:?}");
    if host_wide {
        println!("kernel.bpf_stats_enabled=1 on this host: someone else counts runs; not asserting the kernel's count");
    } else {
        assert_eq!(
            kernel[0], 0,
            "without --bpf-stats the kernel must count no runs (stats off host-wide)"
        );
    }
}

#[test]
fn a_taken_port_fails_at_once_naming_the_address() {
    require_root();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = holder.local_addr().expect("addr").to_string();
    let out = Command::new(ergon_bin())
        .args(["run", "--source", "synthetic", "--listen", &addr])
        .output()
        .expect("run ergon");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("cannot listen on {addr}")) && err.contains("--listen"),
        "{err}"
    );
}

#[test]
fn bad_flags_env_and_config_are_rejected_with_the_fix() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(ergon_bin())
            .arg("run")
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("run ergon");
        assert!(!out.status.success(), "{args:?} {env:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = run(&["--period", "20us"], &[]);
    assert!(
        e.contains("invalid period `20us`") && e.contains("between 50us and 1s"),
        "{e}"
    );
    let e = run(&[], &[("ERGON_PERIOD", "2s")]);
    assert!(e.contains("invalid period `2s`"), "{e}");
    let e = run(&["--source", "coal"], &[]);
    assert!(e.contains("coal") && e.contains("auto"), "{e}");
    let e = run(&["--model-idle-watts", "9", "--model-max-watts", "3"], &[]);
    assert!(
        e.contains("idle 9 W, max 3 W") && e.contains("--model-idle-watts 1.5"),
        "{e}"
    );
    // Asking for msr where the driver is not loaded names the fix.
    let e = run(&["--source", "msr", "--dev-root", "/nonexistent"], &[]);
    assert!(
        e.contains("/nonexistent/cpu/0/msr") && e.contains("modprobe msr"),
        "{e}"
    );
    let dir = tempfile_dir();
    let cfg = dir.join("ergon.toml");
    std::fs::write(&cfg, "listen = \"nowhere\"\n").expect("write config");
    let e = run(&["--config", cfg.to_str().expect("utf-8 path")], &[]);
    assert!(e.contains("invalid listen `nowhere`"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ergon-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

/// What this machine offers, found with the code `ergon check` uses; the
/// binary must report that and what follows from it, never a literal
/// description of one host. Which case ran is printed.
#[test]
fn check_reports_this_machine_and_exits_zero() {
    use ergon::{
        check,
        source::{self, liveness::Reads, model::Model, rapl, synthetic, Declared, SourceKind},
        sysroot::SysRoot,
        topology::Topology,
    };
    require_root();
    let root = SysRoot::default();
    let declared = Declared {
        synthetic: synthetic::Synthetic::constant(10.0, synthetic::Layout::PerCpu),
        model: Model::default(),
    };
    let probe = Reads::default();
    let topo = Topology::read(&root).expect("topology");
    let pmu = rapl::discover(&root);
    let rapl_plan = source::select(SourceKind::Rapl, &root, &topo, &declared, &probe);
    let case = match (&pmu, &rapl_plan) {
        (Ok(None), _) => "no power PMU",
        (_, Ok(_)) => "a power PMU whose counters move",
        (_, Err(_)) => "a power PMU that is present but dead or unusable",
    };
    println!("this machine has {case}");
    let expected = check::inspect(&root, &declared, &probe);
    let auto = expected.find("auto source").expect("auto line");

    let out = Command::new(ergon_bin())
        .arg("check")
        .output()
        .expect("run ergon check");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(out.status.success(), "ergon check failed here:\n{text}");
    // Root on a kernel with BTF (every machine here): these must be ok.
    for want in [
        "ok    kernel",
        "ok    btf",
        "ok    privileges",
        "ok    programs     on_timer and sched_switch pass the verifier",
        "ergon run can work on this machine.",
    ] {
        assert!(text.contains(want), "missing `{want}`");
    }
    // The ring buffer's headroom for this machine's CPUs at the defaults.
    let (status, ring) = check::ring_buffer(4 << 20, topo.cpus.len(), Duration::from_micros(500));
    let ring_line = text
        .lines()
        .find(|l| l.contains("ring buffer"))
        .expect("a ring buffer line");
    assert!(ring_line.ends_with(&ring), "{ring_line} vs {ring}");
    assert_eq!(
        ring_line.starts_with("ok"),
        status == check::Status::Ok,
        "{ring_line}"
    );
    // The cgroup layout and the source auto picks are what the probe found.
    for item in ["cgroup", "auto source", "attribution", "cpus"] {
        let f = expected.find(item).expect("probed line");
        let tag = if f.status == check::Status::Ok {
            "ok  "
        } else {
            "info"
        };
        let want = format!("{tag}  {item:<12} {}", f.detail);
        assert!(text.contains(&want), "missing `{want}`");
    }
    let picked = auto.detail.split(':').next().unwrap_or_default();
    match case {
        "no power PMU" => {
            assert_ne!(
                picked, "rapl",
                "no PMU, yet auto picked rapl: {}",
                auto.detail
            );
            assert!(
                auto.detail.contains("no perf power PMU at"),
                "{}",
                auto.detail
            );
        }
        "a power PMU whose counters move" => assert_eq!(picked, "rapl", "{}", auto.detail),
        _ => {
            assert_ne!(picked, "rapl", "a dead PMU was picked: {}", auto.detail);
            // Why, in the words of what the probe found: a PMU without
            // energy events, or events whose counters do not move.
            let why = rapl_plan
                .as_ref()
                .err()
                .map(|e| e.why_not())
                .unwrap_or_default();
            assert!(
                auto.detail.contains(&why),
                "auto says why not rapl ({why}): {}",
                auto.detail
            );
        }
    }
    // --source rapl works exactly where the probe found moving counters.
    let out = Command::new(ergon_bin())
        .args(["check", "--source", "rapl"])
        .output()
        .expect("run ergon check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.success(),
        rapl_plan.is_ok(),
        "{case}: ergon check --source rapl:\n{text}"
    );
    let tag = if rapl_plan.is_ok() {
        "ok    --source"
    } else {
        "FAIL  --source"
    };
    assert!(text.contains(tag), "{case}: `{tag}` in:\n{text}");
}

#[test]
fn a_package_counter_without_read_scope_is_detected_and_read_on_its_cpu() {
    require_root();
    let cpus = online_cpus();
    assert!(
        cpus.len() >= 2,
        "this test needs two CPUs to offer a counter across CPUs"
    );
    let _busy = Busy::on(&cpus);
    // One counter for the package, opened on its first CPU and offered to
    // all: the kernel refuses cross-CPU reads of a cpu-clock event, as it does
    // for RAPL before PMU read scope. The daemon must notice and narrow.
    let d = Daemon::start(&[
        "--source",
        "synthetic",
        "--synthetic-layout",
        "package",
        "--synthetic-watts",
        "5",
    ]);
    // A CPU other than the counter's tries to read it whenever it takes the
    // package's read token: wait for the first refusal (and narrowing)
    // rather than assume it happens within a fixed time.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while d.metrics()["ergon_energy_read_errors_total"] == 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no refused cross-CPU read within 10 s with every CPU busy"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Past the narrowing (one drain) and two refreshes of the kernel's
    // statistics (every 250 ms), so every refused read is counted.
    std::thread::sleep(Duration::from_millis(600));
    let errors_before = d.metrics()["ergon_energy_read_errors_total"];
    let (pkg, cpu_sum, _) = rates(&d, 4);
    let errors_after = d.metrics()["ergon_energy_read_errors_total"];
    let want = 5.0 * cpus.len() as f64;
    println!("package {pkg:.4} W (want {want}), read errors {errors_before} -> {errors_after}");
    assert!(
        (pkg - want).abs() / want < 0.02,
        "package {pkg} W vs {want} W"
    );
    assert!((cpu_sum - pkg).abs() / want < 1e-6);
    assert!(
        errors_before > 0.0,
        "the refused cross-CPU reads are counted"
    );
    assert_eq!(
        errors_before, errors_after,
        "after narrowing, no more failed reads"
    );
    let (status, stderr) = d.stop();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("the kernel refuses to read this energy counter from other CPUs"),
        "{stderr}"
    );
    // The kernel program's own aya-log warning reaches the daemon's log.
    assert!(stderr.contains("energy counter read failed"), "{stderr}");
}

/// One reader per package at a time, at most once per RAPL update interval:
/// with one counter per package (`--synthetic-layout package`) and every
/// CPU busy at 2 kHz, the package's counter is read at most ~1 kHz (every
/// CPU takes the package's read token first), and the joules stay exact.
#[test]
fn a_package_counter_is_read_at_most_once_a_millisecond_with_every_cpu_busy() {
    require_root();
    let cpus = online_cpus();
    let _busy = Busy::on(&cpus);
    let d = Daemon::start(&[
        "--source",
        "synthetic",
        "--synthetic-layout",
        "package",
        "--synthetic-watts",
        "5",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let reads = |m: &std::collections::BTreeMap<String, f64>| -> Vec<(String, f64)> {
        m.iter()
            .filter(|(k, _)| k.starts_with("ergon_energy_reads_total{"))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };
    let (a, t0) = (d.metrics(), std::time::Instant::now());
    let (pkg, _, _) = rates(&d, 4);
    let (b, t1) = (d.metrics(), std::time::Instant::now());
    let secs = t1.duration_since(t0).as_secs_f64();
    let (ra, rb) = (reads(&a), reads(&b));
    assert!(
        !rb.is_empty(),
        "ergon_energy_reads_total per package is served"
    );
    for ((k, x), (_, y)) in ra.iter().zip(&rb) {
        let hz = (y - x) / secs;
        println!(
            "{k}: {hz:.0} reads/s with {} CPUs busy at 2 kHz",
            cpus.len()
        );
        assert!(hz <= 1050.0, "{k}: {hz:.0} reads/s, at most ~1 kHz");
        assert!(
            hz >= 200.0,
            "{k}: {hz:.0} reads/s: the package is still read"
        );
    }
    let want = 5.0 * cpus.len() as f64;
    assert!(
        (pkg - want).abs() / want < 0.02,
        "package {pkg} W vs {want} W"
    );
}
