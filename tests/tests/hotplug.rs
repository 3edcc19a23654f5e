//! CPU hotplug for real: a CPU taken offline while `ergon run` samples
//! (`echo 0 > /sys/devices/system/cpu/cpuN/online`) is detached, and
//! attached again when it comes back, with the books balancing throughout.
//! Ground truth is the `synthetic` source's declared watts: while the CPU is
//! away its per-CPU counter draws nothing (the package draws W × the CPUs
//! left) and a package-wide counter draws on (W × every CPU, as RAPL counts
//! the whole package); once it is back, a cgroup burning that CPU gets W ×
//! its `cpu.stat`. One case per counter layout.

use std::time::{Duration, SystemTime};

use tests::{
    cgroup::Cgroup, http_get_status, online_cpus, pin_to, require_root, steal_seconds, sum_of,
    Daemon,
};

const W: f64 = 10.0;

/// Waits until the daemon has seen a hotplug change and booked what its
/// detach or attach read: the online list is read at a drain at least
/// `hotplug::CHECK_EVERY` (250 ms) after the last look, so the wait is
/// that plus room, then a read (which drains at once: the safety tick is
/// 1 s), then one more drain for what the change's own reads brought.
fn noticed(d: &Daemon) {
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(350));
        d.metrics();
    }
}

/// A CPU taken offline; brought back online on drop, whatever happens.
struct Offline {
    path: String,
}

impl Offline {
    fn take(cpu: u32) -> Offline {
        let path = format!("/sys/devices/system/cpu/cpu{cpu}/online");
        std::fs::write(&path, "0").unwrap_or_else(|e| panic!("offlining cpu {cpu}: {e}"));
        Offline { path }
    }
}

impl Drop for Offline {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(&self.path, "1") {
            eprintln!("could not bring {} back online: {e}", self.path);
        }
    }
}

/// The CPU to take offline: the last online one (cpu 0 usually cannot go).
/// `None` (the test cannot run, and says why) on a one-CPU machine; a
/// machine with several CPUs and no `online` file has a kernel without
/// CONFIG_HOTPLUG_CPU, which Debian's kernels all have: that fails.
fn hotpluggable() -> Option<u32> {
    let cpus = online_cpus();
    if cpus.len() < 2 {
        println!("cannot run: one CPU online, and hotplug needs a second to take offline");
        return None;
    }
    let cpu = *cpus.last()?;
    let online = format!("/sys/devices/system/cpu/cpu{cpu}/online");
    assert!(
        std::path::Path::new(&online).exists(),
        "{online} is missing: this kernel cannot take CPUs offline (CONFIG_HOTPLUG_CPU), which every Debian kernel can"
    );
    Some(cpu)
}

fn books(m: &std::collections::BTreeMap<String, f64>) -> f64 {
    m.get("ergon_books_timestamp_seconds")
        .copied()
        .unwrap_or(0.0)
}

fn cpu_energy(m: &std::collections::BTreeMap<String, f64>, cpu: u32) -> f64 {
    m.get(&format!("ergon_cpu_energy_joules_total{{cpu=\"{cpu}\"}}"))
        .copied()
        .unwrap_or_else(|| panic!("no energy series for cpu {cpu}"))
}

/// Σ cgroups + idle + unattributed = Σ CPUs = package, as every snapshot must.
fn balances(m: &std::collections::BTreeMap<String, f64>, when: &str) {
    let p = tests::pkg_joules(m);
    let booked = tests::booked_joules(m);
    let cpus = sum_of(m, "ergon_cpu_energy_joules_total");
    assert!(p > 0.0, "{when}: the books have energy");
    assert!(
        (booked - p).abs() <= 1e-6 * p,
        "{when}: Σcgroup + idle + unattributed {booked} != package {p}"
    );
    assert!(
        (cpus - p).abs() <= 1e-6 * p,
        "{when}: Σcpu {cpus} != package {p}"
    );
}

/// Package watts between two snapshots, over the books' own clock.
fn watts(
    a: &std::collections::BTreeMap<String, f64>,
    b: &std::collections::BTreeMap<String, f64>,
) -> f64 {
    (tests::pkg_joules(b) - tests::pkg_joules(a)) / (books(b) - books(a))
}

fn within(got: f64, want: f64, tolerance: f64, what: &str) {
    println!("{what}: {got:.3}, expected {want:.3}");
    assert!(
        (got - want).abs() <= tolerance * want,
        "{what}: {got} is not within {:.0}% of {want}",
        tolerance * 100.0
    );
}

