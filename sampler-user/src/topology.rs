//! CPU topology: which CPUs are online and which physical package each one
//! belongs to, read from sysfs through a [`SysRoot`].

use std::fs;
use std::io;
use std::path::PathBuf;

use crate::sysroot::SysRoot;

/// Highest CPU id a cpulist may name. Linux's `NR_CPUS` tops out at 8192; the
/// bound keeps a corrupt range such as `0-4294967295` from allocating gigabytes.
pub const MAX_CPU_ID: u32 = 65_535;

/// A cpulist (`0-3,8,10-11`) that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad cpu list {found:?}: {reason}")]
pub struct CpuListError {
    /// The whole text that was parsed.
    pub found: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Errors reading the CPU topology.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// A topology file exists but cannot be read.
    #[error("cannot read {path}: check that sysfs is mounted there (--sysfs-root)")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The online CPU list does not parse.
    #[error("{path} holds {found:?}, expected a cpu list like `0-3,8` ({reason}); the sysfs tree is not a kernel's (--sysfs-root)")]
    CpuList {
        path: PathBuf,
        found: String,
        reason: String,
    },
    /// The online CPU list is empty.
    #[error("{path} lists no online cpus; the sysfs tree is not a kernel's (--sysfs-root)")]
    NoCpus { path: PathBuf },
    /// A `physical_package_id` file holds something other than an integer.
    #[error("{path} holds {found:?}, expected a package id (a non-negative integer); the sysfs tree is not a kernel's (--sysfs-root)")]
    PackageId { path: PathBuf, found: String },
}

/// One online CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuInfo {
    /// Logical CPU number, as in `cpuN`.
    pub cpu: u32,
    /// Physical package (socket) id.
    pub package: u32,
}

/// The online CPUs of the machine, sorted by CPU number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub cpus: Vec<CpuInfo>,
}

impl Topology {
    /// Reads `devices/system/cpu/online` and each online CPU's
    /// `devices/system/cpu/cpuN/topology/physical_package_id` below `root`'s
    /// sysfs. A CPU without that file (or with the kernel's "unknown" value
    /// `-1`) is placed in package 0.
    pub fn read(root: &SysRoot) -> Result<Self, TopologyError> {
        let online_path = root.sys("devices/system/cpu/online");
        let online = read_file(&online_path)?;
        let online_cpus = parse_cpulist(&online).map_err(|e| TopologyError::CpuList {
            path: online_path.clone(),
            found: e.found,
            reason: e.reason,
        })?;
        if online_cpus.is_empty() {
            return Err(TopologyError::NoCpus { path: online_path });
        }
        let mut cpus = Vec::with_capacity(online_cpus.len());
        for cpu in online_cpus {
            let path = root.sys(&format!(
                "devices/system/cpu/cpu{cpu}/topology/physical_package_id"
            ));
            let package = match fs::read_to_string(&path) {
                Ok(text) => parse_package_id(&text).ok_or_else(|| TopologyError::PackageId {
                    path: path.clone(),
                    found: text.trim().to_owned(),
                })?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
                Err(source) => return Err(TopologyError::Read { path, source }),
            };
            cpus.push(CpuInfo { cpu, package });
        }
        Ok(Self { cpus })
    }

    /// The package ids present, sorted, without duplicates.
    pub fn packages(&self) -> Vec<u32> {
        let mut packages: Vec<u32> = self.cpus.iter().map(|c| c.package).collect();
        packages.sort_unstable();
        packages.dedup();
        packages
    }

    /// The online CPUs of `package`, in CPU order (empty for an unknown package).
    pub fn cpus_of(&self, package: u32) -> Vec<u32> {
        self.cpus
            .iter()
            .filter(|c| c.package == package)
            .map(|c| c.cpu)
            .collect()
    }

    /// One online CPU per physical core of `package`: the first online CPU
    /// of each `cpuN/topology/thread_siblings_list` (SMT siblings share a
    /// core, and a per-core register, so only one of them may be read).
    /// `None` when a CPU's list is missing or does not parse: without it,
    /// siblings cannot be told apart and a per-core sum would count twice.
    pub fn core_leaders(&self, root: &SysRoot, package: u32) -> Option<Vec<u32>> {
        let online = self.cpus_of(package);
        let mut leaders = Vec::new();
        for &cpu in &online {
            let path = root.sys(&format!(
                "devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"
            ));
            let siblings = parse_cpulist(&fs::read_to_string(path).ok()?).ok()?;
            let leader = siblings.into_iter().find(|c| online.contains(c))?;
            if !leaders.contains(&leader) {
                leaders.push(leader);
            }
        }
        Some(leaders)
    }

    /// The package of `cpu`, or `None` when `cpu` is not online.
    pub fn package_of(&self, cpu: u32) -> Option<u32> {
        self.cpus.iter().find(|c| c.cpu == cpu).map(|c| c.package)
    }
}

