//! The durable queue: what is committed survives a reopen, the oldest go
//! first when full, foreign and corrupt files are refused.

use super::*;

fn desc(name: &str) -> Arc<str> {
    descriptor(name, &[("package", "0"), ("domain", "pkg"), ("unit", "")]).into()
}

#[test]
fn descriptors_sort_labels_and_drop_empty_values() {
    let d = desc("ergon_package_energy_joules_total");
    assert_eq!(
        &*d,
        "__name__=ergon_package_energy_joules_total\ndomain=pkg\npackage=0"
    );
    assert_eq!(
        pairs(&d),
        vec![
            (
                "__name__".to_string(),
                "ergon_package_energy_joules_total".to_string()
            ),
            ("domain".to_string(), "pkg".to_string()),
            ("package".to_string(), "0".to_string()),
        ]
    );
}

#[test]
fn committed_samples_and_totals_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = desc("a");
    {
        let q = Queue::open(dir.path(), 100).expect("open");
        for i in 0..10 {
            q.append(&d, 1000 + i, i as f64);
        }
        assert_eq!(q.in_memory(), 10);
        assert_eq!(q.len(), 0, "not committed yet");
        let (n, dropped) = q.commit(&[("a".into(), 9.0)]).expect("commit");
        assert_eq!((n, dropped), (10, 0));
        q.append(&d, 2000, 99.0); // never committed: lost with the process
    }
    let q = Queue::open(dir.path(), 100).expect("reopen");
    assert_eq!(q.len(), 10);
    assert_eq!(q.totals().get("a"), Some(&9.0));
    let got = q.peek(100).expect("peek");
    assert_eq!(got.len(), 10);
    assert_eq!(got[0].ts, 1000);
    assert_eq!(q.descriptor_of(got[0].series).as_deref(), Some(&*d));
    // New samples continue the sequence after the old ones.
    q.append(&d, 3000, 1.0);
    q.commit(&[]).expect("commit");
    let got = q.peek(100).expect("peek");
    assert_eq!(
        got.last().map(|s| (s.ts, s.seq > got[9].seq)),
        Some((3000, true))
    );
}

#[test]
fn a_full_queue_drops_the_oldest_and_counts_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = Queue::open(dir.path(), 5).expect("open");
    let d = desc("a");
    // On disk: a commit beyond capacity drops the oldest committed.
    for i in 0..4 {
        q.append(&d, i, i as f64);
    }
    assert_eq!(q.commit(&[]).expect("commit"), (4, 0));
    for i in 4..7 {
        q.append(&d, i, i as f64);
    }
    assert_eq!(q.commit(&[]).expect("commit"), (3, 2));
    assert_eq!(q.len(), 5);
    assert_eq!(q.dropped(), 2);
    assert_eq!(q.oldest_ts(), Some(2));
    // In memory (commits failing meanwhile): the inbox keeps the newest
    // `capacity` samples, so memory is bounded too.
    for i in 7..15 {
        q.append(&d, i, i as f64);
    }
    assert_eq!(q.in_memory(), 5);
    assert_eq!(q.dropped(), 5);
    assert_eq!(q.commit(&[]).expect("commit"), (5, 5));
    assert_eq!(q.dropped(), 10);
    assert_eq!(q.oldest_ts(), Some(10));
}

#[test]
fn bound_keeps_the_newest() {
    let d = desc("a");
    let mut v: VecDeque<_> = (0..10).map(|i| (d.clone(), i, 0.0)).collect();
    assert_eq!(bound(&mut v, 10), 0);
    assert_eq!(bound(&mut v, 4), 6);
    assert_eq!(v.iter().map(|s| s.1).collect::<Vec<_>>(), vec![6, 7, 8, 9]);
}

#[test]
fn io_errors_and_only_they_ask_for_a_reopen() {
    let path = Path::new("/x/ergon.redb");
    let io = db_err(
        path,
        redb::StorageError::Io(std::io::Error::from_raw_os_error(28)),
    );
    assert!(io.needs_reopen(), "{io}");
    assert!(io.to_string().contains("No space left on device"), "{io}");
    assert!(db_err(path, redb::StorageError::PreviousIo).needs_reopen());
    assert!(QueueError::Closed { path: path.into() }.needs_reopen());
    assert!(!db_err(path, redb::StorageError::ValueTooLarge(1)).needs_reopen());
}

