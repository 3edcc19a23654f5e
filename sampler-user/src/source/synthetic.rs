//! The `synthetic` source: each CPU gets a software `cpu-clock` counting
//! event (one count per nanosecond of wall time), read by that CPU's timer
//! program through the same `bpf_perf_event_read_value` path as RAPL, and
//! worth `watts × 1e-9` J per count. Every CPU thus "draws" a constant
//! `watts`, which makes ground truth exact: joules = W × CPUs × seconds.
//!
//! `--synthetic-layout package` lays the counters out as RAPL does instead:
//! one counter per package, opened on the package's first CPU, worth
//! `watts × CPUs-in-package` per second, and offered to every CPU of the
//! package. A cpu-clock event cannot be read from another CPU, so this
//! exercises the daemon's detection of PMUs without read scope.

use perf_event_open_sys::bindings::{PERF_COUNT_SW_CPU_CLOCK, PERF_TYPE_SOFTWARE};
use serde::Deserialize;

use super::{CounterPlan, Plan, Resolved};
use crate::topology::Topology;

/// `--synthetic-layout`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// One counter per CPU, read by that CPU.
    #[default]
    PerCpu,
    /// One counter per package, like RAPL, offered to every CPU of the package.
    Package,
}

/// The synthetic source's declared behaviour.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Synthetic {
    /// Watts each CPU draws.
    pub watts: f64,
    pub layout: Layout,
}

pub fn plan(topo: &Topology, spec: Synthetic, reason: String) -> Plan {
    let counter = |package: u32, open_cpu: u32, readers: Vec<u32>, watts: f64| CounterPlan {
        domain: 0,
        package,
        open_cpu,
        readers,
        pmu_type: PERF_TYPE_SOFTWARE,
        config: u64::from(PERF_COUNT_SW_CPU_CLOCK),
        joules_per_count: watts * 1e-9,
        user: None,
    };
    let counters = match spec.layout {
        Layout::PerCpu => topo
            .cpus
            .iter()
            .map(|c| counter(c.package, c.cpu, vec![c.cpu], spec.watts))
            .collect(),
        Layout::Package => topo
            .packages()
            .into_iter()
            .filter_map(|pkg| {
                let cpus = topo.cpus_of(pkg);
                let first = *cpus.first()?;
                let watts = spec.watts * cpus.len() as f64;
                Some(counter(pkg, first, cpus, watts))
            })
            .collect(),
    };
    Plan {
        source: Resolved::Synthetic,
        reason,
        counters,
        per_cpu: spec.layout == Layout::PerCpu,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::CpuInfo;

    fn topo() -> Topology {
        Topology {
            cpus: vec![
                CpuInfo { cpu: 0, package: 0 },
                CpuInfo { cpu: 1, package: 0 },
                CpuInfo { cpu: 2, package: 1 },
            ],
        }
    }

    #[test]
    fn one_counter_per_cpu_read_by_itself() {
        let topo = topo();
        let spec = Synthetic {
            watts: 7.0,
            layout: Layout::PerCpu,
        };
        let p = plan(&topo, spec, "test".into());
        assert!(p.per_cpu);
        assert_eq!(p.counters.len(), 3);
        for (c, info) in p.counters.iter().zip(&topo.cpus) {
            assert_eq!(c.open_cpu, info.cpu);
            assert_eq!(c.readers, vec![info.cpu]);
            assert_eq!(c.package, info.package);
            assert_eq!(c.domain, 0);
            assert!((c.joules_per_count - 7e-9).abs() < 1e-18);
        }
    }

    #[test]
    fn package_layout_is_one_counter_per_package_offered_to_all_its_cpus() {
        let spec = Synthetic {
            watts: 5.0,
            layout: Layout::Package,
        };
        let p = plan(&topo(), spec, "test".into());
        assert!(!p.per_cpu);
        assert_eq!(p.counters.len(), 2);
        assert_eq!(p.counters[0].open_cpu, 0);
        assert_eq!(p.counters[0].readers, vec![0, 1]);
        assert_eq!(p.counters[1].open_cpu, 2);
        assert_eq!(p.counters[1].readers, vec![2]);
        // Package 0 has two CPUs: 2 × 5 W.
        assert!((p.counters[0].joules_per_count - 10e-9).abs() < 1e-18);
        assert!((p.counters[1].joules_per_count - 5e-9).abs() < 1e-18);
    }
}
