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
    let _ = std::fs::remove_dir_all(dir);
    let cpu = dir.join("sys/devices/system/cpu");
    std::fs::create_dir_all(&cpu).expect("mkdir");
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").expect("online");
    std::fs::write(cpu.join("online"), &online).expect("write online");
    let mut package = None;
    for (c, id) in cpu_packages() {
        let t = cpu.join(format!("cpu{c}/topology"));
        std::fs::create_dir_all(&t).expect("mkdir");
        std::fs::write(t.join("physical_package_id"), format!("{id}\n")).expect("write id");
        package.get_or_insert(id);
    }
    let zone = dir.join("sys/class/powercap/intel-rapl:0");
    std::fs::create_dir_all(&zone).expect("mkdir zone");
    let package = package.expect("a cpu");
    std::fs::write(zone.join("name"), format!("package-{package}\n")).expect("name");
    std::fs::write(zone.join("max_energy_range_uj"), format!("{max_uj}\n")).expect("max");
    std::fs::write(zone.join("energy_uj"), format!("{start_uj}\n")).expect("energy");
    zone.join("energy_uj")
}
