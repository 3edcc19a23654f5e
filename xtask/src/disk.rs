//! Free space where the build writes.
//!
//! A build that fills its disk does not say so: the linker maps its output
//! file and dies of SIGBUS ("ld terminated with signal 7 [Bus error]"), or
//! rustc reports a truncated object. So `cargo xtask test` says up front how
//! much room there is, and a failing step says when the disk is what failed.

use std::{ffi::CString, os::unix::ffi::OsStrExt, path::Path};

const GIB: f64 = (1u64 << 30) as f64;

/// What a build from scratch (debug and release, BPF object, Debian peers)
/// leaves in `target/`: 2.2 GiB measured on a fresh clone (2.7 GiB before
/// `[profile.dev.package."*"]` dropped the dependencies' debug info).
pub const BUILD_FROM_SCRATCH: u64 = 3 << 30;

/// Below this, a failed step is blamed on the disk as well as on itself.
const NEARLY_FULL: u64 = 256 << 20;

/// Bytes an unprivileged writer may still use on the filesystem holding
/// `path` (or its nearest existing ancestor); `None` if that cannot be told.
pub fn free_bytes(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let c = CString::new(existing.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` is written by the
    // call before it is read (only when the call succeeds).
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Says how much room `target/` has, and warns when it looks too little for
/// a build from scratch (the build still runs: an existing `target/` needs
/// far less).
pub fn report(target: &Path) {
    let Some(free) = free_bytes(target) else {
        return;
    };
    eprintln!(
        "xtask: {:.1} GiB free for {} (a build from scratch takes about {:.0} GiB)",
        free as f64 / GIB,
        target.display(),
        BUILD_FROM_SCRATCH as f64 / GIB
    );
    if free < BUILD_FROM_SCRATCH {
        eprintln!(
            "xtask: WARNING: that may be too little; if a step fails with a linker \
             'Bus error' or 'No space left on device', free space (old clones, \
             `cargo clean`) and rerun"
        );
    }
}

/// Adds the disk to a step's error when the disk is (nearly) full now.
pub fn explain(err: anyhow::Error, target: &Path) -> anyhow::Error {
    blame(err, target, free_bytes(target))
}

fn blame(err: anyhow::Error, target: &Path, free: Option<u64>) -> anyhow::Error {
    match free {
        Some(free) if free < NEARLY_FULL => err.context(format!(
            "the disk holding {} is full ({} MiB free): a build that runs out of \
             room fails with a linker 'Bus error' or a truncated file; free space \
             (old clones, `cargo clean`) and rerun",
            target.display(),
            free >> 20
        )),
        _ => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_read_from_the_nearest_existing_ancestor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let here = free_bytes(dir.path()).expect("statvfs on a tempdir");
        let below = free_bytes(&dir.path().join("not/yet/made")).expect("ancestor");
        // Same filesystem; the two reads may differ by what others wrote
        // in between, never by more than a sliver of a real disk.
        assert!(here.abs_diff(below) < 64 << 20, "{here} vs {below}");
        assert!(here > 0, "a tempdir that can be made has room");
    }

    #[test]
    fn a_full_disk_is_named_and_a_roomy_one_is_not() {
        let target = Path::new("/check/target");
        let full = blame(anyhow::anyhow!("unit tests failed"), target, Some(12 << 20));
        let text = format!("{full:#}");
        assert!(
            text.contains("/check/target is full (12 MiB free)"),
            "{text}"
        );
        assert!(
            text.ends_with("unit tests failed"),
            "the step's own error stays: {text}"
        );
        for free in [Some(NEARLY_FULL), Some(80 << 30), None] {
            let err = blame(anyhow::anyhow!("unit tests failed"), target, free);
            assert_eq!(format!("{err:#}"), "unit tests failed", "free {free:?}");
        }
    }
}
