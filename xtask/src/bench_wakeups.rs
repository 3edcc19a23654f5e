//! `cargo xtask bench-wakeups`: what Ergon does to an idle machine. For each
//! case — no Ergon, `ergon run --timer bpf`, `ergon run --timer perf` (both
//! `--source synthetic` at the defaults) — it counts each CPU's local timer
//! interrupts (`LOC` in /proc/interrupts) over `seconds` with nothing else
//! started, and the daemon's CPU (all threads' schedstat). The no-Ergon
//! window is taken before and after the two runs; the table shows both.

use std::{path::Path, time::Duration};

use anyhow::{bail, Context, Result};

/// Local timer interrupts so far, per CPU.
fn local_timer_interrupts() -> Result<Vec<u64>> {
    let text = std::fs::read_to_string("/proc/interrupts").context("reading /proc/interrupts")?;
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("LOC:"))
        .context("no LOC line in /proc/interrupts (x86 only)")?;
    Ok(line
        .split_whitespace()
        .skip(1)
        .map_while(|v| v.parse().ok())
        .collect())
}

/// LOC per second per CPU over `window`, and the on-CPU ns of `pid` meanwhile.
fn window(window: Duration, pid: Option<u32>) -> Result<(Vec<f64>, f64)> {
    let cpu0 = pid.map(crate::bench::cpu_ns).transpose()?;
    let a = local_timer_interrupts()?;
    std::thread::sleep(window);
    let b = local_timer_interrupts()?;
    let cpu1 = pid.map(crate::bench::cpu_ns).transpose()?;
    let rates = a
        .iter()
        .zip(&b)
        .map(|(a, b)| (b - a) as f64 / window.as_secs_f64())
        .collect();
    let pct = match (cpu0, cpu1) {
        (Some(a), Some(b)) => (b.all - a.all) as f64 * 1e-9 / window.as_secs_f64() * 100.0,
        _ => 0.0,
    };
    Ok((rates, pct))
}

pub fn bench_wakeups(bin: &Path, seconds: u64) -> Result<()> {
    let w = Duration::from_secs(seconds);
    let mut rows: Vec<(String, Vec<f64>, Option<f64>)> = Vec::new();
    eprintln!("xtask: {seconds} s without ergon");
    let (before, _) = window(w, None)?;
    rows.push(("without ergon (before)".into(), before, None));
    for timer in ["bpf", "perf"] {
        eprintln!("xtask: {seconds} s with ergon run --timer {timer}");
        let daemon = tests::Daemon::start_with(bin, &["--source", "synthetic", "--timer", timer]);
        // Past the start-up (the cgroup walk, the first switches).
        std::thread::sleep(Duration::from_secs(2));
        let (rates, pct) = window(w, Some(daemon.child.id()))?;
        let (status, stderr) = daemon.stop();
        if !status.success() {
            bail!("ergon exited with {status} during the measurement:\n{stderr}");
        }
        // The start-up line of the timer (`bpf::timer_path`'s reason).
        let said = match timer {
            "bpf" => "idle CPUs get no wake-ups",
            _ => "--timer perf:",
        };
        if !stderr.contains(said) {
            bail!("ergon did not run --timer {timer}:\n{stderr}");
        }
        rows.push((format!("`--timer {timer}`"), rates, Some(pct)));
    }
    eprintln!("xtask: {seconds} s without ergon");
    let (after, _) = window(w, None)?;
    rows.push(("without ergon (after)".into(), after, None));
    let ncpus = rows[0].1.len();
    let mut table = String::from("| case |");
    for c in 0..ncpus {
        table.push_str(&format!(" CPU {c} LOC/s |"));
    }
    table.push_str(" daemon CPU % |\n|---|");
    for _ in 0..=ncpus {
        table.push_str("---|");
    }
    table.push('\n');
    for (name, rates, pct) in &rows {
        table.push_str(&format!("| {name} |"));
        for r in rates {
            table.push_str(&format!(" {r:.1} |"));
        }
        match pct {
            Some(p) => table.push_str(&format!(" {p:.2} |\n")),
            None => table.push_str(" |\n"),
        }
    }
    println!(
        "\n{ncpus} CPUs, idle, {seconds} s per case, `ergon run --source synthetic` at the defaults:\n\n{table}"
    );
    Ok(())
}
