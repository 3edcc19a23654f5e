//! Export: where the ledger's output goes. Batch points into the batch
//! store (`/metrics/batch`), and, when pushing, into the remote_write
//! queue with the counter totals of the snapshot that covers them; the
//! snapshot itself is swapped in for `/metrics` and `/health`.
//!
//! A series' store key, and its rendered labels and remote_write
//! descriptor ([`Series`]), are made once per label set and cached. A cgroup whose labels change (resolved or named
//! late) starts a new series; one the ledger folded ends its own.

use std::{collections::HashMap, sync::Arc};

use rustc_hash::FxHashMap;

use crate::{
    batch::{self, store::Handle, Family, SeriesKey, SharedStore},
    cgroups::CgroupLabels,
    continuity,
    ledger::{Output, Point},
    push::queue::Queue,
    series::Series,
    snapshot::{Demand, SharedSnapshot, Snapshot},
};

#[cfg(test)]
mod tests;

/// What export keeps for a cgroup's batch series: the label set it was
/// last given (a new one starts a new series) and, once pushed, its
/// remote_write descriptor.
struct CgroupSeries {
    labels: Arc<CgroupLabels>,
    descriptor: Option<Arc<str>>,
    /// Its series in the batch store, once made.
    handle: Option<Handle>,
}

pub struct Export {
    store: SharedStore,
    snapshot: SharedSnapshot,
    /// Readers waiting for the next snapshot.
    demand: Arc<Demand>,
    /// The remote_write queue, when pushing.
    push: Option<Arc<Queue>>,
    cgroup_series: FxHashMap<u64, CgroupSeries>,
    /// remote_write descriptor of each package series.
    package_descriptors: HashMap<(u32, &'static str), Arc<str>>,
    /// Batch points for remote_write, handed over with the next snapshot.
    pending_push: Vec<(Arc<str>, i64, f64)>,
}

impl Export {
    pub fn new(
        store: SharedStore,
        snapshot: SharedSnapshot,
        demand: Arc<Demand>,
        push: Option<Arc<Queue>>,
    ) -> Self {
        Self {
            store,
            snapshot,
            demand,
            push,
            cgroup_series: FxHashMap::default(),
            package_descriptors: HashMap::new(),
            pending_push: Vec::new(),
        }
    }

    /// Writes one settle's output into the batch store (and the push
    /// queue's inbox, with [`Export::publish`]).
    pub fn write(&mut self, out: Output) {
        let Output {
            recreated,
            labels,
            points,
            folded,
            expire,
        } = out;
        if recreated.is_empty() && points.is_empty() && folded.is_empty() && expire.is_none() {
            return;
        }
        let mut store = batch::lock(&self.store);
        for id in recreated {
            store.retire(&SeriesKey::Cgroup(id));
            self.cgroup_series.remove(&id);
        }
        for (id, labels) in labels {
            let changed = self
                .cgroup_series
                .get(&id)
                .is_none_or(|old| !Arc::ptr_eq(&old.labels, &labels) && *old.labels != *labels);
            if changed {
                // A new label set (e.g. a cgroup resolved late) is a new
                // series; its descriptor is made again when pushed.
                store.retire(&SeriesKey::Cgroup(id));
                self.cgroup_series.insert(
                    id,
                    CgroupSeries {
                        labels,
                        descriptor: None,
                        handle: None,
                    },
                );
            }
        }
        for Point { key, ms, joules } in points {
            match key {
                SeriesKey::Package { package, domain } => {
                    let series = Series::Package { package, domain };
                    store.push(
                        &key,
                        Family::Package,
                        || series.rendered_labels(),
                        ms,
                        joules,
                    );
                    if self.push.is_some() {
                        let d = self
                            .package_descriptors
                            .entry((package, domain))
                            .or_insert_with(|| series.descriptor().into());
                        self.pending_push.push((d.clone(), ms, joules));
                    }
                }
                SeriesKey::Cgroup(id) => {
                    let Some(cached) = self.cgroup_series.get_mut(&id) else {
                        // The ledger sends a cgroup's labels before its
                        // first point.
                        debug_assert!(false, "a point of cgroup {id} before its labels");
                        continue;
                    };
                    let series = || Series::Cgroup {
                        id,
                        labels: cached.labels.clone(),
                    };
                    let pushed = cached.handle.is_some_and(|h| store.push_to(h, ms, joules));
                    if !pushed {
                        let h = store.open(&key, Family::Cgroup, || series().rendered_labels());
                        store.push_to(h, ms, joules);
                        cached.handle = Some(h);
                    }
                    if self.push.is_some() {
                        let d = match &cached.descriptor {
                            Some(d) => d.clone(),
                            None => {
                                let d: Arc<str> = series().descriptor().into();
                                cached.descriptor = Some(d.clone());
                                d
                            }
                        };
                        self.pending_push.push((d, ms, joules));
                    }
                }
            }
        }
        for id in folded {
            store.retire(&SeriesKey::Cgroup(id));
            self.cgroup_series.remove(&id);
        }
        if let Some((ms, now)) = expire {
            store.expire(ms, now);
        }
    }

    /// Swaps in a new snapshot and lets the readers waiting for it go on,
    /// then hands the points written since the last one to the push queue
    /// with that snapshot's totals, which are at or past every one of them.
    pub fn publish(&mut self, s: Snapshot) {
        let snap = Arc::new(s);
        self.snapshot.store(snap.clone());
        self.demand.published();
        if let Some(q) = &self.push {
            let samples = std::mem::take(&mut self.pending_push);
            q.append_with_totals(samples, Box::new(move || continuity::totals(&snap)));
        }
    }

    /// Whether remote_write is on (its durability window is one drain).
    pub fn pushing(&self) -> bool {
        self.push.is_some()
    }

    /// Whether points wait for the push queue (they go with a snapshot).
    pub fn pushes_pending(&self) -> bool {
        !self.pending_push.is_empty()
    }

    /// Readers' demand for the next snapshot.
    pub fn demand(&self) -> &Arc<Demand> {
        &self.demand
    }
}
