//! Which counters and CPUs make up each package, from the source's plan.

use crate::{source::Plan, topology::Topology};

/// The `cores` domain's index in [`sampler_common::DOMAIN_NAMES`].
const CORES: usize = 1;

/// How a package's energy counters map onto its CPUs.
#[derive(Clone, Debug)]
pub struct PackageSpec {
    pub package: u32,
    /// Joules per count of the package's counters (the base domain).
    pub joules_per_count: f64,
    /// CPU ids of the package.
    pub cpus: Vec<u32>,
    /// Counters of the base domain ([`Plan::base_domain`], `pkg` where
    /// there is one): (counter index, Some(cpu) when the
    /// counter measures only that CPU).
    pub counters: Vec<(usize, Option<u32>)>,
    /// Per-core energy counters (the `power_core` PMU's `cores`): (counter
    /// index, the CPUs of its core). When they cover every CPU of the
    /// package once, a package counter's energy goes to the cores in
    /// proportion to their own energy over each interval, and equally to
    /// each core's CPUs, instead of equally to every CPU.
    pub core_counters: Vec<(usize, Vec<u32>)>,
}

impl PackageSpec {
    /// One spec per package of the machine, with the plan's base-domain counters.
    pub fn from_plan(plan: &Plan, topo: &Topology) -> Vec<PackageSpec> {
        let base = plan.base_domain();
        topo.packages()
            .into_iter()
            .map(|package| {
                let counters: Vec<(usize, Option<u32>)> = plan
                    .counters
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.domain == base && c.package == package)
                    .map(|(i, c)| (i, plan.per_cpu.then_some(c.open_cpu)))
                    .collect();
                let joules_per_count = counters
                    .first()
                    .and_then(|&(i, _)| plan.counters.get(i))
                    .map_or(0.0, |c| c.joules_per_count);
                let core_counters = plan
                    .counters
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| {
                        c.domain == CORES
                            && c.package == package
                            && !plan.per_cpu
                            && !plan.sole_counter(c)
                    })
                    .map(|(i, c)| (i, c.readers.clone()))
                    .collect();
                PackageSpec {
                    package,
                    joules_per_count,
                    cpus: topo.cpus_of(package),
                    counters,
                    core_counters,
                }
            })
            .collect()
    }
}
