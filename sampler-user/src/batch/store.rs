//! The sample store behind `/metrics/batch`: timestamped points per series,
//! bounded in samples and in age, and a cursor per consumer.
//!
//! A consumer's cursor is, per series, the timestamp of the last sample it
//! was sent. Timestamps of a series strictly increase, so that is exact
//! however the series interleave, and a response cut short (deadline)
//! advances each series only as far as it was written.
//!
//! The samples are one log in the order they were pushed, not a queue per
//! series: a drain appends thousands of points of as many series (1,000
//! cgroups make 10,000 points a second), and a queue per series costs a
//! cache miss per point to push and another to drop, where the log appends
//! and drops in sequence. A read groups the log by series. So that a read
//! costs what it serves, not the whole log, each consumer also keeps the
//! log position up to which its last complete read covered everything:
//! the next read starts there (the per-series cursors still decide).

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
    /// Never reused: consumers' cursors and leases name series by it.
    id: u64,
    family: Family,
    /// Rendered label set, `{package="0",domain="pkg"}`.
    labels: Arc<str>,
    /// Timestamp of the newest sample pushed.
    last_ts: Option<i64>,
    /// Samples of this series in the log.
    held: usize,
    /// No more points will come (cgroup folded, labels changed).
    retired: bool,
}

/// A series' place in the store ([`Store::open`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handle {
    slot: u32,
    /// The series' id: a slot reused by another series is told apart.
    id: u64,
}

/// One sample in the log; `slot` is its series' index in `Store::series`.
#[derive(Clone, Copy, Debug)]
struct Sample {
    slot: u32,
    ts: i64,
    value: f64,
}

#[derive(Debug)]
struct Consumer {
    cursor: HashMap<u64, i64>,
    /// Log position (sequence number) before which every sample was sent
    /// or is not to be sent: reads start here.
    from_seq: u64,
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
    /// The log position this lease covers up to: once every sample of it
    /// is written, the consumer's next read starts there
    /// ([`Store::commit`]'s `complete`).
    pub covers_to: u64,
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
    /// Series by slot; a slot is freed when its series is retired and has
    /// no sample left, and reused.
    series: Vec<Option<Series>>,
    free: Vec<u32>,
    keys: HashMap<SeriesKey, u32>,
    /// Every held sample, in push order.
    log: VecDeque<Sample>,
    /// Sequence number of `log[0]`.
    head_seq: u64,
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
            series: Vec::new(),
            free: Vec::new(),
            keys: HashMap::default(),
            log: VecDeque::new(),
            head_seq: 0,
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

    /// Log position after the newest sample.
    fn end_seq(&self) -> u64 {
        self.head_seq + self.log.len() as u64
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
        let h = self.open(key, family, labels);
        self.push_to(h, ts_ms, value);
    }

    /// The live series of `key`, made with `labels` if there is none: a
    /// handle to push to without looking the key up again.
    pub fn open(
        &mut self,
        key: &SeriesKey,
        family: Family,
        labels: impl FnOnce() -> String,
    ) -> Handle {
        let slot = match self.keys.get(key) {
            Some(&slot) => slot,
            None => {
                let s = Series {
                    id: self.next_id,
                    family,
                    labels: labels().into(),
                    last_ts: None,
                    held: 0,
                    retired: false,
                };
                self.next_id += 1;
                let slot = match self.free.pop() {
                    Some(slot) => {
                        self.series[slot as usize] = Some(s);
                        slot
                    }
                    None => {
                        self.series.push(Some(s));
                        (self.series.len() - 1) as u32
                    }
                };
                self.keys.insert(key.clone(), slot);
                slot
            }
        };
        let id = self.series[slot as usize]
            .as_ref()
            .map_or(u64::MAX, |s| s.id);
        Handle { slot, id }
    }

    /// Appends a point to the series of `h` (as [`Store::push`]). Returns
    /// false when that series has been retired since: nothing is stored,
    /// and the caller opens the key again.
    pub fn push_to(&mut self, h: Handle, ts_ms: i64, value: f64) -> bool {
        let slot = h.slot;
        let Some(s) = self
            .series
            .get_mut(slot as usize)
            .and_then(Option::as_mut)
            .filter(|s| s.id == h.id && !s.retired)
        else {
            return false;
        };
        if s.last_ts.is_some_and(|t| ts_ms <= t) {
            return true;
        }
        s.last_ts = Some(ts_ms);
        s.held += 1;
        self.log.push_back(Sample {
            slot,
            ts: ts_ms,
            value,
        });
        while self.log.len() > self.capacity {
            self.drop_oldest();
        }
        true
    }

    /// The series of `key` ends (a new one starts at its next point).
    pub fn retire(&mut self, key: &SeriesKey) {
        if let Some(slot) = self.keys.remove(key) {
            if let Some(s) = self.series.get_mut(slot as usize).and_then(Option::as_mut) {
                s.retired = true;
            }
            self.free_if_done(slot);
        }
    }

    /// Labels of the live series of `key`.
    pub fn labels_of(&self, key: &SeriesKey) -> Option<&str> {
        let slot = self.keys.get(key)?;
        self.series
            .get(*slot as usize)?
            .as_ref()
            .map(|s| &*s.labels)
    }

