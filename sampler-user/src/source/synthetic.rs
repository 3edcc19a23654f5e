//! The `synthetic` source: each CPU gets a software `cpu-clock` counting
//! event (one count per nanosecond of wall time), read by that CPU's timer
//! program through the same `bpf_perf_event_read_value` path as RAPL, and
//! worth `watts × 1e-9` J per count. Every CPU thus "draws" a constant
//! `watts`, which makes ground truth exact: joules = W × CPUs × seconds.
//!
//! `--synthetic-idle-watts` below `--synthetic-watts` makes the power follow
//! the load: each CPU draws the idle watts while it runs the idle task and
//! `--synthetic-watts` while it runs any other, counted in the kernel
//! programs, which know which runs (see `SYNTH_BUSY_MW` in
//! `sampler-ebpf`). Ground truth stays exact: a cgroup's marginal energy is
//! (busy W − idle W) × its on-CPU time, and the idle power is idle W × CPUs.
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
    /// Watts each CPU draws (while it runs a task, when `idle_watts` is lower).
    pub watts: f64,
    /// Watts each CPU draws while idle (`--synthetic-idle-watts`; equal to
    /// `watts` for a constant draw).
    pub idle_watts: f64,
    pub layout: Layout,
}

/// Joules per count of the load-dependent counter: one count is 1 mW over
/// 1,024 ns. At P watts a counter wraps its 64 bits after 1.9e10 / P s
/// (285 days at 768 W: 64 CPUs at 12 W).
pub const LOAD_JOULES_PER_COUNT: f64 = 1024e-12;

/// What the kernel programs need for the load-dependent counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelScale {
    /// mW a CPU draws while idle.
    pub idle_mw: u64,
    /// mW a busy CPU draws above an idle one.
    pub busy_mw: u64,
}

impl Synthetic {
    /// A constant draw: `watts` whatever runs.
    pub fn constant(watts: f64, layout: Layout) -> Self {
        Self {
            watts,
            idle_watts: watts,
            layout,
        }
    }

    /// The kernel's constants when the draw depends on the load, `None`
    /// for a constant draw (the counter is then the cpu-clock as read).
    /// The watts are counted in whole mW.
    pub fn kernel_scale(&self) -> Option<KernelScale> {
        let mw = |w: f64| (w * 1000.0).round() as u64;
        let (idle, busy) = (mw(self.idle_watts), mw(self.watts));
        (busy > idle).then_some(KernelScale {
            idle_mw: idle,
            busy_mw: busy - idle,
        })
    }
}

pub fn plan(topo: &Topology, spec: Synthetic, reason: String) -> Plan {
    let load = spec.kernel_scale().is_some();
    let counter = |package: u32, open_cpu: u32, readers: Vec<u32>, watts: f64| CounterPlan {
        domain: 0,
        package,
        open_cpu,
        readers,
        pmu_type: PERF_TYPE_SOFTWARE,
        config: u64::from(PERF_COUNT_SW_CPU_CLOCK),
        joules_per_count: if load {
            LOAD_JOULES_PER_COUNT
        } else {
            watts * 1e-9
        },
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
        let spec = Synthetic::constant(7.0, Layout::PerCpu);
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
        let spec = Synthetic::constant(5.0, Layout::Package);
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

    #[test]
    fn a_load_dependent_draw_counts_milliwatt_microseconds() {
        let spec = Synthetic {
            watts: 12.0,
            idle_watts: 2.0,
            layout: Layout::Package,
        };
        assert_eq!(
            spec.kernel_scale(),
            Some(KernelScale {
                idle_mw: 2000,
                busy_mw: 10_000
            })
        );
        let p = plan(&topo(), spec, "test".into());
        for c in &p.counters {
            assert_eq!(c.joules_per_count, LOAD_JOULES_PER_COUNT);
        }
        // Equal watts: the constant counter, as before.
        assert_eq!(
            Synthetic::constant(12.0, Layout::PerCpu).kernel_scale(),
            None
        );
    }
}
