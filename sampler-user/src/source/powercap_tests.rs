//! The powercap source on fixture trees: Intel with subzones on two
//! packages, AMD (whose one-core `core` zone is skipped), bad files, and a
//! counter that wraps while it is being polled.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use super::*;
use crate::{
    source::{liveness::Assume, poll, select, synthetic, Declared, Plan, Resolved, SourceKind},
    testdata::{fixture, scratch},
};

fn synth() -> Declared {
    Declared {
        synthetic: synthetic::Synthetic::constant(10.0, synthetic::Layout::PerCpu),
        model: crate::source::model::Model::default(),
    }
}

#[test]
fn intel_zones_and_subzones_map_to_domains_and_packages() {
    let root = SysRoot::under(&fixture("powercap-intel-2pkg"));
    let Zones { zones, skipped } = discover(&root).expect("discover");
    assert!(skipped.is_empty(), "{skipped:?}");
    let got: Vec<(&str, usize, u32)> = zones
        .iter()
        .map(|z| (z.name.as_str(), z.domain, z.package))
        .collect();
    assert_eq!(
        got,
        vec![
            ("package-0", 0, 0),
            ("package-1", 0, 1),
            ("psys", 3, 0),
            ("core", 1, 0),
            ("uncore", 4, 0),
            ("dram", 2, 0),
            ("core", 1, 1),
            ("dram", 2, 1),
        ],
        "intel-rapl-mmio is skipped, subzones inherit their package"
    );
    assert_eq!(zones[5].max_uj, 65_712_999_613);
    let topo = Topology::read(&root).expect("topology");
    let plans = plan(&zones, &topo);
    assert_eq!(plans.len(), 8);
    let pkg1 = &plans[1];
    assert_eq!((pkg1.domain, pkg1.package), (0, 1));
    assert!(
        pkg1.readers.is_empty(),
        "no kernel reader: the daemon polls it"
    );
    assert_eq!(
        pkg1.user.as_ref().map(|u| (u.read.clone(), u.max)),
        Some((
            UserRead::File(zones[1].dir.join("energy_uj")),
            262_143_328_850
        ))
    );
    assert_eq!(pkg1.joules_per_count, 1e-6);
}

#[test]
fn a_wrap_is_judged_by_the_zones_own_maximum_power() {
    let root = SysRoot::under(&fixture("powercap-intel-2pkg"));
    let zones = discover(&root).expect("discover").zones;
    // package-0 declares long_term 125 W, short_term 250 W and a peak_power
    // constraint with no maximum; package-1 declares none.
    assert_eq!(zones[0].max_power_uw, Some(250_000_000));
    assert_eq!(zones[1].max_power_uw, None);
    let topo = Topology::read(&root).expect("topology");
    let counters: Vec<CounterPlan> = plan(&zones, &topo).into_iter().take(2).collect();
    assert_eq!(
        counters[0].user.as_ref().and_then(|u| u.max_watts),
        Some(250.0)
    );
    let (_plan, mut books) = poll::books_for(Resolved::Powercap, counters, &topo);
    // On both packages (2 CPUs each: 100 W without a declared maximum), a
    // wrap 1 ms after a reading near the top, implying 200 mJ = 200 W.
    let ms = 1_000_000u64;
    let top = 262_143_328_850u64;
    for idx in [0, 1] {
        assert!(books.reading(idx, ms, top - 100_000));
        let wrapped = books.reading(idx, 2 * ms, 99_999);
        assert_eq!(
            wrapped,
            idx == 0,
            "package {idx}: accepted under its 250 W maximum, refused over the 2 x 50 W ceiling"
        );
    }
    assert_eq!(books.rejected().implausible_wraps, 1);
    let joules: Vec<f64> = books.packages().iter().map(|p| p.joules.0).collect();
    assert!((joules[0] - 0.2).abs() < 1e-9, "{joules:?}");
    assert_eq!(joules[1], 0.0);
}

#[test]
fn amd_serves_the_package_and_skips_the_one_core_core_zone() {
    let root = SysRoot::under(&fixture("powercap-amd"));
    let Zones { zones, skipped } = discover(&root).expect("discover");
    assert_eq!(zones.len(), 1, "{zones:?}");
    assert_eq!(
        (zones[0].domain, zones[0].package, zones[0].max_uj),
        (0, 0, 65_532_610_987)
    );
    assert_eq!(
        skipped,
        vec!["intel-rapl:0:0 (core) skipped: on AMD it counts the package's first core only"]
    );
    // Without /proc/cpuinfo the vendor is unknown and the zone is kept.
    let (_dir, root) = scratch("powercap-amd");
    std::fs::remove_file(root.proc("cpuinfo")).expect("rm cpuinfo");
    let found = discover(&root).expect("discover");
    let names: Vec<(&str, usize)> = found
        .zones
        .iter()
        .map(|z| (z.name.as_str(), z.domain))
        .collect();
    assert_eq!(names, vec![("package-0", 0), ("core", 1)]);
    assert!(found.skipped.is_empty());
}

