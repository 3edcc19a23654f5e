//! Per-cgroup attribution against ground truth: each cgroup's own
//! `cpu.stat` `usage_usec` and the synthetic source's declared wattage
//! (every CPU draws W, so a cgroup's joules = W × its CPU seconds).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use tests::{require_root, sum_of, Daemon};

const W: f64 = 10.0;

/// A cgroup under the cgroup2 hierarchy, removed on drop.
struct Cgroup {
    path: PathBuf,
    rel: String,
}

impl Cgroup {
    fn new(name: &str) -> Cgroup {
        let root = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .iter()
            .map(Path::new)
            .find(|p| p.join("cgroup.procs").exists() && p.join("cgroup.stat").exists())
            .expect("a cgroup2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified");
        let rel = format!("/ergon-test-{}-{name}", std::process::id());
        let path = root.join(&rel[1..]);
        std::fs::create_dir(&path).expect("create test cgroup");
        Cgroup { path, rel }
    }

    fn usage_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(self.path.join("cpu.stat")).expect("cpu.stat");
        stat.lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .expect("usage_usec in cpu.stat")
            * 1e-6
    }

    fn burn(&self, seconds: f64, duty: f64) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_burn"))
            .args([seconds.to_string(), duty.to_string()])
            .arg(&self.path)
            .spawn()
            .expect("start burn")
    }

    fn joules(&self, d: &Daemon) -> f64 {
        let m = d.metrics();
        let prefix = format!("ergon_cgroup_energy_joules_total{{cgroup=\"{}\",", self.rel);
        m.iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v)
            .sum()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// Waits until the attribution frontier has passed everything that ran.
fn settle() {
    std::thread::sleep(Duration::from_millis(400));
}

#[test]
fn steady_and_duty_cycled_cgroups_match_cpu_stat_within_2_percent() {
    require_root();
    let d = Daemon::start(&["--source", "synthetic", "--synthetic-watts", "10"]);
    let full = Cgroup::new("full");
    let duty = Cgroup::new("duty40");
    let mut a = full.burn(3.0, 1.0);
    let mut b = duty.burn(3.0, 0.4);
    assert!(a.wait().expect("wait").success());
    assert!(b.wait().expect("wait").success());
    settle();
    for cg in [&full, &duty] {
        let truth = W * cg.usage_seconds();
        let got = cg.joules(&d);
        println!(
            "{}: attributed {got:.4} J, cpu.stat × W = {truth:.4} J",
            cg.rel
        );
        assert!(truth > 1.0, "{} barely ran: {truth} J", cg.rel);
        assert!(
            (got - truth).abs() / truth < 0.02,
            "{}: {got} J vs {truth} J",
            cg.rel
        );
    }
}

#[test]
fn a_hundred_20ms_processes_are_all_attributed() {
    require_root();
    let d = Daemon::start(&["--source", "synthetic", "--synthetic-watts", "10"]);
    let cg = Cgroup::new("short");
    // As in a container or a systemd scope: a parent inside the cgroup
    // starts the processes one after another.
    let status = Command::new("sh")
        .arg("-c")
        .arg(r#"echo 0 > "$1/cgroup.procs" && i=0 && while [ $i -lt 100 ]; do "$2" 0.02 1 || exit 1; i=$((i+1)); done"#)
        .arg("sh")
        .arg(&cg.path)
        .arg(env!("CARGO_BIN_EXE_burn"))
        .status()
        .expect("run the 100 processes");
    assert!(status.success());
    settle();
    let truth = W * cg.usage_seconds();
    let got = cg.joules(&d);
    println!(
        "100 × 20 ms: attributed {got:.4} J, cpu.stat × W = {truth:.4} J ({:.2}%)",
        100.0 * got / truth
    );
    assert!(
        truth > 10.0 * 0.02 * 100.0 * 0.9,
        "the processes ran: {truth} J"
    );
    assert!(got >= 0.98 * truth, "only {got} J of {truth} J attributed");
    assert!(
        got <= 1.02 * truth,
        "{got} J is more than the {truth} J the cgroup used"
    );
}

#[test]
fn every_scrape_balances_cgroups_plus_idle_against_the_package() {
    require_root();
    let d = Daemon::start(&["--source", "synthetic", "--synthetic-watts", "10"]);
    let cg = Cgroup::new("balance");
    let mut p = cg.burn(2.0, 0.7);
    let mut last_pkg = 0.0;
    for _ in 0..10 {
        let m = d.metrics();
        let pkg: f64 = m
            .iter()
            .filter(|(k, _)| {
                k.starts_with("ergon_package_energy_joules_total{") && k.contains("domain=\"pkg\"")
            })
            .map(|(_, v)| v)
            .sum();
        let cgroups = sum_of(&m, "ergon_cgroup_energy_joules_total");
        let idle = sum_of(&m, "ergon_idle_energy_joules_total");
        let cpus = sum_of(&m, "ergon_cpu_energy_joules_total");
        last_pkg = pkg;
        assert!(
            ((cgroups + idle) - pkg).abs() <= 1e-6 * pkg,
            "Σcgroup {cgroups} + idle {idle} != package {pkg}"
        );
        assert!(
            (cpus - pkg).abs() <= 1e-6 * pkg,
            "Σcpu {cpus} != package {pkg}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(last_pkg > 0.0, "the books advanced during the test");
    assert!(p.wait().expect("wait").success());
}
