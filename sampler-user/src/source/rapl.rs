//! The perf `power` PMU (RAPL): discovering it in sysfs and planning which
//! counters to open on which CPU.
//!
//! RAPL events are system-wide, one counter per package, opened on the CPU
//! the PMU's `cpumask` names for that package.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sampler_common::DOMAIN_NAMES;

use crate::sysroot::SysRoot;
use crate::topology::{parse_cpulist, Topology};

/// The power PMU's directory below the sysfs root.
pub const POWER_PMU_DIR: &str = "bus/event_source/devices/power";

/// AMD's per-core energy PMU (Linux 6.14, "perf/x86/rapl: Add core energy
/// counter support for AMD CPUs"): one `energy-core` counter per core, its
/// `cpumask` one CPU per core.
pub const POWER_CORE_PMU_DIR: &str = "bus/event_source/devices/power_core";

/// The `cores` domain's index in [`DOMAIN_NAMES`].
const CORES: usize = 1;

/// The only `.unit` a RAPL energy event may declare.
const JOULES: &str = "Joules";

/// Errors discovering the power PMU or planning its counters.
#[derive(Debug, thiserror::Error)]
pub enum RaplError {
    /// A file of the power PMU exists (or must exist) but cannot be read.
    #[error("cannot read {path}: check that sysfs is mounted there (--sysfs-root), or pick another energy source (--source)")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The PMU `type` file is not a u32.
    #[error("{path} holds {found:?}, expected the perf PMU type (an unsigned integer); the power PMU is broken, pick another energy source (--source)")]
    BadType { path: PathBuf, found: String },
    /// The PMU `cpumask` is not a cpu list.
    #[error("{path} holds {found:?}, expected a cpu list like `0,2` ({reason}); the power PMU is broken, pick another energy source (--source)")]
    BadCpumask {
        path: PathBuf,
        found: String,
        reason: String,
    },
    /// The PMU `cpumask` names no CPU, so no counter can be opened.
    #[error("{path} is empty: the power PMU names no cpu to open counters on; pick another energy source (--source)")]
    EmptyCpumask { path: PathBuf },
    /// An `events/energy-*` file is not a list of `key=value` terms with one `event=`.
    #[error("{path} holds {found:?}, expected perf event terms like `event=0x02`; the power PMU is broken, pick another energy source (--source)")]
    BadEvent { path: PathBuf, found: String },
    /// An energy event has no `.scale` file, so counts cannot be turned into joules.
    #[error("{path} is missing: without it the event's counts cannot be turned into joules; pick another energy source (--source)")]
    MissingScale { path: PathBuf },
    /// A `.scale` file is not a positive finite number.
    #[error("{path} holds {found:?}, expected joules per count (a positive number like `2.3283064365386962890625e-10`); pick another energy source (--source)")]
    BadScale { path: PathBuf, found: String },
    /// An energy event has no `.unit` file.
    #[error("{path} is missing: the event's unit cannot be checked to be Joules; pick another energy source (--source)")]
    MissingUnit { path: PathBuf },
    /// A `.unit` file names a unit other than Joules.
    #[error("{path} holds {found:?}, expected `Joules`; pick another energy source (--source)")]
    BadUnit { path: PathBuf, found: String },
    /// The PMU directory holds none of the `energy-{pkg,cores,ram,psys,gpu}` events.
    #[error("power PMU has no energy-* events in {dir}: expected events/energy-pkg and friends; pick another energy source (--source)")]
    NoEvents { dir: PathBuf },
    /// A `cpumask` CPU is not among the online CPUs.
    #[error("power PMU cpumask ({POWER_PMU_DIR}/cpumask) names cpu {cpu}, which is not online (devices/system/cpu/online); bring it online or pick another energy source (--source)")]
    CpumaskCpuOffline { cpu: u32 },
    /// Two `cpumask` CPUs sit in one package (per-die RAPL on a multi-die package).
    #[error("power PMU cpumask ({POWER_PMU_DIR}/cpumask) names cpus {first} and {second} in package {package}: per-die energy counters are not supported; pick another energy source (--source)")]
    SharedPackage {
        package: u32,
        first: u32,
        second: u32,
    },
}

