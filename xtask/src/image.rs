//! `cargo xtask image`: the container image `localhost/ergon:<version>`
//! from what `cargo xtask build` made, without a container registry (these
//! machines reach none): the context `target/image/` holds `rootfs/` with
//! the release binary and every shared library `ldd` names, at their
//! paths, and the `Containerfile` at the repository's root copies it into
//! a `FROM scratch` image. podman builds it (installed from Debian when
//! missing, with runc: podman's default crun refuses hybrid-cgroup hosts).

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::{build, toolchain};

/// The image's name.
pub fn tag() -> String {
    format!("localhost/ergon:{}", env!("CARGO_PKG_VERSION"))
}

/// The shared libraries of `bin` (and its interpreter) as `ldd` lists them.
pub fn shared_libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .context("run ldd (Debian's libc-bin)")?;
    if !out.status.success() {
        bail!(
            "ldd {} failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(parse_ldd(&String::from_utf8_lossy(&out.stdout)))
}

/// `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` and
/// `/lib64/ld-linux-x86-64.so.2 (0x…)` give their paths; the vDSO has none.
fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = l.split_once("=>").map_or(l, |(_, p)| p.trim());
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Prepares `target/image/` and builds the image; returns its tag.
pub fn image(root: &Path) -> Result<String> {
    let bin = build::build(root)?;
    let missing: Vec<&str> = ["podman", "runc"]
        .into_iter()
        .filter(|p| !toolchain::deb_installed(p))
        .collect();
    toolchain::apt_install(&missing)?;
    let ctx = root.join("target/image");
    let rootfs = ctx.join("rootfs");
    if ctx.exists() {
        std::fs::remove_dir_all(&ctx).with_context(|| format!("clear {}", ctx.display()))?;
    }
    let put = |from: &Path, to: &Path, mode: u32| -> Result<()> {
        let dest = rootfs.join(to.strip_prefix("/").unwrap_or(to));
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        // `copy` follows symlinks: the image holds the files themselves.
        std::fs::copy(from, &dest)
            .with_context(|| format!("copy {} to {}", from.display(), dest.display()))?;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {}", dest.display()))
    };
    put(&bin, Path::new("/usr/local/bin/ergon"), 0o755)?;
    let libs = shared_libraries(&bin)?;
    for lib in &libs {
        put(lib, lib, 0o755)?;
    }
    // The default --state-dir, for a volume to be mounted on.
    std::fs::create_dir_all(rootfs.join("var/lib/ergon")).context("create var/lib/ergon")?;
    let tag = tag();
    eprintln!(
        "xtask: building {tag} (FROM scratch: ergon and {} libraries: {})",
        libs.len(),
        libs.iter()
            .map(|l| l.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    toolchain::run(
        Command::new("podman")
            .args(["build", "--quiet", "-f"])
            .arg(root.join("Containerfile"))
            .args(["-t", &tag])
            .arg(&ctx),
    )?;
    Ok(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_paths_are_read_and_the_vdso_left_out() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f06)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f05)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f07)\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }
}
