//! `cargo xtask bench-scale`: the daemon's cost as a node fills with
//! cgroups. For each count N it makes N cgroups under the cgroup2 root
//! (the privileged tests' `Cgroup`), each holding one process that wakes
//! every 50 ms (`perl -e 'select(undef,undef,undef,0.05) while 1'`, moved
//! into its cgroup before it starts; with `--processes P`, P of them spread
//! evenly over the N cgroups, the same load on the CPUs in every row), runs `ergon run --source synthetic`
//! at the defaults, scrapes `/metrics` every 2 s and reports: the daemon's
//! CPU over the window (all threads' schedstat run time, % of one core),
//! VmHWM, the size and median time of a `/metrics` scrape, the size of
//! `/metrics/batch` for a 2 s window (read after the CPU window: a batch
//! consumer's reads are its own cost), and how many of the N cgroups `/metrics` shows (all of
//! them, or the run is void).

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

struct Row {
    cgroups: usize,
    processes: usize,
    shown: usize,
    cpu_pct: f64,
    hwm_kib: u64,
    metrics_bytes: usize,
    scrape_ms: f64,
    batch_bytes: usize,
}

/// Sleeping processes spread over N cgroups; killed and removed on drop.
struct Load {
    procs: Vec<Child>,
    // Dropped after the processes (field order), so the cgroups are empty.
    cgroups: Vec<tests::cgroup::Cgroup>,
}

impl Load {
    fn start(n: usize, processes: usize) -> Result<Load> {
        let mut load = Load {
            procs: Vec::with_capacity(processes),
            cgroups: (0..n)
                .map(|i| tests::cgroup::Cgroup::new(&format!("scale-{i}")))
                .collect(),
        };
        for i in 0..processes {
            let cg = &load.cgroups[i % n];
            // The shell joins the cgroup, then becomes perl: the process
            // runs there from its first instruction.
            let script = format!(
                "echo $$ > {}/cgroup.procs && exec perl -e 'select(undef,undef,undef,0.05) while 1'",
                cg.path.display()
            );
            let child = Command::new("sh")
                .args(["-c", &script])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .context("starting a sleeping perl (Debian: perl-base)")?;
            load.procs.push(child);
        }
        Ok(load)
    }

    /// The label prefix of the load's cgroups.
    fn prefix() -> String {
        format!("/ergon-test-{}-scale-", std::process::id())
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
        }
        for p in &mut self.procs {
            let _ = p.wait();
        }
    }
}

pub fn bench_scale(
    bin: &Path,
    counts: &[usize],
    seconds: u64,
    processes: Option<usize>,
) -> Result<()> {
    let mut rows = Vec::new();
    for &n in counts {
        let procs = processes.unwrap_or(n);
        if n == 0 || procs < n {
            bail!("{n} cgroups need at least one process each (--processes {procs})");
        }
        eprintln!("xtask: {n} live cgroups, {procs} processes, {seconds} s");
        rows.push(measure(bin, n, procs, seconds)?);
    }
    let base = rows.first().map_or(1.0, |r| r.cpu_pct.max(1e-9));
    let mut table = String::from(
        "| live cgroups | processes | shown on /metrics | daemon CPU, % of one core | vs the first | VmHWM | `/metrics` size, scrape time | `/metrics/batch`, 2 s window |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in &rows {
        table.push_str(&format!(
            "| {} | {} | {} | {:.2} | {:.1}× | {:.1} MiB | {} KiB, {:.1} ms | {} KiB |\n",
            r.cgroups,
            r.processes,
            r.shown,
            r.cpu_pct,
            r.cpu_pct / base,
            r.hwm_kib as f64 / 1024.0,
            r.metrics_bytes / 1024,
            r.scrape_ms,
            r.batch_bytes / 1024,
        ));
    }
    println!(
        "\n`ergon run --source synthetic`, defaults, {} CPUs, each process waking every 50 ms, {seconds} s per row:\n\n{table}",
        tests::online_cpus().len()
    );
    Ok(())
}

fn measure(bin: &Path, n: usize, processes: usize, seconds: u64) -> Result<Row> {
    let load = Load::start(n, processes)?;
    let daemon = tests::Daemon::start_with(bin, &["--source", "synthetic"]);
    let pid = daemon.child.id();
    // Every cgroup seen and named before the window opens.
    let prefix = Load::prefix();
    let shown = |body: &str| {
        body.lines()
            .filter(|l| l.starts_with("ergon_cgroup_energy_joules_total{"))
            .filter(|l| l.contains(&prefix))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = tests::http_get(&daemon.addr, "/metrics").unwrap_or_default();
        if shown(&body) >= n {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "after 30 s /metrics shows {} of the {n} cgroups",
                shown(&body)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let c0 = crate::bench::cpu_ns(pid)?.all;
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(seconds);
    let (mut scrape_ms, mut metrics_bytes, mut seen) = (Vec::new(), 0, 0);
    let mut next = t0;
    while next + Duration::from_secs(2) <= end {
        next += Duration::from_secs(2);
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let t = Instant::now();
        let body = tests::http_get(&daemon.addr, "/metrics").context("GET /metrics")?;
        scrape_ms.push(t.elapsed().as_secs_f64() * 1e3);
        metrics_bytes = body.len();
        seen = shown(&body);
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu_pct = (crate::bench::cpu_ns(pid)?.all - c0) as f64 * 1e-9 / elapsed * 100.0;
    let hwm_kib = crate::bench_peers::vm_hwm_kib(pid)?;
    // After the CPU window (a batch consumer's reads are its own cost): the
    // second of two reads 2 s apart is a 2 s window.
    let batch = "/metrics/batch?consumer=bench-scale";
    tests::http_get(&daemon.addr, batch).context("GET /metrics/batch")?;
    std::thread::sleep(Duration::from_secs(2));
    let batch_bytes = tests::http_get(&daemon.addr, batch)
        .context("GET /metrics/batch")?
        .len();
    let (status, stderr) = daemon.stop();
    drop(load);
    if !status.success() {
        bail!("ergon exited with {status} during the measurement:\n{stderr}");
    }
    scrape_ms.sort_by(f64::total_cmp);
    Ok(Row {
        cgroups: n,
        processes,
        shown: seen,
        cpu_pct,
        hwm_kib,
        metrics_bytes,
        scrape_ms: scrape_ms.get(scrape_ms.len() / 2).copied().unwrap_or(0.0),
        batch_bytes,
    })
}
