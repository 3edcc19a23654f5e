//! Sysfs trees for the userspace sources, with this machine's real CPU
//! topology, so the real kernel programs run beside a counter the test
//! (or the overhead benchmark) controls.

use std::path::{Path, PathBuf};

use crate::cpu_packages;

/// A powercap tree under `dir`: this machine's `cpu/online` and each online
/// CPU's `physical_package_id`, plus one RAPL package zone (`intel-rapl:0`,
/// the package of the first online CPU) with `max_energy_range_uj` and
/// `energy_uj` set. Returns the path of `energy_uj`; pass
/// `--sysfs-root DIR/sys` to ergon.
pub fn powercap_tree(dir: &Path, max_uj: u64, start_uj: u64) -> PathBuf {
    let package = topology_tree(dir)
        .first()
        .map(|(_, id)| id.clone())
        .expect("a cpu");
    let zone = dir.join("sys/class/powercap/intel-rapl:0");
    std::fs::create_dir_all(&zone).expect("mkdir zone");
    std::fs::write(zone.join("name"), format!("package-{package}\n")).expect("name");
    std::fs::write(zone.join("max_energy_range_uj"), format!("{max_uj}\n")).expect("max");
    std::fs::write(zone.join("energy_uj"), format!("{start_uj:<20}\n")).expect("energy");
    zone.join("energy_uj")
}

/// A fresh `dir/sys` with this machine's `cpu/online` and each online CPU's
/// `physical_package_id`; returns the (cpu, package id) pairs written.
fn topology_tree(dir: &Path) -> Vec<(u32, String)> {
    let _ = std::fs::remove_dir_all(dir);
    let cpu = dir.join("sys/devices/system/cpu");
    std::fs::create_dir_all(&cpu).expect("mkdir");
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").expect("online");
    std::fs::write(cpu.join("online"), &online).expect("write online");
    let cpus = cpu_packages();
    for (c, id) in &cpus {
        let t = cpu.join(format!("cpu{c}/topology"));
        std::fs::create_dir_all(&t).expect("mkdir");
        std::fs::write(t.join("physical_package_id"), format!("{id}\n")).expect("write id");
    }
    cpus
}

/// `PERF_TYPE_SOFTWARE`: a fixture power PMU of this type opens real perf
/// events on any host (DESIGN.md), whatever the CPU offers.
pub const SOFTWARE_PMU: u32 = 1;
/// `PERF_COUNT_SW_DUMMY`: a software event that never advances (a dead counter).
pub const DEAD_EVENT: u64 = 0x09;
/// `PERF_COUNT_SW_CPU_CLOCK`: a software event that always advances.
pub const MOVING_EVENT: u64 = 0x00;

/// A perf `power` PMU under `dir/sys` (with this machine's topology) whose
/// `type` is the software PMU's, so its events really open: `events` are
/// (domain, `event=` value), e.g. `("psys", DEAD_EVENT)` for a hypervisor
/// that exposes `energy-psys` without the register behind it. The cpumask
/// names the first online CPU of each package, and `kernel/btf/vmlinux`
/// links to the host's. Pass `--sysfs-root DIR/sys`.
pub fn power_pmu_tree(dir: &Path, events: &[(&str, u64)]) -> PathBuf {
    let cpus = topology_tree(dir);
    // `ergon check` looks for BTF under the same root: the real one.
    let btf = dir.join("sys/kernel/btf");
    std::fs::create_dir_all(&btf).expect("mkdir btf");
    std::os::unix::fs::symlink("/sys/kernel/btf/vmlinux", btf.join("vmlinux")).expect("btf link");
    let pmu = dir.join("sys/bus/event_source/devices/power");
    std::fs::create_dir_all(pmu.join("events")).expect("mkdir pmu");
    std::fs::write(pmu.join("type"), format!("{SOFTWARE_PMU}\n")).expect("type");
    let mut seen = Vec::new();
    let mut mask = Vec::new();
    for (c, id) in &cpus {
        if !seen.contains(id) {
            seen.push(id.clone());
            mask.push(c.to_string());
        }
    }
    std::fs::write(pmu.join("cpumask"), format!("{}\n", mask.join(","))).expect("cpumask");
    for (domain, event) in events {
        let e = pmu.join(format!("events/energy-{domain}"));
        std::fs::write(&e, format!("event={event:#04x}\n")).expect("event");
        std::fs::write(e.with_extension("scale"), "2.3283064365386962890625e-10\n").expect("scale");
        std::fs::write(e.with_extension("unit"), "Joules\n").expect("unit");
    }
    dir.join("sys")
}

/// Adds AMD's per-core `power_core` PMU (Linux 6.14) to a
/// [`power_pmu_tree`] under `dir`: the software PMU's `type`, a `cpumask`
/// of every online CPU, each CPU its own core (`thread_siblings_list`),
/// and `energy-core` as software event `event` at 1e-9 J per count, so a
/// cpu-clock core draws 1 W.
pub fn power_core_pmu(dir: &Path, event: u64) {
    let cpus = crate::online_cpus();
    for c in &cpus {
        let t = dir.join(format!("sys/devices/system/cpu/cpu{c}/topology"));
        std::fs::write(t.join("thread_siblings_list"), format!("{c}\n")).expect("siblings");
    }
    let pmu = dir.join("sys/bus/event_source/devices/power_core");
    std::fs::create_dir_all(pmu.join("events")).expect("mkdir power_core");
    std::fs::write(pmu.join("type"), format!("{SOFTWARE_PMU}\n")).expect("type");
    let mask: Vec<String> = cpus.iter().map(u32::to_string).collect();
    std::fs::write(pmu.join("cpumask"), format!("{}\n", mask.join(","))).expect("cpumask");
    let e = pmu.join("events/energy-core");
    std::fs::write(&e, format!("event={event:#04x}\n")).expect("event");
    std::fs::write(e.with_extension("scale"), "1e-9\n").expect("scale");
    std::fs::write(e.with_extension("unit"), "Joules\n").expect("unit");
}

/// Rewrites a fixture counter file (`energy_uj`) in place, as sysfs does:
/// one `pwrite` at offset 0 of a fixed-width value, never a truncation, so
/// a reader (Ergon's discovery, probe or poller, which keep the file open)
/// never finds it empty. The value is left-aligned and padded with spaces
/// to 20 digits, which `trim()` takes off.
pub fn write_counter(path: &Path, value: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open the counter file");
    f.write_all_at(format!("{value:<20}\n").as_bytes(), 0)
        .expect("write the counter file");
}