/// The perf `power` PMU as sysfs describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerPmu {
    /// `perf_event_attr.type` for this PMU.
    pub pmu_type: u32,
    /// The CPUs counters must be opened on, one per package, sorted.
    pub cpumask: Vec<u32>,
    /// The energy events present, in domain order.
    pub events: Vec<RaplEvent>,
}

/// One `energy-*` event of the power PMU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RaplEvent {
    /// Index into [`sampler_common::DOMAIN_NAMES`] (pkg=0, cores=1, ram=2, psys=3, gpu=4).
    pub domain: usize,
    /// `perf_event_attr.config` (the `event=` value).
    pub config: u64,
    /// Joules per count, from the event's `.scale`.
    pub joules_per_count: f64,
}

/// One counter to open: one energy event on one package.
#[derive(Debug, Clone, PartialEq)]
pub struct CounterPlan {
    /// Index into [`sampler_common::DOMAIN_NAMES`].
    pub domain: usize,
    /// The package this counter measures.
    pub package: u32,
    /// The CPU to open the counter on (the package's `cpumask` CPU).
    pub open_cpu: u32,
    /// The CPUs that may read the counter: every online CPU of the package,
    /// `open_cpu` first, the rest in CPU order.
    pub readers: Vec<u32>,
    /// `perf_event_attr.type`.
    pub pmu_type: u32,
    /// `perf_event_attr.config`.
    pub config: u64,
    /// Joules per count.
    pub joules_per_count: f64,
    /// Read by the daemon from a file instead of by the kernel programs
    /// (userspace sources); `pmu_type`/`config`/`readers` are then unused.
    pub user: Option<UserCounter>,
}

impl CounterPlan {
    /// Whether the counter's perf event dies when its CPU goes offline and
    /// must be opened again when the CPU comes back. A software event (the
    /// `synthetic` source's cpu-clock) is removed from its CPU's context
    /// for good at offline (measured: its count stands still after the CPU
    /// is back). The `power` PMU's events are package-wide: the kernel moves
    /// them to another CPU of the package (`perf_pmu_migrate_context` in
    /// arch/x86/events/rapl.c), so they live on. Userspace counters are
    /// files, not events.
    pub fn dies_with_cpu(&self) -> bool {
        self.user.is_none() && self.pmu_type == perf_event_open_sys::bindings::PERF_TYPE_SOFTWARE
    }
}

/// A counter the daemon reads itself ([`super::poll`]).
#[derive(Debug, Clone, PartialEq)]
pub struct UserCounter {
    pub read: UserRead,
    /// The count runs 0..=max, then wraps to 0.
    pub max: u64,
    /// The most power the counter's zone can draw, in watts, where the
    /// hardware says (powercap's largest `constraint_*_max_power_uw`): a
    /// wrap implying more is refused. `None`: the books' per-CPU ceiling
    /// ([`crate::energy::PLAUSIBLE_WATTS_PER_CPU`]).
    pub max_watts: Option<f64>,
}

/// Where a userspace counter comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum UserRead {
    /// A file holding the cumulative count as a decimal number (powercap's `energy_uj`).
    File(std::path::PathBuf),
    /// The low 32 bits of a model-specific register (`/dev/cpu/N/msr`).
    Msr {
        path: std::path::PathBuf,
        register: u64,
    },
    /// The sum of a per-core register's low 32 bits over one CPU per core
    /// (AMD's core energy), each core's wraps taken apart; a 64-bit count.
    MsrSum {
        paths: Vec<std::path::PathBuf>,
        register: u64,
    },
    /// A CPU's busy time in `/proc/stat` through a linear power model, in nJ.
    Model {
        stat: std::path::PathBuf,
        cpu: u32,
        /// Idle power, µW.
        idle_uw: u64,
        /// Power added at full load (max − idle), µW.
        busy_uw: u64,
    },
}

