//! `cargo xtask bench-overhead`: the cost of sampling, measured on this machine.
//! It drives the daemon with the privileged tests' helpers (`tests` crate):
//! `Busy` spinners and `Daemon`.
//!
//! For each rate (1, 2 and 10 kHz per CPU) it pins a spinning thread on every
//! CPU, runs `ergon run --source S --period P` (S: `--source`, default
//! `synthetic`), and between two scrapes
//! `seconds` apart reports: ns per run of each kernel program (kernel BPF
//! stats), the daemon's CPU use (all threads' schedstat run time), the delivered
//! cadence per busy CPU, and ring-buffer drops.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

struct Row {
    hz: u64,
    timer_ns: f64,
    switch_ns: f64,
    daemon_cpu_pct: f64,
    cadence_hz: f64,
    drops: f64,
}

pub fn overhead(bin: &Path, source: &str, seconds: u64, out: Option<&Path>) -> Result<()> {
    let cpus = tests::online_cpus();
    let spinners = tests::Busy::on(&cpus);
    let mut rows = Vec::new();
    let mut result = Ok(());
    for hz in [1000u64, 2000, 10000] {
        match measure(bin, source, hz, seconds, cpus.len()) {
            Ok(r) => rows.push(r),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    drop(spinners);
    result?;
    let mut table = String::from("| rate per CPU | on_timer ns/run | sched_switch ns/run | daemon CPU % (of one CPU) | delivered cadence per busy CPU | ring-buffer drops |\n|---|---|---|---|---|---|\n");
    for r in &rows {
        table.push_str(&format!(
            "| {} kHz | {:.0} | {:.0} | {:.2} | {:.0} Hz | {} |\n",
            r.hz / 1000,
            r.timer_ns,
            r.switch_ns,
            r.daemon_cpu_pct,
            r.cadence_hz,
            r.drops
        ));
    }
    println!(
        "\n{} CPUs, every CPU busy, {seconds} s per rate, `ergon run --source {source}`:\n\n{table}",
        cpus.len()
    );
    if let Some(path) = out {
        std::fs::write(path, &table).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn measure(bin: &Path, source: &str, hz: u64, seconds: u64, ncpus: usize) -> Result<Row> {
    let period = format!("{}us", 1_000_000 / hz);
    eprintln!("xtask: measuring {hz} Hz per CPU (--period {period}) for {seconds} s");
    let daemon = tests::Daemon::start_with(bin, &["--source", source, "--period", &period]);
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
        daemon_cpu_pct: (cb - ca) as f64 * 1e-9 / elapsed * 100.0,
        cadence_hz: d("ergon_records_decoded_total") / elapsed / ncpus as f64,
        drops: d("ergon_ringbuf_dropped_total"),
    })
}

/// On-CPU nanoseconds of every thread of a process (`/proc/PID/task/*/schedstat`,
/// first field): nanosecond resolution, unlike utime/stime's clock ticks.
fn cpu_ns(pid: u32) -> Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        total += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}