fn offline_and_back(layout: &str) {
    require_root();
    let Some(cpu) = hotpluggable() else { return };
    let n = online_cpus().len() as f64;
    let d = Daemon::start(&[
        "--source",
        "synthetic",
        "--synthetic-watts",
        "10",
        "--synthetic-layout",
        layout,
    ]);
    let (m0, _) = d.metrics_complete_at(SystemTime::now());
    balances(&m0, "before");

    // Away: detached, the books go on.
    let off = Offline::take(cpu);
    noticed(&d);
    let (m1, _) = d.metrics_complete_at(SystemTime::now());
    let reads1 = sum_of(&m1, "ergon_energy_reads_total");
    let wall1 = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let (m2, _) = d.metrics_complete_at(SystemTime::now());
    let reads2 = sum_of(&m2, "ergon_energy_reads_total");
    let wall = wall1.elapsed().as_secs_f64();
    balances(&m1, "offline");
    balances(&m2, "offline, 2 s on");
    if layout == "per-cpu" {
        within(
            watts(&m1, &m2),
            W * (n - 1.0),
            0.02,
            "package W, cpu offline (its counter draws nothing)",
        );
        assert_eq!(
            cpu_energy(&m1, cpu),
            cpu_energy(&m2, cpu),
            "an offline CPU's own counter stands still"
        );
    } else {
        within(
            watts(&m1, &m2),
            W * n,
            0.02,
            "package W, cpu offline (the package counter counts on)",
        );
        let rate = (reads2 - reads1) / wall;
        println!("package reads while cpu {cpu} is offline: {rate:.0}/s");
        assert!(
            rate <= 1050.0,
            "{rate} reads/s is above one per RAPL interval"
        );
    }

    // Back: attached again, and a cgroup burning that very CPU gets its share.
    drop(off);
    noticed(&d);
    let (m3, _) = d.metrics_complete_at(SystemTime::now());
    balances(&m3, "back online");
    let cg = Cgroup::new(&format!("hotplug-{layout}"));
    let steal0 = steal_seconds();
    let mut burner = std::thread::scope(|s| {
        s.spawn(|| {
            // The child inherits this thread's affinity: the CPU that came back.
            pin_to(cpu);
            cg.burn(env!("CARGO_BIN_EXE_burn"), 2.0, 1.0)
        })
        .join()
        .expect("spawn the burner")
    });
    assert!(burner.wait().expect("wait").success());
    let (m4, _) = d.metrics_complete_at(SystemTime::now());
    let stolen = steal_seconds() - steal0;
    balances(&m4, "back online, after the burner");
    within(watts(&m3, &m4), W * n, 0.02, "package W, cpu back");
    if layout == "per-cpu" {
        within(
            (cpu_energy(&m4, cpu) - cpu_energy(&m3, cpu)) / (books(&m4) - books(&m3)),
            W,
            0.02,
            "W of the CPU that came back",
        );
    }
    // Under a package counter the energy is split by cause once the idle
    // power is learned (with this constant draw the work causes none, and
    // when that happens depends on how idle the machine was): the CPU's
    // timeline is proven attributed again by the cgroup's on-CPU time.
    let (truth, got) = if layout == "per-cpu" {
        (W * cg.usage_seconds(), cg.joules(&d))
    } else {
        let key = format!("ergon_cgroup_cpu_seconds_total{{cgroup=\"{}\"}}", cg.rel);
        let (m, _) = d.metrics_complete_at(SystemTime::now());
        (
            W * cg.usage_seconds(),
            W * m.get(&key).copied().unwrap_or(0.0),
        )
    };
    println!(
        "{}: attributed {got:.4} J (W × on-CPU s for the package layout), cpu.stat × W = {truth:.4} J (host steal {stolen:.3} s)",
        cg.rel
    );
    assert!(truth > 1.0, "the burner barely ran: {truth} J");
    tests::assert_attributed(&cg.rel, got, truth, 0.02, W, stolen);

    let m = d.metrics();
    assert_eq!(
        m.get("ergon_energy_counter_stalls_total"),
        Some(&0.0),
        "an offline CPU's counter is no stall"
    );
    let (status, _) = http_get_status(&d.addr, "/health", &[]).expect("GET /health");
    assert_eq!(status, 200);
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    for want in [
        "cpu went offline: its timer is detached",
        "cpu came back online: its timer and counters are attached again",
    ] {
        assert!(log.contains(want), "`{want}` in the log:\n{log}");
    }
}

#[test]
fn per_cpu_counters_an_offline_cpu_draws_nothing_and_counts_again_once_back() {
    offline_and_back("per-cpu");
}

#[test]
fn package_counter_an_offline_cpu_leaves_its_package_read_by_the_others() {
    offline_and_back("package");
}
