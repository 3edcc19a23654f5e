//! The msr source on fixture trees: `/dev/cpu/N/msr` is a plain (sparse)
//! file here, with each register's 8 bytes at its address, as the driver
//! serves them. Intel on two packages, AMD (package, and the per-core
//! registers summed over one CPU per core), a missing driver, a CPU
//! without RAPL, and 32-bit counters wrapping while they are polled.

use std::{os::unix::fs::FileExt, path::Path, time::Duration};

use super::*;
use crate::{
    energy::EnergyBooks,
    source::{
        liveness::Assume, model::Model, poll, select, synthetic, Declared, Plan, Resolved,
        SourceKind,
    },
    testdata::scratch,
};

/// Writes register `reg` of `cpu`'s msr file under `root`.
fn set(root: &SysRoot, cpu: u32, reg: u64, value: u64) {
    let path = root.dev(&format!("cpu/{cpu}/msr"));
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .expect("open msr file");
    f.write_all_at(&value.to_le_bytes(), reg)
        .expect("write register");
}

/// Intel's usual unit register: power 1/8 W, energy 2^-14 J, time 2^-10 s.
const INTEL_UNIT: u64 = 0x000A_0E03;
/// AMD's: energy 2^-16 J.
const AMD_UNIT: u64 = 0x000A_1003;

fn intel(root: &SysRoot) {
    for cpu in [0, 2] {
        set(root, cpu, INTEL_POWER_UNIT, INTEL_UNIT);
        set(root, cpu, 0x611, 0x1234_5678);
        set(root, cpu, 0x639, 0x0100_0000);
        set(root, cpu, 0x619, 0x0200_0000);
        set(root, cpu, 0x64D, 0x0300_0000);
        // PP1 (gpu) reads 0: a server part has none.
        set(root, cpu, 0x641, 0);
    }
}

fn declared() -> Declared {
    Declared {
        synthetic: synthetic::Synthetic::constant(10.0, synthetic::Layout::PerCpu),
        model: Model::default(),
    }
}

#[test]
fn intel_registers_per_package_with_the_server_dram_unit() {
    let (_dir, root) = scratch("msr-intel-2pkg");
    intel(&root);
    let topo = Topology::read(&root).expect("topology");
    let counters = plan(&root, &topo).expect("plan");
    let got: Vec<(usize, u32, u32, f64)> = counters
        .iter()
        .map(|c| (c.domain, c.package, c.open_cpu, c.joules_per_count))
        .collect();
    let e14 = 1.0 / 16384.0;
    let e16 = 1.0 / 65536.0;
    assert_eq!(
        got,
        vec![
            (0, 0, 0, e14),
            (1, 0, 0, e14),
            (2, 0, 0, e16),
            (3, 0, 0, e14),
            (0, 1, 2, e14),
            (1, 1, 2, e14),
            (2, 1, 2, e16),
        ],
        "psys once, on the first package; a zero PP1 is absent; DRAM in 2^-16 J on a Skylake-X"
    );
    assert_eq!(
        counters[4].user,
        Some(UserCounter {
            read: UserRead::Msr {
                path: root.dev("cpu/2/msr"),
                register: 0x611
            },
            max: u32::MAX as u64,
            max_watts: None,
        })
    );
    assert!(counters.iter().all(|c| c.readers.is_empty()));
}

#[test]
fn psys_is_read_on_the_package_that_holds_it() {
    // A Sapphire Rapids-like platform whose master package is 1: package
    // 0's platform register reads 0, package 1's counts.
    let (_dir, root) = scratch("msr-intel-2pkg");
    intel(&root);
    set(&root, 0, 0x64D, 0);
    let topo = Topology::read(&root).expect("topology");
    let counters = plan(&root, &topo).expect("plan");
    let psys: Vec<(u32, u32)> = counters
        .iter()
        .filter(|c| c.domain == 3)
        .map(|c| (c.package, c.open_cpu))
        .collect();
    assert_eq!(psys, vec![(1, 2)], "psys once, on package 1 (cpu 2)");
}

#[test]
fn amd_package_register_and_unit() {
    let (_dir, root) = scratch("msr-amd");
    set(&root, 0, AMD_POWER_UNIT, AMD_UNIT);
    set(&root, 0, 0xC001_029B, 42);
    let topo = Topology::read(&root).expect("topology");
    let counters = plan(&root, &topo).expect("plan");
    assert_eq!(counters.len(), 1);
    assert_eq!(
        (counters[0].domain, counters[0].joules_per_count),
        (0, 1.0 / 65536.0)
    );
    let p = select(SourceKind::Msr, &root, &topo, &declared(), &Assume).expect("msr");
    assert_eq!(p.source, Resolved::Msr);
}

