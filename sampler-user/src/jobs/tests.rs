//! Job records: the spool, the exactly-once fold, concurrent recorders,
//! a crash between commit and deletion, bad files, restarts, and the
//! metrics served.

use std::sync::Arc;

use super::*;
use crate::push::queue::{Queue, QueueError};

fn rec(job: &str, joules: f64, exit_code: i32, end: i64) -> JobRecord {
    JobRecord {
        job: job.into(),
        joules,
        cpu_seconds: joules / 10.0,
        elapsed_seconds: 1.5,
        exit_code,
        end_unix_ms: end,
        source: "synthetic".into(),
    }
}

fn pass(q: &Queue, dir: &Path, jobs: &Jobs) -> Vec<(String, JobTotals)> {
    q.with_db(|db| fold::fold(db, q.path(), dir, jobs, 1))
        .expect("fold")
}

fn spool_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join(SPOOL))
        .map(|it| {
            it.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn names_are_checked() {
    assert!(check_name("nightly-backup").is_ok());
    assert!(check_name("Sicherung über Nacht").is_ok());
    for bad in ["", "a\nb", &"x".repeat(MAX_NAME + 1)] {
        let e = check_name(bad).expect_err(bad).to_string();
        assert!(
            e.contains("--job") && e.contains("e.g. --job nightly-backup"),
            "{e}"
        );
    }
}

#[test]
fn a_directory_without_the_daemons_store_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = check_store(dir.path()).expect_err("no store").to_string();
    assert!(e.contains("ergon.redb") && e.contains("--state-dir"), "{e}");
    Queue::open(dir.path(), 10).expect("store");
    assert!(check_store(dir.path()).is_ok());
}

#[test]
fn records_are_folded_once_and_their_files_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = Queue::open(dir.path(), 10).expect("store");
    let jobs = Jobs::default();
    assert!(pass(&q, dir.path(), &jobs).is_empty(), "no spool yet");
    record(dir.path(), &rec("nightly", 20.0, 0, 1000)).expect("record");
    record(dir.path(), &rec("nightly", 22.5, 3, 2000)).expect("record");
    record(dir.path(), &rec("hourly", 1.25, 0, 1500)).expect("record");
    let changed = pass(&q, dir.path(), &jobs);
    assert_eq!(changed.len(), 2);
    assert_eq!(jobs.folded.load(Ordering::Relaxed), 3);
    let t = jobs.snapshot();
    let n = t["nightly"];
    assert_eq!((n.joules, n.runs, n.failures), (42.5, 2, 1));
    assert_eq!((n.last_exit_code, n.last_end_unix_ms), (3, 2000));
    assert_eq!((t["hourly"].joules, t["hourly"].runs), (1.25, 1));
    assert!(
        spool_files(dir.path()).is_empty(),
        "{:?}",
        spool_files(dir.path())
    );
    assert!(pass(&q, dir.path(), &jobs).is_empty(), "nothing twice");
    assert_eq!(jobs.snapshot()["nightly"].runs, 2);
    // The totals survive a restart of the daemon.
    drop(q);
    let q = Queue::open(dir.path(), 10).expect("reopen");
    let loaded = q.with_db(|db| fold::load(db, q.path())).expect("load");
    assert_eq!(loaded, t);
}

#[test]
fn a_crash_between_commit_and_deletion_does_not_count_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = Queue::open(dir.path(), 10).expect("store");
    let jobs = Jobs::default();
    record(dir.path(), &rec("nightly", 5.0, 0, 1)).expect("record");
    pass(&q, dir.path(), &jobs);
    // The same file again, its name still noted as folded: what a crash
    // after the commit and before the deletion leaves behind.
    let file = record(dir.path(), &rec("nightly", 5.0, 0, 2)).expect("record");
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .expect("name");
    q.with_db(|db| {
        let tx = db.begin_write().expect("tx");
        tx.open_table(fold::FOLDED)
            .expect("table")
            .insert(name.as_str(), 0)
            .expect("insert");
        tx.commit().expect("commit");
        Ok::<_, QueueError>(())
    })
    .expect("db");
    assert!(pass(&q, dir.path(), &jobs).is_empty());
    assert_eq!(jobs.snapshot()["nightly"].runs, 1);
    assert!(!file.exists(), "the leftover file is removed");
    // And its name forgotten: a new file of that name would count again.
    let gone = q.with_db(|db| {
        let rx = db.begin_read().expect("rx");
        let folded = rx.open_table(fold::FOLDED).expect("table");
        Ok::<_, QueueError>(folded.get(name.as_str()).expect("get").is_none())
    });
    assert!(gone.expect("db"));
}

