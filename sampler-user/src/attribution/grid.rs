//! Timestamped sample points for the batch exporters, on a wall-clock grid.
//!
//! The engine books energy interval by interval; this module records, as it
//! goes, the exact cumulative totals at grid instants `k × resolution` of
//! wall-clock time:
//!
//! - every package's energy (domain `pkg`) at each `--batch-resolution`
//!   instant (default 1 ms), interpolated between the counter's own readings
//!   around that instant (they are at most one timer period apart);
//! - every cgroup's energy at each `--cgroup-batch-resolution` instant
//!   (default 100 ms). The engine splits its booking at these instants, so a
//!   cgroup's total there is exactly what the books hold at that time.
//!
//! A cgroup point is emitted when its energy changed since the previous
//! instant, and at least every [`HEARTBEAT_MS`] while it exists, so an idle
//! container's series stays visible in Prometheus' 5-minute lookback.
//! With several packages a cgroup instant is emitted once every package has
//! booked past it (its total is the sum over packages at that instant).

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;

/// An unchanged cgroup is re-emitted this often (ms).
pub const HEARTBEAT_MS: i64 = 60_000;

/// Grid resolutions (whole milliseconds, validated by the config).
#[derive(Clone, Copy, Debug)]
pub struct GridConfig {
    pub package_res_ns: u64,
    pub cgroup_res_ns: u64,
}

/// Points produced since the last [`super::Attributor::take_points`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GridPoints {
    /// (package id, wall-clock ms, cumulative joules of domain `pkg`).
    pub packages: Vec<(u32, i64, f64)>,
    /// (cgroup id, wall-clock ms, cumulative joules over all packages).
    pub cgroups: Vec<(u64, i64, f64)>,
}

/// Grid instants of resolution `res` in the boot-time interval `(from, to]`
/// when wall-clock ns = boot ns + `offset_ns`: (index k, boot ns). The wall
/// time of instant k is k × res.
pub fn instants(from: u64, to: u64, offset_ns: i128, res: u64) -> impl Iterator<Item = (i64, u64)> {
    let res_i = i128::from(res.max(1));
    let lo = (i128::from(from) + offset_ns).div_euclid(res_i) + 1;
    let hi = (i128::from(to) + offset_ns).div_euclid(res_i);
    (lo..=hi).filter_map(move |k| {
        let boot = k * res_i - offset_ns;
        Some((i64::try_from(k).ok()?, u64::try_from(boot).ok()?))
    })
}

#[derive(Clone, Debug, Default)]
pub(super) struct PackageGrid {
    /// Last package instant emitted (ms).
    pub last_ms: Option<i64>,
    /// Last cgroup instant booked (grid index).
    pub last_k: Option<i64>,
    /// Cgroups whose energy in this package changed since `last_k`, each
    /// listed once by its totals' mark of `reports` (cheaper than a set).
    pub touched: Vec<u64>,
    /// Instants reported so far.
    pub reports: u64,
}

/// A cgroup on the grid.
#[derive(Clone, Debug)]
struct CgroupAt {
    /// Units per package at the last emitted instant.
    units: super::PerPackage<u128>,
    /// Last emitted (ms, joules).
    last: Option<(i64, f64)>,
}

#[derive(Clone, Debug)]
pub(super) struct GridState {
    pub cfg: GridConfig,
    /// Wall-clock ns minus boot-time ns.
    pub offset_ns: i128,
    pub packages: Vec<PackageGrid>,
    /// Cgroup instant → (cgroup, package index, units in that package).
    pending: BTreeMap<i64, Vec<(u64, usize, u128)>>,
    /// Each cgroup's units and last point, in one entry (one lookup per
    /// point).
    cgroups: HashMap<u64, CgroupAt>,
    pub out: GridPoints,
}

