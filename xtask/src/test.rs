//! `cargo xtask test`: every test, in the order a reviewer would run them.

use std::{path::Path, process::Command};

use anyhow::{bail, Result};

use crate::{build, toolchain};

pub fn test(root: &Path) -> Result<()> {
    ensure_components()?;
    let bin = build::build(root)?;
    let obj = build::bpf_object(root);
    let cargo = |args: &[&str]| {
        let mut c = Command::new("cargo");
        c.current_dir(root).args(args).env("ERGON_BPF_OBJECT", &obj);
        c
    };
    step("format", cargo(&["fmt", "--all", "--check"]))?;
    step(
        "clippy",
        cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step(
        "unit tests",
        cargo(&["test", "--workspace", "--exclude", "tests"]),
    )?;
    if !toolchain::is_root() {
        bail!("the privileged tests load BPF programs: run `cargo xtask test` as root");
    }
    let mut privileged = cargo(&["test", "--release", "-p", "tests", "--", "--test-threads=1"]);
    privileged.env("ERGON_BIN", &bin);
    step("privileged integration tests", privileged)?;
    eprintln!("xtask: all tests passed");
    Ok(())
}

fn step(name: &str, mut cmd: Command) -> Result<()> {
    eprintln!("xtask: == {name} ==");
    toolchain::run(&mut cmd)
}

/// rustfmt and clippy come from rustup; add them when a minimal profile lacks them.
fn ensure_components() -> Result<()> {
    for (probe, component) in [("fmt", "rustfmt"), ("clippy", "clippy")] {
        let ok = Command::new("cargo")
            .args([probe, "--version"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("xtask: installing rustup component {component}");
            toolchain::run(Command::new("rustup").args(["component", "add", component]))?;
        }
    }
    Ok(())
}
