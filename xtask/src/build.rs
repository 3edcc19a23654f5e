//! Building the eBPF object (Debian compiler, BPF target) and the daemon
//! (the machine's rustup toolchain) with the object embedded.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::toolchain::{self, DEBIAN_CARGO, DEBIAN_RUSTC};

/// Where the eBPF object lands; `sampler-user/build.rs` embeds it from here.
pub fn bpf_object(root: &Path) -> PathBuf {
    root.join("target/bpf/bpfel-unknown-none/release/sampler-ebpf")
}

/// Builds everything and returns the path of `target/release/ergon`.
pub fn build(root: &Path) -> Result<PathBuf> {
    build_ebpf(root)?;
    eprintln!("xtask: building target/release/ergon");
    toolchain::run(
        Command::new("cargo")
            .current_dir(root)
            .args(["build", "--release", "-p", "sampler-user", "--bin", "ergon"])
            .env("ERGON_BPF_OBJECT", bpf_object(root)),
    )?;
    Ok(root.join("target/release/ergon"))
}

pub fn build_ebpf(root: &Path) -> Result<()> {
    let tc = toolchain::ensure()?;
    let linker_dir = tc
        .bpf_linker
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![linker_dir];
    paths.extend(std::env::split_paths(&path));
    let path = std::env::join_paths(paths).context("building PATH")?;
    let mut cmd = Command::new(DEBIAN_CARGO);
    cmd.current_dir(root)
        .args([
            "build",
            "-p",
            "sampler-ebpf",
            "--release",
            "--target",
            "bpfel-unknown-none",
        ])
        // Separate target dir: the two compilers never invalidate each other.
        .env("CARGO_TARGET_DIR", root.join("target/bpf"))
        .env("RUSTC", DEBIAN_RUSTC)
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTFLAGS")
        // aya-ebpf enables `asm_experimental_arch` on the BPF target.
        .env("RUSTC_BOOTSTRAP", "aya_ebpf,sampler_ebpf")
        .env(
            "CARGO_TARGET_BPFEL_UNKNOWN_NONE_RUSTFLAGS",
            "-C debuginfo=2 -C link-arg=--btf -C target-cpu=v3",
        )
        .env("PATH", path);
    eprintln!("xtask: building the eBPF object with {DEBIAN_RUSTC}");
    toolchain::run(&mut cmd)?;
    let obj = bpf_object(root);
    if !obj.exists() {
        bail!("the eBPF build succeeded but {} is missing", obj.display());
    }
    Ok(())
}

/// Runs the daemon in the foreground as root.
pub fn run_daemon(bin: &Path, args: &[String]) -> Result<()> {
    let mut cmd = if toolchain::is_root() {
        Command::new(bin)
    } else {
        eprintln!("xtask: ergon needs root (CAP_BPF, CAP_PERFMON): running it with sudo");
        let mut c = Command::new("sudo");
        c.arg(bin);
        c
    };
    cmd.arg("run");
    if !args
        .iter()
        .any(|a| a == "--source" || a.starts_with("--source="))
    {
        cmd.args(["--source", "auto"]);
    }
    cmd.args(args);
    toolchain::run(&mut cmd)
}
