//! What the engine has booked: totals per package, CPU and cgroup, and
//! folding a cgroup into `other`.

use rustc_hash::FxHashMap as HashMap;

use super::{units_to_joules, Attributor, CgroupTotals, OTHER_CGROUP};
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
        if id == OTHER_CGROUP {
            return false;
        }
        let Some(t) = self.cgroups.remove(&id) else {
            return false;
        };
        self.folded.insert(id);
        if let Some(g) = &mut self.grid {
            g.fold(id, OTHER_CGROUP);
        }
        let n = self.packages.len();
        let dst = self.cgroups.entry(OTHER_CGROUP).or_default();
        if dst.units.len() < n {
            dst.units.resize(n, 0);
        }
        for (d, s) in dst.units.iter_mut().zip(&t.units) {
            *d += s;
        }
        dst.cpu_ns += t.cpu_ns;
        true
    }

    /// Joules of a cgroup's totals.
    pub fn joules(&self, t: &CgroupTotals) -> f64 {
        t.units
            .iter()
            .zip(&self.packages)
            .map(|(&u, p)| units_to_joules(u, p.spec.joules_per_count))
            .sum()
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
