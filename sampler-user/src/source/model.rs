//! `model`: for VMs and clouds with no energy counter at all. Each CPU draws
//! `idle + (max − idle) × busy` watts, where `busy` is the CPU's share of
//! non-idle time in `/proc/stat`, and `idle`/`max` are declared per CPU
//! (`--model-idle-watts`, `--model-max-watts`, or the `[model]` table of the
//! config file). It is an estimate, and exported as such
//! (`ergon_source_info{source="model"}`).
//!
//! The poller ([`super::poll`]) turns `/proc/stat` into one cumulative
//! counter per CPU, in nanojoules, so the model feeds the same books and
//! the same attribution as a measured counter: within a CPU, the energy is
//! split over cgroups by the kernel's exact on-CPU time, as for RAPL.
//!
//! Busy time is `user + nice + system + irq + softirq` (guest time is
//! already inside user/nice); `idle`, `iowait` and `steal` (another
//! guest's time) are not. `/proc/stat` counts in `USER_HZ` ticks (10 ms);
//! the daemon reads it every 100 ms ([`POLL_FLOOR`]), so the model's power
//! moves in 100 ms steps.

use std::{collections::HashMap, path::PathBuf};

use super::{CounterPlan, Plan, Resolved, UserCounter, UserRead};
use crate::{sysroot::SysRoot, topology::Topology};

/// The model is read at most this often (see [`super::Resolved::poll_floor`]).
pub const POLL_FLOOR: std::time::Duration = std::time::Duration::from_millis(100);

/// Per-CPU watts when nothing is declared: the order of published per-vCPU
/// cloud averages (e.g. Cloud Carbon Footprint's). Said loudly at start-up.
pub const DEFAULT_IDLE_WATTS: f64 = 0.74;
pub const DEFAULT_MAX_WATTS: f64 = 3.5;

/// Linear power of one CPU.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuModel {
    pub idle_watts: f64,
    pub max_watts: f64,
}

/// The declared model: a default and per-CPU overrides.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub default: CpuModel,
    pub cpus: HashMap<u32, CpuModel>,
    /// False when the defaults above are in use.
    pub declared: bool,
}

impl Default for Model {
    fn default() -> Self {
        Self {
            default: CpuModel {
                idle_watts: DEFAULT_IDLE_WATTS,
                max_watts: DEFAULT_MAX_WATTS,
            },
            cpus: HashMap::new(),
            declared: false,
        }
    }
}

impl Model {
    pub fn of(&self, cpu: u32) -> CpuModel {
        self.cpus.get(&cpu).copied().unwrap_or(self.default)
    }

    /// One line for logs and `ergon check`.
    pub fn describe(&self) -> String {
        let d = self.default;
        let mut s = format!("{} W idle to {} W busy per CPU", d.idle_watts, d.max_watts);
        if !self.cpus.is_empty() {
            s.push_str(&format!(" ({} CPUs overridden)", self.cpus.len()));
        }
        if !self.declared {
            s.push_str(
                ", undeclared defaults: set --model-idle-watts/--model-max-watts for this machine",
            );
        }
        s
    }
}

/// One counter per online CPU, read by the poller from `/proc/stat`.
pub fn plan(root: &SysRoot, topo: &Topology, model: &Model, reason: String) -> Plan {
    let stat: PathBuf = root.proc("stat");
    let counters = topo
        .cpus
        .iter()
        .map(|c| {
            let m = model.of(c.cpu);
            CounterPlan {
                domain: 0,
                package: c.package,
                open_cpu: c.cpu,
                readers: Vec::new(),
                pmu_type: 0,
                config: 0,
                joules_per_count: 1e-9,
                user: Some(UserCounter {
                    read: UserRead::Model {
                        stat: stat.clone(),
                        cpu: c.cpu,
                        idle_uw: watts_to_uw(m.idle_watts),
                        busy_uw: watts_to_uw(m.max_watts - m.idle_watts),
                    },
                    max: u64::MAX,
                    max_watts: None,
                }),
            }
        })
        .collect();
    Plan {
        source: Resolved::Model,
        reason,
        counters,
        per_cpu: true,
    }
}

fn watts_to_uw(w: f64) -> u64 {
    (w.max(0.0) * 1e6).round() as u64
}

