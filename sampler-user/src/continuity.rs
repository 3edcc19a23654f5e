//! Counters that continue across restarts (seed document 004): with a
//! state directory, the totals of every exported energy counter are
//! committed with the push queue, and the next run adds them back, so no
//! counter restarts at zero. A series is identified by its exposition name
//! and labels (`ergon_cgroup_energy_joules_total{cgroup="/a",…}`), so a
//! container or unit that comes back under the same labels continues too.

use std::{collections::HashMap, sync::Arc};

use crate::{cgroups::CgroupLabels, series::Series, snapshot::Snapshot};

/// The key under which the total of a package's `domain` energy is stored.
#[cfg(test)]
pub fn package_key(package: u32, domain: &'static str) -> String {
    Series::Package { package, domain }.continuity_key()
}

/// Bases from the previous run, with per-series caches so a drain does not
/// format keys.
#[derive(Debug, Default)]
pub struct Continuity {
    bases: HashMap<String, f64>,
    /// Package, CPU and idle series (cheap to compare) → base.
    fixed: HashMap<Fixed, f64>,
    cgroups: HashMap<u64, (Arc<CgroupLabels>, f64, f64)>,
}

/// The series without labels of their own to cache by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Fixed {
    Package(u32, &'static str),
    Cpu(u32),
    Idle(u32),
    Unattributed(u32, &'static str),
}

impl Fixed {
    fn series(self) -> Series {
        match self {
            Fixed::Package(package, domain) => Series::Package { package, domain },
            Fixed::Cpu(cpu) => Series::Cpu { cpu },
            Fixed::Idle(package) => Series::Idle { package },
            Fixed::Unattributed(package, reason) => Series::Unattributed { package, reason },
        }
    }
}

impl Continuity {
    pub fn new(bases: HashMap<String, f64>) -> Self {
        Self {
            bases,
            ..Self::default()
        }
    }

    fn fixed(&mut self, series: Fixed) -> f64 {
        if self.bases.is_empty() {
            return 0.0;
        }
        let bases = &self.bases;
        *self.fixed.entry(series).or_insert_with(|| {
            bases
                .get(&series.series().continuity_key())
                .copied()
                .unwrap_or(0.0)
        })
    }

    pub fn package(&mut self, package: u32, domain: &'static str) -> f64 {
        self.fixed(Fixed::Package(package, domain))
    }

    /// (energy base, cpu-seconds base) of cgroup `id` with labels `l`.
    pub fn cgroup(&mut self, id: u64, l: &Arc<CgroupLabels>) -> (f64, f64) {
        if self.bases.is_empty() {
            return (0.0, 0.0);
        }
        if let Some((cached, e, c)) = self.cgroups.get(&id) {
            if Arc::ptr_eq(cached, l) || **cached == **l {
                return (*e, *c);
            }
        }
        let base = |s: Series| self.bases.get(&s.continuity_key()).copied().unwrap_or(0.0);
        let e = base(Series::Cgroup {
            id,
            labels: l.clone(),
        });
        let c = base(Series::CgroupCpu {
            id,
            labels: l.clone(),
        });
        self.cgroups.insert(id, (l.clone(), e, c));
        (e, c)
    }

    pub fn forget_cgroup(&mut self, id: u64) {
        self.cgroups.remove(&id);
    }

    /// Adds the bases to a snapshot's counters (in place).
    pub fn apply(&mut self, s: &mut Snapshot) {
        if self.bases.is_empty() {
            return;
        }
        for p in &mut s.packages {
            p.joules.0 += self.package(p.package, p.domain);
        }
        for c in &mut s.cpus {
            c.joules.0 += self.fixed(Fixed::Cpu(c.cpu));
        }
        for (p, j) in &mut s.idle {
            *j += self.fixed(Fixed::Idle(*p));
        }
        for (p, reason, j) in &mut s.unattributed {
            *j += self.fixed(Fixed::Unattributed(*p, reason));
        }
        for c in &mut s.cgroups {
            let (e, cpu) = self.cgroup(c.id, &c.labels);
            c.joules += e;
            c.cpu_seconds += cpu;
        }
    }
}

/// Every energy counter of a snapshot as (identity, value), to persist.
/// Series of earlier runs that are not live now keep their stored totals.
pub fn totals(s: &Snapshot) -> Vec<(String, f64)> {
    let mut out =
        Vec::with_capacity(s.packages.len() + s.cpus.len() + 2 * s.cgroups.len() + s.idle.len());
    out.extend(
        s.packages
            .iter()
            .map(|p| (Series::from(p).continuity_key(), p.joules.0)),
    );
    out.extend(
        s.cpus
            .iter()
            .map(|c| (Series::Cpu { cpu: c.cpu }.continuity_key(), c.joules.0)),
    );
    out.extend(
        s.idle
            .iter()
            .map(|&(package, j)| (Series::Idle { package }.continuity_key(), j)),
    );
    out.extend(s.unattributed.iter().map(|&(package, reason, j)| {
        (Series::Unattributed { package, reason }.continuity_key(), j)
    }));
    for c in &s.cgroups {
        out.push((c.energy_series().continuity_key(), c.joules));
        out.push((c.cpu_series().continuity_key(), c.cpu_seconds));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{energy::PackageEnergy, snapshot::CgroupEnergy, units::Joules};

    #[test]
    fn the_keys_are_those_earlier_versions_stored() {
        assert_eq!(
            package_key(0, "pkg"),
            "ergon_package_energy_joules_total{package=\"0\",domain=\"pkg\"}"
        );
        let keys: Vec<String> = totals(&snap(1.0, 1.0)).into_iter().map(|t| t.0).collect();
        assert_eq!(
            keys,
            [
                "ergon_package_energy_joules_total{package=\"0\",domain=\"pkg\"}",
                "ergon_idle_energy_joules_total{package=\"0\"}",
                "ergon_cgroup_energy_joules_total{cgroup=\"/a\",unit=\"\",runtime=\"\",container_id=\"\",pod_uid=\"\"}",
                "ergon_cgroup_cpu_seconds_total{cgroup=\"/a\"}",
            ]
        );
    }

    fn snap(pkg: f64, cg: f64) -> Snapshot {
        Snapshot {
            packages: vec![PackageEnergy {
                package: 0,
                domain: "pkg",
                joules: Joules(pkg),
            }],
            cgroups: vec![CgroupEnergy {
                id: 7,
                labels: Arc::new(CgroupLabels {
                    cgroup: "/a".into(),
                    ..CgroupLabels::default()
                }),
                joules: cg,
                cpu_seconds: 1.0,
            }],
            idle: vec![(0, 2.0)],
            ..Snapshot::default()
        }
    }

    #[test]
    fn a_new_run_continues_from_the_persisted_totals() {
        let first = snap(100.0, 40.0);
        let persisted: HashMap<String, f64> = totals(&first).into_iter().collect();
        assert_eq!(persisted[&package_key(0, "pkg")], 100.0);
        let mut c = Continuity::new(persisted);
        let mut second = snap(1.5, 0.5);
        c.apply(&mut second);
        assert_eq!(second.packages[0].joules.0, 101.5);
        assert_eq!(second.cgroups[0].joules, 40.5);
        assert_eq!(second.cgroups[0].cpu_seconds, 2.0);
        assert_eq!(second.idle[0].1, 4.0);
        // And the batch points use the same bases.
        assert_eq!(c.package(0, "pkg"), 100.0);
        assert_eq!(c.package(1, "pkg"), 0.0, "a series never seen starts at 0");
    }

    #[test]
    fn without_state_nothing_changes() {
        let mut c = Continuity::default();
        let mut s = snap(1.0, 0.5);
        c.apply(&mut s);
        assert_eq!(s.packages[0].joules.0, 1.0);
        assert_eq!(s.cgroups[0].joules, 0.5);
    }
}
