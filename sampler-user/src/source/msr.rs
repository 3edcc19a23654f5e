//! `msr`: the RAPL model-specific registers through the `msr` driver's
//! `/dev/cpu/N/msr` (one `pread` of 8 bytes at the register's address),
//! read by the daemon at the timer cadence ([`super::poll`]) — for machines
//! with neither the perf `power` PMU nor powercap (older kernels, or
//! kernels built without them).
//!
//! Intel: `MSR_RAPL_POWER_UNIT` (0x606) gives the energy unit, 1/2^ESU J
//! (bits 12:8); the energy status registers are package 0x611, PP0 (cores)
//! 0x639, DRAM 0x619, PP1 (gpu) 0x641 and platform (psys) 0x64D. Some
//! models count a domain in a fixed unit whatever the unit register says,
//! as the kernel's RAPL PMU knows ([`intel_unit_quirk`]: DRAM in 2^-16 J on
//! Haswell-X to Ice Lake-X and Xeon Phi, psys in 1 J on Sapphire and
//! Emerald Rapids). AMD (family 17h and later, and Hygon): unit 0xC0010299,
//! package 0xC001029B, and a per-core register 0xC001029A: the `cores`
//! domain is the sum of that register over one CPU per physical core
//! ([`Topology::core_leaders`]), read every [`CORE_SUM_EVERY`] rather than
//! at the timer cadence, because the driver reads another CPU's register
//! with an inter-processor interrupt, and one per core per millisecond
//! would wake every core of the machine a thousand times a second.
//!
//! The energy fields are 32 bits and wrap within minutes at high power;
//! the books take deltas modulo 2^32 ([`crate::units::bounded_delta`] with
//! `max = 2^32 − 1`), which is exact as long as a counter is read at least
//! once per wrap. Registers are read on one CPU per package (they are
//! package-scoped). A register that cannot be read, or reads 0, is taken
//! to be absent.

use std::{fs::File, io, os::unix::fs::FileExt, path::PathBuf};

use super::{CounterPlan, UserCounter, UserRead};
use crate::{sysroot::SysRoot, topology::Topology};

pub const INTEL_POWER_UNIT: u64 = 0x606;
pub const AMD_POWER_UNIT: u64 = 0xC001_0299;
/// (register, domain index in `DOMAIN_NAMES`), package first.
pub const INTEL_ENERGY: [(u64, usize); 5] =
    [(0x611, 0), (0x639, 1), (0x619, 2), (0x64D, 3), (0x641, 4)];
pub const AMD_ENERGY: [(u64, usize); 1] = [(0xC001_029B, 0)];
/// AMD's per-core energy register (`CORE_ENERGY_STAT`), same unit as the package's.
pub const AMD_CORE_ENERGY: u64 = 0xC001_029A;
/// How often the per-core registers are summed (the timer cadence when slower).
pub const CORE_SUM_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
/// The energy status fields are 32 bits wide.
pub const MAX: u64 = u32::MAX as u64;

#[derive(Debug, thiserror::Error)]
pub enum MsrError {
    #[error("{path} does not exist: the msr module is not loaded; load it with `modprobe msr` (and list it in /etc/modules-load.d/ to keep it), or use another --source")]
    NotLoaded { path: PathBuf },
    #[error("{path}: permission denied; reading MSRs needs root (CAP_SYS_RAWIO)")]
    Permission { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} has no vendor_id line; the procfs tree is not a kernel's (--procfs-root)")]
    Cpuinfo { path: PathBuf },
    #[error("{vendor} CPUs have no RAPL MSRs Ergon knows; use another --source")]
    Vendor { vendor: String },
    #[error("the CPU does not implement MSR_RAPL_POWER_UNIT ({register:#x}) at {path} (a VM usually does not); use another --source")]
    NoRapl { path: PathBuf, register: u64 },
}

/// What `/proc/cpuinfo` says about the first CPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cpu {
    pub vendor: String,
    pub family: u32,
    pub model: u32,
}

impl Cpu {
    /// AMD, or Hygon (whose parts are AMD's Zen): the same RAPL registers.
    pub fn is_amd(&self) -> bool {
        matches!(self.vendor.as_str(), "AuthenticAMD" | "HygonGenuine")
    }
}

