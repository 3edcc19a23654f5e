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
}

/// Looks for the perf `power` PMU under `root`'s sysfs.
///
/// `Ok(None)` when there is no power PMU directory (no RAPL on this machine);
/// an error when the directory is there but a file in it is missing,
/// unreadable or malformed, or when it has no `energy-*` event.
pub fn discover(root: &SysRoot) -> Result<Option<PowerPmu>, RaplError> {
    let dir = root.sys(POWER_PMU_DIR);
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

    let mut events = Vec::new();
    for (domain, name) in DOMAIN_NAMES.iter().enumerate() {
        let path = dir.join(format!("events/energy-{name}"));
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(RaplError::Read { path, source }),
        };
        let config = parse_event_config(&text).ok_or_else(|| RaplError::BadEvent {
            path: path.clone(),
            found: text.trim().to_owned(),
        })?;
        let joules_per_count = read_scale(&dir.join(format!("events/energy-{name}.scale")))?;
        check_unit(&dir.join(format!("events/energy-{name}.unit")))?;
        events.push(RaplEvent {
            domain,
            config,
            joules_per_count,
        });
    }
    if events.is_empty() {
        return Err(RaplError::NoEvents {
            dir: dir.join("events"),
        });
    }

    Ok(Some(PowerPmu {
        pmu_type,
        cpumask,
        events,
    }))
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
        for event in &pmu.events {
            plans.push(CounterPlan {
                domain: event.domain,
                package,
                open_cpu,
                readers: readers.clone(),
                pmu_type: pmu.pmu_type,
                config: event.config,
                joules_per_count: event.joules_per_count,
            });
        }
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
mod tests {
    use super::*;

    /// 2^-32 J, the usual RAPL energy unit.
    const TWO_POW_M32: f64 = 1.0 / 4_294_967_296.0;
    /// 2^-16 J, the DRAM energy unit of some servers.
    const TWO_POW_M16: f64 = 1.0 / 65_536.0;

    fn fixture(name: &str) -> PathBuf {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata")).join(name)
    }

