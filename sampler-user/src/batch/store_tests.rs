//! Cursor semantics of the sample store.

use super::*;

const PKG: SeriesKey = SeriesKey::Package {
    package: 0,
    domain: "pkg",
};

fn push_pkg(s: &mut Store, ts: i64, v: f64) {
    s.push(
        &PKG,
        Family::Package,
        || "{package=\"0\",domain=\"pkg\"}".into(),
        ts,
        v,
    );
}

fn points(l: &Lease) -> Vec<i64> {
    l.series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect()
}

fn commit_all(s: &mut Store, l: &Lease) {
    let written: Vec<(u64, i64)> = l
        .series
        .iter()
        .filter_map(|x| x.points.last().map(|p| (x.id, p.0)))
        .collect();
    s.commit(&l.consumer, &written, l.samples() as u64, Some(l.covers_to));
}

const NOW: i64 = 1_700_000_000_000;

#[test]
fn a_new_consumer_starts_from_now_or_from_the_oldest() {
    let mut s = Store::new(100, Duration::from_secs(600));
    let t = Instant::now();
    for i in 0..5 {
        push_pkg(&mut s, NOW + i, i as f64);
    }
    let a = s.lease("a", false, NOW + 10, t).expect("lease");
    assert!(points(&a).is_empty(), "from now: nothing old");
    let b = s.lease("b", true, NOW + 10, t).expect("lease");
    assert_eq!(points(&b), (NOW..NOW + 5).collect::<Vec<_>>());
    push_pkg(&mut s, NOW + 5, 5.0);
    let a = s.lease("a", false, NOW + 10, t).expect("lease");
    assert_eq!(points(&a), vec![NOW + 5]);
}

#[test]
fn each_consumer_gets_everything_exactly_once_and_only_after_a_commit() {
    let mut s = Store::new(1000, Duration::from_secs(600));
    let t = Instant::now();
    s.lease("a", false, NOW, t).expect("register a");
    s.lease("b", false, NOW, t).expect("register b");
    for i in 0..10 {
        push_pkg(&mut s, NOW + i, i as f64);
    }
    let a1 = s.lease("a", false, NOW + 100, t).expect("lease");
    assert_eq!(points(&a1).len(), 10);
    // Not committed (body not fully written): the next lease repeats it.
    let a2 = s.lease("a", false, NOW + 100, t).expect("lease");
    assert_eq!(points(&a2), points(&a1));
    commit_all(&mut s, &a2);
    for i in 10..15 {
        push_pkg(&mut s, NOW + i, i as f64);
    }
    let a3 = s.lease("a", false, NOW + 100, t).expect("lease");
    assert_eq!(points(&a3), (NOW + 10..NOW + 15).collect::<Vec<_>>());
    // b is independent of a.
    let b = s.lease("b", false, NOW + 100, t).expect("lease");
    assert_eq!(points(&b), (NOW..NOW + 15).collect::<Vec<_>>());
    let stats = s.consumer_stats();
    assert_eq!(stats[0].served, 10);
    assert_eq!(stats[0].pending, 5);
}

#[test]
fn a_partial_commit_resumes_each_series_where_it_stopped() {
    let mut s = Store::new(1000, Duration::from_secs(600));
    let t = Instant::now();
    s.lease("a", false, NOW, t).expect("register");
    let cg = SeriesKey::Cgroup(7);
    for i in 0..10 {
        push_pkg(&mut s, NOW + i, i as f64);
        s.push(
            &cg,
            Family::Cgroup,
            || "{cgroup=\"/x\"}".into(),
            NOW + i,
            1.0 + i as f64,
        );
    }
    let l = s.lease("a", false, NOW + 100, t).expect("lease");
    let pkg_id = l.series[0].id;
    // Only the package series up to NOW+3 was written.
    s.commit("a", &[(pkg_id, NOW + 3)], 4, None);
    let l = s.lease("a", false, NOW + 100, t).expect("lease");
    assert_eq!(l.series[0].points.first().map(|p| p.0), Some(NOW + 4));
    assert_eq!(
        l.series[1].points.len(),
        10,
        "the cgroup series was not written at all"
    );
}

#[test]
fn future_points_wait_and_old_points_are_never_served() {
    let mut s = Store::new(1000, Duration::from_secs(600));
    let t = Instant::now();
    push_pkg(&mut s, NOW - MAX_AGE_MS - 1, 0.0);
    push_pkg(&mut s, NOW - 1000, 1.0);
    push_pkg(&mut s, NOW + 5000, 2.0);
    let l = s.lease("a", true, NOW, t).expect("lease");
    assert_eq!(
        points(&l),
        vec![NOW - 1000],
        "too old and future both held back"
    );
    commit_all(&mut s, &l);
    let l = s.lease("a", true, NOW + 5000, t).expect("lease");
    assert_eq!(
        points(&l),
        vec![NOW + 5000],
        "the future point, once it is due"
    );
    s.expire(NOW, t);
    assert_eq!(s.len(), 2, "expire drops the point older than 55 minutes");
}

