//! What the engine has booked: totals per package, CPU and cgroup, and
//! folding a cgroup into `other` or into the cgroup that took its place.

use rustc_hash::FxHashMap as HashMap;

use super::{folded_to, units_to_joules, Attributor, CgroupTotals, OTHER_CGROUP};
use crate::{energy::CpuEnergy, units::Joules};

impl Attributor {
    /// Per-cgroup totals (cgroup v2 id, or [`OTHER_CGROUP`]).
    pub fn cgroups(&self) -> &HashMap<u64, CgroupTotals> {
        &self.cgroups
    }

    /// Moves a cgroup's totals into `other` and sends its future energy
    /// there too (retention expired, or too many cgroups). The books stay
    /// balanced and no counter goes backwards. Returns false if unknown.
    pub fn fold(&mut self, id: u64) -> bool {
        self.fold_into(id, OTHER_CGROUP)
    }

    /// Moves cgroup `id`'s totals into cgroup `into` (created if new) and
    /// sends `id`'s future energy there too: `other`, or the cgroup made
    /// again at a dead one's path, whose series goes on from the dead one's
    /// joules. Returns false if `id` is unknown, `other`, or `into` itself.
    pub fn fold_into(&mut self, id: u64, into: u64) -> bool {
        // Where `into`'s own energy goes, if it was folded itself.
        let into = folded_to(&self.folded, into);
        if id == OTHER_CGROUP || id == into {
            return false;
        }
        let Some(t) = self.cgroups.remove(&id) else {
            return false;
        };
        self.folded.insert(id, into);
        if let Some(g) = &mut self.grid {
            g.fold(id, into);
        }
        let n = self.packages.len();
        let dst = self.cgroups.entry(into).or_default();
        if dst.units.len() < n {
            dst.units.resize(n, 0);
        }
        for (d, s) in dst.units.iter_mut().zip(&t.units) {
            *d += s;
        }
        dst.cpu_ns += t.cpu_ns;
        true
    }

    /// Cgroup ids in the spans not booked yet: the ones the next
    /// [`Attributor::advance`] may book.
    pub fn pending_cgroups(&self) -> impl Iterator<Item = u64> + '_ {
        self.cpus
            .iter()
            .flat_map(|c| c.entries.iter().map(|e| e.cgroup_id))
    }

    /// Joules of a cgroup's totals per package id (packages it has units in).
    pub fn joules_by_package<'a>(
        &'a self,
        t: &'a CgroupTotals,
    ) -> impl Iterator<Item = (u32, f64)> + 'a {
        t.units
            .iter()
            .zip(&self.packages)
            .map(|(&u, p)| (p.spec.package, units_to_joules(u, p.spec.joules_per_count)))
    }

    /// Joules of a cgroup's totals.
    pub fn joules(&self, t: &CgroupTotals) -> f64 {
        self.joules_by_package(t).map(|(_, j)| j).sum()
    }

    /// (package id, energy J, idle J) per package, up to its frontier.
    pub fn packages(&self) -> Vec<(u32, f64, f64)> {
        self.packages
            .iter()
            .map(|p| {
                let s = p.spec.joules_per_count;
                (
                    p.spec.package,
                    units_to_joules(p.energy, s),
                    units_to_joules(p.idle, s),
                )
            })
            .collect()
    }

    /// Energy per CPU, up to its package's frontier, sorted by CPU.
    pub fn cpus(&self) -> Vec<CpuEnergy> {
        let mut out: Vec<CpuEnergy> = self
            .cpu_index
            .iter()
            .map(|(&cpu, &ci)| {
                let spec = &self.packages[self.cpus[ci].package].spec;
                CpuEnergy {
                    cpu,
                    package: spec.package,
                    joules: Joules(units_to_joules(self.cpus[ci].energy, spec.joules_per_count)),
                }
            })
            .collect();
        out.sort_by_key(|c| c.cpu);
        out
    }

    /// Exact totals in units: (package energy, idle, Σ cgroups) per package index.
    pub fn ledger(&self) -> Vec<(u128, u128, u128)> {
        self.packages
            .iter()
            .enumerate()
            .map(|(p, line)| {
                let cg: u128 = self
                    .cgroups
                    .values()
                    .map(|t| t.units.get(p).copied().unwrap_or(0))
                    .sum();
                (line.energy, line.idle, cg)
            })
            .collect()
    }

    /// Boot-time frontier of each package (None before the first advance).
    pub fn frontiers(&self) -> Vec<Option<u64>> {
        self.packages.iter().map(|p| p.frontier).collect()
    }
}
