//! Energy sources and the choice between them.
//!
//! A source is a plan: which counters to open, on which CPU, which CPUs'
//! timer programs read each one, and how many joules a count is worth. The
//! kernel path is the same for every source in this module, except that a
//! userspace source's counters are read by the daemon ([`poll`]) instead of
//! the timer program; its records still carry every CPU's timeline.

pub mod liveness;
pub mod model;
pub mod msr;
pub mod poll;
pub mod powercap;
pub mod rapl;
pub mod synthetic;

use serde::Deserialize;

pub use liveness::Probe;
pub use rapl::{CounterPlan, UserCounter, UserRead};

use crate::{sysroot::SysRoot, topology::Topology};

/// `--source`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The best source this machine has: `rapl`, else `powercap`, else `msr`, else `model`.
    Auto,
    /// RAPL energy counters through the perf `power` PMU, read in BPF.
    Rapl,
    /// RAPL zones of the kernel's powercap framework (sysfs), read by the daemon.
    Powercap,
    /// RAPL model-specific registers through /dev/cpu/N/msr, read by the daemon.
    Msr,
    /// An estimate: per-CPU busy time × a declared linear power model.
    Model,
    /// A per-CPU software clock scaled to `--synthetic-watts` per CPU, read in BPF.
    Synthetic,
}

/// A source that can actually run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    Rapl,
    Powercap,
    Msr,
    Model,
    Synthetic,
}

impl Resolved {
    pub fn name(self) -> &'static str {
        match self {
            Resolved::Rapl => "rapl",
            Resolved::Powercap => "powercap",
            Resolved::Msr => "msr",
            Resolved::Model => "model",
            Resolved::Synthetic => "synthetic",
        }
    }

    /// How often the daemon polls this source's userspace counters at most.
    /// RAPL updates about every ms. `/proc/stat` moves in 10 ms ticks, so a
    /// reading is ± one tick: every 100 ms that is ±10%, and the poller
    /// costs ~0.1% of a CPU instead of ~1% at 10 ms (measured on these VMs,
    /// where one timer wake-up alone costs ~33 µs of CPU; docs/sources.md).
    pub fn poll_floor(self) -> std::time::Duration {
        match self {
            Resolved::Model => model::POLL_FLOOR,
            _ => std::time::Duration::from_millis(1),
        }
    }
}

/// What the user declared for the sources that need it.
#[derive(Clone, Debug, PartialEq)]
pub struct Declared {
    pub synthetic: synthetic::Synthetic,
    pub model: model::Model,
}

/// What the daemon will open, and why this source.
#[derive(Clone, Debug)]
pub struct Plan {
    pub source: Resolved,
    pub reason: String,
    pub counters: Vec<CounterPlan>,
    /// Each counter measures only its `open_cpu` (per-CPU energy is read
    /// directly); otherwise counters are package-wide.
    pub per_cpu: bool,
}

/// The domains that can be the attribution base, best first: the package
/// counter, else the platform's (`psys`, on hosts that expose only it).
const BASE_ORDER: [usize; 2] = [0, 3];

impl Plan {
    /// The domain whose energy is split over CPUs, cgroups and idle: `pkg`
    /// when the plan has a `pkg` counter, else `psys`, else its lowest domain
    /// (0 for a plan without counters). Only that domain's series and the
    /// per-CPU and per-cgroup series come from the attribution books; no
    /// `domain="pkg"` series is served without a `pkg` counter.
    pub fn base_domain(&self) -> usize {
        let has = |d: usize| self.counters.iter().any(|c| c.domain == d);
        BASE_ORDER
            .into_iter()
            .find(|&d| has(d))
            .or_else(|| self.counters.iter().map(|c| c.domain).min())
            .unwrap_or(0)
    }

    /// Whether `c` is the only counter of its (package, domain): false for
    /// the per-core counters of the `power_core` PMU, whose domain is
    /// their sum.
    pub fn sole_counter(&self, c: &CounterPlan) -> bool {
        self.counters
            .iter()
            .filter(|o| o.package == c.package && o.domain == c.domain)
            .count()
            == 1
    }

