//! `cargo xtask bench-overhead`: the cost of sampling, measured on this machine.
//!
//! For each rate (1, 2 and 10 kHz per CPU) it pins a spinning thread on every
//! CPU, runs `ergon run --source synthetic --period P`, and between two scrapes
//! `seconds` apart reports: ns per run of each kernel program (kernel BPF
//! stats), the daemon's CPU use (all threads' schedstat run time), the delivered
//! cadence per busy CPU, and ring-buffer drops.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
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

pub fn overhead(bin: &Path, seconds: u64, out: Option<&Path>) -> Result<()> {
    let cpus = online_cpus()?;
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = cpus
        .iter()
        .map(|&cpu| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                pin_to(cpu);
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    let mut rows = Vec::new();
    let mut result = Ok(());
    for hz in [1000u64, 2000, 10000] {
        match measure(bin, hz, seconds, cpus.len()) {
            Ok(r) => rows.push(r),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        let _ = s.join();
    }
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
        "\n{} CPUs, every CPU busy, {seconds} s per rate, `ergon run --source synthetic`:\n\n{table}",
        cpus.len()
    );
    if let Some(path) = out {
        std::fs::write(path, &table).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn measure(bin: &Path, hz: u64, seconds: u64, ncpus: usize) -> Result<Row> {
    let period = format!("{}us", 1_000_000 / hz);
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = format!("127.0.0.1:{port}");
    eprintln!("xtask: measuring {hz} Hz per CPU (--period {period}) for {seconds} s");
    let child = Command::new(bin)
        .args([
            "run",
            "--source",
            "synthetic",
            "--period",
            &period,
            "--listen",
            &addr,
        ])
        .env("ERGON_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut guard = Guard(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while scrape(&addr).is_err() {
        if Instant::now() > deadline {
            bail!("ergon did not serve /metrics on {addr} within 20 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let pid = guard.0.id();
    let (a, ta, ca) = (scrape(&addr)?, Instant::now(), cpu_ns(pid)?);
    std::thread::sleep(Duration::from_secs(seconds));
    let (b, tb, cb) = (scrape(&addr)?, Instant::now(), cpu_ns(pid)?);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = guard.0.wait();
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

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

fn scrape(addr: &str) -> Result<BTreeMap<String, f64>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok(body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect())
}

fn online_cpus() -> Result<Vec<u32>> {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/online")?;
    let mut out = Vec::new();
    for part in s.trim().split(',') {
        match part.split_once('-') {
            Some((a, b)) => out.extend(a.parse::<u32>()?..=b.parse::<u32>()?),
            None => out.push(part.parse()?),
        }
    }
    Ok(out)
}

fn pin_to(cpu: u32) {
    // SAFETY: cpu_set_t is plain data; CPU_SET indexes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
