//! Short-lived jobs into the daemon: `ergon measure --record-to STATE_DIR
//! --job NAME -- CMD` leaves the run's totals in the daemon's state
//! directory, and the daemon serves them as `ergon_job_*{job}` counters —
//! a batch job or a cron script gets energy metrics without a port.
//!
//! The daemon's redb file takes one writer process, so recorders never open
//! it. Each writes one small JSON file into `STATE_DIR/jobs/` (written to a
//! dot-file, fsynced, then renamed: a reader sees all of it or nothing),
//! and the daemon folds those files into its store ([`fold`]). Any number
//! of recorders can run at once: they share no file. A record written while
//! the daemon is down is folded when it starts.

pub mod fold;

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use prometheus_client::{collector::Collector, encoding::DescriptorEncoder};
use serde::{Deserialize, Serialize};

use crate::{
    families::{counter, counter1, gauge},
    metrics::series_family,
    series::{self, Series},
};

/// The spool directory below the state directory.
pub const SPOOL: &str = "jobs";
/// Finished records end in this; anything else in the spool is ignored.
pub const SUFFIX: &str = ".job";
/// Longest `--job` name.
pub const MAX_NAME: usize = 128;

/// One finished run, as `ergon measure` writes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job: String,
    /// Joules attributed to the command's cgroup.
    pub joules: f64,
    pub cpu_seconds: f64,
    pub elapsed_seconds: f64,
    pub exit_code: i32,
    /// When the command ended, Unix ms.
    pub end_unix_ms: i64,
    pub source: String,
}

/// A job's totals over all its runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobTotals {
    pub joules: f64,
    pub runs: u64,
    pub failures: u64,
    pub cpu_seconds: f64,
    pub elapsed_seconds: f64,
    pub last_exit_code: i32,
    pub last_end_unix_ms: i64,
}

impl JobRecord {
    /// A record the daemon accepts: a valid name and finite, non-negative figures.
    pub fn check(&self) -> Result<(), String> {
        check_name(&self.job).map_err(|e| e.to_string())?;
        let figures = [self.joules, self.cpu_seconds, self.elapsed_seconds];
        if figures.iter().all(|v| v.is_finite() && *v >= 0.0) {
            Ok(())
        } else {
            Err(format!(
                "joules, cpu_seconds and elapsed_seconds must be finite and not negative: {figures:?}"
            ))
        }
    }
}