    fn copy_tree(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for entry in fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_tree(&entry.path(), &target);
            } else {
                fs::copy(entry.path(), &target).unwrap();
            }
        }
    }

    /// A writable copy of a fixture tree and the path of its power PMU.
    fn scratch(name: &str) -> (tempfile::TempDir, SysRoot, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&fixture(name), dir.path());
        let root = SysRoot::under(dir.path());
        let pmu = root.sys(POWER_PMU_DIR);
        (dir, root, pmu)
    }

    fn discover_err(root: &SysRoot) -> RaplError {
        match discover(root) {
            Ok(pmu) => panic!("expected an error, discovered {pmu:?}"),
            Err(e) => e,
        }
    }

    fn assert_names(err: &RaplError, path: &Path) {
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }

    fn intel() -> (PowerPmu, Topology) {
        let root = SysRoot::under(&fixture("rapl-intel-2pkg"));
        (
            discover(&root).unwrap().unwrap(),
            Topology::read(&root).unwrap(),
        )
    }

    #[test]
    fn sysfs_scale_literals_are_exact_powers_of_two() {
        assert_eq!(
            "2.3283064365386962890625e-10".parse::<f64>().unwrap(),
            TWO_POW_M32
        );
        assert_eq!("1.52587890625e-05".parse::<f64>().unwrap(), TWO_POW_M16);
        assert_eq!(TWO_POW_M32, 2f64.powi(-32));
    }

    #[test]
    fn discover_intel_two_packages() {
        let (pmu, _) = intel();
        assert_eq!(pmu.pmu_type, 23);
        assert_eq!(pmu.cpumask, vec![0, 2]);
        assert_eq!(
            pmu.events,
            vec![
                RaplEvent {
                    domain: 0,
                    config: 0x02,
                    joules_per_count: TWO_POW_M32
                },
                RaplEvent {
                    domain: 1,
                    config: 0x01,
                    joules_per_count: TWO_POW_M32
                },
                RaplEvent {
                    domain: 2,
                    config: 0x03,
                    joules_per_count: TWO_POW_M16
                },
                RaplEvent {
                    domain: 3,
                    config: 0x05,
                    joules_per_count: TWO_POW_M32
                },
                RaplEvent {
                    domain: 4,
                    config: 0x04,
                    joules_per_count: TWO_POW_M32
                },
            ]
        );
        let names: Vec<&str> = pmu.events.iter().map(|e| DOMAIN_NAMES[e.domain]).collect();
        assert_eq!(names, ["pkg", "cores", "ram", "psys", "gpu"]);
    }

    #[test]
    fn discover_amd_pkg_only() {
        let root = SysRoot::under(&fixture("rapl-amd"));
        let pmu = discover(&root).unwrap().unwrap();
        assert_eq!(pmu.pmu_type, 11);
        assert_eq!(pmu.cpumask, vec![0]);
        assert_eq!(
            pmu.events,
            vec![RaplEvent {
                domain: 0,
                config: 0x02,
                joules_per_count: TWO_POW_M32
            }]
        );
    }

    #[test]
    fn discover_without_pmu_is_none() {
        let root = SysRoot::under(&fixture("no-pmu"));
        assert_eq!(discover(&root).unwrap(), None);
    }

    #[test]
    fn discover_without_sysfs_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(discover(&SysRoot::under(dir.path())).unwrap(), None);
    }

    #[test]
    fn plan_intel_two_packages() {
        let (pmu, topo) = intel();
        let plans = plan(&pmu, &topo).unwrap();
        assert_eq!(plans.len(), 10);
        let expected_configs = [0x02, 0x01, 0x03, 0x05, 0x04];
        for (i, p) in plans.iter().enumerate() {
            let (package, domain) = ((i / 5) as u32, i % 5);
            assert_eq!(p.package, package, "plan {i}");
            assert_eq!(p.domain, domain, "plan {i}");
            assert_eq!(p.config, expected_configs[domain], "plan {i}");
            assert_eq!(p.pmu_type, 23);
            let scale = if domain == 2 {
                TWO_POW_M16
            } else {
                TWO_POW_M32
            };
            assert_eq!(p.joules_per_count, scale, "plan {i}");
            if package == 0 {
                assert_eq!(p.open_cpu, 0);
                assert_eq!(p.readers, vec![0, 1]);
            } else {
                assert_eq!(p.open_cpu, 2);
                assert_eq!(p.readers, vec![2, 3]);
            }
        }
    }

    #[test]
    fn plan_puts_open_cpu_first_in_readers() {
        let (mut pmu, topo) = intel();
        pmu.cpumask = vec![1, 3];
        let plans = plan(&pmu, &topo).unwrap();
        assert_eq!(plans.len(), 10);
        assert_eq!(
            (plans[0].open_cpu, plans[0].readers.clone()),
            (1, vec![1, 0])
        );
        assert_eq!(
            (plans[5].open_cpu, plans[5].readers.clone()),
            (3, vec![3, 2])
        );
    }

    #[test]
    fn plan_skips_package_without_cpumask_cpu() {
        let (mut pmu, topo) = intel();
        pmu.cpumask = vec![2];
        let plans = plan(&pmu, &topo).unwrap();
        assert_eq!(plans.len(), 5);
        assert!(plans
            .iter()
            .all(|p| p.package == 1 && p.open_cpu == 2 && p.readers == vec![2, 3]));
    }

    #[test]
    fn plan_amd_one_package() {
        let root = SysRoot::under(&fixture("rapl-amd"));
        let pmu = discover(&root).unwrap().unwrap();
        let topo = Topology::read(&root).unwrap();
        let plans = plan(&pmu, &topo).unwrap();
        assert_eq!(
            plans,
            vec![CounterPlan {
                domain: 0,
                package: 0,
                open_cpu: 0,
                readers: (0..8).collect(),
                pmu_type: 11,
                config: 0x02,
                joules_per_count: TWO_POW_M32,
            }]
        );
    }

    #[test]
    fn plan_rejects_offline_cpumask_cpu() {
        let (mut pmu, topo) = intel();
        pmu.cpumask = vec![0, 6];
        let err = plan(&pmu, &topo).unwrap_err();
        assert!(
            matches!(err, RaplError::CpumaskCpuOffline { cpu: 6 }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("cpu 6") && msg.contains("cpumask"), "{msg}");
    }

    #[test]
    fn plan_rejects_two_cpumask_cpus_in_one_package() {
        let (mut pmu, topo) = intel();
        pmu.cpumask = vec![0, 1, 2];
        let err = plan(&pmu, &topo).unwrap_err();
        assert!(
            matches!(
                err,
                RaplError::SharedPackage {
                    package: 0,
                    first: 0,
                    second: 1
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn garbage_scale_is_bad_scale() {
        let (_dir, root, pmu) = scratch("rapl-intel-2pkg");
        let path = pmu.join("events/energy-ram.scale");
        for garbage in ["joules\n", "0\n", "-2.3e-10\n", "inf\n", "NaN\n", "\n"] {
            fs::write(&path, garbage).unwrap();
            let err = discover_err(&root);
            match &err {
                RaplError::BadScale { path: p, found } => {
                    assert_eq!(p, &path);
                    assert_eq!(found, garbage.trim());
                }
                other => panic!("expected BadScale for {garbage:?}, got {other:?}"),
            }
            assert_names(&err, &path);
        }
    }

    #[test]
    fn missing_scale_is_missing_scale() {
        let (_dir, root, pmu) = scratch("rapl-intel-2pkg");
        let path = pmu.join("events/energy-cores.scale");
        fs::remove_file(&path).unwrap();
        let err = discover_err(&root);
        assert!(
            matches!(&err, RaplError::MissingScale { path: p } if p == &path),
            "{err:?}"
        );
        assert_names(&err, &path);
    }

    #[test]
    fn unreadable_scale_is_read_error() {
        let (_dir, root, pmu) = scratch("rapl-intel-2pkg");
        let path = pmu.join("events/energy-pkg.scale");
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        let err = discover_err(&root);
        assert!(
            matches!(&err, RaplError::Read { path: p, .. } if p == &path),
            "{err:?}"
        );
        assert_names(&err, &path);
    }

    #[test]
    fn wrong_unit_is_bad_unit() {
        let (_dir, root, pmu) = scratch("rapl-amd");
        let path = pmu.join("events/energy-pkg.unit");
        fs::write(&path, "Watts\n").unwrap();
        let err = discover_err(&root);
        assert!(
            matches!(&err, RaplError::BadUnit { path: p, found } if p == &path && found == "Watts"),
            "{err:?}"
        );
        assert_names(&err, &path);
    }

    #[test]
    fn missing_unit_is_missing_unit() {
        let (_dir, root, pmu) = scratch("rapl-amd");
        let path = pmu.join("events/energy-pkg.unit");
        fs::remove_file(&path).unwrap();
        let err = discover_err(&root);
        assert!(
            matches!(&err, RaplError::MissingUnit { path: p } if p == &path),
            "{err:?}"
        );
        assert_names(&err, &path);
    }

    #[test]
    fn garbage_type_is_bad_type() {
        let (_dir, root, pmu) = scratch("rapl-intel-2pkg");
        let path = pmu.join("type");
        for garbage in ["power\n", "-1\n", "0x17\n", "\n"] {
            fs::write(&path, garbage).unwrap();
            let err = discover_err(&root);
            assert!(
                matches!(&err, RaplError::BadType { path: p, found } if p == &path && found == garbage.trim()),
                "{err:?}"
            );
            assert_names(&err, &path);
        }
    }

    #[test]
    fn unreadable_type_is_read_error() {
        let (_dir, root, pmu) = scratch("rapl-intel-2pkg");
        let path = pmu.join("type");
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        let err = discover_err(&root);
        assert!(
            matches!(&err, RaplError::Read { path: p, .. } if p == &path),
            "{err:?}"
        );
        assert_names(&err, &path);
    }

    #[test]
    fn missing_type_is_read_error() {
        let (_dir, root, pmu) = scratch("rapl-intel-2pkg");
        let path = pmu.join("type");
        fs::remove_file(&path).unwrap();
        let err = discover_err(&root);
        assert!(
            matches!(&err, RaplError::Read { path: p, source } if p == &path && source.kind() == io::ErrorKind::NotFound),
            "{err:?}"
        );
    }

    #[test]
    fn garbage_cpumask_is_bad_cpumask() {
        let (_dir, root, pmu) = scratch("rapl-intel-2pkg");
        let path = pmu.join("cpumask");
        fs::write(&path, "ff\n").unwrap();
        let err = discover_err(&root);
        assert!(
            matches!(&err, RaplError::BadCpumask { path: p, found, .. } if p == &path && found == "ff"),
            "{err:?}"
        );
        assert_names(&err, &path);
    }

    #[test]
    fn empty_cpumask_is_an_error() {
        let (_dir, root, pmu) = scratch("rapl-intel-2pkg");
        let path = pmu.join("cpumask");
        fs::write(&path, "\n").unwrap();
        let err = discover_err(&root);
        assert!(
            matches!(&err, RaplError::EmptyCpumask { path: p } if p == &path),
            "{err:?}"
        );
        assert_names(&err, &path);
    }

    #[test]
    fn garbage_event_is_bad_event() {
        let (_dir, root, pmu) = scratch("rapl-intel-2pkg");
        let path = pmu.join("events/energy-psys");
        for garbage in [
            "0x05\n",
            "event=\n",
            "event=0xzz\n",
            "event=0x\n",
            "umask=0x01\n",
            "event=0x05,event=0x06\n",
            "event=0x05,,umask=1\n",
            "event=-5\n",
            "event=0x1ffffffffffffffff\n",
        ] {
            fs::write(&path, garbage).unwrap();
            let err = discover_err(&root);
            assert!(
                matches!(&err, RaplError::BadEvent { path: p, found } if p == &path && found == garbage.trim()),
                "{garbage:?}: {err:?}"
            );
            assert_names(&err, &path);
        }
    }

    #[test]
    fn event_terms_are_parsed_tolerantly() {
        assert_eq!(parse_event_config("event=0x02"), Some(2));
        assert_eq!(parse_event_config("event=0x02\n"), Some(2));
        assert_eq!(parse_event_config("event=0X1f"), Some(0x1f));
        assert_eq!(parse_event_config("event=7"), Some(7));
        assert_eq!(parse_event_config("event=0x03,umask=0x00"), Some(3));
        assert_eq!(parse_event_config("umask=0x00, event=0x04 \n"), Some(4));
        assert_eq!(parse_event_config(""), None);
    }

    #[test]
    fn unreadable_event_is_read_error() {
        let (_dir, root, pmu) = scratch("rapl-intel-2pkg");
        let path = pmu.join("events/energy-gpu");
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        let err = discover_err(&root);
        assert!(
            matches!(&err, RaplError::Read { path: p, .. } if p == &path),
            "{err:?}"
        );
        assert_names(&err, &path);
    }

    #[test]
    fn missing_events_leave_holes_in_domain_order() {
        let (_dir, root, pmu) = scratch("rapl-intel-2pkg");
        for name in ["cores", "psys"] {
            for suffix in ["", ".scale", ".unit"] {
                fs::remove_file(pmu.join(format!("events/energy-{name}{suffix}"))).unwrap();
            }
        }
        let found = discover(&root).unwrap().unwrap();
        let domains: Vec<usize> = found.events.iter().map(|e| e.domain).collect();
        assert_eq!(domains, vec![0, 2, 4]);
    }

    #[test]
    fn no_energy_events_is_an_error() {
        let (_dir, root, pmu) = scratch("rapl-amd");
        for suffix in ["", ".scale", ".unit"] {
            fs::remove_file(pmu.join(format!("events/energy-pkg{suffix}"))).unwrap();
        }
        let err = discover_err(&root);
        assert!(matches!(&err, RaplError::NoEvents { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("power PMU has no energy-* events"), "{msg}");
        assert_names(&err, &pmu.join("events"));
    }

    #[test]
    fn pmu_path_that_is_a_file_is_read_error() {
        let (_dir, root, pmu) = scratch("no-pmu");
        fs::write(&pmu, "not a directory\n").unwrap();
        let err = discover_err(&root);
        assert!(
            matches!(&err, RaplError::Read { path, .. } if path == &pmu.join("type")),
            "{err:?}"
        );
    }
}
