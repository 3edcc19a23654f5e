//! `ergon run --source msr --dev-root DIR` with the real kernel programs,
//! the real CPU topology and `/proc/cpuinfo`, and a device tree whose
//! `cpu/N/msr` files are sparse files with the RAPL registers at their
//! addresses (these VMs have no msr driver, and their vCPUs no RAPL). A
//! writer advances the package energy register across its 32-bit wrap
//! while the daemon polls it. Ground truth is what the writer wrote.

use std::{
    os::unix::fs::{FileExt, PermissionsExt},
    path::{Path, PathBuf},
};

use tests::{
    cpu_packages, every_ms, require_root, source_check_as_nobody, world_readable, Daemon, Preroll,
};

const PKG: &str = "ergon_package_energy_joules_total";
/// Intel's and AMD's unit and package registers: both are written, so the
/// test does not depend on the CPU's vendor.
const UNITS: [u64; 2] = [0x606, 0xC001_0299];
const PACKAGE: [u64; 2] = [0x611, 0xC001_029B];
/// Energy unit 2^-16 J (ESU = 16 in bits 12:8).
const UNIT: u64 = 0x000A_1003;
const J_PER_COUNT: f64 = 1.0 / 65536.0;

fn set(f: &std::fs::File, regs: &[u64], value: u64) {
    for &r in regs {
        f.write_all_at(&value.to_le_bytes(), r)
            .expect("write register");
    }
}

/// `dev/cpu/N/msr` for the first online CPU of every package.
fn tree(name: &str) -> (PathBuf, Vec<std::fs::File>) {
    let dir = std::env::temp_dir().join(format!("ergon-msr-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut seen = Vec::new();
    let mut files = Vec::new();
    for (c, id) in cpu_packages() {
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        let path = dir.join(format!("dev/cpu/{c}/msr"));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .expect("msr file");
        set(&f, &UNITS, UNIT);
        files.push(f);
    }
    (dir, files)
}

/// Advances the package register of the first package by `step` counts
/// every ms for `ms` ms from `start`, wrapping at 2^32; returns counts written.
fn write_steps(f: &std::fs::File, start: u64, step: u64, ms: u64) -> u64 {
    let mut v = start;
    every_ms(ms, |_| {
        v = (v + step) & 0xFFFF_FFFF;
        set(f, &PACKAGE, v);
    });
    step * ms
}

fn dir_arg(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn msr_package_register_is_read_across_the_32_bit_wrap() {
    require_root();
    let (dir, files) = tree("wrap");
    // 0.6 s of energy below the top: the run wraps early.
    let start = 0x1_0000_0000 - 200_000;
    for f in &files {
        set(f, &PACKAGE, start);
    }
    // Ergon refuses a register that stands still: keep it moving by one
    // count a ms while the daemon starts.
    let pre = {
        let f = files[0].try_clone().expect("dup msr file");
        Preroll::start(start, move |v| {
            *v = (*v + 1) & 0xFFFF_FFFF;
            set(&f, &PACKAGE, *v);
        })
    };
    let d = Daemon::start(&["--source", "msr", "--dev-root", &dir_arg(&dir.join("dev"))]);
    let m = d.metrics();
    assert_eq!(
        m.get("ergon_source_info{source=\"msr\",domain=\"pkg\"}"),
        Some(&1.0),
        "{m:?}"
    );
    let at = pre.stop();
    let (before, _) = d.settled_sum(PKG, std::time::SystemTime::now());
    assert!(
        before >= 0.0 && before <= (at - start) as f64 * J_PER_COUNT + 1e-9,
        "{before} J booked from a preroll of {} counts",
        at - start
    );
    // 3 s at 5 W: 327,680 counts per s of 2^-16 J.
    let written = write_steps(&files[0], at, 328, 3_000);
    d.serves_written_package_energy(
        before + written as f64 * J_PER_COUNT,
        " (across the 2^32 wrap)",
    );
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("msr"), "the log says which source: {log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The msr driver's device files are root's, mode 0600: the real `ergon
/// check` run as `nobody` says so and names the capability it needs.
#[test]
fn msr_devices_readable_by_root_only_are_explained_to_a_user() {
    require_root();
    let (dir, _files) = tree("perm");
    world_readable(&dir);
    for (c, _) in cpu_packages() {
        let dev = dir.join(format!("dev/cpu/{c}/msr"));
        if dev.exists() {
            std::fs::set_permissions(&dev, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
    }
    let line = source_check_as_nobody(&dir, "msr", "--dev-root", &dir.join("dev"));
    assert!(
        line.contains("permission denied") && line.contains("CAP_SYS_RAWIO"),
        "the problem and the fix: {line}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
