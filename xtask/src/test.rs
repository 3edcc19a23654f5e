//! `cargo xtask test`: every test, in the order a reviewer would run them.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

use crate::{build, disk, kernels, peers, toolchain};

pub fn test(root: &Path) -> Result<()> {
    let target = root.join("target");
    disk::report(&target);
    run_all(root).map_err(|e| disk::explain(e, &target))
}

fn run_all(root: &Path) -> Result<()> {
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
    let mut totals = Totals::default();
    tests_step(
        "unit tests",
        cargo(&["test", "--workspace", "--exclude", "tests"]),
        &mut totals,
    )?;
    if !toolchain::is_root() {
        bail!("the privileged tests load BPF programs: run `cargo xtask test` as root");
    }
    peers::ensure(root, "prometheus", "prometheus")?;
    peers::ensure(root, "victoria-metrics", "victoria-metrics")?;
    // strace (the unit's system-call filter test), util-linux's setpriv
    // (the non-root test) and systemd-analyze (the unit's verification).
    let tools: Vec<&str> = ["strace", "util-linux", "systemd"]
        .into_iter()
        .filter(|p| !toolchain::deb_installed(p))
        .collect();
    toolchain::apt_install(&tools)?;
    let image = crate::image::image(root)?;
    let helm = peers::ensure_helm(root)?;
    let kube_validate = peers::ensure_kubernetes_validate(root)?;
    let mut privileged = cargo(&["test", "--release", "-p", "tests", "--", "--test-threads=1"]);
    privileged
        .env("ERGON_BIN", &bin)
        .env("ERGON_IMAGE", &image)
        .env("ERGON_HELM", &helm)
        .env("ERGON_KUBERNETES_VALIDATE", &kube_validate)
        .env("ERGON_PEERS", peers::dir(root));
    tests_step("privileged integration tests", privileged, &mut totals)?;
    eprintln!("xtask: == kernel matrix (cargo xtask test-kernels) ==");
    let matrix = kernels::test_kernels(
        root,
        &bin,
        &kernels::Options {
            accel: kernels::Accel::Tcg,
            extra: Vec::new(),
        },
    )?;
    totals.passed += matrix.passed;
    totals.failed += matrix.failed;
    if matrix.failed > 0 {
        println!("xtask: {} passed, {} failed", totals.passed, totals.failed);
        bail!("{} kernel(s) of the matrix failed", matrix.failed);
    }
    eprintln!("xtask: all tests passed");
    // One closing line for the whole run (cargo's last line is a doc-test
    // summary that may well say 0).
    println!("xtask: {} passed, {} failed", totals.passed, totals.failed);
    Ok(())
}

#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
}

/// Runs a `cargo test` step, echoing its output and adding up the
/// `test result: ok. N passed; M failed` lines.
fn tests_step(name: &str, mut cmd: Command, totals: &mut Totals) -> Result<()> {
    eprintln!("xtask: == {name} ==");
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line?;
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                let count = |word: &str| {
                    rest.split(';')
                        .find_map(|part| {
                            part.trim()
                                .trim_start_matches("ok. ")
                                .trim_start_matches("FAILED. ")
                                .strip_suffix(word)
                        })
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .unwrap_or(0)
                };
                totals.passed += count(" passed");
                totals.failed += count(" failed");
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        println!(
            "xtask: {} passed, {} failed",
            totals.passed,
            totals.failed.max(1)
        );
        bail!("{name} failed: {status}");
    }
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
