//! Every filesystem read of the daemon goes through one [`SysRoot`], so that
//! tests run the real code on fixture trees (`testdata/`) and nothing
//! hard-codes `/sys` or `/proc`.

use std::path::{Path, PathBuf};

/// Roots of the kernel filesystems the daemon reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysRoot {
    /// Where sysfs is mounted (`--sysfs-root`, default `/sys`).
    pub sysfs: PathBuf,
    /// Where procfs is mounted (`--procfs-root`, default `/proc`).
    pub procfs: PathBuf,
    /// Where the cgroup hierarchy is mounted (`--cgroup-root`, default `/sys/fs/cgroup`).
    pub cgroup: PathBuf,
    /// Where device nodes live (`/dev`; only fixture trees move it).
    pub dev: PathBuf,
}

impl Default for SysRoot {
    fn default() -> Self {
        Self {
            sysfs: PathBuf::from("/sys"),
            procfs: PathBuf::from("/proc"),
            cgroup: PathBuf::from("/sys/fs/cgroup"),
            dev: PathBuf::from("/dev"),
        }
    }
}

impl SysRoot {
    /// A tree rooted at `dir`, laid out as `dir/sys`, `dir/proc`, `dir/sys/fs/cgroup`
    /// (the shape of the fixture trees in `testdata/`).
    pub fn under(dir: &Path) -> Self {
        Self {
            sysfs: dir.join("sys"),
            procfs: dir.join("proc"),
            cgroup: dir.join("sys/fs/cgroup"),
            dev: dir.join("dev"),
        }
    }

    /// A path below the sysfs root; `rel` is written without a leading `/`.
    pub fn sys(&self, rel: &str) -> PathBuf {
        self.sysfs.join(rel)
    }

    /// A path below the device root.
    pub fn dev(&self, rel: &str) -> PathBuf {
        self.dev.join(rel)
    }

    /// A path below the procfs root.
    pub fn proc(&self, rel: &str) -> PathBuf {
        self.procfs.join(rel)
    }
}