    /// Frees the slot of a retired series with nothing left in the log.
    fn free_if_done(&mut self, slot: u32) {
        let Some(entry) = self.series.get_mut(slot as usize) else {
            return;
        };
        if let Some(s) = entry.as_ref().filter(|s| s.retired && s.held == 0) {
            let id = s.id;
            *entry = None;
            self.free.push(slot);
            for c in self.consumers.values_mut() {
                c.cursor.remove(&id);
            }
        }
    }

    fn drop_oldest(&mut self) {
        let Some(sample) = self.log.pop_front() else {
            return;
        };
        let seq = self.head_seq;
        self.head_seq += 1;
        self.dropped += 1;
        let Some(s) = self
            .series
            .get_mut(sample.slot as usize)
            .and_then(Option::as_mut)
        else {
            return;
        };
        s.held = s.held.saturating_sub(1);
        let id = s.id;
        for c in self.consumers.values_mut() {
            // Before its read position a consumer had every sample.
            if seq >= c.from_seq && c.cursor.get(&id).is_none_or(|&t| t < sample.ts) {
                c.dropped += 1;
            }
        }
        self.free_if_done(sample.slot);
    }

    /// Drops samples older than [`MAX_AGE_MS`] and consumers idle for the TTL.
    pub fn expire(&mut self, now_ms: i64, now: Instant) {
        let horizon = now_ms - MAX_AGE_MS;
        while self.log.front().is_some_and(|s| s.ts < horizon) {
            self.drop_oldest();
        }
        let ttl = self.ttl;
        self.consumers
            .retain(|_, c| now.duration_since(c.last_seen) < ttl);
    }

    /// Each slot's cursor for consumer `c` (`None`: nothing sent yet).
    fn cursors(&self, c: &Consumer) -> Vec<Option<i64>> {
        self.series
            .iter()
            .map(|s| s.as_ref().and_then(|s| c.cursor.get(&s.id).copied()))
            .collect()
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
            self.admit(name, from_oldest, now_ms, now)?;
        }
        let Some(c) = self.consumers.get_mut(name) else {
            return Ok(Lease::default());
        };
        c.last_seen = now;
        c.leases += 1;
        let Some(c) = self.consumers.get(name) else {
            return Ok(Lease::default());
        };
        let horizon = now_ms - MAX_AGE_MS;
        let cursors = self.cursors(c);
        let start = c.from_seq.max(self.head_seq);
        let mut covers_to = self.end_seq();
        let mut by_slot: Vec<Vec<(i64, f64)>> = vec![Vec::new(); self.series.len()];
        for (i, s) in self
            .log
            .range((start - self.head_seq) as usize..)
            .enumerate()
        {
            if s.ts > now_ms {
                // Waits for a later read, which must look here again.
                covers_to = covers_to.min(start + i as u64);
                continue;
            }
            let slot = s.slot as usize;
            if s.ts < horizon || cursors[slot].is_some_and(|t| s.ts <= t) {
                continue;
            }
            by_slot[slot].push((s.ts, s.value));
        }
        let mut out: Vec<LeasedSeries> = by_slot
            .into_iter()
            .enumerate()
            .filter(|(_, points)| !points.is_empty())
            .filter_map(|(slot, points)| {
                let s = self.series[slot].as_ref()?;
                Some(LeasedSeries {
                    family: s.family,
                    labels: s.labels.clone(),
                    id: s.id,
                    points,
                })
            })
            .collect();
        out.sort_by(|a, b| (a.family, &a.labels).cmp(&(b.family, &b.labels)));
        Ok(Lease {
            consumer: name.to_owned(),
            series: out,
            covers_to,
        })
    }

    /// Registers consumer `name`, evicting the least established one when
    /// the slots are full.
    fn admit(
        &mut self,
        name: &str,
        from_oldest: bool,
        now_ms: i64,
        now: Instant,
    ) -> Result<(), StoreError> {
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
        // From now: everything held was "sent" (the newest point of each
        // series included, as its cursor would say).
        let from_seq = if from_oldest {
            self.head_seq
        } else {
            self.end_seq()
        };
        self.consumers.insert(
            name.to_owned(),
            Consumer {
                cursor: HashMap::default(),
                from_seq,
                last_seen: now,
                served: 0,
                dropped: 0,
                leases: 0,
            },
        );
        Ok(())
    }

    /// Consumer `name` has received, per series, everything up to the given
    /// timestamp (`sent` samples in all). `complete` is the lease's
    /// [`Lease::covers_to`] when every sample of it was written (the next
    /// read starts there), `None` when the response was cut short.
    pub fn commit(&mut self, name: &str, written: &[(u64, i64)], sent: u64, complete: Option<u64>) {
        let Some(c) = self.consumers.get_mut(name) else {
            return;
        };
        for &(id, ts) in written {
            let e = c.cursor.entry(id).or_insert(ts);
            *e = (*e).max(ts);
        }
        if let Some(seq) = complete {
            c.from_seq = c.from_seq.max(seq);
        }
        c.served += sent;
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.log.len()
    }

    pub fn is_empty(&self) -> bool {
        self.log.is_empty()
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
                let cursors = self.cursors(c);
                let start = (c.from_seq.max(self.head_seq) - self.head_seq) as usize;
                let pending = self
                    .log
                    .range(start..)
                    .filter(|s| cursors[s.slot as usize].is_none_or(|t| s.ts > t))
                    .count() as u64;
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
