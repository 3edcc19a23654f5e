//! Real peers for the end-to-end tests, from Debian's archive: the package
//! is fetched with `apt-get download` and unpacked with `dpkg-deb -x` under
//! `target/peers/<package>/`. Nothing is installed system-wide and no
//! service is started; the tests start and stop the binaries themselves.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::toolchain;

/// Directory holding the unpacked peers (passed to the tests as `ERGON_PEERS`).
pub fn dir(root: &Path) -> PathBuf {
    root.join("target/peers")
}

/// Makes sure `package` is unpacked and provides `usr/bin/<binary>`.
pub fn ensure(root: &Path, package: &str, binary: &str) -> Result<PathBuf> {
    let unpacked = dir(root).join(package);
    let bin = unpacked.join("usr/bin").join(binary);
    if bin.exists() {
        return Ok(bin);
    }
    let download = dir(root).join(".download");
    std::fs::create_dir_all(&download)
        .with_context(|| format!("creating {}", download.display()))?;
    eprintln!(
        "xtask: fetching Debian package {package} for the end-to-end tests (apt-get download, unpacked under {}; no service is installed)",
        unpacked.display()
    );
    let fetch = || {
        Command::new("apt-get")
            .args(["download", "-q", package])
            .current_dir(&download)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !fetch() {
        if !toolchain::is_root() {
            bail!("apt-get download {package} failed; run as root (to refresh the package lists) or `sudo apt-get update` first");
        }
        eprintln!("xtask: apt-get update");
        toolchain::run(Command::new("apt-get").args(["update", "-q"]))?;
        if !fetch() {
            bail!("apt-get download {package} failed even after apt-get update; is Debian's archive reachable?");
        }
    }
    let deb = std::fs::read_dir(&download)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .with_context(|| {
            format!(
                "apt-get download left no {package}_*.deb in {}",
                download.display()
            )
        })?;
    toolchain::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    if !bin.exists() {
        bail!("{} has no usr/bin/{binary}", deb.display());
    }
    Ok(bin)
}