impl JobTotals {
    pub fn add(&mut self, r: &JobRecord) {
        self.joules += r.joules;
        self.runs += 1;
        self.failures += u64::from(r.exit_code != 0);
        self.cpu_seconds += r.cpu_seconds;
        self.elapsed_seconds += r.elapsed_seconds;
        if r.end_unix_ms >= self.last_end_unix_ms {
            self.last_exit_code = r.exit_code;
            self.last_end_unix_ms = r.end_unix_ms;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("--job {name:?}: {problem}; use 1 to {MAX_NAME} printable characters, e.g. --job nightly-backup")]
    Name { name: String, problem: &'static str },
    #[error("--record-to {dir}: no Ergon state there ({file} is missing); pass the --state-dir of the running `ergon run` (default /var/lib/ergon when it pushes), or start `ergon run --state-dir {dir}` once")]
    NoStore { dir: PathBuf, file: PathBuf },
    #[error("recording the job into {path}: {source}; the result printed above is not in the daemon's totals")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Checks a `--job` name.
pub fn check_name(name: &str) -> Result<(), JobError> {
    let problem = if name.is_empty() {
        Some("is empty")
    } else if name.chars().count() > MAX_NAME {
        Some("is too long")
    } else if name.chars().any(char::is_control) {
        Some("has control characters")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(JobError::Name {
            name: name.to_owned(),
            problem,
        }),
        None => Ok(()),
    }
}

/// Checks that `state_dir` is a daemon's state directory (before the
/// command runs, so a wrong path fails at once).
pub fn check_store(state_dir: &Path) -> Result<(), JobError> {
    let file = state_dir.join(crate::push::queue::FILE);
    if file.is_file() {
        Ok(())
    } else {
        Err(JobError::NoStore {
            dir: state_dir.to_owned(),
            file,
        })
    }
}

/// Writes `record` into the spool of `state_dir`; returns the file.
pub fn record(state_dir: &Path, record: &JobRecord) -> Result<PathBuf, JobError> {
    let dir = state_dir.join(SPOOL);
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| JobError::Write { path, source }
    };
    {
        // The spool is private (0700, its files 0600): job records name
        // the jobs and what they cost.
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(err(&dir))?;
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // Unique across processes (pid) and within one (a sequence number).
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let stem = format!(
        "{}-{}-{nanos}-{seq}",
        record.end_unix_ms,
        std::process::id()
    );
    let tmp = dir.join(format!(".{stem}.tmp"));
    let done = dir.join(format!("{stem}{SUFFIX}"));
    let body = serde_json::to_vec(record).map_err(|e| JobError::Write {
        path: tmp.clone(),
        source: std::io::Error::other(e),
    })?;
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err(&tmp))?;
        f.write_all(&body).map_err(err(&tmp))?;
        f.sync_all().map_err(err(&tmp))?;
    }
    std::fs::rename(&tmp, &done).map_err(err(&done))?;
    // The rename itself must survive a crash.
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(err(&dir))?;
    Ok(done)
}

/// The daemon's job totals, shared by the folder and the collector.
#[derive(Clone, Default)]
pub struct Jobs {
    pub totals: Arc<Mutex<BTreeMap<String, JobTotals>>>,
    /// Records folded, and spool files refused as unreadable.
    pub folded: Arc<AtomicU64>,
    pub rejected: Arc<AtomicU64>,
}

impl Jobs {
    /// Starting from the totals the store holds.
    pub fn with_totals(totals: BTreeMap<String, JobTotals>) -> Self {
        Self {
            totals: Arc::new(Mutex::new(totals)),
            ..Self::default()
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, JobTotals> {
        self.totals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Serves the totals on `/metrics`.
#[derive(Debug)]
pub struct JobCollector {
    pub jobs: Jobs,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").finish_non_exhaustive()
    }
}

impl Collector for JobCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let all = self.jobs.snapshot();
        let per = |f: fn(&JobTotals) -> f64| {
            all.iter()
                .map(move |(name, t)| (vec![("job", name.clone())], f(t)))
        };
        series_family(
            &mut enc,
            series::JOB_ENERGY,
            "Joules attributed to the runs of a job recorded with `ergon measure --record-to … --job NAME`.",
            all.iter()
                .map(|(job, t)| (Series::JobEnergy { job: job.clone() }, t.joules)),
        )?;
        series_family(
            &mut enc,
            series::JOB_RUNS,
            "Recorded runs of a job.",
            all.iter()
                .map(|(job, t)| (Series::JobRuns { job: job.clone() }, t.runs as f64)),
        )?;
        counter(
            &mut enc,
            "ergon_job_failures",
            "Recorded runs of a job that exited non-zero (or were killed).",
            per(|t| t.failures as f64),
        )?;
        counter(
            &mut enc,
            "ergon_job_cpu_seconds",
            "CPU time of a job's runs (their cgroup's cpu.stat).",
            per(|t| t.cpu_seconds),
        )?;
        counter(
            &mut enc,
            "ergon_job_duration_seconds",
            "Wall-clock time of a job's runs.",
            per(|t| t.elapsed_seconds),
        )?;
        gauge(
            &mut enc,
            "ergon_job_last_exit_code",
            "Exit code of a job's latest run (128 + signal if it was killed).",
            per(|t| f64::from(t.last_exit_code)),
        )?;
        gauge(
            &mut enc,
            "ergon_job_last_run_timestamp_seconds",
            "When a job's latest run ended, Unix seconds.",
            per(|t| t.last_end_unix_ms as f64 / 1000.0),
        )?;
        counter1(
            &mut enc,
            "ergon_job_records_folded",
            "Job records folded into the totals since the daemon started.",
            self.jobs.folded.load(Ordering::Relaxed) as f64,
        )?;
        counter1(
            &mut enc,
            "ergon_job_records_rejected",
            "Spool files in STATE_DIR/jobs that could not be read as a job record (renamed to *.rejected and logged).",
            self.jobs.rejected.load(Ordering::Relaxed) as f64,
        )
    }
}

#[cfg(test)]
#[path = "jobs/tests.rs"]
mod tests;