pub fn cpuinfo(root: &SysRoot) -> Result<Cpu, MsrError> {
    let path = root.proc("cpuinfo");
    let text = std::fs::read_to_string(&path).map_err(|source| MsrError::Io {
        path: path.clone(),
        source,
    })?;
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().to_owned())
        })
    };
    let vendor = field("vendor_id").ok_or(MsrError::Cpuinfo { path })?;
    let num = |name: &str| field(name).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(Cpu {
        vendor,
        family: num("cpu family"),
        model: num("model"),
    })
}

/// Where an Intel model's energy units differ from `MSR_RAPL_POWER_UNIT`,
/// as the kernel's perf RAPL PMU has them (`arch/x86/events/rapl.c`,
/// `rapl_model_match` and `rapl_check_hw_unit`). Each row: (model, name,
/// quirk), the kernel line it follows in the comment. docs/sources.md has
/// the table.
const INTEL_UNIT_QUIRKS: &[(u32, &str, UnitQuirk)] = &[
    // RAPL_UNIT_QUIRK_INTEL_HSW: "DRAM domain on HSW server and KNL has
    // fixed energy unit" (rapl_pkg_hw_unit[PERF_RAPL_RAM] = 16).
    (0x3F, "Haswell-X", UnitQuirk::Dram16), // INTEL_HASWELL_X, &model_hsx
    (0x4F, "Broadwell-X", UnitQuirk::Dram16), // INTEL_BROADWELL_X, &model_hsx
    (0x56, "Broadwell-D", UnitQuirk::Dram16), // INTEL_BROADWELL_D, &model_hsx
    (0x57, "Xeon Phi KNL", UnitQuirk::Dram16), // INTEL_XEON_PHI_KNL, &model_knl
    (0x85, "Xeon Phi KNM", UnitQuirk::Dram16), // INTEL_XEON_PHI_KNM, &model_knl
    (0x55, "Skylake-X", UnitQuirk::Dram16), // INTEL_SKYLAKE_X, &model_hsx
    (0x6A, "Ice Lake-X", UnitQuirk::Dram16), // INTEL_ICELAKE_X, &model_hsx
    (0x6C, "Ice Lake-D", UnitQuirk::Dram16), // INTEL_ICELAKE_D, &model_hsx
    // RAPL_UNIT_QUIRK_INTEL_SPR: "SPR uses a fixed energy unit for Psys
    // domain" (rapl_pkg_hw_unit[PERF_RAPL_PSYS] = 0); DRAM uses the unit
    // register ("Use standard Energy Unit for SPR Dram RAPL domain").
    (0x8F, "Sapphire Rapids", UnitQuirk::Psys1), // INTEL_SAPPHIRERAPIDS_X, &model_spr
    (0xCF, "Emerald Rapids", UnitQuirk::Psys1),  // INTEL_EMERALDRAPIDS_X, &model_spr
];

/// An Intel model's deviation from the unit register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitQuirk {
    /// DRAM counts in 2^-16 J (15.3 µJ).
    Dram16,
    /// psys counts in 2^0 J (1 J).
    Psys1,
}

/// The unit quirk of an Intel CPU (family 6), if its model has one. Models
/// not in the table (client parts, Atom, Granite Rapids and later, whose
/// RAPL the kernel reads through TPMI rather than these MSRs) use the unit
/// register for every domain; AMD and Hygon have no quirk.
pub fn intel_unit_quirk(cpu: &Cpu) -> Option<UnitQuirk> {
    if cpu.vendor != "GenuineIntel" || cpu.family != 6 {
        return None;
    }
    INTEL_UNIT_QUIRKS
        .iter()
        .find(|&&(model, _, _)| model == cpu.model)
        .map(|&(_, _, q)| q)
}

/// Joules per count of `domain` on `cpu`, given the unit register's.
pub fn domain_joules_per_count(cpu: &Cpu, domain: usize, unit_jpc: f64) -> f64 {
    match (intel_unit_quirk(cpu), domain) {
        (Some(UnitQuirk::Dram16), 2) => 1.0 / 65536.0,
        (Some(UnitQuirk::Psys1), 3) => 1.0,
        _ => unit_jpc,
    }
}

/// Reads the 64-bit register `reg` through `file`; `None` when the CPU
/// does not implement it (EIO from the driver, or short on a fixture).
pub(crate) fn read_reg(file: &File, reg: u64) -> Option<u64> {
    let mut buf = [0u8; 8];
    match file.read_at(&mut buf, reg) {
        Ok(8) => Some(u64::from_le_bytes(buf)),
        _ => None,
    }
}

