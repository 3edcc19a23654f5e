//! `powercap`: the kernel's RAPL zones in sysfs (`class/powercap/intel-rapl:*`,
//! also on AMD), read by the daemon itself at the timer cadence (see
//! [`super::poll`]) — for machines whose RAPL counters are not exposed to
//! perf, or where the perf PMU is unusable.
//!
//! Zones: `intel-rapl:N` is a package (`name` = `package-K`) or the
//! platform (`psys`); its subzones `intel-rapl:N:M` are `core`, `uncore`
//! and `dram`. `energy_uj` counts microjoules and wraps after
//! `max_energy_range_uj` (not a power of two), so deltas go through
//! [`crate::units::bounded_delta`]. Since Linux 5.10 `energy_uj` is readable
//! by root only.
//!
//! On AMD and Hygon the kernel's driver reads the `core` subzone from
//! `MSR_AMD_CORE_ENERGY_STATUS` on the package's first CPU: that register is
//! per core, so the zone counts one core, not the package's cores as PP0
//! does on Intel. Served as `domain="cores"` it would mislead, so on those
//! vendors (from `/proc/cpuinfo`) it is skipped and the skip is reported.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use super::{
    msr,
    rapl::{CounterPlan, UserCounter, UserRead},
};
use crate::{sysroot::SysRoot, topology::Topology};

pub const DIR: &str = "class/powercap";

/// One energy zone.
#[derive(Clone, Debug, PartialEq)]
pub struct Zone {
    pub dir: PathBuf,
    pub name: String,
    /// Index into [`sampler_common::DOMAIN_NAMES`].
    pub domain: usize,
    pub package: u32,
    /// `max_energy_range_uj`: the counter goes 0..=max, then wraps.
    pub max_uj: u64,
    /// The largest `constraint_N_max_power_uw` of the zone, in µW: the
    /// most it can draw, which bounds a plausible wrap. `None` when the
    /// zone has no constraint with a non-zero, readable maximum.
    pub max_power_uw: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum PowercapError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is readable by root only (since Linux 5.10, against the PLATYPUS power side channel); run ergon as root")]
    Permission { path: PathBuf },
    #[error("{path} holds {value:?}, not a whole number of microjoules; the sysfs tree is not a kernel's (--sysfs-root)")]
    Parse { path: PathBuf, value: String },
}

fn read(path: &Path) -> Result<String, PowercapError> {
    fs::read_to_string(path).map_err(|source| match source.kind() {
        io::ErrorKind::PermissionDenied => PowercapError::Permission {
            path: path.to_owned(),
        },
        _ => PowercapError::Read {
            path: path.to_owned(),
            source,
        },
    })
}

fn read_u64(path: &Path) -> Result<u64, PowercapError> {
    let s = read(path)?;
    s.trim().parse().map_err(|_| PowercapError::Parse {
        path: path.to_owned(),
        value: s.trim().to_owned(),
    })
}

/// (domain, package) of a zone `name`; `package` is the parent's for subzones.
fn classify(name: &str, parent_package: Option<u32>) -> Option<(usize, u32)> {
    if let Some(k) = name.strip_prefix("package-") {
        return Some((0, k.trim().parse().ok()?));
    }
    let domain = match name {
        "core" => 1,
        "dram" => 2,
        "psys" => 3,
        "uncore" => 4,
        _ => return None,
    };
    Some((domain, parent_package.unwrap_or(0)))
}

/// What [`discover`] found: the zones to read, and the zones passed over
/// (each with why, for the start-up reason and `ergon check`).
#[derive(Debug, Default, PartialEq)]
pub struct Zones {
    pub zones: Vec<Zone>,
    pub skipped: Vec<String>,
}

/// Whether `/proc/cpuinfo` names a vendor whose `core` zone is one core's.
/// An unreadable cpuinfo keeps the zone: the package zone, which is what
/// attribution uses, is right either way.
fn core_zone_is_one_core(root: &SysRoot) -> bool {
    msr::cpuinfo(root).is_ok_and(|c| c.is_amd())
}

/// The RAPL zones under `root`'s sysfs (none when there are none). Every
/// zone's `energy_uj` is read once, so a permission problem shows here.
pub fn discover(root: &SysRoot) -> Result<Zones, PowercapError> {
    let dir = root.sys(DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Zones::default()),
        Err(source) => return Err(PowercapError::Read { path: dir, source }),
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        // `intel-rapl-mmio:*` repeats the package zone through MMIO: skip it.
        .filter(|n| n.starts_with("intel-rapl:") || n.starts_with("amd-rapl:"))
        .collect();
    // Parents (`intel-rapl:0`) before children (`intel-rapl:0:1`).
    names.sort_by_key(|n| (n.matches(':').count(), n.clone()));
    let one_core = core_zone_is_one_core(root);
    let mut zones: Vec<Zone> = Vec::new();
    let mut skipped = Vec::new();
    for n in names {
        let zdir = dir.join(&n);
        let name = read(&zdir.join("name"))?.trim().to_owned();
        let parent = n
            .rsplit_once(':')
            .map(|(p, _)| p)
            .filter(|p| p.contains(':'));
        let parent_package = parent.and_then(|p| {
            zones
                .iter()
                .find(|z| z.dir.file_name().is_some_and(|f| f == p))
                .map(|z| z.package)
        });
        let Some((domain, package)) = classify(&name, parent_package) else {
            continue;
        };
        if domain == 1 && one_core {
            skipped.push(format!(
                "{n} ({name}) skipped: on AMD it counts the package's first core only"
            ));
            continue;
        }
        let max_uj = read_u64(&zdir.join("max_energy_range_uj"))?;
        read_u64(&zdir.join("energy_uj"))?;
        let max_power_uw = max_power_uw(&zdir);
        zones.push(Zone {
            dir: zdir,
            name,
            domain,
            package,
            max_uj,
            max_power_uw,
        });
    }
    Ok(Zones { zones, skipped })
}

/// The largest `constraint_N_max_power_uw` of a zone (N = 0, 1, … while
/// `constraint_N_name` exists: long_term, short_term, peak_power). A
/// maximum the kernel cannot give (the attribute answers an error on some
/// constraints) or gives as 0 (not declared) is left out; so is the zone's
/// bound when none is left.
fn max_power_uw(zone: &Path) -> Option<u64> {
    (0..)
        .map_while(|n| {
            zone.join(format!("constraint_{n}_name"))
                .exists()
                .then(|| read_u64(&zone.join(format!("constraint_{n}_max_power_uw"))).ok())
        })
        .flatten()
        .filter(|&uw| uw > 0)
        .max()
}

/// One counter per zone whose package is online here.
pub fn plan(zones: &[Zone], topo: &Topology) -> Vec<CounterPlan> {
    zones
        .iter()
        .filter_map(|z| {
            let open_cpu = *topo.cpus_of(z.package).first()?;
            Some(CounterPlan {
                domain: z.domain,
                package: z.package,
                open_cpu,
                readers: Vec::new(),
                pmu_type: 0,
                config: 0,
                joules_per_count: 1e-6,
                user: Some(UserCounter {
                    read: UserRead::File(z.dir.join("energy_uj")),
                    max: z.max_uj,
                    max_watts: z.max_power_uw.map(|uw| uw as f64 * 1e-6),
                }),
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "powercap_tests.rs"]
mod tests;