#[test]
fn auto_prefers_rapl_then_powercap_and_says_why() {
    let root = SysRoot::under(&fixture("powercap-amd"));
    let topo = Topology::read(&root).expect("topology");
    let p: Plan = select(SourceKind::Auto, &root, &topo, &synth(), &Assume).expect("plan");
    assert_eq!(p.source, Resolved::Powercap);
    assert!(
        p.reason.contains("no perf power PMU")
            && p.reason.contains("powercap RAPL zones")
            && p.reason.contains("(package-0)")
            && p.reason.contains("intel-rapl:0:0 (core) skipped: on AMD"),
        "{}",
        p.reason
    );
    // No zones at all: on to msr, then the model, and the reason names every absence.
    let root = SysRoot::under(&fixture("no-pmu"));
    let topo = Topology::read(&root).expect("topology");
    let p = select(SourceKind::Auto, &root, &topo, &synth(), &Assume).expect("plan");
    assert_eq!(p.source, Resolved::Model);
    assert!(
        p.reason.contains("no powercap RAPL package zone"),
        "{}",
        p.reason
    );
    let e = select(SourceKind::Powercap, &root, &topo, &synth(), &Assume)
        .expect_err("none")
        .to_string();
    assert!(
        e.contains("--source powercap") && e.contains("class/powercap"),
        "{e}"
    );
}

#[test]
fn bad_files_are_clear_errors() {
    let (_dir, root) = scratch("powercap-amd");
    let zone = root.sys("class/powercap/intel-rapl:0");
    std::fs::write(zone.join("max_energy_range_uj"), "lots\n").expect("write");
    let e = discover(&root).expect_err("garbage").to_string();
    assert!(
        e.contains("max_energy_range_uj") && e.contains("\"lots\""),
        "{e}"
    );
    std::fs::remove_file(zone.join("max_energy_range_uj")).expect("rm");
    let e = discover(&root).expect_err("missing").to_string();
    assert!(e.contains("max_energy_range_uj"), "{e}");
    // What a non-root user gets since Linux 5.10 (root is never refused, so
    // the error is built as the kernel returns it).
    let e = PowercapError::Permission {
        path: zone.join("energy_uj"),
    }
    .to_string();
    assert!(
        e.contains("root only") && e.contains("run ergon as root"),
        "{e}"
    );
}

#[test]
fn a_counter_wrapping_during_a_run_loses_no_energy() {
    let (_dir, root) = scratch("powercap-amd");
    let topo = Topology::read(&root).expect("topology");
    let zones = discover(&root).expect("discover").zones;
    let max = 1_000_000u64; // a small range so the run wraps several times
    let mut counters = plan(&zones, &topo);
    let Some(UserCounter {
        read: UserRead::File(path),
        ..
    }) = counters[0].user.clone()
    else {
        panic!("a file counter")
    };
    if let Some(u) = counters[0].user.as_mut() {
        u.max = max;
    }
    std::fs::write(&path, "990000\n").expect("start near the top");
    let (_plan, mut books) = poll::books_for(Resolved::Powercap, counters, &topo);
    // A writer process: 300 steps of 12,345 µJ, wrapping at `max`, 1 ms apart.
    // In place, as the kernel updates the attribute (same inode).
    let script = format!(
        "v=990000; i=0; while [ $i -lt 300 ]; do v=$(( (v + 12345) % {} )); echo $v > {}; i=$((i+1)); sleep 0.001; done",
        max + 1,
        path.display()
    );
    // The poller takes its first reading (the baseline) before the writer starts.
    let (rx, _thread) = poll::start(
        vec![(0, UserRead::File(path.clone()))],
        Duration::from_micros(500),
    )
    .expect("poller");
    let (idx, ts, raw) = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("a first reading");
    assert_eq!(raw, 990_000);
    books.reading(idx, ts, raw);
    let mut writer = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .expect("writer");
    poll::feed_until(&rx, &mut books, || matches!(writer.try_wait(), Ok(Some(_))));
    let joules = books.packages()[0].joules.0;
    // Exactly 300 × 12,345 µJ, across ≥ 3 wraps.
    assert!((joules - 300.0 * 12_345e-6).abs() < 1e-9, "{joules} J");
}
