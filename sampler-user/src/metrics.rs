//! `/metrics`: the prometheus-client registry. A collector encodes the
//! current [`Snapshot`] — a scrape only encodes what the drain task already
//! computed.

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{gauge::ConstGauge, MetricType},
    registry::Registry,
};

use crate::{
    families::{counter, counter1, gauge, gauge1},
    series::{self, Series},
    snapshot::SharedSnapshot,
};

#[derive(Debug)]
struct SnapshotCollector {
    snapshot: SharedSnapshot,
}

pub fn registry(snapshot: SharedSnapshot) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(SnapshotCollector { snapshot }));
    r
}

/// Encodes the whole registry (OpenMetrics text, `# EOF` terminated).
#[cfg(test)]
fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::with_capacity(4096);
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

/// The counter family `family` (a [`crate::series`] name), one sample per
/// (series, value), each labelled by its [`Series`].
pub(crate) fn series_family<I>(
    enc: &mut DescriptorEncoder,
    family: &'static str,
    help: &str,
    items: I,
) -> std::fmt::Result
where
    I: IntoIterator<Item = (Series, f64)>,
{
    counter(
        enc,
        family,
        help,
        items.into_iter().map(|(s, v)| {
            debug_assert_eq!(s.family(), family, "{s:?} in the family {family}");
            (s.labels(), v)
        }),
    )
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.snapshot.load();
        series_family(
            &mut enc,
            series::PACKAGE_ENERGY,
            "Energy consumed by a package in an energy domain since the daemon started.",
            s.packages.iter().map(|p| (Series::from(p), p.joules.0)),
        )?;
        series_family(
            &mut enc,
            series::CPU_ENERGY,
            "Package energy of the attribution base domain (pkg, or psys where there is no pkg counter; ergon_source_info's domain) attributed to a CPU, idle included; sums to the package.",
            s.cpus
                .iter()
                .map(|c| (Series::Cpu { cpu: c.cpu }, c.joules.0)),
        )?;
        series_family(
            &mut enc,
            series::CGROUP_ENERGY,
            "Package energy attributed to a cgroup, since the daemon started: by its on-CPU time, or, once its package's idle power is known, the dynamic energy by on-CPU time across the package (docs/attribution.md).",
            s.cgroups.iter().map(|c| (c.energy_series(), c.joules)),
        )?;
        series_family(
            &mut enc,
            series::CGROUP_CPU,
            "On-CPU time of a cgroup as the kernel programs saw it.",
            s.cgroups.iter().map(|c| (c.cpu_series(), c.cpu_seconds)),
        )?;
        series_family(
            &mut enc,
            series::IDLE_ENERGY,
            "Package energy attributed to idle time.",
            s.idle
                .iter()
                .map(|&(package, j)| (Series::Idle { package }, j)),
        )?;
        series_family(
            &mut enc,
            series::UNATTRIBUTED_ENERGY,
            "Package energy of wall-clock time no task ran on the scheduler's clock (the clock cgroup cpu.stat counts in): reason=\"steal\", the hypervisor ran something else; reason=\"irq\", interrupts where the kernel accounts them apart (CONFIG_IRQ_TIME_ACCOUNTING). Package = cgroups + idle + this.",
            s.unattributed
                .iter()
                .map(|&(package, reason, j)| (Series::Unattributed { package, reason }, j)),
        )?;
        gauge(
            &mut enc,
            "ergon_package_idle_power_watts",
            "Idle (static) power of a package, declared (--package-idle-watts) or learned from its near-idle intervals; served once known, and its energy is split by cause from then on.",
            s.idle_power
                .iter()
                .map(|&(p, w)| (vec![("package", p.to_string())], w)),
        )?;
        counter1(
            &mut enc,
            "ergon_idle_closures",
            "Timelines of silent (idle) CPUs closed early from their kernel state, so the books need not wait for their next event.",
            s.idle_closures,
        )?;
        counter1(
            &mut enc,
            "ergon_idle_closure_corrections",
            "Early closures that the CPU's later record contradicted; 0 while closures are made from a consistent copy of the kernel state (a check, docs/attribution.md).",
            s.idle_closure_corrections,
        )?;
        counter1(
            &mut enc,
            "ergon_cgroup_folds",
            "Cgroups folded into cgroup=\"other\" because of --max-cgroups.",
            s.cgroup_folds,
        )?;
        gauge1(
            &mut enc,
            "ergon_cgroups_dead",
            "Dead cgroups still shown (until exported once and --cgroup-retention has passed).",
            s.cgroups_dead as i64,
        )?;
        counter(
            &mut enc,
            "ergon_cpu_time_seconds",
            "Time the kernel programs accounted per CPU, as busy (any task) or idle.",
            s.cpu_time.iter().flat_map(|(cpu, t)| {
                [
                    (
                        vec![("cpu", cpu.to_string()), ("state", "busy".to_string())],
                        t.busy_ns as f64 * 1e-9,
                    ),
                    (
                        vec![("cpu", cpu.to_string()), ("state", "idle".to_string())],
                        t.idle_ns as f64 * 1e-9,
                    ),
                ]
            }),
        )?;
        {
            let mut m = enc.encode_descriptor(
                "ergon_source_info",
                "The energy source in use (value 1), and the domain whose energy is attributed to CPUs and cgroups (pkg, or psys on hosts without a pkg counter).",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(1i64)
                .encode(m.encode_family(&[("source", s.source), ("domain", s.base_domain)])?)?;
        }
        counter1(
            &mut enc,
            "ergon_records_decoded",
            "Kernel records decoded.",
            s.records_decoded,
        )?;
        counter1(
            &mut enc,
            "ergon_records_malformed",
            "Kernel records rejected as malformed.",
            s.records_malformed,
        )?;
        counter1(
            &mut enc,
            "ergon_ringbuf_dropped",
            "Records the kernel could not write because the ring buffer was full (their time and energy are carried by the next record).",
            s.ringbuf_dropped,
        )?;
        counter1(
            &mut enc,
            "ergon_energy_read_errors",
            "Energy counter reads that failed in the kernel.",
            s.counter_read_errors,
        )?;
        counter1(
            &mut enc,
            "ergon_cgroup_table_overflows",
            "Times a CPU's per-cgroup time table filled up between two timer runs.",
            s.cgroup_table_overflows,
        )?;
        counter1(
            &mut enc,
            "ergon_timer_errors",
            "Times a CPU's BPF timer (--timer bpf) could not be initialised or started; that CPU is then sampled only at its context switches until its next start.",
            s.timer_errors,
        )?;
        counter1(
            &mut enc,
            "ergon_energy_counter_stalls",
            "Times an energy counter stopped advancing for over 1 s while its package's CPUs ran tasks for at least 100 ms (/health is unhealthy while one stays stopped).",
            s.counter_stalls,
        )?;
        counter(
            &mut enc,
            "ergon_energy_reads",
            "Energy counter readings applied per package (its attribution base domain's counters): in the kernel one CPU of the package reads at a time, at most once per RAPL update interval (976 us); the daemon reads the counters of idle packages itself.",
            s.energy_reads
                .iter()
                .map(|&(p, n)| (vec![("package", p.to_string())], n as f64)),
        )?;
        counter(
            &mut enc,
            "ergon_energy_readings_rejected",
            "Energy counter readings the books refused and did not count: backwards (a 64-bit count lower than the last one) or implausible_wrap (a wrap implying more energy than the package can draw in the interval). The last good reading is kept.",
            [
                ("backwards", s.readings_rejected.backwards),
                ("implausible_wrap", s.readings_rejected.implausible_wraps),
            ]
            .into_iter()
            .map(|(reason, n)| (vec![("reason", reason.to_string())], n as f64)),
        )?;
        counter1(
            &mut enc,
            "ergon_idle_energy_reads",
            "Counter reads made by the daemon because every CPU reading the counter was idle.",
            s.idle_counter_reads,
        )?;
        // Only with --bpf-stats: without it the kernel counts nothing, and a
        // family of zeros would read as "the programs never ran".
        if !s.programs.is_empty() {
            counter(
                &mut enc,
                "ergon_bpf_program_runs",
                "Runs of each kernel program (kernel BPF stats; served with --bpf-stats only).",
                s.programs
                    .iter()
                    .map(|p| (vec![("program", p.name.to_string())], p.run_count as f64)),
            )?;
            counter(
                &mut enc,
                "ergon_bpf_program_run_seconds",
                "Time spent in each kernel program (kernel BPF stats).",
                s.programs.iter().map(|p| {
                    (
                        vec![("program", p.name.to_string())],
                        p.run_time_ns as f64 * 1e-9,
                    )
                }),
            )?;
        }
        gauge1(
            &mut enc,
            "ergon_last_drain_timestamp_seconds",
            "Wall-clock time of the last ring-buffer drain.",
            s.last_drain_unix,
        )?;
        gauge1(
            &mut enc,
            "ergon_books_timestamp_seconds",
            "Wall-clock time up to which energy is attributed (the attribution frontier): the energy series are complete up to here.",
            s.books_complete_unix,
        )?;
        gauge1(
            &mut enc,
            "ergon_sampling_period_seconds",
            "Timer period of the kernel sampler per CPU.",
            s.period_seconds,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        energy::{CpuEnergy, CpuTime, PackageEnergy},
        snapshot::{shared, Snapshot},
        units::Joules,
    };

    #[test]
    fn encodes_the_snapshot() {
        let snap = Snapshot {
            source: "synthetic",
            base_domain: "pkg",
            packages: vec![PackageEnergy {
                package: 0,
                domain: "pkg",
                joules: Joules(12.5),
            }],
            cpus: vec![
                CpuEnergy {
                    cpu: 0,
                    package: 0,
                    joules: Joules(6.25),
                },
                CpuEnergy {
                    cpu: 1,
                    package: 0,
                    joules: Joules(6.25),
                },
            ],
            cpu_time: vec![(
                0,
                CpuTime {
                    busy_ns: 1_500_000_000,
                    idle_ns: 500_000_000,
                },
            )],
            records_decoded: 42,
            ringbuf_dropped: 3,
            ..Snapshot::default()
        };
        let text = encode(&registry(shared(snap))).expect("encode");
        for line in [
            "ergon_package_energy_joules_total{package=\"0\",domain=\"pkg\"} 12.5",
            "ergon_cpu_energy_joules_total{cpu=\"1\"} 6.25",
            "ergon_cpu_time_seconds_total{cpu=\"0\",state=\"busy\"} 1.5",
            "ergon_source_info{source=\"synthetic\",domain=\"pkg\"} 1",
            "ergon_records_decoded_total 42",
            "ergon_ringbuf_dropped_total 3",
            "# TYPE ergon_package_energy_joules counter",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in:\n{text}"
            );
        }
    }
}