/// Looks for the perf `power` PMU under `root`'s sysfs.
///
/// `Ok(None)` when there is no power PMU directory (no RAPL on this machine);
/// an error when the directory is there but a file in it is missing,
/// unreadable or malformed, or when it has no `energy-*` event.
pub fn discover(root: &SysRoot) -> Result<Option<PowerPmu>, RaplError> {
    let events: Vec<(String, usize)> = DOMAIN_NAMES
        .iter()
        .enumerate()
        .map(|(domain, name)| (format!("energy-{name}"), domain))
        .collect();
    discover_pmu(root, POWER_PMU_DIR, &events)
}

/// Looks for the per-core `power_core` PMU (its one event, `energy-core`,
/// is the `cores` domain of its core), as [`discover`] does.
pub fn discover_core(root: &SysRoot) -> Result<Option<PowerPmu>, RaplError> {
    discover_pmu(root, POWER_CORE_PMU_DIR, &[("energy-core".into(), CORES)])
}

/// A power PMU under `dir` with the `events` (file name, domain) it may have.
fn discover_pmu(
    root: &SysRoot,
    dir: &str,
    events: &[(String, usize)],
) -> Result<Option<PowerPmu>, RaplError> {
    let dir = root.sys(dir);
    match fs::metadata(&dir) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(RaplError::Read { path: dir, source }),
    }

    let type_path = dir.join("type");
    let type_text = read(&type_path)?;
    let pmu_type = type_text
        .trim()
        .parse::<u32>()
        .map_err(|_| RaplError::BadType {
            path: type_path.clone(),
            found: type_text.trim().to_owned(),
        })?;

    let cpumask_path = dir.join("cpumask");
    let cpumask_text = read(&cpumask_path)?;
    let cpumask = parse_cpulist(&cpumask_text).map_err(|e| RaplError::BadCpumask {
        path: cpumask_path.clone(),
        found: e.found,
        reason: e.reason,
    })?;
    if cpumask.is_empty() {
        return Err(RaplError::EmptyCpumask { path: cpumask_path });
    }

    let mut found = Vec::new();
    for (name, domain) in events {
        let domain = *domain;
        let path = dir.join(format!("events/{name}"));
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(RaplError::Read { path, source }),
        };
        let config = parse_event_config(&text).ok_or_else(|| RaplError::BadEvent {
            path: path.clone(),
            found: text.trim().to_owned(),
        })?;
        let joules_per_count = read_scale(&dir.join(format!("events/{name}.scale")))?;
        check_unit(&dir.join(format!("events/{name}.unit")))?;
        found.push(RaplEvent {
            domain,
            config,
            joules_per_count,
        });
    }
    if found.is_empty() {
        return Err(RaplError::NoEvents {
            dir: dir.join("events"),
        });
    }

    Ok(Some(PowerPmu {
        pmu_type,
        cpumask,
        events: found,
    }))
}

/// One counter per event of `pmu`, opened on `open_cpu` for `package` and
/// offered to `readers`.
fn counters<'a>(
    pmu: &'a PowerPmu,
    package: u32,
    open_cpu: u32,
    readers: &'a [u32],
) -> impl Iterator<Item = CounterPlan> + 'a {
    pmu.events.iter().map(move |event| CounterPlan {
        domain: event.domain,
        package,
        open_cpu,
        readers: readers.to_vec(),
        pmu_type: pmu.pmu_type,
        config: event.config,
        joules_per_count: event.joules_per_count,
        user: None,
    })
}