/// Opens the msr device of `cpu`, with the errors a user can act on.
pub fn open(root: &SysRoot, cpu: u32) -> Result<(PathBuf, File), MsrError> {
    let path = root.dev(&format!("cpu/{cpu}/msr"));
    match File::open(&path) {
        Ok(f) => Ok((path, f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(MsrError::NotLoaded { path }),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(MsrError::Permission { path }),
        Err(source) => Err(MsrError::Io { path, source }),
    }
}

/// Joules per count of the unit register's energy field (bits 12:8).
pub fn joules_per_count(unit: u64) -> f64 {
    let esu = (unit >> 8) & 0x1F;
    1.0 / (1u64 << esu) as f64
}

/// The counters of every package: the registers that read non-zero on the
/// package's first CPU. An empty plan means no package register.
pub fn plan(root: &SysRoot, topo: &Topology) -> Result<Vec<CounterPlan>, MsrError> {
    // The driver first: "not loaded" is the common case and the useful message.
    if let Some(c) = topo.cpus.first() {
        open(root, c.cpu)?;
    }
    let cpu = cpuinfo(root)?;
    let amd = cpu.is_amd();
    let (unit_reg, regs): (u64, &[(u64, usize)]) = match cpu.vendor.as_str() {
        "GenuineIntel" => (INTEL_POWER_UNIT, &INTEL_ENERGY),
        _ if amd => (AMD_POWER_UNIT, &AMD_ENERGY),
        _ => return Err(MsrError::Vendor { vendor: cpu.vendor }),
    };
    let mut counters = Vec::new();
    let packages = topo.packages();
    // psys is platform-wide, and on a multi-package machine only the
    // platform's master package holds it: the others read 0 (Linux
    // 5.11, "powercap/intel_rapl: enumerate Psys RAPL domain together with
    // package RAPL domain": package 0 is not the master on Sapphire Rapids).
    // It is read once, on the first package whose register is not 0.
    let mut psys_taken = false;
    for &package in &packages {
        let Some(&first) = topo.cpus_of(package).first() else {
            continue;
        };
        let (path, file) = open(root, first)?;
        let unit = read_reg(&file, unit_reg).ok_or_else(|| MsrError::NoRapl {
            path: path.clone(),
            register: unit_reg,
        })?;
        let jpc = joules_per_count(unit);
        for &(reg, domain) in regs {
            if domain == 3 && psys_taken {
                continue;
            }
            if read_reg(&file, reg).is_none_or(|v| v & MAX == 0) {
                continue;
            }
            psys_taken |= domain == 3;
            let jpc = domain_joules_per_count(&cpu, domain, jpc);
            let read = UserRead::Msr {
                path: path.clone(),
                register: reg,
            };
            counters.push(polled(domain, package, first, jpc, read, MAX));
        }
        if amd {
            if let Some(read) = core_sum(root, topo, package, &file) {
                // The poller's 64-bit sum never wraps.
                counters.push(polled(1, package, first, jpc, read, u64::MAX));
            }
        }
    }
    Ok(counters)
}

/// A counter the daemon's poller reads (no kernel reader).
fn polled(
    domain: usize,
    package: u32,
    cpu: u32,
    jpc: f64,
    read: UserRead,
    max: u64,
) -> CounterPlan {
    CounterPlan {
        domain,
        package,
        open_cpu: cpu,
        readers: Vec::new(),
        pmu_type: 0,
        config: 0,
        joules_per_count: jpc,
        user: Some(UserCounter {
            read,
            max,
            max_watts: None,
        }),
    }
}

/// AMD's `cores` domain for `package`: its per-core register on one CPU per
/// core. `None` (no `cores` domain) when the first CPU's register reads 0
/// or not at all, when SMT siblings cannot be told apart, or when a core's
/// device cannot be opened: a partial sum would be a wrong one.
fn core_sum(root: &SysRoot, topo: &Topology, package: u32, first: &File) -> Option<UserRead> {
    if read_reg(first, AMD_CORE_ENERGY).is_none_or(|v| v & MAX == 0) {
        return None;
    }
    let mut paths = Vec::new();
    for cpu in topo.core_leaders(root, package)? {
        let (path, _) = open(root, cpu).ok()?;
        paths.push(path);
    }
    Some(UserRead::MsrSum {
        paths,
        register: AMD_CORE_ENERGY,
    })
}

#[cfg(test)]
#[path = "msr_tests.rs"]
mod tests;