#[test]
fn concurrent_recorders_while_the_daemon_folds_are_all_counted_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = Arc::new(Queue::open(dir.path(), 10).expect("store"));
    let jobs = Jobs::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let folder = {
        let (q, jobs, stop, dir) = (q.clone(), jobs.clone(), stop.clone(), dir.path().to_owned());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                q.with_db(|db| fold::fold(db, q.path(), &dir, &jobs, 1))
                    .expect("fold");
            }
        })
    };
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let dir = dir.path().to_owned();
            std::thread::spawn(move || {
                for i in 0..25 {
                    record(&dir, &rec("batch", 0.5, i % 2, w * 100 + i64::from(i)))
                        .expect("record");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    stop.store(true, Ordering::Relaxed);
    folder.join().expect("folder");
    pass(&q, dir.path(), &jobs);
    let t = jobs.snapshot()["batch"];
    assert_eq!((t.runs, t.joules, t.failures), (200, 100.0, 96));
    assert!(spool_files(dir.path()).is_empty());
}

#[test]
fn a_file_that_is_not_a_record_is_set_aside_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = Queue::open(dir.path(), 10).expect("store");
    let jobs = Jobs::default();
    record(dir.path(), &rec("ok", 1.0, 0, 1)).expect("record");
    std::fs::write(dir.path().join(SPOOL).join("0-bad.job"), "{not json").expect("write");
    let negative = serde_json::to_string(&rec("ok", -5.0, 0, 2)).expect("json");
    std::fs::write(dir.path().join(SPOOL).join("1-neg.job"), negative).expect("write");
    // A recorder still writing: ignored until renamed.
    std::fs::write(dir.path().join(SPOOL).join(".1-2-3-4.tmp"), "{").expect("write");
    pass(&q, dir.path(), &jobs);
    assert_eq!(jobs.snapshot()["ok"].runs, 1);
    assert_eq!(
        jobs.snapshot()["ok"].joules,
        1.0,
        "a negative record is not added"
    );
    assert_eq!(jobs.rejected.load(Ordering::Relaxed), 2);
    assert_eq!(
        spool_files(dir.path()),
        vec![".1-2-3-4.tmp", "0-bad.job.rejected", "1-neg.job.rejected"]
    );
}

#[test]
fn an_unfinished_file_of_a_dead_recorder_is_removed_once_stale() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = Queue::open(dir.path(), 10).expect("store");
    let jobs = Jobs::default();
    record(dir.path(), &rec("ok", 1.0, 0, 1)).expect("record");
    std::fs::write(dir.path().join(SPOOL).join(".1-2-3-4.tmp"), "{\"job\":").expect("write");
    let now = crate::units::now_unix_ms();
    let fold_at = |ms| {
        q.with_db(|db| fold::fold(db, q.path(), dir.path(), &jobs, ms))
            .expect("fold")
    };
    fold_at(now);
    assert_eq!(
        spool_files(dir.path()),
        vec![".1-2-3-4.tmp"],
        "a fresh one may still be written"
    );
    fold_at(now + fold::STALE_TMP_MS - 60_000);
    assert_eq!(spool_files(dir.path()), vec![".1-2-3-4.tmp"]);
    fold_at(now + fold::STALE_TMP_MS + 1_000);
    assert!(spool_files(dir.path()).is_empty(), "a stale one is removed");
    let t = jobs.snapshot()["ok"];
    assert_eq!((t.runs, t.joules), (1, 1.0), "and nothing else changed");
    assert_eq!(jobs.rejected.load(Ordering::Relaxed), 0);
}

