//! Fresh-machine toolchain bootstrap (DESIGN.md "Toolchain"):
//! Debian's `rustc-web` (links Debian's LLVM and ships a prebuilt `core` for
//! `bpfel-unknown-none` in `libstd-rust-web-dev-bpf`) compiles the kernel
//! programs; `bpf-linker` built against the same LLVM major links them.
//! Everything is checked first, so a warm run costs a few milliseconds.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

/// The Debian compiler used for the BPF target.
pub const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
pub const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const BPF_LINKER_VERSION: &str = "0.13.0";

/// What the eBPF build needs, ready to use.
pub struct Toolchain {
    pub bpf_linker: PathBuf,
}

pub fn ensure() -> Result<Toolchain> {
    let base = [
        "rustc-web",
        "cargo-web",
        "libstd-rust-web-dev-bpf",
        "bpftool",
    ];
    let missing: Vec<&str> = base.iter().copied().filter(|p| !deb_installed(p)).collect();
    apt_install(&missing)?;
    let major = llvm_major()?;
    let llvm = [format!("llvm-{major}-dev"), format!("libpolly-{major}-dev")];
    let missing: Vec<&str> = llvm
        .iter()
        .map(String::as_str)
        .filter(|p| !deb_installed(p))
        .collect();
    apt_install(&missing)?;
    let bpf_linker = ensure_bpf_linker(major)?;
    Ok(Toolchain { bpf_linker })
}

pub fn deb_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains("install ok installed")
        })
        .unwrap_or(false)
}

pub fn apt_install(pkgs: &[&str]) -> Result<()> {
    if pkgs.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages: {}", pkgs.join(" "));
    if !is_root() {
        bail!(
            "missing Debian packages {}: run this command as root, or `sudo apt-get install {}`",
            pkgs.join(", "),
            pkgs.join(" ")
        );
    }
    // `rustc-web` 1.96 is in bookworm-security; refresh the lists once so a
    // fresh machine (empty or stale lists) sees it.
    eprintln!("xtask: apt-get update");
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(pkgs)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// LLVM major of the Debian compiler (`LLVM version: 22.1.8` → 22).
pub fn llvm_major() -> Result<u32> {
    let out = Command::new(DEBIAN_RUSTC)
        .arg("-vV")
        .output()
        .with_context(|| format!("running {DEBIAN_RUSTC} -vV (is rustc-web installed?)"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.trim().parse().ok())
        .with_context(|| format!("no `LLVM version:` line in `{DEBIAN_RUSTC} -vV` output:\n{text}"))
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

/// The LLVM major a bpf-linker binary is linked against (`libLLVM.so.22.1`).
fn linked_llvm_major(bin: &Path) -> Option<u32> {
    let out = Command::new("ldd").arg(bin).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rest = text
        .split("libLLVM.so.")
        .nth(1)
        .or_else(|| text.split("libLLVM-").nth(1))?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn ensure_bpf_linker(major: u32) -> Result<PathBuf> {
    let bin = cargo_home().join("bin/bpf-linker");
    let version_ok = Command::new(&bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION))
        .unwrap_or(false);
    if version_ok && linked_llvm_major(&bin) == Some(major) {
        return Ok(bin);
    }
    eprintln!(
        "xtask: installing bpf-linker {BPF_LINKER_VERSION} for LLVM {major} (cargo install, about a minute)"
    );
    let prefix = format!("/usr/lib/llvm-{major}");
    run(Command::new("cargo")
        .args(["install", "--locked", "--force"])
        .arg(format!("bpf-linker@{BPF_LINKER_VERSION}"))
        .args(["--no-default-features", "--features"])
        .arg(format!("llvm-{major}"))
        .env("LLVM_PREFIX", &prefix)
        .env(format!("LLVM_SYS_{major}1_PREFIX"), &prefix))?;
    Ok(bin)
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}