    /// [`Plan::base_domain`]'s name (`pkg`, `psys`, …).
    pub fn base_domain_name(&self) -> &'static str {
        sampler_common::DOMAIN_NAMES
            .get(self.base_domain())
            .copied()
            .unwrap_or("pkg")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("--source rapl: no perf `power` PMU at {path}; this machine has no RAPL counters exposed to perf (VMs usually do not). Use --source auto")]
    NoPowerPmu { path: String },
    #[error("--source rapl: the perf `power` PMU is unusable")]
    Rapl {
        #[source]
        source: rapl::RaplError,
    },
    #[error("--source powercap: no RAPL zones under {path} (or none on an online package); use --source auto")]
    NoPowercap { path: String },
    #[error("--source powercap: the RAPL zones are unusable")]
    Powercap {
        #[source]
        source: powercap::PowercapError,
    },
    #[error("--source msr: no package energy register reads on this CPU; use --source auto")]
    NoMsr,
    #[error("--source msr: the RAPL MSRs are unusable")]
    Msr {
        #[source]
        source: msr::MsrError,
    },
    /// Every counter the source found is present but dead or unreadable.
    #[error("--source {name}: no counter it found moves: {why}; use --source auto, which falls back to a source that works here (the model, an estimate, where no counter moves)")]
    Dead { name: &'static str, why: String },
}

impl SourceError {
    /// Why `auto` passed this source over, as one clause of its reason.
    pub fn why_not(&self) -> String {
        match self {
            SourceError::NoPowerPmu { path } => format!("no perf power PMU at {path}"),
            SourceError::Rapl { source } => {
                format!("the perf power PMU is unusable ({})", chain(source))
            }
            SourceError::NoPowercap { path } => format!("no powercap RAPL package zone at {path}"),
            SourceError::Powercap { source } => format!("powercap unusable ({})", chain(source)),
            SourceError::NoMsr => "no RAPL package MSR reads on this CPU".into(),
            SourceError::Msr { source } => format!("msr: {}", chain(source)),
            SourceError::Dead { name, why } => format!("{name}: {why}"),
        }
    }
}

/// Resolves `--source` into a plan for this machine. A counter source's
/// counters must move under `probe` ([`liveness`]) to be planned.
pub fn select(
    kind: SourceKind,
    root: &SysRoot,
    topo: &Topology,
    declared: &Declared,
    probe: &dyn Probe,
) -> Result<Plan, SourceError> {
    let asked = |s: &str| format!("asked for with --source {s}");
    match kind {
        SourceKind::Synthetic => Ok(synthetic::plan(
            topo,
            declared.synthetic,
            asked("synthetic"),
        )),
        SourceKind::Model => Ok(model::plan(
            root,
            topo,
            &declared.model,
            format!("{}; {}", asked("model"), declared.model.describe()),
        )),
        SourceKind::Rapl => try_rapl(root, topo, probe).map(|f| f.plan(asked("rapl"))),
        SourceKind::Powercap => try_powercap(root, topo, probe).map(|f| f.plan(asked("powercap"))),
        SourceKind::Msr => try_msr(root, topo, probe).map(|f| f.plan(asked("msr"))),
        SourceKind::Auto => Ok(auto(root, topo, declared, probe)),
    }
}

/// `auto`: rapl → powercap → msr → model; the reason says what each step
/// found. `synthetic` is never chosen here: it only runs when asked for.
fn auto(root: &SysRoot, topo: &Topology, declared: &Declared, probe: &dyn Probe) -> Plan {
    let mut tried: Vec<String> = Vec::new();
    let counter_sources: [Attempt; 3] = [try_rapl, try_powercap, try_msr];
    for attempt in counter_sources {
        match attempt(root, topo, probe) {
            Ok(f) => {
                tried.push(f.found.clone());
                return f.plan(tried.join("; "));
            }
            Err(e) => tried.push(e.why_not()),
        }
    }
    tried.push(format!(
        "no energy counter here, so the model ESTIMATES power: {}",
        declared.model.describe()
    ));
    model::plan(root, topo, &declared.model, tried.join("; "))
}