#[test]
fn removal_is_a_prefix_and_acknowledged_timestamps_persist() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = desc("a");
    {
        let q = Queue::open(dir.path(), 100).expect("open");
        for i in 0..6 {
            q.append(&d, 10 + i, 0.0);
        }
        q.commit(&[]).expect("commit");
        let got = q.peek(3).expect("peek");
        let removed = q
            .remove_through(got[2].seq, &[(got[2].series, got[2].ts)])
            .expect("remove");
        assert_eq!(removed, 3);
        assert_eq!(q.len(), 3);
        assert_eq!(q.acked(got[2].series), Some(12));
    }
    let q = Queue::open(dir.path(), 100).expect("reopen");
    let got = q.peek(10).expect("peek");
    assert_eq!(
        got.iter().map(|s| s.ts).collect::<Vec<_>>(),
        vec![13, 14, 15]
    );
    assert_eq!(q.acked(got[0].series), Some(12));
}

#[test]
fn a_foreign_or_corrupt_file_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE);
    std::fs::write(
        &path,
        b"definitely not a database, and long enough to look like one to a reader",
    )
    .expect("write");
    let e = Queue::open(dir.path(), 10)
        .expect_err("corrupt")
        .to_string();
    assert!(
        e.contains(&path.display().to_string()) && e.contains("move it aside"),
        "{e}"
    );
    assert!(
        std::fs::read(&path)
            .expect("still there")
            .starts_with(b"definitely"),
        "never wiped"
    );

    let other = tempfile::tempdir().expect("tempdir");
    {
        let db = Database::create(other.path().join(FILE)).expect("create");
        let tx = db.begin_write().expect("tx");
        {
            let t: TableDefinition<&str, u64> = TableDefinition::new("someone_elses");
            tx.open_table(t)
                .expect("table")
                .insert("k", 1)
                .expect("insert");
        }
        tx.commit().expect("commit");
    }
    let e = Queue::open(other.path(), 10)
        .expect_err("foreign")
        .to_string();
    assert!(
        e.contains("not an Ergon state database") && e.contains("someone_elses"),
        "{e}"
    );
}

#[test]
fn a_second_daemon_on_the_same_state_dir_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _q = Queue::open(dir.path(), 10).expect("open");
    let e = Queue::open(dir.path(), 10).expect_err("locked").to_string();
    assert!(e.contains("--state-dir"), "{e}");
}

#[test]
fn samples_are_committed_with_the_totals_handed_over_with_them() {
    // The flusher's own totals can be older than samples the drain appended
    // meanwhile; committing those would let a restarted counter fall below
    // a sample already pushed (seen once in the SIGKILL end-to-end test).
    let dir = tempfile::tempdir().expect("tempdir");
    let d = desc("a");
    let q = Queue::open(dir.path(), 100).expect("open");
    let totals = |v: f64| -> TotalsFn { Box::new(move || vec![("a".to_string(), v)]) };
    q.append_with_totals(vec![(d.clone(), 1000, 5.0)], totals(5.0));
    q.append_with_totals(vec![(d.clone(), 1001, 6.0)], totals(6.0));
    // A stale fallback (what the snapshot said before the last drain).
    q.commit(&[("a".to_string(), 4.0)]).expect("commit");
    assert_eq!(
        q.totals().get("a"),
        Some(&6.0),
        "the newest handed-over totals"
    );
    // Without samples handed over, the fallback is committed.
    q.commit(&[("a".to_string(), 7.0)]).expect("commit");
    assert_eq!(q.totals().get("a"), Some(&7.0));
    drop(q);
    let q = Queue::open(dir.path(), 100).expect("reopen");
    assert_eq!(q.totals().get("a"), Some(&7.0));
    assert_eq!(q.len(), 2);
}

