//! `cargo xtask bench-peers`: Ergon and node_exporter's `rapl` collector on
//! the same energy counter, one after the other in one run.
//!
//! A fixture powercap tree with this machine's CPU topology holds one
//! package zone whose `energy_uj` a writer thread advances every 1 ms from a
//! power model (10 W, 30 W for the first half of every second), rewritten in
//! place as sysfs is. Each tool is started on it, scraped every
//! `--every` for `--seconds` (Ergon through `/metrics/batch`, which serves
//! every sample; node_exporter through `/metrics`, which serves the value
//! at the scrape), and measured: distinct energy samples per second, CPU
//! (all threads' schedstat run time, % of one core) and peak resident
//! memory (`VmHWM`). Ergon runs twice: `--source powercap` on the tree,
//! and `--source synthetic` (the kernel path: timer program, ring buffer,
//! attribution). Nothing is asserted: the table goes to docs/benchmarks.md.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::peers;

/// A real package zone's range (2^32 counts of 61 µJ).
const MAX_UJ: u64 = 262_143_328_850;

/// The power model, in µJ per millisecond at millisecond `ms`: 10 W, and
/// 30 W for the first 500 ms of every second.
fn model_uj_per_ms(ms: u64) -> u64 {
    if ms % 1000 < 500 {
        30_000
    } else {
        10_000
    }
}

struct Row {
    tool: &'static str,
    how: String,
    samples_per_s: f64,
    cpu_pct: f64,
    vm_hwm_kib: u64,
}

pub fn bench_peers(root: &Path, bin: &Path, seconds: u64, every: Duration) -> Result<()> {
    let node_exporter =
        peers::ensure(root, "prometheus-node-exporter", "prometheus-node-exporter")?;
    let dir = std::env::temp_dir().join(format!("ergon-bench-peers-{}", std::process::id()));
    let energy = tests::fixture::powercap_tree(&dir, MAX_UJ, 0);
    let writer = tests::Preroll::start((0u64, 0u64), move |(ms, uj)| {
        *uj = (*uj + model_uj_per_ms(*ms)) % MAX_UJ;
        *ms += 1;
        tests::fixture::write_counter(&energy, *uj);
    });
    let sysfs = dir.join("sys");
    let sysfs_arg = sysfs.display().to_string();
    let mut rows = Vec::new();

    let addr = format!("127.0.0.1:{}", tests::free_port());
    eprintln!(
        "xtask: node_exporter --collector.rapl on {}",
        sysfs.display()
    );
    let mut ne = Command::new(&node_exporter)
        .args([
            "--collector.disable-defaults",
            "--collector.rapl",
            &format!("--path.sysfs={sysfs_arg}"),
            &format!("--web.listen-address={addr}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", node_exporter.display()))?;
    let r = wait_for(&addr, "/metrics", &mut ne).and_then(|()| {
        measure(ne.id(), seconds, every, || {
            let body = tests::http_get(&addr, "/metrics").unwrap_or_default();
            Ok(body
                .lines()
                .filter(|l| l.starts_with("node_rapl_") && l.contains("joules_total"))
                .filter_map(|l| l.rsplit_once(' '))
                .map(|(series, v)| (series.to_string(), v.to_string()))
                .collect())
        })
    });
    let _ = ne.kill();
    let _ = ne.wait();
    let (samples, cpu, hwm) = r?;
    rows.push(Row {
        tool: "node_exporter",
        how: "--collector.rapl, powercap fixture".into(),
        samples_per_s: samples,
        cpu_pct: cpu,
        vm_hwm_kib: hwm,
    });

    for (how, args) in [
        (
            "--source powercap, the fixture",
            vec!["--source", "powercap", "--sysfs-root", sysfs_arg.as_str()],
        ),
        (
            "--source synthetic, kernel path",
            vec!["--source", "synthetic"],
        ),
    ] {
        eprintln!("xtask: ergon run {}", args.join(" "));
        let d = tests::Daemon::start_with(bin, &args);
        let consumer = "/metrics/batch?consumer=bench-peers";
        // Registers the consumer: it is served what comes after.
        let _ = tests::http_get(&d.addr, consumer);
        let r = measure(d.child.id(), seconds, every, || {
            let body = tests::http_get(&d.addr, consumer).unwrap_or_default();
            Ok(body
                .lines()
                .filter(|l| l.starts_with("ergon_package_energy_joules_total{"))
                // `name{labels} value timestamp`: a sample is (series, timestamp).
                .filter_map(|l| {
                    let (series, rest) = l.split_once(' ')?;
                    let ts = rest.split_whitespace().nth(1)?;
                    Some((series.to_string(), ts.to_string()))
                })
                .collect())
        });
        let (status, stderr) = d.stop();
        if !status.success() {
            bail!("ergon exited with {status}:\n{stderr}");
        }
        let (samples, cpu, hwm) = r?;
        rows.push(Row {
            tool: "ergon",
            how: how.into(),
            samples_per_s: samples,
            cpu_pct: cpu,
            vm_hwm_kib: hwm,
        });
    }
    writer.stop();
    let _ = std::fs::remove_dir_all(&dir);

    let base = rows
        .first()
        .map_or((1.0, 1.0), |r| (r.samples_per_s, r.cpu_pct));
    println!(
        "\n{} CPUs, one package zone, scraped every {} s for {seconds} s:\n",
        tests::online_cpus().len(),
        every.as_secs_f64()
    );
    println!("| tool | how | energy samples/s | CPU % of one core | VmHWM | samples vs node_exporter | CPU vs node_exporter |");
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.1} | {:.3} | {:.1} MiB | {:.0}× | {:.2}× |",
            r.tool,
            r.how,
            r.samples_per_s,
            r.cpu_pct,
            r.vm_hwm_kib as f64 / 1024.0,
            r.samples_per_s / base.0.max(f64::MIN_POSITIVE),
            r.cpu_pct / base.1.max(f64::MIN_POSITIVE),
        );
    }
    Ok(())
}

/// Waits up to 10 s for `addr` to answer `path`.
fn wait_for(addr: &str, path: &str, child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if tests::http_get(addr, path).is_some() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("the peer exited early ({status})");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing answered http://{addr}{path} within 10 s")
}

/// Scrapes every `every` for `seconds`; returns distinct energy samples per
/// second (`scrape` yields (series, sample identity) pairs: a value for a
/// scrape-time exporter, a timestamp for a batch), the process's CPU in %
/// of one core over the window, and its VmHWM in KiB at the end.
fn measure(
    pid: u32,
    seconds: u64,
    every: Duration,
    mut scrape: impl FnMut() -> Result<Vec<(String, String)>>,
) -> Result<(f64, f64, u64)> {
    let mut seen: HashMap<String, HashSet<String>> = HashMap::new();
    let (t0, c0) = (Instant::now(), crate::bench::cpu_ns(pid)?.all);
    let end = t0 + Duration::from_secs(seconds);
    let mut next = t0;
    while next < end {
        next += every;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        for (series, sample) in scrape()? {
            seen.entry(series).or_default().insert(sample);
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = (crate::bench::cpu_ns(pid)?.all - c0) as f64 * 1e-9 / elapsed * 100.0;
    let samples: usize = seen.values().map(HashSet::len).sum();
    Ok((samples as f64 / elapsed, cpu, vm_hwm_kib(pid)?))
}

/// Peak resident set of a process, from `/proc/PID/status`.
pub(crate) fn vm_hwm_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/PID/status")
}