/// Looks for one counter source on this machine.
type Attempt = fn(&SysRoot, &Topology, &dyn Probe) -> Result<Found, SourceError>;

/// A counter source this machine has: its package counters and what was found.
struct Found {
    source: Resolved,
    counters: Vec<CounterPlan>,
    found: String,
}

impl Found {
    /// Leaves out the counters that do not move under `probe`, saying so in
    /// `found`; an error naming each one when none is left.
    fn moving(mut self, probe: &dyn Probe, topo: &Topology) -> Result<Found, SourceError> {
        let packages = topo.packages().len();
        let verdicts = probe.probe(&self.counters);
        let mut kept = Vec::with_capacity(self.counters.len());
        let mut left_out = Vec::new();
        for (c, l) in self.counters.into_iter().zip(verdicts) {
            match liveness::why(&c, packages, &l) {
                Some(why) => left_out.push(why),
                None => kept.push(c),
            }
        }
        if kept.is_empty() {
            return Err(SourceError::Dead {
                name: self.source.name(),
                why: left_out.join("; "),
            });
        }
        if !left_out.is_empty() {
            self.found
                .push_str(&format!("; left out: {}", left_out.join("; ")));
        }
        self.counters = kept;
        Ok(self)
    }

    /// Adds the `power_core` PMU's per-core counters as the `cores` domain
    /// when it is there and counts. They are kept or left out together: a
    /// partial sum would be a wrong `cores` figure. One core whose counter
    /// moves proves the PMU reads real registers (an idle core's may stand
    /// still for the probe's 25 ms); none moving is a dead PMU.
    fn add_cores(&mut self, root: &SysRoot, topo: &Topology, probe: &dyn Probe) {
        let pmu = match rapl::discover_core(root) {
            Ok(Some(pmu)) => pmu,
            Ok(None) => return,
            Err(e) => {
                self.found.push_str(&format!(
                    "; power_core PMU present but unusable, no cores domain: {}",
                    chain(&e)
                ));
                return;
            }
        };
        let cores = rapl::plan_cores(&pmu, topo, root);
        if cores.is_empty() {
            return;
        }
        let verdicts = probe.probe(&cores);
        if verdicts.contains(&liveness::Liveness::Moves) {
            self.found.push_str(&format!(
                "; power_core PMU with energy-core on {} cores (the cores domain and each core's energy)",
                cores.len()
            ));
            self.counters.extend(cores);
        } else {
            let first = verdicts
                .iter()
                .zip(&cores)
                .find_map(|(l, c)| match l {
                    liveness::Liveness::Moves => None,
                    liveness::Liveness::Dead { value } => Some(format!(
                        "cpu {}'s reads {value} and does not advance in {} ms",
                        c.open_cpu,
                        liveness::GAP.as_millis()
                    )),
                    liveness::Liveness::Unreadable { reason } => {
                        Some(format!("cpu {}'s cannot be read: {reason}", c.open_cpu))
                    }
                })
                .unwrap_or_default();
            self.found.push_str(&format!(
                "; left out: power_core PMU energy-core moves on none of {} cores ({first}; a hypervisor exposing the PMU without the registers?)",
                cores.len()
            ));
        }
    }

    /// The userspace sources need their package counter among the moving
    /// ones: passed over (or refused) otherwise, saying what was found.
    fn needing_package(self, what: &str) -> Result<Found, SourceError> {
        if self.counters.iter().any(|c| c.domain == 0) {
            return Ok(self);
        }
        Err(SourceError::Dead {
            name: self.source.name(),
            why: format!("no package {what} moves ({})", self.found),
        })
    }

    fn plan(self, reason: String) -> Plan {
        Plan {
            source: self.source,
            reason,
            counters: self.counters,
            per_cpu: false,
        }
    }
}