/// Busy ticks per CPU from a `/proc/stat` text (`cpuN` lines only).
pub fn busy_ticks(stat: &str) -> HashMap<u32, u64> {
    stat.lines()
        .filter_map(|l| {
            // `cpuN …`; the aggregate line is `cpu  …` (a space after `cpu`).
            let rest = l.strip_prefix("cpu")?;
            if !rest.starts_with(|c: char| c.is_ascii_digit()) {
                return None;
            }
            let mut f = rest.split_ascii_whitespace();
            let cpu: u32 = f.next()?.parse().ok()?;
            // user nice system idle iowait irq softirq steal …
            let v: Vec<u64> = f.map_while(|x| x.parse().ok()).collect();
            let get = |i: usize| v.get(i).copied().unwrap_or(0);
            (v.len() >= 4).then(|| (cpu, get(0) + get(1) + get(2) + get(5) + get(6)))
        })
        .collect()
}

/// Integrates one CPU's model: nanojoules since the first call.
#[derive(Clone, Copy, Debug)]
pub struct Integrator {
    pub idle_uw: u64,
    pub busy_uw: u64,
    /// (boot ns, busy ticks) of the first reading.
    start: Option<(u64, u64)>,
    /// Most busy ticks seen: the counter never goes back.
    busiest: u64,
}

impl Integrator {
    pub fn new(idle_uw: u64, busy_uw: u64) -> Self {
        Self {
            idle_uw,
            busy_uw,
            start: None,
            busiest: 0,
        }
    }

    /// The counter at boot time `now_ns` with `busy` ticks of `ns_per_tick`:
    /// idle power over the wall time plus the dynamic part over busy time.
    pub fn at(&mut self, now_ns: u64, busy: u64, ns_per_tick: u64) -> u64 {
        let (t0, b0) = *self.start.get_or_insert((now_ns, busy));
        self.busiest = self.busiest.max(busy);
        let busy = self.busiest;
        let wall = u128::from(now_ns.saturating_sub(t0));
        let busy_ns = u128::from(busy.saturating_sub(b0)) * u128::from(ns_per_tick);
        // µW × ns = fJ; / 1e6 = nJ.
        let nj = (u128::from(self.idle_uw) * wall + u128::from(self.busy_uw) * busy_ns) / 1_000_000;
        nj.min(u128::from(u64::MAX)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::fixture;

    #[test]
    fn busy_ticks_are_user_nice_system_irq_softirq() {
        let root = SysRoot::under(&fixture("model-2cpu"));
        let text = std::fs::read_to_string(root.proc("stat")).expect("stat");
        let b = busy_ticks(&text);
        assert_eq!(b.len(), 2, "the aggregate `cpu` line is not a CPU");
        assert_eq!(b[&0], 2000 + 10 + 600 + 20);
        assert_eq!(b[&1], 1000 + 400 + 20);
    }

    #[test]
    fn integrates_idle_over_wall_time_and_the_rest_over_busy_time() {
        // 2 W idle, 12 W busy; 10 ms ticks.
        let mut i = Integrator::new(2_000_000, 10_000_000);
        assert_eq!(
            i.at(5_000_000_000, 700, 10_000_000),
            0,
            "the first reading is zero"
        );
        // 1 s later, 50 ticks (0.5 s) busy: 2 J + 10 W × 0.5 s = 7 J.
        assert_eq!(i.at(6_000_000_000, 750, 10_000_000), 7_000_000_000);
        // Ticks that went back (a torn read, a CPU unplugged and back) are
        // ignored: the counter never decreases, only idle power accrues.
        assert_eq!(i.at(7_000_000_000, 10, 10_000_000), 9_000_000_000);
        assert_eq!(i.at(8_000_000_000, 760, 10_000_000), 12_000_000_000);
    }

    #[test]
    fn one_counter_per_cpu_with_its_own_model() {
        let root = SysRoot::under(&fixture("model-2cpu"));
        let topo = Topology::read(&root).expect("topology");
        let mut model = Model::default();
        model.cpus.insert(
            1,
            CpuModel {
                idle_watts: 1.0,
                max_watts: 9.5,
            },
        );
        let p = plan(&root, &topo, &model, "test".into());
        assert!(p.per_cpu);
        assert_eq!(p.source, Resolved::Model);
        let reads: Vec<_> = p
            .counters
            .iter()
            .map(|c| (c.open_cpu, c.user.as_ref().map(|u| u.read.clone())))
            .collect();
        assert_eq!(
            reads[1],
            (
                1,
                Some(UserRead::Model {
                    stat: root.proc("stat"),
                    cpu: 1,
                    idle_uw: 1_000_000,
                    busy_uw: 8_500_000
                })
            )
        );
        assert!(matches!(
            reads[0].1,
            Some(UserRead::Model {
                idle_uw: 740_000,
                busy_uw: 2_760_000,
                ..
            })
        ));
        assert!(model.describe().contains("1 CPUs overridden"));
        assert!(Model::default().describe().contains("undeclared"));
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod fixture_tests;
