//! `ergon measure -- CMD [ARGS…]`: `perf stat` for energy. Runs the command
//! in a fresh cgroup with the sampler attached, and on exit reports the
//! package's and the command's joules, its share, and average and peak
//! power; optionally as JSON, as a 1 ms CSV, and as an SVG plot.

use std::{
    ffi::CString,
    os::unix::{ffi::OsStrExt, process::CommandExt},
    path::{Path, PathBuf},
    process::ExitStatus,
    time::{Duration, Instant},
};

use clap::Args;
use serde::Serialize;
use tokio::signal::unix::SignalKind;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    batch::{self, Family},
    cgroups,
    config::RunArgs,
    pipeline::{self, Extras, PipelineError},
    source::SourceError,
    topology::{Topology, TopologyError},
    units::now_unix_ms,
};

/// SIGINT and SIGTERM, registered before anything is loaded.
struct Signals {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

/// Power is reported over windows of this many ms for the peak.
pub const PEAK_WINDOW_MS: i64 = 10;

#[derive(Args, Clone, Debug)]
pub struct MeasureArgs {
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,

    /// Write the command's and the package's power at 1 ms resolution to this CSV file.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,

    /// Draw both power series over time into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    /// Also record this run into the state directory of a running `ergon
    /// run` (its --state-dir); the daemon serves every recorded job as
    /// `ergon_job_energy_joules_total{job=NAME}` and `ergon_job_runs_total{job=NAME}`.
    #[arg(long, value_name = "STATE_DIR", requires = "job")]
    pub record_to: Option<PathBuf>,

    /// The job's name for --record-to (the `job` label).
    #[arg(long, value_name = "NAME", requires = "record_to")]
    pub job: Option<String>,

    #[command(flatten)]
    pub run: RunArgs,

