//! Energy sources and the choice between them.
//!
//! A source is a plan: which counters to open, on which CPU, which CPUs'
//! timer programs read each one, and how many joules a count is worth. The
//! kernel path is the same for every source in this module, except that a
//! userspace source's counters are read by the daemon ([`poll`]) instead of
//! the timer program; its records still carry every CPU's timeline.

pub mod poll;
pub mod powercap;
pub mod rapl;
pub mod synthetic;

use serde::Deserialize;

pub use rapl::{CounterPlan, UserCounter};

use crate::{sysroot::SysRoot, topology::Topology};

/// `--source`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The best source this machine has: `rapl`, else `powercap`, else `synthetic`.
    Auto,
    /// RAPL energy counters through the perf `power` PMU, read in BPF.
    Rapl,
    /// RAPL zones of the kernel's powercap framework (sysfs), read by the daemon.
    Powercap,
    /// A per-CPU software clock scaled to `--synthetic-watts` per CPU, read in BPF.
    Synthetic,
}

/// A source that can actually run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    Rapl,
    Powercap,
    Synthetic,
}

impl Resolved {
    pub fn name(self) -> &'static str {
        match self {
            Resolved::Rapl => "rapl",
            Resolved::Powercap => "powercap",
            Resolved::Synthetic => "synthetic",
        }
    }
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

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("--source rapl: no perf `power` PMU at {path}; this machine has no RAPL counters exposed to perf (VMs usually do not). Use --source auto or --source synthetic")]
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
}

/// Resolves `--source` into a plan for this machine.
pub fn select(
    kind: SourceKind,
    root: &SysRoot,
    topo: &Topology,
    synth: synthetic::Synthetic,
) -> Result<Plan, SourceError> {
    let synthetic_watts = synth.watts;
    let pmu_path = root.sys(rapl::POWER_PMU_DIR).display().to_string();
    match kind {
        SourceKind::Synthetic => Ok(synthetic::plan(
            topo,
            synth,
            "asked for with --source synthetic".into(),
        )),
        SourceKind::Rapl => match rapl::discover(root) {
            Ok(Some(pmu)) => rapl_plan(&pmu, topo, "asked for with --source rapl".into()),
            Ok(None) => Err(SourceError::NoPowerPmu { path: pmu_path }),
            Err(source) => Err(SourceError::Rapl { source }),
        },
        SourceKind::Powercap => {
            let path = root.sys(powercap::DIR).display().to_string();
            let zones =
                powercap::discover(root).map_err(|source| SourceError::Powercap { source })?;
            let counters = powercap::plan(&zones, topo);
            if !counters.iter().any(|c| c.domain == 0) {
                return Err(SourceError::NoPowercap { path });
            }
            Ok(Plan {
                source: Resolved::Powercap,
                reason: "asked for with --source powercap".into(),
                counters,
                per_cpu: false,
            })
        }
        SourceKind::Auto => match rapl::discover(root) {
            Ok(Some(pmu)) => {
                let domains: Vec<&str> = pmu
                    .events
                    .iter()
                    .filter_map(|e| sampler_common::DOMAIN_NAMES.get(e.domain).copied())
                    .collect();
                let reason = format!(
                    "perf power PMU found at {pmu_path} with energy-{{{}}}",
                    domains.join(",")
                );
                match rapl_plan(&pmu, topo, reason) {
                    Ok(plan) => Ok(plan),
                    Err(e) => Ok(synthetic::plan(
                        topo,
                        synth,
                        format!("the power PMU cannot be planned ({}); falling back to synthetic {synthetic_watts} W per CPU", chain(&e)),
                    )),
                }
            }
            Ok(None) => Ok(powercap_or_synthetic(
                root,
                topo,
                synth,
                format!("no perf power PMU at {pmu_path}"),
            )),
            Err(e) => Ok(powercap_or_synthetic(
                root,
                topo,
                synth,
                format!("the power PMU is unusable ({})", chain(&e)),
            )),
        },
    }
}

/// `auto` after rapl: powercap when it has package zones, else synthetic;
/// the reason says what was tried.
fn powercap_or_synthetic(
    root: &SysRoot,
    topo: &Topology,
    synth: synthetic::Synthetic,
    no_rapl: String,
) -> Plan {
    let dir = root.sys(powercap::DIR).display().to_string();
    let why_not = match powercap::discover(root) {
        Ok(zones) => {
            let counters = powercap::plan(&zones, topo);
            if counters.iter().any(|c| c.domain == 0) {
                let names: Vec<&str> = zones.iter().map(|z| z.name.as_str()).collect();
                return Plan {
                    source: Resolved::Powercap,
                    reason: format!(
                        "{no_rapl}; powercap RAPL zones at {dir} ({}), read by the daemon",
                        names.join(", ")
                    ),
                    counters,
                    per_cpu: false,
                };
            }
            format!("no powercap RAPL package zone at {dir}")
        }
        Err(e) => format!("powercap unusable ({})", chain(&e)),
    };
    let watts = synth.watts;
    synthetic::plan(
        topo,
        synth,
        format!("{no_rapl}; {why_not}; synthetic {watts} W per CPU exercises the same kernel path"),
    )
}

fn rapl_plan(pmu: &rapl::PowerPmu, topo: &Topology, reason: String) -> Result<Plan, SourceError> {
    let counters = rapl::plan(pmu, topo).map_err(|source| SourceError::Rapl { source })?;
    Ok(Plan {
        source: Resolved::Rapl,
        reason,
        counters,
        per_cpu: false,
    })
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
