//! Export fed with ledger outputs: what the batch store and the push queue
//! hold afterwards.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::*;
use crate::{batch::Store, snapshot};

fn export(push: Option<Arc<Queue>>) -> (Export, SharedStore, SharedSnapshot) {
    let store: SharedStore = Arc::new(Mutex::new(Store::new(1_000, Duration::from_secs(600))));
    let snap = snapshot::shared(Snapshot::default());
    let demand = Arc::new(crate::snapshot::Demand::default());
    (
        Export::new(store.clone(), snap.clone(), demand, push),
        store,
        snap,
    )
}

fn labels(cgroup: &str) -> Arc<CgroupLabels> {
    Arc::new(CgroupLabels {
        cgroup: cgroup.into(),
        ..CgroupLabels::default()
    })
}

fn cgroup_point(id: u64, ms: i64, joules: f64) -> Point {
    Point {
        key: SeriesKey::Cgroup(id),
        ms,
        joules,
    }
}

fn package_point(ms: i64, joules: f64) -> Point {
    Point {
        key: SeriesKey::Package {
            package: 0,
            domain: "pkg",
        },
        ms,
        joules,
    }
}

/// Every series the store holds for a new consumer: (labels, points).
fn leased(store: &SharedStore) -> Vec<(String, Vec<(i64, f64)>)> {
    let lease = batch::lock(store)
        .lease("test", true, 1_000, Instant::now())
        .expect("a lease");
    let mut out: Vec<_> = lease
        .series
        .into_iter()
        .map(|s| (s.labels.to_string(), s.points.to_vec()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn a_cgroup_whose_labels_change_starts_a_new_series() {
    let (mut e, store, _) = export(None);
    let (late, named) = (labels("unresolved:5"), labels("/a.service"));
    e.write(Output {
        labels: vec![(5, late.clone())],
        points: vec![package_point(10, 1.0), cgroup_point(5, 10, 0.5)],
        ..Output::default()
    });
    // The same labels, as a new Arc: the same series.
    e.write(Output {
        labels: vec![(5, labels("unresolved:5"))],
        points: vec![cgroup_point(5, 20, 0.6)],
        ..Output::default()
    });
    e.write(Output {
        labels: vec![(5, named.clone())],
        points: vec![cgroup_point(5, 30, 0.7)],
        ..Output::default()
    });
    // Unchanged labels are not sent again: the points go on in it.
    e.write(Output {
        points: vec![cgroup_point(5, 40, 0.8)],
        ..Output::default()
    });
    let key = SeriesKey::Cgroup(5);
    assert_eq!(
        batch::lock(&store).labels_of(&key),
        Some(
            Series::Cgroup {
                id: 0,
                labels: named.clone()
            }
            .rendered_labels()
            .as_str()
        )
    );
    let series = leased(&store);
    assert_eq!(
        series,
        vec![
            (
                Series::Cgroup {
                    id: 0,
                    labels: named.clone()
                }
                .rendered_labels(),
                vec![(30, 0.7), (40, 0.8)]
            ),
            (
                Series::Cgroup {
                    id: 0,
                    labels: late.clone()
                }
                .rendered_labels(),
                vec![(10, 0.5), (20, 0.6)]
            ),
            (r#"{package="0",domain="pkg"}"#.to_string(), vec![(10, 1.0)]),
        ]
    );
}

#[test]
fn a_recreated_series_ends_before_the_points_and_a_folded_one_after() {
    let (mut e, store, _) = export(None);
    let l = labels("/b.service");
    e.write(Output {
        labels: vec![(6, l.clone())],
        points: vec![cgroup_point(6, 10, 1.0)],
        ..Output::default()
    });
    e.write(Output {
        recreated: vec![6],
        labels: vec![(6, l.clone())],
        points: vec![cgroup_point(6, 20, 2.0)],
        folded: vec![6],
        ..Output::default()
    });
    let key = SeriesKey::Cgroup(6);
    assert_eq!(
        batch::lock(&store).labels_of(&key),
        None,
        "folded: no live series"
    );
    // Two series, each with its own points: the recreated one ended before
    // the point of 20 ms, the folded one after it.
    let points: Vec<_> = leased(&store).into_iter().map(|s| s.1).collect();
    assert_eq!(points, vec![vec![(10, 1.0)], vec![(20, 2.0)]]);
}

#[test]
fn pushed_points_go_to_the_queue_once_with_the_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = Arc::new(Queue::open(dir.path(), 1_000).expect("queue"));
    let (mut e, _, snap) = export(Some(q.clone()));
    let l = labels("/c.service");
    e.write(Output {
        labels: vec![(7, l.clone())],
        points: vec![package_point(10, 1.0), cgroup_point(7, 10, 0.25)],
        ..Output::default()
    });
    assert_eq!(q.in_memory(), 0, "held until the snapshot that covers them");
    let s = Snapshot {
        records_decoded: 42,
        ..Snapshot::default()
    };
    e.publish(s.clone());
    assert_eq!(
        snap.load().records_decoded,
        42,
        "the snapshot is swapped in"
    );
    assert_eq!(q.in_memory(), 2);
    e.publish(s);
    assert_eq!(q.in_memory(), 2, "handed over once");
}