    /// The command to measure, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Pipeline(#[from] Box<PipelineError>),
    #[error("ergon measure needs a cgroup v2 hierarchy (at --cgroup-root or its unified/ child) to give the command its own cgroup")]
    NoCgroup2,
    #[error("cannot create the command's cgroup {path}: {source}; run as root")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Plot(#[from] crate::measure_plot::PlotError),
    #[error(transparent)]
    Job(#[from] crate::jobs::JobError),
    #[error("the sampler's books did not start within {waited:?} ({cpus}); see `ergon check`")]
    NoData {
        waited: Duration,
        /// Which CPUs have reported, for the reader.
        cpus: String,
    },
    #[error("the books cover only {covered:.3} s of the command's {window:.3} s ({missing_pct:.1}% missing: the sampler fell behind); the result above is partial")]
    Partial {
        covered: f64,
        window: f64,
        missing_pct: f64,
    },
}

/// How long `measure` waits for the books to start before running the
/// command, and for them to pass its end afterwards. The books wait for
/// every CPU; a CPU whose records lag is closed from its kernel state after
/// 100 ms, so seconds here are a margin for a loaded machine, not the norm.
const BOOKS_WAIT: Duration = Duration::from_secs(10);

/// A result missing more of the command's window than this is an error.
const MAX_MISSING: f64 = 0.01;

/// How much of `[start, end]` (ms) a cumulative series covers: its points
/// span `[first, last]`.
fn missing_ms(points: &[(i64, f64)], start: i64, end: i64) -> i64 {
    match (points.first(), points.last()) {
        (Some(&(first, _)), Some(&(last, _))) => {
            ((first - start).max(0) + (end - last).max(0)).min(end - start)
        }
        _ => end - start,
    }
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
pub struct Report {
    pub command: Vec<String>,
    pub source: &'static str,
    pub elapsed_seconds: f64,
    pub package_joules: f64,
    pub command_joules: f64,
    /// command_joules / package_joules.
    pub command_share: f64,
    /// command_joules / elapsed_seconds.
    pub average_watts: f64,
    /// Highest power of the command over any 10 ms window.
    pub peak_watts: f64,
    /// The command's exit code (128 + signal if it was killed).
    pub exit_code: i32,
    /// CPU time of the command's cgroup (its `cpu.stat`), all processes.
    pub command_cpu_seconds: f64,
    pub cgroup: String,
    /// Seconds of the command's window the books do not cover (0 unless
    /// the sampler fell behind; above 1% of the window `measure` exits 1).
    pub window_missing_seconds: f64,
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Value of a cumulative series at `t` ms: the last point at or before it.
fn at(points: &[(i64, f64)], t: i64) -> f64 {
    let i = points.partition_point(|p| p.0 <= t);
    if i == 0 {
        points.first().map_or(0.0, |p| p.1.min(0.0))
    } else {
        points[i - 1].1
    }
}

/// Power in W per 1 ms step over `[from, to)` from a cumulative series.
pub fn power_per_ms(points: &[(i64, f64)], from: i64, to: i64) -> Vec<f64> {
    (from..to)
        .map(|t| ((at(points, t + 1) - at(points, t)) * 1000.0).max(0.0))
        .collect()
}

/// Highest average over any `window` consecutive entries.
pub fn peak(power: &[f64], window: usize) -> f64 {
    if power.is_empty() {
        return 0.0;
    }
    let w = window.clamp(1, power.len());
    let mut sum: f64 = power[..w].iter().sum();
    let mut best = sum;
    for i in w..power.len() {
        sum += power[i] - power[i - w];
        best = best.max(sum);
    }
    best / w as f64
}

pub async fn run(args: MeasureArgs) -> Result<i32, MeasureError> {
    // Catch Ctrl-C and SIGTERM from the start: one that arrives while the
    // sampler loads is kept and forwarded as soon as the command runs, so
    // the cgroup is still cleaned up and a result printed.
    let signals = Signals {
        int: tokio::signal::unix::signal(SignalKind::interrupt()).ok(),
        term: tokio::signal::unix::signal(SignalKind::terminate()).ok(),
    };
    let mut settings = args.run.settings()?;
    // A wrong --record-to or --job fails before the command runs.
    if let (Some(dir), Some(job)) = (&args.record_to, &args.job) {
        crate::jobs::check_name(job)?;
        crate::jobs::check_store(dir)?;
    }
    // One sample per ms for both series: the CSV and plot need them.
    settings.serve.batch_resolution = Duration::from_millis(1);
    settings.serve.cgroup_batch_resolution = Duration::from_millis(1);
    let topo = Topology::read(&settings.root)?;
    let plan = settings.plan(&topo)?;
    info!(source = plan.source.name(), reason = %plan.reason, "energy source chosen");
    let root = cgroups::v2_root(&settings.root).ok_or(MeasureError::NoCgroup2)?;
    let name = format!("ergon-measure-{}", std::process::id());
    let dir = root.join(&name);
    std::fs::create_dir(&dir).map_err(|source| MeasureError::Cgroup {
        path: dir.clone(),
        source,
    })?;
    let result = measure(&args, &settings, &plan, &topo, &dir, &name, signals).await;
    if let Err(e) = std::fs::remove_dir(&dir) {
        warn!(path = %dir.display(), error = %e, "could not remove the command's cgroup (processes left in it?)");
    }
    result
}

async fn measure(
    args: &MeasureArgs,
    settings: &crate::config::Settings,
    plan: &crate::source::Plan,
    topo: &Topology,
    dir: &Path,
    name: &str,
    signals: Signals,
) -> Result<i32, MeasureError> {
    let Signals { mut int, mut term } = signals;
    let p = pipeline::build(settings, plan, topo, Extras::default()).map_err(Box::new)?;
    let (snapshot, store, demand) = (p.snapshot.clone(), p.store.clone(), p.demand.clone());
    // Waiting for the books: ask the drain for them every 5 ms (it
    // publishes only when asked, or every second).
    let poll = || async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        demand.fresh(crate::server::FRESH_WITHIN).await;
    };
    let stop = CancellationToken::new();
    let drain = tokio::spawn({
        let stop = stop.clone();
        let every = settings.drain_interval;
        async move { p.drainer.run(every, stop).await }
    });
    // The books (every CPU's timeline) must have started before the command does.
    let ready_by = Instant::now() + BOOKS_WAIT;
    while snapshot.load().books_complete_unix <= 0.0 {
        if Instant::now() > ready_by {
            stop.cancel();
            let snap = snapshot.load();
            let reported: Vec<String> = snap
                .cpu_time
                .iter()
                .map(|(cpu, t)| {
                    if t.busy_ns + t.idle_ns > 0 {
                        format!("cpu {cpu} reported")
                    } else {
                        format!("cpu {cpu} silent")
                    }
                })
                .collect();
            let cpus = if reported.is_empty() {
                "no kernel record decoded".to_string()
            } else {
                format!(
                    "{} records decoded; {}",
                    snap.records_decoded,
                    reported.join(", ")
                )
            };
            return Err(MeasureError::NoData {
                waited: BOOKS_WAIT,
                cpus,
            });
        }
        poll().await;
    }
    let procs = CString::new(dir.join("cgroup.procs").as_os_str().as_bytes()).map_err(|e| {
        MeasureError::Cgroup {
            path: dir.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        }
    })?;
    let mut cmd = std::process::Command::new(&args.command[0]);
    cmd.args(&args.command[1..]);
    // SAFETY: between fork and exec only async-signal-safe calls: open,
    // write and close of a path prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
            libc::close(fd);
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let shown: Vec<String> = args
        .command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let start_ms = now_unix_ms();
    let started = Instant::now();
    let mut child = match tokio::process::Command::from(cmd).spawn() {
        Ok(c) => c,
        Err(source) => {
            stop.cancel();
            let _ = drain.await;
            return Err(MeasureError::Spawn {
                command: shown.join(" "),
                source,
            });
        }
    };
    let pid = child.id().map_or(0, |p| p as i32);
    let status = loop {
        tokio::select! {
            s = child.wait() => break s,
            Some(()) = async { match int.as_mut() { Some(s) => s.recv().await, None => None } } => {
                // SAFETY: signalling our own child by pid.
                unsafe { libc::kill(pid, libc::SIGINT) };
            }
            Some(()) = async { match term.as_mut() { Some(s) => s.recv().await, None => None } } => {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
    };
    let elapsed = started.elapsed();
    let end_ms = now_unix_ms();
    let cpu_seconds = std::fs::read_to_string(dir.join("cpu.stat"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .map_or(0.0, |us| us / 1e6);
    let code = match status {
        Ok(s) => exit_code(s),
        Err(e) => {
            warn!(error = %e, "waiting for the command failed");
            1
        }
    };
    // Let the books pass the end of the command, then stop sampling.
    let done_by = Instant::now() + BOOKS_WAIT;
    while snapshot.load().books_complete_unix * 1000.0 < (end_ms + 2) as f64
        && Instant::now() < done_by
    {
        poll().await;
    }
    stop.cancel();
    if let Ok(Err(e)) = drain.await {
        warn!(error = %crate::source::chain(&e), "the drain stopped with an error");
    }
    let cgroup_path = format!("/{name}");
    let snap = snapshot.load();
    let base = format!("domain=\"{}\"", snap.base_domain);
    let command_joules = snap
        .cgroups
        .iter()
        .find(|c| c.labels.cgroup == cgroup_path)
        .map_or(0.0, |c| c.joules);
    let (pkg, cg) = {
        let lease = batch::lock(&store)
            .lease("measure", true, now_unix_ms() + 1000, Instant::now())
            .unwrap_or_default();
        let mut pkg: Vec<(i64, f64)> = Vec::new();
        let mut cg: Vec<(i64, f64)> = Vec::new();
        for s in lease.series {
            match s.family {
                Family::Package if s.labels.contains(&base) => {
                    if pkg.is_empty() {
                        pkg = s.points;
                    } else {
                        // Several packages: add them up per ms.
                        for (t, v) in s.points {
                            if let Some(e) = pkg.iter_mut().find(|p| p.0 == t) {
                                e.1 += v;
                            }
                        }
                    }
                }
                Family::Cgroup if s.labels.contains(&format!("cgroup=\"{cgroup_path}\"")) => {
                    cg = s.points
                }
                _ => {}
            }
        }
        (pkg, cg)
    };
    let package_joules = (at(&pkg, end_ms) - at(&pkg, start_ms)).max(0.0);
    let window_ms = (end_ms - start_ms).max(1);
    let missing = missing_ms(&pkg, start_ms, end_ms);
    let pkg_w = power_per_ms(&pkg, start_ms, end_ms);
    let cg_w = power_per_ms(&cg, start_ms, end_ms);
    let secs = elapsed.as_secs_f64();
    let report = Report {
        command: shown,
        source: plan.source.name(),
        elapsed_seconds: secs,
        package_joules,
        command_joules,
        command_share: if package_joules > 0.0 {
            command_joules / package_joules
        } else {
            0.0
        },
        average_watts: if secs > 0.0 {
            command_joules / secs
        } else {
            0.0
        },
        peak_watts: peak(&cg_w, PEAK_WINDOW_MS as usize),
        exit_code: code,
        command_cpu_seconds: cpu_seconds,
        cgroup: cgroup_path,
        window_missing_seconds: missing as f64 / 1000.0,
    };
    if let Some(path) = &args.csv {
        write_csv(path, &pkg_w, &cg_w)?;
    }
    if let Some(path) = &args.plot {
        crate::measure_plot::svg(path, &pkg_w, &cg_w)?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).unwrap_or_else(|_| "{}".into())
        );
    } else {
        eprint!("{}", human(&report));
    }
    let missing_fraction = missing as f64 / window_ms as f64;
    if missing_fraction > MAX_MISSING {
        // Never a partial window reported as the whole: say so, fail, and
        // record nothing.
        return Err(MeasureError::Partial {
            covered: (window_ms - missing) as f64 / 1000.0,
            window: window_ms as f64 / 1000.0,
            missing_pct: missing_fraction * 100.0,
        });
    }
    let mut code = code;
    if let (Some(dir), Some(job)) = (&args.record_to, &args.job) {
        let rec = crate::jobs::JobRecord {
            job: job.clone(),
            joules: report.command_joules,
            cpu_seconds: report.command_cpu_seconds,
            elapsed_seconds: report.elapsed_seconds,
            exit_code: report.exit_code,
            end_unix_ms: end_ms,
            source: report.source.to_owned(),
        };
        match crate::jobs::record(dir, &rec) {
            Ok(path) => {
                info!(path = %path.display(), job = %job, "job recorded; the daemon folds it in within a second")
            }
            Err(e) => {
                // The command's own failure wins; a success becomes 1.
                eprintln!("ergon: error: {}", crate::source::chain(&e));
                if code == 0 {
                    code = 1;
                }
            }
        }
    }
    Ok(code)
}

fn write_csv(path: &Path, pkg: &[f64], cg: &[f64]) -> Result<(), MeasureError> {
    use std::io::Write;
    let err = |source| MeasureError::Output {
        path: path.to_owned(),
        source,
    };
    let f = std::fs::File::create(path).map_err(err)?;
    let mut w = std::io::BufWriter::new(f);
    writeln!(w, "time_ms,package_watts,command_watts").map_err(err)?;
    for (i, (p, c)) in pkg.iter().zip(cg).enumerate() {
        writeln!(w, "{i},{p:.6},{c:.6}").map_err(err)?;
    }
    w.flush().map_err(err)
}

fn human(r: &Report) -> String {
    format!(
        "\n Energy of '{}' ({} source):\n\n  {:>12.3} s   elapsed\n  {:>12.3} J   package\n  {:>12.3} J   command ({:.1}% of the package)\n  {:>12.3} W   average (command)\n  {:>12.3} W   peak over {} ms (command)\n  {:>12}     exit code\n\n",
        r.command.join(" "),
        r.source,
        r.elapsed_seconds,
        r.package_joules,
        r.command_joules,
        r.command_share * 100.0,
        r.average_watts,
        r.peak_watts,
        PEAK_WINDOW_MS,
        r.exit_code
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_missing_part_of_a_window_is_what_its_points_do_not_span() {
        let pts: Vec<(i64, f64)> = (100..=900).map(|t| (t, t as f64)).collect();
        assert_eq!(missing_ms(&pts, 100, 900), 0);
        assert_eq!(missing_ms(&pts, 0, 1000), 200, "100 ms at each end");
        assert_eq!(missing_ms(&pts, 500, 950), 50);
        assert_eq!(missing_ms(&[], 0, 1000), 1000, "no points: all of it");
        assert_eq!(
            missing_ms(&pts, 950, 1000),
            50,
            "never more than the window"
        );
    }

    #[test]
    fn power_and_peak_from_cumulative_points() {
        // 1 J per ms for 5 ms, flat for 5, then 2 J per ms.
        let pts: Vec<(i64, f64)> = (0..=15)
            .map(|t| {
                (
                    t,
                    if t <= 5 {
                        t as f64
                    } else if t <= 10 {
                        5.0
                    } else {
                        5.0 + 2.0 * (t - 10) as f64
                    },
                )
            })
            .collect();
        let w = power_per_ms(&pts, 0, 15);
        assert_eq!(w.len(), 15);
        assert_eq!(&w[..5], &[1000.0; 5]);
        assert_eq!(&w[5..10], &[0.0; 5]);
        assert_eq!(&w[10..], &[2000.0; 5]);
        assert_eq!(peak(&w, 5), 2000.0);
        assert_eq!(
            peak(&w, 10),
            1000.0,
            "the last 10 ms: five flat, five at 2 kW"
        );
        assert_eq!(peak(&[], 10), 0.0);
        // A series with no point before `from` counts from zero.
        assert_eq!(at(&pts, -1), 0.0);
    }
}
