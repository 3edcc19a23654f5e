//! Counters that continue across restarts (seed document 004): with a
//! state directory, the totals of every exported energy counter are
//! committed with the push queue, and the next run adds them back, so no
//! counter restarts at zero. A series is identified by its exposition name
//! and labels (`ergon_cgroup_energy_joules_total{cgroup="/a",…}`), so a
//! container or unit that comes back under the same labels continues too.

use std::{collections::HashMap, sync::Arc};

use crate::{
    batch::encode::render_labels,
    cgroups::{CgroupLabels, PATH_LABELS},
    snapshot::Snapshot,
};

pub const PACKAGE: &str = "ergon_package_energy_joules_total";
pub const CPU: &str = "ergon_cpu_energy_joules_total";
pub const CGROUP: &str = "ergon_cgroup_energy_joules_total";
pub const CGROUP_CPU: &str = "ergon_cgroup_cpu_seconds_total";
pub const IDLE: &str = "ergon_idle_energy_joules_total";

pub fn package_key(package: u32, domain: &str) -> String {
    format!(
        "{PACKAGE}{}",
        render_labels(&[("package", &package.to_string()), ("domain", domain)])
    )
}

fn cpu_key(cpu: u32) -> String {
    format!("{CPU}{}", render_labels(&[("cpu", &cpu.to_string())]))
}

fn idle_key(package: u32) -> String {
    format!(
        "{IDLE}{}",
        render_labels(&[("package", &package.to_string())])
    )
}

/// A cgroup's identity in the stored totals: the labels read off its path,
/// not its names, so a series continues across a restart whether its names
/// are known yet or not (and the keys of earlier versions still match).
pub fn cgroup_key(l: &CgroupLabels) -> String {
    format!("{CGROUP}{}", render_labels(&l.pairs()[..PATH_LABELS]))
}

fn cgroup_cpu_key(l: &CgroupLabels) -> String {
    format!("{CGROUP_CPU}{}", render_labels(&[("cgroup", &l.cgroup)]))
}

/// Bases from the previous run, with per-series caches so a drain does not
/// format keys.
#[derive(Debug, Default)]
pub struct Continuity {
    bases: HashMap<String, f64>,
    fixed: HashMap<(u8, u32, &'static str), f64>,
    cgroups: HashMap<u64, (Arc<CgroupLabels>, f64, f64)>,
}

impl Continuity {
    pub fn new(bases: HashMap<String, f64>) -> Self {
        Self {
            bases,
            ..Self::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bases.is_empty()
    }

    fn fixed(&mut self, kind: u8, id: u32, domain: &'static str) -> f64 {
        if self.bases.is_empty() {
            return 0.0;
        }
        let bases = &self.bases;
        *self.fixed.entry((kind, id, domain)).or_insert_with(|| {
            let key = match kind {
                0 => package_key(id, domain),
                1 => cpu_key(id),
                _ => idle_key(id),
            };
            bases.get(&key).copied().unwrap_or(0.0)
        })
    }

    pub fn package(&mut self, package: u32, domain: &'static str) -> f64 {
        self.fixed(0, package, domain)
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
        let e = self.bases.get(&cgroup_key(l)).copied().unwrap_or(0.0);
        let c = self.bases.get(&cgroup_cpu_key(l)).copied().unwrap_or(0.0);
        self.cgroups.insert(id, (l.clone(), e, c));
        (e, c)
    }

    pub fn forget_cgroup(&mut self, id: u64) {
        self.cgroups.remove(&id);
    }

    /// Adds the bases to a snapshot's counters (in place).
    pub fn apply(&mut self, s: &mut Snapshot, cgroup_ids: &[u64]) {
        if self.bases.is_empty() {
            return;
        }
        for p in &mut s.packages {
            p.joules.0 += self.package(p.package, p.domain);
        }
        for c in &mut s.cpus {
            c.joules.0 += self.fixed(1, c.cpu, "");
        }
        for (p, j) in &mut s.idle {
            *j += self.fixed(2, *p, "");
        }
        for (c, &id) in s.cgroups.iter_mut().zip(cgroup_ids) {
            let (e, cpu) = self.cgroup(id, &c.labels);
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
            .map(|p| (package_key(p.package, p.domain), p.joules.0)),
    );
    out.extend(s.cpus.iter().map(|c| (cpu_key(c.cpu), c.joules.0)));
    out.extend(s.idle.iter().map(|&(p, j)| (idle_key(p), j)));
    for c in &s.cgroups {
        out.push((cgroup_key(&c.labels), c.joules));
        out.push((cgroup_cpu_key(&c.labels), c.cpu_seconds));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{energy::PackageEnergy, snapshot::CgroupEnergy, units::Joules};

    fn snap(pkg: f64, cg: f64) -> Snapshot {
        Snapshot {
            packages: vec![PackageEnergy {
                package: 0,
                domain: "pkg",
                joules: Joules(pkg),
            }],
            cgroups: vec![CgroupEnergy {
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
        c.apply(&mut second, &[7]);
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
        c.apply(&mut s, &[7]);
        assert_eq!(s.packages[0].joules.0, 1.0);
        assert_eq!(s.cgroups[0].joules, 0.5);
    }
}