impl GridState {
    pub fn new(cfg: GridConfig, n_packages: usize) -> Self {
        Self {
            cfg,
            offset_ns: 0,
            packages: vec![PackageGrid::default(); n_packages],
            pending: BTreeMap::new(),
            cgroups: HashMap::default(),
            out: GridPoints::default(),
        }
    }

    pub fn instants(&self, from: u64, to: u64, res: u64) -> impl Iterator<Item = (i64, u64)> {
        instants(from, to, self.offset_ns, res)
    }

    pub fn ms(k: i64, res: u64) -> i64 {
        k.saturating_mul((res / 1_000_000) as i64)
    }

    /// Package `p` has booked up to cgroup instant `k`; `units(id)` gives a
    /// cgroup's units in that package now.
    pub fn report(&mut self, p: usize, k: i64, units: impl Fn(u64) -> Option<u128>) {
        let pg = &mut self.packages[p];
        if pg.last_k.is_some_and(|l| k <= l) {
            // The wall clock went back: keep the changes for a later instant
            // (listed once each: the list is no longer than the cgroups).
            return;
        }
        pg.last_k = Some(k);
        pg.reports += 1;
        let entry = self.pending.entry(k).or_default();
        for id in pg.touched.drain(..) {
            if let Some(u) = units(id) {
                entry.push((id, p, u));
            }
        }
    }

    /// Emits every cgroup instant that all started packages have reached.
    /// `started[p]`: package p has a frontier. `jpc[p]`: joules per unit.
    pub fn emit_ready(&mut self, started: &[bool], joules: impl Fn(usize, u128) -> f64) {
        let mut ready = i64::MAX;
        for (pg, &s) in self.packages.iter().zip(started) {
            if s {
                match pg.last_k {
                    Some(k) => ready = ready.min(k),
                    None => return,
                }
            }
        }
        let n = self.packages.len();
        let res = self.cfg.cgroup_res_ns;
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > ready {
                break;
            }
            let (k, changes) = entry.remove_entry();
            let ms = Self::ms(k, res);
            let mut ids: Vec<u64> = Vec::with_capacity(changes.len());
            for (id, p, u) in changes {
                let c = self.cgroups.entry(id).or_insert_with(|| CgroupAt {
                    units: smallvec::smallvec![0; n],
                    last: None,
                });
                c.units[p] = u;
                ids.push(id);
            }
            ids.sort_unstable();
            ids.dedup();
            for (&id, c) in &self.cgroups {
                if c.last.is_some_and(|(last, _)| ms - last >= HEARTBEAT_MS) {
                    ids.push(id);
                }
            }
            for id in ids {
                let Some(c) = self.cgroups.get_mut(&id) else {
                    continue;
                };
                if c.last.is_some_and(|(l, _)| l >= ms) {
                    continue;
                }
                let j: f64 = c.units.iter().enumerate().map(|(p, &u)| joules(p, u)).sum();
                // A fold moves a cgroup's units into `other` at once, while
                // an instant still pending in another package may hold the
                // older, smaller value: a counter never goes back.
                let j = c.last.map_or(j, |(_, lj)| j.max(lj));
                self.out.cgroups.push((id, ms, j));
                c.last = Some((ms, j));
            }
        }
    }

    /// Cgroup `id` was folded into `into`: its series ends, and `into`
    /// carries its units from now on.
    pub fn fold(&mut self, id: u64, into: u64) {
        let n = self.packages.len();
        if let Some(v) = self.cgroups.remove(&id) {
            let dst = self.cgroups.entry(into).or_insert_with(|| CgroupAt {
                units: smallvec::smallvec![0; n],
                last: None,
            });
            for (d, s) in dst.units.iter_mut().zip(v.units) {
                *d += s;
            }
        }
        for pg in &mut self.packages {
            pg.touched.retain(|&t| t != id);
            pg.touched.push(into);
        }
        for changes in self.pending.values_mut() {
            changes.retain(|c| c.0 != id);
        }
    }
}
