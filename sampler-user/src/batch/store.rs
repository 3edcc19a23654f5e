//! The sample store behind `/metrics/batch`: timestamped points per series,
//! bounded in samples and in age, and a cursor per consumer.
//!
//! A consumer's cursor is, per series, the timestamp of the last sample it
//! was sent. Timestamps of a series strictly increase, so that is exact
//! however the series interleave, and a response cut short (deadline)
//! advances each series only as far as it was written.

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use rustc_hash::FxHashMap as HashMap;

/// Samples older than this are never served: Prometheus rejects samples
/// about an hour older than its head as out of bounds.
pub const MAX_AGE_MS: i64 = 55 * 60 * 1000;

/// More consumers than this are refused (each holds a cursor per series).
pub const MAX_CONSUMERS: usize = 64;

/// Metric family of a series, in output order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Package,
    Cgroup,
}

/// What a series measures; the store interns one series per key (and per
/// label set, which a key may change once, e.g. a cgroup resolved late).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SeriesKey {
    Package { package: u32, domain: &'static str },
    Cgroup(u64),
}

#[derive(Debug)]
struct Series {
    family: Family,
    /// Rendered label set, `{package="0",domain="pkg"}`.
    labels: Arc<str>,
    points: VecDeque<(i64, f64)>,
    /// No more points will come (cgroup folded, labels changed).
    retired: bool,
}

#[derive(Debug)]
struct Consumer {
    cursor: HashMap<u64, i64>,
    last_seen: Instant,
    served: u64,
    dropped: u64,
    /// Scrapes (leases) so far: a consumer scraped [`ESTABLISHED`] times is
    /// a scraper, never evicted for a newcomer.
    leases: u64,
}

/// Leases after which a consumer is established: a real Prometheus
/// scrapes again and again; a name used once or twice (a probe, a typo,
/// a client squatting slots) is not, and is evicted when the slots are
/// full and a new name comes.
pub const ESTABLISHED: u64 = 3;

/// One series of a lease: the points after the consumer's cursor.
#[derive(Debug)]
pub struct LeasedSeries {
    pub family: Family,
    pub labels: Arc<str>,
    pub id: u64,
    pub points: Vec<(i64, f64)>,
}

/// A consumer's view of the store at one request: what to send, in output
/// order (family, then labels).
#[derive(Debug, Default)]
pub struct Lease {
    pub consumer: String,
    pub series: Vec<LeasedSeries>,
}

impl Lease {
    pub fn samples(&self) -> usize {
        self.series.iter().map(|s| s.points.len()).sum()
    }
}

/// Per-consumer figures for the self-metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsumerStats {
    pub name: String,
    pub served: u64,
    pub dropped: u64,
    /// Samples held that this consumer has not been sent yet.
    pub pending: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("too many batch consumers ({max}), every one an established scraper; reuse consumer names, or wait --consumer-ttl for idle ones to expire")]
    TooManyConsumers { max: usize },
}

#[derive(Debug)]
pub struct Store {
    capacity: usize,
    ttl: Duration,
    series: HashMap<u64, Series>,
    keys: HashMap<SeriesKey, u64>,
    /// Series of each held sample, oldest first: who to drop when full.
    fifo: VecDeque<u64>,
    next_id: u64,
    consumers: HashMap<String, Consumer>,
    dropped: u64,
    /// Consumers evicted for a newcomer while the slots were full.
    evicted: u64,
}