#[test]
fn a_full_store_drops_the_oldest_and_counts_it_per_consumer() {
    let mut s = Store::new(4, Duration::from_secs(600));
    let t = Instant::now();
    s.lease("slow", false, NOW, t).expect("register");
    s.lease("fast", false, NOW, t).expect("register");
    for i in 0..4 {
        push_pkg(&mut s, NOW + i, i as f64);
    }
    let f = s.lease("fast", false, NOW + 100, t).expect("lease");
    commit_all(&mut s, &f);
    for i in 4..7 {
        push_pkg(&mut s, NOW + i, i as f64);
    }
    assert_eq!(s.len(), 4);
    assert_eq!(s.dropped(), 3);
    let stats = s.consumer_stats();
    let by = |n: &str| stats.iter().find(|c| c.name == n).map(|c| c.dropped);
    assert_eq!(by("slow"), Some(3), "slow lost the three oldest");
    assert_eq!(by("fast"), Some(0), "fast had them already");
    let l = s.lease("slow", false, NOW + 100, t).expect("lease");
    assert_eq!(points(&l), (NOW + 3..NOW + 7).collect::<Vec<_>>());
}

#[test]
fn idle_consumers_expire_and_the_count_is_capped() {
    let mut s = Store::new(10, Duration::from_millis(10));
    let t = Instant::now();
    for i in 0..MAX_CONSUMERS {
        for _ in 0..ESTABLISHED {
            s.lease(&format!("c{i}"), false, NOW, t).expect("lease");
        }
    }
    assert!(matches!(
        s.lease("one-more", false, NOW, t),
        Err(StoreError::TooManyConsumers { .. })
    ));
    let later = t + Duration::from_millis(20);
    assert!(
        s.lease("one-more", false, NOW, later).is_ok(),
        "idle ones expired"
    );
    assert_eq!(s.consumer_stats().len(), 1);
}

/// 64 names used once each (a client squatting the slots without auth)
/// no longer lock out a Prometheus that starts later: a newcomer takes the
/// slot of the least established consumer, and an established scraper
/// keeps its cursor through any number of squatters.
#[test]
fn squatted_slots_go_to_a_newcomer_and_established_scrapers_keep_theirs() {
    let mut s = Store::new(100, Duration::from_secs(600));
    let t = Instant::now();
    for _ in 0..ESTABLISHED {
        s.lease("prom-a", false, NOW, t).expect("lease");
    }
    push_pkg(&mut s, NOW + 1, 1.0);
    for i in 0..MAX_CONSUMERS - 1 {
        s.lease(
            &format!("squat{i}"),
            false,
            NOW + 1,
            t + Duration::from_millis(i as u64),
        )
        .expect("lease");
    }
    assert_eq!(s.consumer_stats().len(), MAX_CONSUMERS);
    let later = t + Duration::from_secs(1);
    s.lease("prom-b", false, NOW + 1, later)
        .expect("a new Prometheus gets a slot");
    assert_eq!(s.consumers_evicted(), 1);
    let names: Vec<String> = s.consumer_stats().into_iter().map(|c| c.name).collect();
    assert!(
        !names.contains(&"squat0".to_string()),
        "the squatter idle the longest went: {names:?}"
    );
    for i in 0..500 {
        s.lease(&format!("more{i}"), false, NOW + 1, later)
            .expect("lease");
    }
    let l = s.lease("prom-a", false, NOW + 1, later).expect("prom-a");
    assert_eq!(
        points(&l),
        vec![NOW + 1],
        "prom-a's cursor survived 500 squatters"
    );
}

#[test]
fn points_not_newer_than_the_last_are_ignored_and_retired_series_restart() {
    let mut s = Store::new(10, Duration::from_secs(600));
    push_pkg(&mut s, NOW, 1.0);
    push_pkg(&mut s, NOW, 2.0);
    push_pkg(&mut s, NOW - 1, 3.0);
    assert_eq!(s.len(), 1);
    let cg = SeriesKey::Cgroup(9);
    s.push(
        &cg,
        Family::Cgroup,
        || "{cgroup=\"unresolved:9\"}".into(),
        NOW,
        1.0,
    );
    s.retire(&cg);
    s.push(
        &cg,
        Family::Cgroup,
        || "{cgroup=\"/late\"}".into(),
        NOW + 1,
        2.0,
    );
    assert_eq!(s.labels_of(&cg), Some("{cgroup=\"/late\"}"));
    let l = s.lease("a", true, NOW + 10, Instant::now()).expect("lease");
    assert_eq!(l.series.len(), 3, "the old label set keeps its point");
}

#[derive(Clone, Debug)]
enum Op {
    /// A point of series `key`, `dt` ms after the newest so far.
    Push {
        key: u64,
        dt: i64,
    },
    Retire {
        key: u64,
    },
    /// Consumer `who` reads with a clock `lag` ms behind the newest point
    /// and commits the first `written` samples (all of them when `None`).
    Read {
        who: usize,
        lag: i64,
        written: Option<usize>,
    },
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        6 => (0u64..5, 0i64..3).prop_map(|(key, dt)| Op::Push { key, dt }),
        1 => (0u64..5).prop_map(|key| Op::Retire { key }),
        2 => (0usize..2, 0i64..3, proptest::option::of(0usize..6))
            .prop_map(|(who, lag, written)| Op::Read { who, lag, written }),
    ]
}

