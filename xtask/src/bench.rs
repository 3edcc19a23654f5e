//! `cargo xtask bench-overhead`: the cost of sampling, measured on this machine.
//! It drives the daemon with the privileged tests' helpers (`tests` crate):
//! `Busy` spinners and `Daemon`.
//!
//! For each rate (1, 2 and 10 kHz per CPU) it pins a spinning thread on every
//! CPU, runs `ergon run --source S --period P --bpf-stats` (S: `--source`, default
//! `synthetic`), and between two scrapes
//! `seconds` apart reports: ns per run of each kernel program (kernel BPF
//! stats), the daemon's CPU use (all threads' schedstat run time) and its
//! userspace poller thread's share, the delivered cadence per busy CPU, and
//! ring-buffer drops.
//!
//! `--source powercap` on a machine without powercap RAPL zones (these VMs)
//! runs on a fixture tree with this machine's topology, whose `energy_uj`
//! is a regular file: it measures the poller's wake-ups and reads, not the
//! MSR read behind a real `energy_uj`.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

struct Row {
    hz: u64,
    timer_ns: f64,
    switch_ns: f64,
    daemon_cpu_pct: f64,
    poller_cpu_pct: f64,
    cadence_hz: f64,
    drops: f64,
}

/// Where the real powercap zones are.
const POWERCAP_ZONE: &str = "/sys/class/powercap/intel-rapl:0";

pub fn overhead(
    bin: &Path,
    source: &str,
    timer: &str,
    seconds: u64,
    out: Option<&Path>,
) -> Result<()> {
    let cpus = tests::online_cpus();
    // The per-run costs come from the kernel's run-time statistics, which
    // the daemon switches on only when asked.
    let mut args = vec![
        "--source".to_string(),
        source.to_string(),
        "--bpf-stats".to_string(),
        "--timer".to_string(),
        timer.to_string(),
    ];
    let mut fixture: Option<(PathBuf, tests::Preroll<u64>)> = None;
    if source == "powercap" && !Path::new(POWERCAP_ZONE).exists() {
        let dir = std::env::temp_dir().join(format!("ergon-bench-powercap-{}", std::process::id()));
        // A real package zone's range (2^32 counts of 61 µJ).
        let energy = tests::fixture::powercap_tree(&dir, 262_143_328_850, 1_000_000);
        // Ergon refuses a zone that stands still: advance it by one 61 µJ
        // count a ms (61 mW) for the whole benchmark.
        let writer = tests::Preroll::start(1_000_000u64, move |v| {
            *v += 61;
            tests::fixture::write_counter(&energy, *v);
        });
        eprintln!(
            "xtask: no powercap RAPL zone here: polling a fixture tree at {} (a regular file, not the MSR behind a real energy_uj)",
            dir.display()
        );
        args.push("--sysfs-root".into());
        args.push(dir.join("sys").display().to_string());
        fixture = Some((dir, writer));
    }
    let spinners = tests::Busy::on(&cpus);
    let mut rows = Vec::new();
    let mut result = Ok(());
    for hz in [1000u64, 2000, 10000] {
        match measure(bin, &args, hz, seconds, cpus.len()) {
            Ok(r) => rows.push(r),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    drop(spinners);
    if let Some((dir, writer)) = fixture {
        writer.stop();
        let _ = std::fs::remove_dir_all(dir);
    }
    result?;
    let mut table = String::from("| rate per CPU | on_timer ns/run | sched_switch ns/run | daemon CPU % (of one CPU) | of which the poller thread | delivered cadence per busy CPU | ring-buffer drops |\n|---|---|---|---|---|---|---|\n");
    for r in &rows {
        // Under --timer bpf the timer run is a callback, which the
        // kernel's run statistics do not count.
        let timer_ns = if r.timer_ns > 0.0 {
            format!("{:.0}", r.timer_ns)
        } else {
            "not counted".to_string()
        };
        table.push_str(&format!(
            "| {} kHz | {} | {:.0} | {:.2} | {:.2} | {:.0} Hz | {} |\n",
            r.hz / 1000,
            timer_ns,
            r.switch_ns,
            r.daemon_cpu_pct,
            r.poller_cpu_pct,
            r.cadence_hz,
            r.drops
        ));
    }
    println!(
        "\n{} CPUs, every CPU busy, {seconds} s per rate, `ergon run --source {source} --timer {timer}`:\n\n{table}",
        cpus.len()
    );
    if let Some(path) = out {
        std::fs::write(path, &table).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn measure(bin: &Path, args: &[String], hz: u64, seconds: u64, ncpus: usize) -> Result<Row> {
    let period = format!("{}us", 1_000_000 / hz);
    eprintln!("xtask: measuring {hz} Hz per CPU (--period {period}) for {seconds} s");
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--period", &period]);
    let daemon = tests::Daemon::start_with(bin, &args);
    std::thread::sleep(Duration::from_secs(1));
    let pid = daemon.child.id();
    let (a, ta, ca) = (daemon.metrics(), Instant::now(), cpu_ns(pid)?);
    std::thread::sleep(Duration::from_secs(seconds));
    let (b, tb, cb) = (daemon.metrics(), Instant::now(), cpu_ns(pid)?);
    let (status, stderr) = daemon.stop();
    if !status.success() {
        bail!("ergon exited with {status} during the measurement:\n{stderr}");
    }
    let d = |k: &str| b.get(k).copied().unwrap_or(0.0) - a.get(k).copied().unwrap_or(0.0);
    let per_run = |p: &str| {
        let runs = d(&format!("ergon_bpf_program_runs_total{{program=\"{p}\"}}"));
        let secs = d(&format!(
            "ergon_bpf_program_run_seconds_total{{program=\"{p}\"}}"
        ));
        if runs > 0.0 {
            secs * 1e9 / runs
        } else {
            0.0
        }
    };
    let elapsed = tb.duration_since(ta).as_secs_f64();
    Ok(Row {
        hz,
        timer_ns: per_run("on_timer"),
        switch_ns: per_run("sched_switch"),
        daemon_cpu_pct: (cb.all - ca.all) as f64 * 1e-9 / elapsed * 100.0,
        poller_cpu_pct: (cb.poller - ca.poller) as f64 * 1e-9 / elapsed * 100.0,
        cadence_hz: d("ergon_records_decoded_total") / elapsed / ncpus as f64,
        drops: d("ergon_ringbuf_dropped_total"),
    })
}

/// On-CPU nanoseconds of a process's threads.
pub(crate) struct CpuNs {
    pub(crate) all: u64,
    /// The userspace sources' poller thread (`ergon-poll`), if any.
    poller: u64,
}

/// On-CPU nanoseconds of every thread of a process (`/proc/PID/task/*/schedstat`,
/// first field): nanosecond resolution, unlike utime/stime's clock ticks.
pub(crate) fn cpu_ns(pid: u32) -> Result<CpuNs> {
    let mut total = CpuNs { all: 0, poller: 0 };
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let dir = task?.path();
        let text = std::fs::read_to_string(dir.join("schedstat")).unwrap_or_default();
        let ns = text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        total.all += ns;
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() == "ergon-poll" {
            total.poller += ns;
        }
    }
    Ok(total)
}