fn try_rapl(root: &SysRoot, topo: &Topology, probe: &dyn Probe) -> Result<Found, SourceError> {
    let pmu_path = root.sys(rapl::POWER_PMU_DIR).display().to_string();
    let pmu = match rapl::discover(root) {
        Ok(Some(pmu)) => pmu,
        Ok(None) => return Err(SourceError::NoPowerPmu { path: pmu_path }),
        Err(source) => return Err(SourceError::Rapl { source }),
    };
    let domains: Vec<&str> = pmu
        .events
        .iter()
        .filter_map(|e| sampler_common::DOMAIN_NAMES.get(e.domain).copied())
        .collect();
    let counters = rapl::plan(&pmu, topo).map_err(|source| SourceError::Rapl { source })?;
    let mut found = Found {
        source: Resolved::Rapl,
        counters,
        found: format!(
            "perf power PMU found at {pmu_path} with energy-{{{}}}",
            domains.join(",")
        ),
    }
    .moving(probe, topo)?;
    // AMD has no package-wide `cores` event; its per-core PMU gives one.
    if !pmu.events.iter().any(|e| e.domain == 1) {
        found.add_cores(root, topo, probe);
    }
    Ok(found)
}

fn try_powercap(root: &SysRoot, topo: &Topology, probe: &dyn Probe) -> Result<Found, SourceError> {
    let dir = root.sys(powercap::DIR).display().to_string();
    let found = powercap::discover(root).map_err(|source| SourceError::Powercap { source })?;
    let counters = powercap::plan(&found.zones, topo);
    if !counters.iter().any(|c| c.domain == 0) {
        return Err(SourceError::NoPowercap { path: dir });
    }
    let names: Vec<&str> = found.zones.iter().map(|z| z.name.as_str()).collect();
    let skipped: String = found.skipped.iter().map(|s| format!("; {s}")).collect();
    Found {
        source: Resolved::Powercap,
        counters,
        found: format!(
            "powercap RAPL zones at {dir} ({}), read by the daemon{skipped}",
            names.join(", ")
        ),
    }
    .moving(probe, topo)?
    .needing_package("zone")
}

fn try_msr(root: &SysRoot, topo: &Topology, probe: &dyn Probe) -> Result<Found, SourceError> {
    let counters = msr::plan(root, topo).map_err(|source| SourceError::Msr { source })?;
    if !counters.iter().any(|c| c.domain == 0) {
        return Err(SourceError::NoMsr);
    }
    let mut domains: Vec<usize> = counters.iter().map(|c| c.domain).collect();
    domains.sort_unstable();
    domains.dedup();
    let domains: Vec<&str> = domains
        .iter()
        .filter_map(|&d| sampler_common::DOMAIN_NAMES.get(d).copied())
        .collect();
    Found {
        source: Resolved::Msr,
        counters,
        found: format!(
            "RAPL MSRs through {} ({}; read by the daemon)",
            root.dev("cpu/N/msr").display(),
            domains.join(", ")
        ),
    }
    .moving(probe, topo)?
    .needing_package("register")
}

/// An error and its sources on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod base_tests {
    use super::*;

    fn plan(domains: &[usize]) -> Plan {
        Plan {
            source: Resolved::Rapl,
            reason: String::new(),
            counters: domains
                .iter()
                .map(|&domain| CounterPlan {
                    domain,
                    package: 0,
                    open_cpu: 0,
                    readers: vec![0],
                    pmu_type: 0,
                    config: 0,
                    joules_per_count: 1.0,
                    user: None,
                })
                .collect(),
            per_cpu: false,
        }
    }

    #[test]
    fn the_base_is_pkg_else_psys_else_the_lowest_domain() {
        assert_eq!(plan(&[3, 0, 2]).base_domain_name(), "pkg");
        assert_eq!(plan(&[3]).base_domain_name(), "psys");
        assert_eq!(plan(&[2, 3, 1]).base_domain_name(), "psys");
        assert_eq!(plan(&[2, 1]).base_domain_name(), "cores");
        assert_eq!(plan(&[]).base_domain_name(), "pkg");
    }
}
