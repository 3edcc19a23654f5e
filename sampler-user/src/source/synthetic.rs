//! The `synthetic` source: each CPU gets a software `cpu-clock` counting
//! event (one count per nanosecond of wall time), read by that CPU's timer
//! program through the same `bpf_perf_event_read_value` path as RAPL, and
//! worth `watts × 1e-9` J per count. Every CPU thus "draws" a constant
//! `watts`, which makes ground truth exact: joules = W × CPUs × seconds.

use perf_event_open_sys::bindings::{PERF_COUNT_SW_CPU_CLOCK, PERF_TYPE_SOFTWARE};

use super::{CounterPlan, Plan, Resolved};
use crate::topology::Topology;

pub fn plan(topo: &Topology, watts: f64, reason: String) -> Plan {
    let counters = topo
        .cpus
        .iter()
        .map(|c| CounterPlan {
            domain: 0,
            package: c.package,
            open_cpu: c.cpu,
            readers: vec![c.cpu],
            pmu_type: PERF_TYPE_SOFTWARE,
            config: u64::from(PERF_COUNT_SW_CPU_CLOCK),
            joules_per_count: watts * 1e-9,
        })
        .collect();
    Plan {
        source: Resolved::Synthetic,
        reason,
        counters,
        per_cpu: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::CpuInfo;

    #[test]
    fn one_counter_per_cpu_read_by_itself() {
        let topo = Topology {
            cpus: vec![
                CpuInfo { cpu: 0, package: 0 },
                CpuInfo { cpu: 1, package: 0 },
                CpuInfo { cpu: 2, package: 1 },
            ],
        };
        let p = plan(&topo, 7.0, "test".into());
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
}
