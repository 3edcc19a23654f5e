//! The daemon's side of job records: every second it folds the spool files
//! into the redb store, exactly once.
//!
//! One write transaction adds each new file's record to its job's totals
//! and notes the file's name as folded; only after the commit are the files
//! deleted, and then their names forgotten. A crash between the commit and
//! the deletion leaves files whose names are noted: the next pass deletes
//! them without counting them again. A file that is not a record is
//! renamed to `*.rejected`, logged and counted, never deleted. A recorder's
//! unfinished `.*.tmp` file older than ten minutes (its recorder died while
//! writing it) is removed and logged. A job that has not run for
//! `--state-retention` is forgotten.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{atomic::Ordering, Arc},
};

use redb::{Database, ReadableTable, TableDefinition};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{JobRecord, JobTotals, Jobs, SPOOL, SUFFIX};
use crate::{push::queue::Queue, series::Series};

/// job name → its totals (JSON of [`JobTotals`]).
const JOBS: TableDefinition<&str, &str> = TableDefinition::new("jobs");
/// spool file name → Unix ms it was folded at (until the file is gone).
pub(super) const FOLDED: TableDefinition<&str, i64> = TableDefinition::new("jobs_folded");

#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    #[error("job records in {path}: {message}")]
    Db { path: PathBuf, message: String },
    #[error(transparent)]
    State(#[from] crate::push::queue::QueueError),
    #[error("cannot list the job spool {path}: {source}")]
    Spool {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn db_err(path: &Path, e: impl std::fmt::Display) -> FoldError {
    FoldError::Db {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// The totals committed so far (empty for a store that never had jobs).
pub fn load(db: &Database, db_path: &Path) -> Result<BTreeMap<String, JobTotals>, FoldError> {
    let e = |x: &dyn std::fmt::Display| db_err(db_path, x);
    let rx = db.begin_read().map_err(|x| e(&x))?;
    let table = match rx.open_table(JOBS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(BTreeMap::new()),
        Err(x) => return Err(e(&x)),
    };
    let mut out = BTreeMap::new();
    for row in table.iter().map_err(|x| e(&x))? {
        let (k, v) = row.map_err(|x| e(&x))?;
        let totals: JobTotals = serde_json::from_str(v.value()).map_err(|x| e(&x))?;
        out.insert(k.value().to_owned(), totals);
    }
    Ok(out)
}

/// One pass over `state_dir/jobs`. Returns the jobs whose totals changed,
/// with their new totals (also in `jobs`).
pub fn fold(
    db: &Database,
    db_path: &Path,
    state_dir: &Path,
    jobs: &Jobs,
    now_ms: i64,
) -> Result<Vec<(String, JobTotals)>, FoldError> {
    let spool = state_dir.join(SPOOL);
    let entries = match std::fs::read_dir(&spool) {
        Ok(it) => it,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(FoldError::Spool {
                path: spool,
                source,
            })
        }
    };
    let mut names = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(TMP_SUFFIX) {
            remove_if_stale(&spool.join(&name), now_ms);
        } else if name.ends_with(SUFFIX) && !name.starts_with('.') {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Ok(Vec::new());
    }
    names.sort();
    let mut records: Vec<(String, JobRecord)> = Vec::new();
    for name in names {
        let path = spool.join(&name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                // Not the record's fault: leave it for the next pass.
                warn!(path = %path.display(), error = %e, "cannot read a job record; retrying");
                continue;
            }
        };
        let parsed = serde_json::from_slice::<JobRecord>(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|r| r.check().map(|()| r));
        match parsed {
            Ok(r) => records.push((name, r)),
            Err(why) => {
                let aside = spool.join(format!("{name}.rejected"));
                warn!(path = %path.display(), error = %why, moved_to = %aside.display(), "not a job record; set aside");
                let _ = std::fs::rename(&path, &aside);
                jobs.rejected.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let e = |x: &dyn std::fmt::Display| db_err(db_path, x);
    let mut totals = jobs.snapshot();
    let mut changed: BTreeMap<String, JobTotals> = BTreeMap::new();
    let mut new_records = 0u64;
    let tx = db.begin_write().map_err(|x| e(&x))?;
    {
        let mut folded = tx.open_table(FOLDED).map_err(|x| e(&x))?;
        let mut table = tx.open_table(JOBS).map_err(|x| e(&x))?;
        for (name, r) in &records {
            if folded.get(name.as_str()).map_err(|x| e(&x))?.is_some() {
                continue; // counted before a crash; only the deletion is left
            }
            let t = totals.entry(r.job.clone()).or_default();
            t.add(r);
            changed.insert(r.job.clone(), *t);
            new_records += 1;
            folded.insert(name.as_str(), now_ms).map_err(|x| e(&x))?;
        }
        for (job, t) in &changed {
            let json = serde_json::to_string(t).map_err(|x| e(&x))?;
            table
                .insert(job.as_str(), json.as_str())
                .map_err(|x| e(&x))?;
        }
    }
    tx.commit().map_err(|x| e(&x))?;
    *jobs
        .totals
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = totals;
    jobs.folded.fetch_add(new_records, Ordering::Relaxed);
    // Now the files can go, then their names.
    let gone: Vec<&str> = records
        .iter()
        .filter(|(name, _)| std::fs::remove_file(spool.join(name)).is_ok())
        .map(|(name, _)| name.as_str())
        .collect();
    if !gone.is_empty() {
        let tx = db.begin_write().map_err(|x| e(&x))?;
        {
            let mut folded = tx.open_table(FOLDED).map_err(|x| e(&x))?;
            for name in gone {
                folded.remove(name).map_err(|x| e(&x))?;
            }
        }
        tx.commit().map_err(|x| e(&x))?;
    }
    Ok(changed.into_iter().collect())
}

/// Forgets the jobs whose last run ended more than `retention_ms` before
/// `now_ms` (their rows and their series; a job that runs again starts
/// over). Returns their names.
pub fn prune(
    db: &Database,
    db_path: &Path,
    jobs: &Jobs,
    now_ms: i64,
    retention_ms: i64,
) -> Result<Vec<String>, FoldError> {
    let cutoff = now_ms.saturating_sub(retention_ms);
    let mut totals = jobs
        .totals
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let old: Vec<String> = totals
        .iter()
        .filter(|(_, t)| t.last_end_unix_ms < cutoff)
        .map(|(name, _)| name.clone())
        .collect();
    if old.is_empty() {
        return Ok(old);
    }
    let e = |x: &dyn std::fmt::Display| db_err(db_path, x);
    let tx = db.begin_write().map_err(|x| e(&x))?;
    {
        let mut table = tx.open_table(JOBS).map_err(|x| e(&x))?;
        for name in &old {
            table.remove(name.as_str()).map_err(|x| e(&x))?;
        }
    }
    tx.commit().map_err(|x| e(&x))?;
    for name in &old {
        totals.remove(name);
    }
    Ok(old)
}

/// A recorder's unfinished file ends in this (`.<stem>.tmp`).
const TMP_SUFFIX: &str = ".tmp";

/// A recorder writes, fsyncs and renames its file within milliseconds: an
/// unfinished file this old belongs to a recorder that was killed mid-write.
pub const STALE_TMP_MS: i64 = 10 * 60 * 1000;

/// Removes a recorder's unfinished file once it is [`STALE_TMP_MS`] old (it
/// holds at most a partial record of a run whose recorder died: nothing to
/// count, and without this it would stay forever).
fn remove_if_stale(path: &Path, now_ms: i64) {
    let Ok(modified) = std::fs::metadata(path).and_then(|m| m.modified()) else {
        return;
    };
    if now_ms.saturating_sub(crate::units::unix_ms(modified)) < STALE_TMP_MS {
        return; // a recorder may still be writing it
    }
    match std::fs::remove_file(path) {
        Ok(()) => {
            warn!(path = %path.display(), "removed an unfinished job record left by a recorder that died while writing it (its run was not counted)");
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot remove a stale unfinished job record");
        }
    }
}

/// Folds the job spool every second until stopped; new totals also go to
/// remote_write when pushing.
pub async fn run(
    q: Arc<Queue>,
    jobs: Jobs,
    dir: std::path::PathBuf,
    pushing: bool,
    retention: std::time::Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    let mut last_prune = std::time::Instant::now();
    let retention_ms = crate::units::millis(retention);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (q2, jobs2, dir2) = (q.clone(), jobs.clone(), dir.clone());
        let now = crate::units::now_unix_ms();
        let done = tokio::task::spawn_blocking(move || {
            q2.with_db(|db| fold(db, q2.path(), &dir2, &jobs2, now))
        })
        .await;
        match done {
            Ok(Ok(changed)) => {
                warned = false;
                if pushing {
                    to_push(&q, &changed, now);
                }
            }
            Ok(Err(e)) if !warned => {
                warn!(error = %crate::source::chain(&e), "folding job records failed; they stay in the spool and are retried every second");
                warned = true;
            }
            Ok(Err(_)) => {}
            Err(e) => warn!(error = %e, "the job folder panicked"),
        }
        if last_prune.elapsed() >= crate::push::PRUNE_EVERY {
            last_prune = std::time::Instant::now();
            let (q2, jobs2) = (q.clone(), jobs.clone());
            let now = crate::units::now_unix_ms();
            let pruned = tokio::task::spawn_blocking(move || {
                q2.with_db(|db| prune(db, q2.path(), &jobs2, now, retention_ms))
            })
            .await;
            match pruned {
                Ok(Ok(names)) if !names.is_empty() => {
                    info!(jobs = ?names, "forgot jobs that have not run for --state-retention");
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    warn!(error = %crate::source::chain(&e), "pruning job totals failed; retrying later")
                }
                Err(e) => warn!(error = %e, "pruning job totals panicked"),
            }
        }
    }
}

/// Queues the new totals of `changed` jobs for remote_write (energy and
/// runs, stamped `now_ms`), so a push-only setup gets job metrics too.
pub fn to_push(q: &Queue, changed: &[(String, JobTotals)], now_ms: i64) {
    for (job, t) in changed {
        for (series, v) in [
            (Series::JobEnergy { job: job.clone() }, t.joules),
            (Series::JobRuns { job: job.clone() }, t.runs as f64),
        ] {
            let desc: Arc<str> = series.descriptor().into();
            q.append(&desc, now_ms, v);
        }
    }
}