fn read_file(path: &std::path::Path) -> Result<String, TopologyError> {
    fs::read_to_string(path).map_err(|source| TopologyError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// `None` for anything but a non-negative integer or the kernel's `-1`
/// ("unknown", mapped to package 0).
fn parse_package_id(text: &str) -> Option<u32> {
    match text.trim() {
        "-1" => Some(0),
        t => t.parse::<u32>().ok(),
    }
}

/// Parses the kernel's cpulist syntax (`0-3,8,10-11`, as in
/// `devices/system/cpu/online` or a PMU's `cpumask`) into sorted, unique CPU
/// ids. Surrounding whitespace and a trailing newline are ignored; an empty
/// list (the kernel writes just `\n`) is `Ok(vec![])`.
pub fn parse_cpulist(s: &str) -> Result<Vec<u32>, CpuListError> {
    let err = |reason: String| CpuListError {
        found: s.trim().to_owned(),
        reason,
    };
    let text = s.trim();
    let mut cpus = Vec::new();
    if text.is_empty() {
        return Ok(cpus);
    }
    for token in text.split(',') {
        let token = token.trim();
        if token.is_empty() {
            return Err(err("empty entry between commas".to_owned()));
        }
        let parse_id = |t: &str| -> Result<u32, CpuListError> {
            let t = t.trim();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err(format!("{t:?} is not a cpu number")));
            }
            match t.parse::<u32>() {
                Ok(id) if id <= MAX_CPU_ID => Ok(id),
                _ => Err(err(format!("cpu {t} is above {MAX_CPU_ID}"))),
            }
        };
        match token.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (parse_id(lo)?, parse_id(hi)?);
                if lo > hi {
                    return Err(err(format!("range {lo}-{hi} runs backwards")));
                }
                cpus.extend(lo..=hi);
            }
            None => cpus.push(parse_id(token)?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::{fixture, scratch};

    #[test]
    fn cpulist_ranges_and_singles() {
        assert_eq!(
            parse_cpulist("0-3,8,10-11").unwrap(),
            vec![0, 1, 2, 3, 8, 10, 11]
        );
        assert_eq!(parse_cpulist("5").unwrap(), vec![5]);
        assert_eq!(parse_cpulist("2-2").unwrap(), vec![2]);
        assert_eq!(parse_cpulist("0,2").unwrap(), vec![0, 2]);
    }

    #[test]
    fn cpulist_whitespace_and_newline() {
        assert_eq!(parse_cpulist("0-1\n").unwrap(), vec![0, 1]);
        assert_eq!(parse_cpulist("  0 - 1 , 4\n").unwrap(), vec![0, 1, 4]);
    }

    #[test]
    fn cpulist_empty_is_no_cpus() {
        assert_eq!(parse_cpulist("").unwrap(), Vec::<u32>::new());
        assert_eq!(parse_cpulist("\n").unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn cpulist_sorts_and_dedups() {
        assert_eq!(parse_cpulist("4,0-2,1").unwrap(), vec![0, 1, 2, 4]);
    }

    #[test]
    fn cpulist_garbage_is_an_error() {
        for bad in [
            "x", "0-", "-3", "1,,2", "3-1", "0-3a", "0x2", "+1", "1-2-3", ",", "0-70000", "0:2",
        ] {
            let e = parse_cpulist(bad).unwrap_err();
            assert_eq!(e.found, bad.trim(), "input {bad:?}");
            assert!(e.to_string().contains(bad.trim()), "{e} for {bad:?}");
        }
        assert!(parse_cpulist("3-1")
            .unwrap_err()
            .reason
            .contains("backwards"));
    }

    proptest::proptest! {
        #[test]
        fn cpulist_round_trips(set in proptest::collection::btree_set(0u32..512, 0..64)) {
            let cpus: Vec<u32> = set.into_iter().collect();
            // Render the way the kernel does: maximal runs as `a-b`.
            let mut parts = Vec::new();
            let mut i = 0;
            while i < cpus.len() {
                let mut j = i;
                while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
                    j += 1;
                }
                parts.push(if i == j {
                    cpus[i].to_string()
                } else {
                    format!("{}-{}", cpus[i], cpus[j])
                });
                i = j + 1;
            }
            let text = format!("{}\n", parts.join(","));
            proptest::prop_assert_eq!(parse_cpulist(&text).unwrap(), cpus);
        }
    }

    #[test]
    fn two_package_fixture() {
        let topo = Topology::read(&SysRoot::under(&fixture("rapl-intel-2pkg"))).unwrap();
        assert_eq!(
            topo.cpus,
            vec![
                CpuInfo { cpu: 0, package: 0 },
                CpuInfo { cpu: 1, package: 0 },
                CpuInfo { cpu: 2, package: 1 },
                CpuInfo { cpu: 3, package: 1 },
            ]
        );
        assert_eq!(topo.packages(), vec![0, 1]);
        assert_eq!(topo.cpus_of(0), vec![0, 1]);
        assert_eq!(topo.cpus_of(1), vec![2, 3]);
        assert_eq!(topo.cpus_of(7), Vec::<u32>::new());
        assert_eq!(topo.package_of(3), Some(1));
        assert_eq!(topo.package_of(0), Some(0));
        assert_eq!(topo.package_of(4), None);
    }

    #[test]
    fn amd_fixture_is_one_package_of_eight() {
        let topo = Topology::read(&SysRoot::under(&fixture("rapl-amd"))).unwrap();
        assert_eq!(topo.packages(), vec![0]);
        assert_eq!(topo.cpus_of(0), (0..8).collect::<Vec<u32>>());
    }

    #[test]
    fn no_pmu_fixture_has_cpus() {
        let topo = Topology::read(&SysRoot::under(&fixture("no-pmu"))).unwrap();
        assert_eq!(topo.packages(), vec![0]);
        assert_eq!(topo.cpus_of(0), vec![0, 1]);
    }

    #[test]
    fn offline_cpus_are_left_out() {
        let (_dir, root) = scratch("rapl-intel-2pkg");
        fs::write(root.sys("devices/system/cpu/online"), "0,2-3\n").unwrap();
        let topo = Topology::read(&root).unwrap();
        assert_eq!(topo.cpus_of(0), vec![0]);
        assert_eq!(topo.cpus_of(1), vec![2, 3]);
        assert_eq!(topo.package_of(1), None);
    }

    #[test]
    fn missing_package_id_means_package_zero() {
        let (_dir, root) = scratch("rapl-intel-2pkg");
        fs::remove_file(root.sys("devices/system/cpu/cpu3/topology/physical_package_id")).unwrap();
        let topo = Topology::read(&root).unwrap();
        assert_eq!(topo.package_of(3), Some(0));
        assert_eq!(topo.package_of(2), Some(1));
        assert_eq!(topo.cpus_of(0), vec![0, 1, 3]);
    }

    #[test]
    fn unknown_package_id_means_package_zero() {
        let (_dir, root) = scratch("rapl-intel-2pkg");
        fs::write(
            root.sys("devices/system/cpu/cpu2/topology/physical_package_id"),
            "-1\n",
        )
        .unwrap();
        let topo = Topology::read(&root).unwrap();
        assert_eq!(topo.package_of(2), Some(0));
    }

    #[test]
    fn garbage_package_id_names_file_and_content() {
        let (_dir, root) = scratch("rapl-intel-2pkg");
        let path = root.sys("devices/system/cpu/cpu2/topology/physical_package_id");
        fs::write(&path, "socket-one\n").unwrap();
        let err = Topology::read(&root).unwrap_err();
        match &err {
            TopologyError::PackageId { path: p, found } => {
                assert_eq!(p, &path);
                assert_eq!(found, "socket-one");
            }
            other => panic!("expected PackageId, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("socket-one"), "{msg}");
    }

    #[test]
    fn unreadable_package_id_is_a_read_error() {
        let (_dir, root) = scratch("rapl-intel-2pkg");
        let path = root.sys("devices/system/cpu/cpu1/topology/physical_package_id");
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        let err = Topology::read(&root).unwrap_err();
        assert!(
            matches!(&err, TopologyError::Read { path: p, .. } if p == &path),
            "{err:?}"
        );
        assert!(err.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn missing_online_is_a_read_error() {
        let (_dir, root) = scratch("rapl-intel-2pkg");
        let path = root.sys("devices/system/cpu/online");
        fs::remove_file(&path).unwrap();
        let err = Topology::read(&root).unwrap_err();
        assert!(
            matches!(&err, TopologyError::Read { path: p, source } if p == &path && source.kind() == io::ErrorKind::NotFound),
            "{err:?}"
        );
    }

    #[test]
    fn garbage_online_names_file() {
        let (_dir, root) = scratch("rapl-intel-2pkg");
        let path = root.sys("devices/system/cpu/online");
        fs::write(&path, "zero-three\n").unwrap();
        let err = Topology::read(&root).unwrap_err();
        match &err {
            TopologyError::CpuList { path: p, found, .. } => {
                assert_eq!(p, &path);
                assert_eq!(found, "zero-three");
            }
            other => panic!("expected CpuList, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("zero-three"), "{msg}");
    }

    #[test]
    fn empty_online_is_an_error() {
        let (_dir, root) = scratch("rapl-intel-2pkg");
        let path = root.sys("devices/system/cpu/online");
        fs::write(&path, "\n").unwrap();
        let err = Topology::read(&root).unwrap_err();
        assert!(
            matches!(&err, TopologyError::NoCpus { path: p } if p == &path),
            "{err:?}"
        );
    }
}