/// The msr-amd fixture: 8 CPUs, 4 cores of 2 SMT threads (cpu N and N+4).
///
/// In a sparse file AMD's unit, core and package registers (0xC0010299,
/// 0x…9A, 0x…9B: 8 bytes each, one address apart) overlap, where the driver
/// serves them apart. So cpu 0's core register is written first and then
/// overlaid by the unit and package registers, which the plan must read
/// right; it then reads some non-zero value, as a real one does.
fn amd_cores(root: &SysRoot, start: u64) {
    for cpu in 0..8 {
        // A sibling reads its core's register: the same value.
        set(root, cpu, AMD_CORE_ENERGY, start + u64::from(cpu % 4));
    }
    set(root, 0, AMD_POWER_UNIT, AMD_UNIT);
    set(root, 0, 0xC001_029B, 42);
}

#[test]
fn amd_cores_are_one_register_per_core_summed() {
    let (_dir, root) = scratch("msr-amd");
    amd_cores(&root, 1000);
    let topo = Topology::read(&root).expect("topology");
    let counters = plan(&root, &topo).expect("plan");
    let got: Vec<(usize, u32, f64)> = counters
        .iter()
        .map(|c| (c.domain, c.package, c.joules_per_count))
        .collect();
    assert_eq!(got, vec![(0, 0, 1.0 / 65536.0), (1, 0, 1.0 / 65536.0)]);
    let p = select(SourceKind::Auto, &root, &topo, &declared(), &Assume).expect("auto");
    assert_eq!(p.source, Resolved::Msr);
    assert!(
        p.reason.contains("(pkg, cores; read by the daemon)"),
        "{}",
        p.reason
    );
    assert_eq!(
        counters[1].user,
        Some(UserCounter {
            read: UserRead::MsrSum {
                paths: (0..4).map(|c| root.dev(&format!("cpu/{c}/msr"))).collect(),
                register: AMD_CORE_ENERGY,
            },
            max: u64::MAX,
            max_watts: None,
        }),
        "cpus 0-3 lead the cores; their siblings 4-7 are not read again"
    );
    // Siblings that cannot be told apart: no `cores` domain rather than a doubled one.
    std::fs::remove_file(root.sys("devices/system/cpu/cpu5/topology/thread_siblings_list"))
        .expect("rm");
    let counters = plan(&root, &topo).expect("plan");
    assert_eq!(
        counters.iter().map(|c| c.domain).collect::<Vec<_>>(),
        vec![0]
    );
    // Nor when a core's device is missing.
    let (_dir, root) = scratch("msr-amd");
    amd_cores(&root, 1000);
    std::fs::remove_file(root.dev("cpu/3/msr")).expect("rm");
    let counters = plan(&root, &topo).expect("plan");
    assert_eq!(
        counters.iter().map(|c| c.domain).collect::<Vec<_>>(),
        vec![0]
    );
}