/// One `cores` counter per core of the `power_core` PMU: opened on the
/// core's `cpumask` CPU and read by that CPU and its online SMT siblings
/// (`thread_siblings_list`; that CPU alone when the list cannot be read).
/// A `cpumask` CPU that is not online has no core here to measure and is
/// passed over. The package's `cores` energy is the sum of its cores'.
pub fn plan_cores(pmu: &PowerPmu, topo: &Topology, root: &SysRoot) -> Vec<CounterPlan> {
    let mut plans = Vec::new();
    for &open_cpu in &pmu.cpumask {
        let Some(package) = topo.package_of(open_cpu) else {
            continue;
        };
        let siblings = fs::read_to_string(root.sys(&format!(
            "devices/system/cpu/cpu{open_cpu}/topology/thread_siblings_list"
        )))
        .ok()
        .and_then(|t| parse_cpulist(&t).ok())
        .unwrap_or_default();
        let readers: Vec<u32> = std::iter::once(open_cpu)
            .chain(
                siblings
                    .into_iter()
                    .filter(|&c| c != open_cpu && topo.package_of(c) == Some(package)),
            )
            .collect();
        plans.extend(counters(pmu, package, open_cpu, &readers));
    }
    plans
}

/// One counter per (package, event) for every package that has a `cpumask`
/// CPU, ordered by package, then by domain. A package without a `cpumask`
/// CPU gets no counter.
pub fn plan(pmu: &PowerPmu, topo: &Topology) -> Result<Vec<CounterPlan>, RaplError> {
    let mut open_cpus: BTreeMap<u32, u32> = BTreeMap::new();
    for &cpu in &pmu.cpumask {
        let package = topo
            .package_of(cpu)
            .ok_or(RaplError::CpumaskCpuOffline { cpu })?;
        if let Some(&first) = open_cpus.get(&package) {
            return Err(RaplError::SharedPackage {
                package,
                first,
                second: cpu,
            });
        }
        open_cpus.insert(package, cpu);
    }

    let mut plans = Vec::with_capacity(open_cpus.len() * pmu.events.len());
    for (&package, &open_cpu) in &open_cpus {
        let readers: Vec<u32> = std::iter::once(open_cpu)
            .chain(
                topo.cpus_of(package)
                    .into_iter()
                    .filter(|&cpu| cpu != open_cpu),
            )
            .collect();
        plans.extend(counters(pmu, package, open_cpu, &readers));
    }
    Ok(plans)
}

fn read(path: &Path) -> Result<String, RaplError> {
    fs::read_to_string(path).map_err(|source| RaplError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_scale(path: &Path) -> Result<f64, RaplError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(RaplError::MissingScale {
                path: path.to_path_buf(),
            })
        }
        Err(source) => {
            return Err(RaplError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    match text.trim().parse::<f64>() {
        Ok(scale) if scale.is_finite() && scale > 0.0 => Ok(scale),
        _ => Err(RaplError::BadScale {
            path: path.to_path_buf(),
            found: text.trim().to_owned(),
        }),
    }
}

fn check_unit(path: &Path) -> Result<(), RaplError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(RaplError::MissingUnit {
                path: path.to_path_buf(),
            })
        }
        Err(source) => {
            return Err(RaplError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if text.trim() == JOULES {
        Ok(())
    } else {
        Err(RaplError::BadUnit {
            path: path.to_path_buf(),
            found: text.trim().to_owned(),
        })
    }
}

/// The `event=` value of a perf event description such as `event=0x02` or
/// `event=0x02,umask=0x00`. Other `key=value` terms are ignored (the power
/// PMU's format only has `event`, config bits 0-7). `None` unless there is
/// exactly one `event=` term and every term is `key=value`. Values are hex
/// with `0x`, decimal without, as perf reads them.
fn parse_event_config(text: &str) -> Option<u64> {
    let mut config = None;
    for term in text.trim().split(',') {
        let (key, value) = term.trim().split_once('=')?;
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() || value.is_empty() {
            return None;
        }
        if key == "event" {
            if config.is_some() {
                return None;
            }
            config = Some(parse_number(value)?);
        }
    }
    config
}

fn parse_number(value: &str) -> Option<u64> {
    match value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u64::from_str_radix(hex, 16).ok()
        }
        Some(_) => None,
        None if value.bytes().all(|b| b.is_ascii_digit()) => value.parse().ok(),
        None => None,
    }
}

#[cfg(test)]
mod tests;