#[test]
fn a_job_that_has_not_run_for_the_retention_is_forgotten() {
    const DAY: i64 = 24 * 3_600_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let q = Queue::open(dir.path(), 10).expect("store");
    let jobs = Jobs::default();
    record(dir.path(), &rec("monthly", 5.0, 0, DAY)).expect("record");
    record(dir.path(), &rec("nightly", 1.0, 0, 9 * DAY)).expect("record");
    pass(&q, dir.path(), &jobs);
    let prune = |now| {
        q.with_db(|db| fold::prune(db, q.path(), &jobs, now, 7 * DAY))
            .expect("prune")
    };
    assert!(prune(8 * DAY - 1).is_empty(), "within the retention");
    assert_eq!(prune(10 * DAY), vec!["monthly".to_string()]);
    assert!(prune(10 * DAY).is_empty());
    let served: Vec<String> = jobs.snapshot().into_keys().collect();
    assert_eq!(served, vec!["nightly".to_string()]);
    let stored = q.with_db(|db| fold::load(db, q.path())).expect("load");
    assert_eq!(stored.keys().collect::<Vec<_>>(), vec!["nightly"]);
    // It starts over when it runs again.
    record(dir.path(), &rec("monthly", 2.0, 0, 31 * DAY)).expect("record");
    pass(&q, dir.path(), &jobs);
    let t = jobs.snapshot()["monthly"];
    assert_eq!((t.runs, t.joules), (1, 2.0));
}

#[test]
fn the_totals_are_served_as_job_counters() {
    let jobs = Jobs::default();
    jobs.totals
        .lock()
        .expect("lock")
        .insert("nightly \"db\"".into(), {
            let mut t = JobTotals::default();
            t.add(&rec("x", 12.5, 1, 1_700_000_000_123));
            t
        });
    let mut reg = prometheus_client::registry::Registry::default();
    reg.register_collector(Box::new(JobCollector { jobs }));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).expect("encode");
    for want in [
        "ergon_job_energy_joules_total{job=\"nightly \\\"db\\\"\"} 12.5",
        "ergon_job_runs_total{job=\"nightly \\\"db\\\"\"} 1",
        "ergon_job_failures_total{job=\"nightly \\\"db\\\"\"} 1",
        "ergon_job_last_exit_code{job=\"nightly \\\"db\\\"\"} 1",
        "ergon_job_last_run_timestamp_seconds{job=\"nightly \\\"db\\\"\"} 1700000000.123",
        "ergon_job_records_rejected_total 0",
        "ergon_job_records_folded_total 0",
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
}

#[test]
fn new_totals_are_queued_for_remote_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = Queue::open(dir.path(), 10).expect("store");
    let jobs = Jobs::default();
    record(dir.path(), &rec("nightly", 7.5, 0, 1)).expect("record");
    let changed = pass(&q, dir.path(), &jobs);
    fold::to_push(&q, &changed, 1_700_000_000_000);
    q.commit(&[]).expect("commit");
    let got: Vec<(String, i64, f64)> = q
        .peek(10)
        .expect("peek")
        .into_iter()
        .map(|s| {
            let desc = q.descriptor_of(s.series).expect("series");
            (desc.to_string(), s.ts, s.value)
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "__name__=ergon_job_energy_joules_total\njob=nightly".into(),
                1_700_000_000_000,
                7.5
            ),
            (
                "__name__=ergon_job_runs_total\njob=nightly".into(),
                1_700_000_000_000,
                1.0
            ),
        ]
    );
}

#[test]
fn the_spool_and_the_state_file_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    let _q = Queue::open(dir.path(), 10).expect("store");
    assert_eq!(
        mode(&dir.path().join("ergon.redb")),
        0o600,
        "the state file"
    );
    let file = record(dir.path(), &rec("nightly", 1.0, 0, 1000)).expect("record");
    assert_eq!(mode(&dir.path().join(SPOOL)), 0o700, "the spool");
    assert_eq!(mode(&file), 0o600, "a job record");
    // A state file an older Ergon left world-readable is tightened.
    drop(_q);
    let other = tempfile::tempdir().expect("tempdir");
    {
        let _old = Queue::open(other.path(), 10).expect("store");
    }
    let db = other.path().join("ergon.redb");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    Queue::open(other.path(), 10).expect("reopen");
    assert_eq!(mode(&db), 0o600);
}