#[test]
fn amd_core_registers_wrapping_on_their_own_sum_exactly() {
    let (_dir, root) = scratch("msr-amd");
    let start = u32::MAX as u64 - 2_000_000;
    amd_cores(&root, start);
    let (plan, mut books) = planned_books(&root);
    let read = plan.counters[1].user.clone().expect("user counter").read;
    // The plan has read the unit: cpu 0's core register may now overlay it.
    set(&root, 0, AMD_CORE_ENERGY, start);
    // Polled every 100 ms, the cadence of the real cores sum.
    let (rx, _thread) = poll::start(vec![(1, read)], CORE_SUM_EVERY).expect("poller");
    let (idx, ts, raw) = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("first reading");
    assert_eq!(raw, 0, "the first reading is every core's baseline");
    books.reading(idx, ts, raw);
    // Each core at its own pace for 300 ms: core c steps 10,000 × (c + 1)
    // counts a millisecond, so each wraps 2^32 at its own moment.
    let writers: Vec<_> = (0..4u32)
        .map(|c| {
            let path = root.dev(&format!("cpu/{c}/msr"));
            let from = start + u64::from(c);
            let step = 10_000 * u64::from(c + 1);
            std::thread::spawn(move || advance(&path, AMD_CORE_ENERGY, from, step, 300))
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    // The first poll that starts after the writers stopped has it all.
    let done = crate::perf::boot_ns();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let (idx, ts, raw) = rx.recv_timeout(left).expect("a reading after the writers");
        books.reading(idx, ts, raw);
        if ts > done + 50_000_000 {
            break;
        }
    }
    let cores = books
        .packages()
        .into_iter()
        .find(|p| p.domain == "cores")
        .expect("a cores domain")
        .joules
        .0;
    let want = 300.0 * 10_000.0 * (1.0 + 2.0 + 3.0 + 4.0) / 65536.0;
    assert!((cores - want).abs() < 1e-9, "{cores} J, want {want} J");
}

#[test]
fn a_missing_driver_a_vm_and_an_unknown_vendor_are_explained() {
    let (_dir, root) = scratch("msr-intel-2pkg");
    let topo = Topology::read(&root).expect("topology");
    let e = select(SourceKind::Msr, &root, &topo, &declared(), &Assume)
        .expect_err("no driver")
        .to_string();
    assert!(e.contains("--source msr"), "{e}");
    let e = plan(&root, &topo).expect_err("no driver").to_string();
    assert!(
        e.contains("cpu/0/msr")
            && e.contains("msr module is not loaded")
            && e.contains("modprobe msr"),
        "{e}"
    );
    // The driver is there but the CPU has no RAPL (what a VM's vCPU does).
    std::fs::create_dir_all(root.dev("cpu/0")).expect("mkdir");
    std::fs::write(root.dev("cpu/0/msr"), b"").expect("empty msr");
    let e = plan(&root, &topo).expect_err("no rapl").to_string();
    assert!(e.contains("MSR_RAPL_POWER_UNIT (0x606)"), "{e}");
    // auto explains every step and ends with the model.
    let p = select(SourceKind::Auto, &root, &topo, &declared(), &Assume).expect("auto");
    assert_eq!(p.source, Resolved::Model);
    assert!(
        p.reason.contains("no perf power PMU")
            && p.reason.contains("no powercap RAPL package zone")
            && p.reason.contains("msr: the CPU does not implement")
            && p.reason.contains("ESTIMATES"),
        "{}",
        p.reason
    );
    let text = std::fs::read_to_string(root.proc("cpuinfo")).expect("cpuinfo");
    std::fs::write(
        root.proc("cpuinfo"),
        text.replace("GenuineIntel", "CentaurHauls"),
    )
    .expect("write");
    let e = plan(&root, &topo).expect_err("vendor").to_string();
    assert!(e.contains("CentaurHauls"), "{e}");
}

#[test]
fn auto_takes_msr_after_rapl_and_powercap() {
    let (_dir, root) = scratch("msr-intel-2pkg");
    intel(&root);
    let topo = Topology::read(&root).expect("topology");
    let p = select(SourceKind::Auto, &root, &topo, &declared(), &Assume).expect("auto");
    assert_eq!(p.source, Resolved::Msr);
    assert!(
        p.reason.contains("no perf power PMU")
            && p.reason.contains("no powercap RAPL package zone")
            && p.reason.contains("RAPL MSRs through")
            && p.reason
                .contains("(pkg, cores, ram, psys; read by the daemon)"),
        "{}",
        p.reason
    );
}

/// The msr plan of `root` and empty books for it.
fn planned_books(root: &SysRoot) -> (Plan, EnergyBooks) {
    let topo = Topology::read(root).expect("topology");
    let counters = plan(root, &topo).expect("plan");
    poll::books_for(Resolved::Msr, counters, &topo)
}

/// A register advancing by `step` every millisecond, `n` times, wrapping at 2^32, from a
/// thread standing in for the CPU.
fn advance(path: &Path, reg: u64, start: u64, step: u64, n: u32) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open");
    let mut v = start;
    for _ in 0..n {
        v = (v + step) & MAX;
        f.write_all_at(&v.to_le_bytes(), reg).expect("write");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn the_32_bit_counter_wrapping_during_a_run_loses_no_energy() {
    let (_dir, root) = scratch("msr-amd");
    set(&root, 0, AMD_POWER_UNIT, AMD_UNIT);
    let start = u32::MAX as u64 - 15_000;
    set(&root, 0, 0xC001_029B, start);
    let (plan, mut books) = planned_books(&root);
    let read = plan.counters[0].user.clone().expect("user counter").read;
    let (rx, _thread) = poll::start(vec![(0, read)], Duration::from_micros(500)).expect("poller");
    let (idx, ts, raw) = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("first reading");
    assert_eq!(raw, start);
    books.reading(idx, ts, raw);
    // 300 steps of 300 counts a ms (4.6 W at 2^-16 J, a package's power:
    // the books refuse a wrap that implies more than the package can draw):
    // wraps after 50.
    let path = root.dev("cpu/0/msr");
    let writer = std::thread::spawn(move || advance(&path, 0xC001_029B, start, 300, 300));
    poll::feed_until(&rx, &mut books, || writer.is_finished());
    assert_eq!(
        books.rejected(),
        Default::default(),
        "a real wrap is accepted"
    );
    let joules = books.packages()[0].joules.0;
    let want = 300.0 * 300.0 / 65536.0;
    assert!((joules - want).abs() < 1e-9, "{joules} J, want {want} J");
}

/// One row per model the kernel's perf RAPL PMU treats specially
/// (`arch/x86/events/rapl.c`), and models it does not: the whole plan runs
/// on the two-package fixture with that model in `/proc/cpuinfo`, and each
/// domain's joules per count is the kernel's. The unit register says 2^-14 J.
#[test]
fn every_model_gets_the_kernels_unit_for_each_domain() {
    let e14 = 1.0 / 16384.0;
    let e16 = 1.0 / 65536.0;
    // (vendor, family, model, what: pkg, cores, ram, psys)
    let rows: &[(&str, u32, u32, &str, [f64; 4])] = &[
        ("GenuineIntel", 6, 0x3F, "Haswell-X", [e14, e14, e16, e14]),
        ("GenuineIntel", 6, 0x4F, "Broadwell-X", [e14, e14, e16, e14]),
        ("GenuineIntel", 6, 0x56, "Broadwell-D", [e14, e14, e16, e14]),
        (
            "GenuineIntel",
            6,
            0x57,
            "Xeon Phi KNL",
            [e14, e14, e16, e14],
        ),
        (
            "GenuineIntel",
            6,
            0x85,
            "Xeon Phi KNM",
            [e14, e14, e16, e14],
        ),
        ("GenuineIntel", 6, 0x55, "Skylake-X", [e14, e14, e16, e14]),
        ("GenuineIntel", 6, 0x6A, "Ice Lake-X", [e14, e14, e16, e14]),
        ("GenuineIntel", 6, 0x6C, "Ice Lake-D", [e14, e14, e16, e14]),
        (
            "GenuineIntel",
            6,
            0x8F,
            "Sapphire Rapids",
            [e14, e14, e14, 1.0],
        ),
        (
            "GenuineIntel",
            6,
            0xCF,
            "Emerald Rapids",
            [e14, e14, e14, 1.0],
        ),
        (
            "GenuineIntel",
            6,
            0xAD,
            "Granite Rapids-X",
            [e14, e14, e14, e14],
        ),
        (
            "GenuineIntel",
            6,
            0xAE,
            "Granite Rapids-D",
            [e14, e14, e14, e14],
        ),
        (
            "GenuineIntel",
            6,
            0x3C,
            "Haswell (client)",
            [e14, e14, e14, e14],
        ),
        (
            "GenuineIntel",
            6,
            0x5E,
            "Skylake (client)",
            [e14, e14, e14, e14],
        ),
        ("GenuineIntel", 6, 0x97, "Alder Lake", [e14, e14, e14, e14]),
        (
            "GenuineIntel",
            6,
            0x5C,
            "Goldmont (Atom)",
            [e14, e14, e14, e14],
        ),
        (
            "GenuineIntel",
            6,
            0x86,
            "Tremont-D (Atom)",
            [e14, e14, e14, e14],
        ),
    ];
    for &(vendor, family, model, what, want) in rows {
        let (_dir, root) = scratch("msr-intel-2pkg");
        intel(&root);
        let mut info = String::new();
        for cpu in 0..4 {
            info.push_str(&format!(
                "processor\t: {cpu}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n\n"
            ));
        }
        std::fs::write(root.proc("cpuinfo"), info).expect("cpuinfo");
        let topo = Topology::read(&root).expect("topology");
        let counters = plan(&root, &topo).expect("plan");
        for (domain, jpc) in want.iter().enumerate() {
            let got = counters
                .iter()
                .find(|c| c.package == 0 && c.domain == domain)
                .map(|c| c.joules_per_count);
            assert_eq!(
                got,
                Some(*jpc),
                "{what} (model {model:#x}), domain {domain}"
            );
        }
    }
    // AMD families 17h, 19h, 1Ah and Hygon 18h: the unit register for all.
    for (vendor, family) in [
        ("AuthenticAMD", 0x17),
        ("AuthenticAMD", 0x19),
        ("AuthenticAMD", 0x1A),
        ("HygonGenuine", 0x18),
    ] {
        let cpu = Cpu {
            vendor: vendor.into(),
            family,
            model: 0x01,
        };
        assert_eq!(intel_unit_quirk(&cpu), None, "{vendor} {family:#x}");
        for domain in 0..5 {
            assert_eq!(domain_joules_per_count(&cpu, domain, e16), e16);
        }
    }
}