impl Store {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            capacity: capacity.max(1),
            ttl,
            series: HashMap::default(),
            keys: HashMap::default(),
            fifo: VecDeque::new(),
            next_id: 0,
            consumers: HashMap::default(),
            dropped: 0,
            evicted: 0,
        }
    }

    /// Consumers evicted so far to make room for a new name.
    pub fn consumers_evicted(&self) -> u64 {
        self.evicted
    }

    /// Appends a point to the series of `key` with `labels` (rendered by the
    /// caller, called only when the series is new). A point not newer than
    /// the series' last is ignored. Drops the oldest samples beyond capacity.
    pub fn push(
        &mut self,
        key: &SeriesKey,
        family: Family,
        labels: impl FnOnce() -> String,
        ts_ms: i64,
        value: f64,
    ) {
        let id = match self.keys.get(key) {
            Some(&id) => id,
            None => {
                let id = self.next_id;
                self.next_id += 1;
                self.series.insert(
                    id,
                    Series {
                        family,
                        labels: labels().into(),
                        points: VecDeque::new(),
                        retired: false,
                    },
                );
                self.keys.insert(key.clone(), id);
                id
            }
        };
        let Some(s) = self.series.get_mut(&id) else {
            return;
        };
        if s.points.back().is_some_and(|&(t, _)| ts_ms <= t) {
            return;
        }
        s.points.push_back((ts_ms, value));
        self.fifo.push_back(id);
        while self.fifo.len() > self.capacity {
            self.drop_oldest();
        }
    }

    /// The series of `key` ends (a new one starts at its next point).
    pub fn retire(&mut self, key: &SeriesKey) {
        if let Some(id) = self.keys.remove(key) {
            if let Some(s) = self.series.get_mut(&id) {
                s.retired = true;
            }
        }
    }

    /// Labels of the live series of `key`.
    pub fn labels_of(&self, key: &SeriesKey) -> Option<&str> {
        let id = self.keys.get(key)?;
        self.series.get(id).map(|s| &*s.labels)
    }

    fn drop_oldest(&mut self) {
        let Some(id) = self.fifo.pop_front() else {
            return;
        };
        let Some(s) = self.series.get_mut(&id) else {
            return;
        };
        let Some((ts, _)) = s.points.pop_front() else {
            return;
        };
        self.dropped += 1;
        for c in self.consumers.values_mut() {
            if c.cursor.get(&id).is_none_or(|&t| t < ts) {
                c.dropped += 1;
            }
        }
        if s.points.is_empty() && s.retired {
            self.series.remove(&id);
            for c in self.consumers.values_mut() {
                c.cursor.remove(&id);
            }
        }
    }

    /// Drops samples older than [`MAX_AGE_MS`] and consumers idle for the TTL.
    pub fn expire(&mut self, now_ms: i64, now: Instant) {
        let horizon = now_ms - MAX_AGE_MS;
        while let Some(&id) = self.fifo.front() {
            let old = self
                .series
                .get(&id)
                .and_then(|s| s.points.front())
                .is_none_or(|&(t, _)| t < horizon);
            if !old {
                break;
            }
            self.drop_oldest();
        }
        let ttl = self.ttl;
        self.consumers
            .retain(|_, c| now.duration_since(c.last_seen) < ttl);
    }

    /// What consumer `name` has not been sent yet, up to `now_ms` (a point
    /// stamped later waits). A new consumer starts from the newest point of
    /// every series, or from the oldest held with `from_oldest`.
    pub fn lease(
        &mut self,
        name: &str,
        from_oldest: bool,
        now_ms: i64,
        now: Instant,
    ) -> Result<Lease, StoreError> {
        if !self.consumers.contains_key(name) {
            if self.consumers.len() >= MAX_CONSUMERS {
                self.expire(now_ms, now);
            }
            if self.consumers.len() >= MAX_CONSUMERS {
                // Full of live consumers: a newcomer takes the slot of the
                // least established one (fewest scrapes, then idle the
                // longest), never an established scraper's.
                let victim = self
                    .consumers
                    .iter()
                    .filter(|(_, c)| c.leases < ESTABLISHED)
                    .min_by_key(|(_, c)| (c.leases, c.last_seen))
                    .map(|(n, _)| n.clone());
                let Some(victim) = victim else {
                    return Err(StoreError::TooManyConsumers { max: MAX_CONSUMERS });
                };
                self.consumers.remove(&victim);
                self.evicted += 1;
            }
            let cursor = if from_oldest {
                HashMap::default()
            } else {
                self.series
                    .iter()
                    .filter_map(|(&id, s)| s.points.back().map(|&(t, _)| (id, t)))
                    .collect()
            };
            self.consumers.insert(
                name.to_owned(),
                Consumer {
                    cursor,
                    last_seen: now,
                    served: 0,
                    dropped: 0,
                    leases: 0,
                },
            );
        }
        let Some(c) = self.consumers.get_mut(name) else {
            return Ok(Lease::default());
        };
        c.last_seen = now;
        c.leases += 1;
        let horizon = now_ms - MAX_AGE_MS;
        let mut out = Vec::new();
        for (&id, s) in &self.series {
            let after = c
                .cursor
                .get(&id)
                .copied()
                .unwrap_or(i64::MIN)
                .max(horizon - 1);
            // Points are sorted by time: find the first after the cursor.
            let first = s.points.partition_point(|&(t, _)| t <= after);
            let points: Vec<(i64, f64)> = s
                .points
                .range(first..)
                .take_while(|&&(t, _)| t <= now_ms)
                .copied()
                .collect();
            if !points.is_empty() {
                out.push(LeasedSeries {
                    family: s.family,
                    labels: s.labels.clone(),
                    id,
                    points,
                });
            }
        }
        out.sort_by(|a, b| (a.family, &a.labels).cmp(&(b.family, &b.labels)));
        Ok(Lease {
            consumer: name.to_owned(),
            series: out,
        })
    }

    /// Consumer `name` has received, per series, everything up to the given
    /// timestamp (`sent` samples in all).
    pub fn commit(&mut self, name: &str, written: &[(u64, i64)], sent: u64) {
        let Some(c) = self.consumers.get_mut(name) else {
            return;
        };
        for &(id, ts) in written {
            let e = c.cursor.entry(id).or_insert(ts);
            *e = (*e).max(ts);
        }
        c.served += sent;
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.fifo.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fifo.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Samples dropped because the store was full or they grew too old.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn consumer_stats(&self) -> Vec<ConsumerStats> {
        let mut out: Vec<ConsumerStats> = self
            .consumers
            .iter()
            .map(|(name, c)| {
                let pending = self
                    .series
                    .iter()
                    .map(|(id, s)| {
                        let after = c.cursor.get(id).copied().unwrap_or(i64::MIN);
                        (s.points.len() - s.points.partition_point(|&(t, _)| t <= after)) as u64
                    })
                    .sum();
                ConsumerStats {
                    name: name.clone(),
                    served: c.served,
                    dropped: c.dropped,
                    pending,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