#[test]
fn series_and_totals_unused_for_the_retention_are_forgotten() {
    const DAY: i64 = 24 * 3_600_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let (gone, waiting, live) = (desc("gone"), desc("waiting"), desc("live"));
    let total = |k: &str, v: f64| (k.to_string(), v);
    let (gone_id, waiting_id) = {
        let q = Queue::open(dir.path(), 100).expect("open");
        // Day 0: `gone` is pushed and acknowledged; `waiting` never is.
        q.append(&gone, 0, 1.0);
        q.commit_at(&[total("gone_total", 1.0), total("live_total", 1.0)], 0)
            .expect("commit");
        let sent = q.peek(10).expect("peek");
        let gone_id = sent[0].series;
        q.remove_through(sent[0].seq, &[(gone_id, 0)]).expect("ack");
        q.append(&waiting, 0, 2.0);
        q.commit_at(&[], 0).expect("commit");
        let waiting_id = q.peek(10).expect("peek")[0].series;
        // Day 8: only `live` and its total are still in use.
        q.append(&live, 8 * DAY, 3.0);
        q.commit_at(&[total("live_total", 5.0)], 8 * DAY)
            .expect("commit");
        assert_eq!(q.prune(8 * DAY, 9 * DAY).expect("prune"), Pruned::default());
        let pruned = q.prune(8 * DAY, 7 * DAY).expect("prune");
        assert_eq!(
            pruned,
            Pruned {
                series: 1,
                totals: 1
            }
        );
        assert_eq!(q.descriptor_of(gone_id), None);
        assert_eq!(q.acked(gone_id), None);
        assert_eq!(
            q.descriptor_of(waiting_id).as_deref(),
            Some(&*waiting),
            "a sample still waits"
        );
        assert_eq!(q.prune(8 * DAY, 7 * DAY).expect("prune"), Pruned::default());
        assert_eq!(q.len(), 2, "no sample was touched");
        (gone_id, waiting_id)
    };
    // The store forgot them too.
    let q = Queue::open(dir.path(), 100).expect("reopen");
    assert_eq!(q.totals(), HashMap::from([("live_total".to_string(), 5.0)]));
    assert_eq!(q.descriptor_of(gone_id), None);
    assert_eq!(q.descriptor_of(waiting_id).as_deref(), Some(&*waiting));
    // A series that comes back gets a new id, with nothing acknowledged.
    q.append(&gone, 9 * DAY, 4.0);
    q.commit_at(&[], 9 * DAY).expect("commit");
    let back = q.peek(10).expect("peek").last().copied().expect("a sample");
    assert_ne!(back.series, gone_id);
    assert_eq!(q.descriptor_of(back.series).as_deref(), Some(&*gone));
    assert_eq!(q.acked(back.series), None);
}

/// A state file cut to half its size, or with 4 KiB flipped after its
/// header: redb 2.6 panics on both (measured: `page_manager.rs`
/// `raw_file_len() >= layout().len()`, and a `left == right` assertion);
/// Ergon answers that the file is damaged, with the fix, never a panic,
/// and leaves the file where it is.
#[test]
fn a_truncated_or_corrupted_state_file_is_an_error_not_a_panic() {
    for damage in ["truncated", "flipped"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = desc("a");
        {
            let q = Queue::open(dir.path(), 10_000).expect("open");
            for i in 0..2000 {
                q.append(&d, 1000 + i, i as f64);
            }
            q.commit(&[("a".into(), 9.0)]).expect("commit");
        }
        let path = dir.path().join(FILE);
        let len = std::fs::metadata(&path).expect("stat").len();
        match damage {
            "truncated" => std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(len / 2))
                .expect("truncate"),
            _ => {
                let mut bytes = std::fs::read(&path).expect("read");
                // Past the 512-byte super-header: the region allocator's
                // state, where redb asserts (`left == right`).
                for b in &mut bytes[512..512 + 4096] {
                    *b ^= 0x5A;
                }
                std::fs::write(&path, bytes).expect("write");
            }
        }
        let e = Queue::open(dir.path(), 10_000)
            .map(|_| ())
            .expect_err(damage)
            .to_string();
        println!("{damage}: {e}");
        assert!(e.contains("is damaged (redb: assertion"), "{damage}: {e}");
        assert!(
            e.contains(&path.display().to_string())
                && e.contains("mv ")
                && e.contains("--state-dir"),
            "{damage}: {e}"
        );
        assert!(path.exists(), "{damage}: never deleted");
    }
}
