//! Energy sources and the choice between them.
//!
//! A source is a plan: which counters to open, on which CPU, which CPUs'
//! timer programs read each one, and how many joules a count is worth. The
//! kernel path is the same for every source in this module.

pub mod rapl;
pub mod synthetic;

use serde::Deserialize;

pub use rapl::CounterPlan;

use crate::{sysroot::SysRoot, topology::Topology};

/// `--source`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The best source this machine has: `rapl`, else `synthetic`.
    Auto,
    /// RAPL energy counters through the perf `power` PMU, read in BPF.
    Rapl,
    /// A per-CPU software clock scaled to `--synthetic-watts` per CPU, read in BPF.
    Synthetic,
}

/// A source that can actually run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    Rapl,
    Synthetic,
}

impl Resolved {
    pub fn name(self) -> &'static str {
        match self {
            Resolved::Rapl => "rapl",
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
            Ok(None) => Ok(synthetic::plan(
                topo,
                synth,
                format!("no perf power PMU at {pmu_path} (no RAPL here); synthetic {synthetic_watts} W per CPU exercises the same kernel path"),
            )),
            Err(e) => Ok(synthetic::plan(
                topo,
                synth,
                format!("the power PMU is unusable ({}); falling back to synthetic {synthetic_watts} W per CPU", chain(&e)),
            )),
        },
    }
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