/// Commits what an encoder cut after `n` samples would have written.
fn commit_first(s: &mut Store, l: &Lease, n: Option<usize>) -> Vec<f64> {
    let Some(n) = n.filter(|&n| n < l.samples()) else {
        commit_all(s, l);
        return l
            .series
            .iter()
            .flat_map(|x| x.points.iter().map(|p| p.1))
            .collect();
    };
    let (mut sent, mut written, mut values) = (0, Vec::new(), Vec::new());
    for x in &l.series {
        let take = x.points.len().min(n - sent);
        if take > 0 {
            written.push((x.id, x.points[take - 1].0));
            values.extend(x.points[..take].iter().map(|p| p.1));
        }
        sent += take;
    }
    s.commit(&l.consumer, &written, sent as u64, None);
    values
}

proptest::proptest! {
    /// Whatever the interleaving of pushes, retirements, reads cut short
    /// and a full store: each consumer is sent every sample it did not
    /// lose to the capacity exactly once, each series in time order, and
    /// what it lost is what the store counts as dropped for it.
    #[test]
    fn every_sample_reaches_each_consumer_once_or_is_counted_dropped(
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let mut s = Store::new(8, Duration::from_secs(600));
        let t = Instant::now();
        let names = ["a", "b"];
        for n in names {
            s.lease(n, true, NOW, t).expect("register");
        }
        let (mut newest, mut next_value) = (NOW, 0.0);
        let mut last: std::collections::HashMap<u64, i64> = Default::default();
        let mut accepted = std::collections::HashSet::new();
        let mut got: [Vec<f64>; 2] = Default::default();
        for op in ops.into_iter().chain(names.iter().enumerate().map(|(who, _)| Op::Read {
            who,
            lag: -1,
            written: None,
        })) {
            match op {
                Op::Push { key, dt } => {
                    newest += dt;
                    next_value += 1.0;
                    let k = SeriesKey::Cgroup(key);
                    s.push(&k, Family::Cgroup, || format!("{{cgroup=\"{key}\"}}"), newest, next_value);
                    if last.get(&key).is_none_or(|&l| newest > l) {
                        last.insert(key, newest);
                        accepted.insert(next_value as u64);
                    }
                }
                Op::Retire { key } => {
                    s.retire(&SeriesKey::Cgroup(key));
                    last.remove(&key);
                }
                Op::Read { who, lag, written } => {
                    let now = newest - lag;
                    let l = s.lease(names[who], false, now, t).expect("lease");
                    for x in &l.series {
                        proptest::prop_assert!(x.points.windows(2).all(|w| w[0].0 < w[1].0));
                        proptest::prop_assert!(x.points.iter().all(|p| p.0 <= now));
                    }
                    got[who].extend(commit_first(&mut s, &l, written));
                }
            }
            proptest::prop_assert!(s.len() <= s.capacity());
        }
        proptest::prop_assert_eq!(s.len() as u64 + s.dropped(), accepted.len() as u64);
        let stats = s.consumer_stats();
        for (who, values) in got.iter().enumerate() {
            let mut seen = std::collections::HashSet::new();
            for v in values {
                proptest::prop_assert!(seen.insert(*v as u64), "{} sent {} twice", names[who], v);
                proptest::prop_assert!(accepted.contains(&(*v as u64)));
            }
            let c = stats.iter().find(|c| c.name == names[who]).expect("consumer");
            proptest::prop_assert_eq!(c.pending, 0);
            proptest::prop_assert_eq!(
                seen.len() as u64 + c.dropped,
                accepted.len() as u64,
                "{}: sent + dropped = every sample", names[who]
            );
        }
    }
}

#[test]
fn a_handle_pushes_to_its_own_series_only() {
    let mut s = Store::new(100, Duration::from_secs(600));
    let t = Instant::now();
    let (a, b) = (SeriesKey::Cgroup(1), SeriesKey::Cgroup(2));
    let ha = s.open(&a, Family::Cgroup, || "{cgroup=\"/a\"}".into());
    assert!(s.push_to(ha, NOW, 1.0));
    s.retire(&a);
    assert!(
        !s.push_to(ha, NOW + 1, 2.0),
        "retired: the caller opens again"
    );
    // Once its samples are gone the slot is reused by another series, which
    // the old handle must not write to.
    let l = s.lease("c", true, NOW + 10, t).expect("lease");
    commit_all(&mut s, &l);
    while !s.is_empty() {
        s.drop_oldest();
    }
    let hb = s.open(&b, Family::Cgroup, || "{cgroup=\"/b\"}".into());
    assert!(!s.push_to(ha, NOW + 2, 3.0));
    assert!(s.push_to(hb, NOW + 2, 4.0));
    let l = s.lease("c", false, NOW + 10, t).expect("lease");
    assert_eq!(l.series.len(), 1);
    assert_eq!(&*l.series[0].labels, "{cgroup=\"/b\"}");
    assert_eq!(l.series[0].points, vec![(NOW + 2, 4.0)]);
}
