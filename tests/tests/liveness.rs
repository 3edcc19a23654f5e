//! Counters that prove they move, for real: a fixture power PMU whose `type`
//! is the software PMU's opens real perf events on any host. Its
//! `energy-psys` as `PERF_COUNT_SW_DUMMY` never advances — what a hypervisor
//! that exposes the PMU without the register gives — and as `cpu-clock` it
//! always does. The real `ergon` must pass over the first (auto), refuse it
//! (`--source rapl`), and take the second.

use std::process::Command;

use tests::{
    ergon_bin,
    fixture::{power_core_pmu, power_pmu_tree, DEAD_EVENT, MOVING_EVENT},
    require_root, Daemon,
};

fn check(args: &[&str]) -> (bool, String) {
    let out = Command::new(ergon_bin())
        .arg("check")
        .args(args)
        .output()
        .expect("run ergon check");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{text}");
    (out.status.success(), text)
}

fn line<'a>(text: &'a str, item: &str) -> &'a str {
    text.lines()
        .find(|l| {
            l.split_whitespace()
                .skip(1)
                .collect::<Vec<_>>()
                .join(" ")
                .starts_with(item)
        })
        .unwrap_or_else(|| panic!("no `{item}` line in:\n{text}"))
}

const DEAD_PSYS: &str =
    "rapl: power PMU energy-psys reads 0 and does not advance in 25 ms (a hypervisor exposing the PMU without the registers)";

#[test]
fn a_power_pmu_that_reads_zero_is_passed_over_by_auto_and_refused_by_source_rapl() {
    require_root();
    let dir = std::env::temp_dir().join(format!("ergon-dead-pmu-{}", std::process::id()));
    let sys = power_pmu_tree(&dir, &[("psys", DEAD_EVENT)]);
    let sys = sys.display().to_string();

    // ergon check: the PMU is there, auto passes over it and says why.
    let (ok, text) = check(&["--sysfs-root", &sys]);
    assert!(ok, "auto falls back to a source that works:\n{text}");
    let auto = line(&text, "auto source");
    assert!(auto.starts_with("ok    auto source  model: "), "{auto}");
    assert!(auto.contains(DEAD_PSYS), "{auto}");

    // --source rapl on it: refused, with the reason and the fix.
    let (ok, text) = check(&["--source", "rapl", "--sysfs-root", &sys]);
    assert!(!ok, "--source rapl cannot work on a dead PMU:\n{text}");
    let src = line(&text, "--source");
    assert!(src.starts_with("FAIL"), "{src}");
    for want in [
        "power PMU energy-psys reads 0 and does not advance",
        "use --source auto",
    ] {
        assert!(src.contains(want), "`{want}` in: {src}");
    }
    let out = Command::new(ergon_bin())
        .args(["run", "--source", "rapl", "--sysfs-root", &sys])
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .expect("run ergon run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "ergon run --source rapl must refuse: {err}"
    );
    assert!(
        err.contains("power PMU energy-psys reads 0 and does not advance"),
        "{err}"
    );

    // ergon run (auto) picks the model, serves no rapl series, and says why.
    let d = Daemon::start(&["--sysfs-root", &sys]);
    let m = d.metrics();
    assert_eq!(
        m.get("ergon_source_info{source=\"model\",domain=\"pkg\"}"),
        Some(&1.0),
        "{m:?}"
    );
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    let chosen = tests::source_choice(&log);
    assert!(chosen.contains(DEAD_PSYS), "{chosen}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_power_pmu_whose_counter_moves_is_picked_by_auto() {
    require_root();
    let dir = std::env::temp_dir().join(format!("ergon-live-pmu-{}", std::process::id()));
    let sys = power_pmu_tree(&dir, &[("pkg", MOVING_EVENT), ("psys", DEAD_EVENT)]);
    let sys = sys.display().to_string();
    let (ok, text) = check(&["--sysfs-root", &sys]);
    assert!(ok, "{text}");
    let auto = line(&text, "auto source");
    assert!(auto.starts_with("ok    auto source  rapl: "), "{auto}");
    // The dead event of the same PMU is left out, and said so.
    assert!(
        auto.contains("left out: power PMU energy-psys reads 0 and does not advance"),
        "{auto}"
    );
    let (ok, text) = check(&["--source", "rapl", "--sysfs-root", &sys]);
    assert!(ok, "{text}");
    assert!(line(&text, "--source").starts_with("ok    --source     rapl: "));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A host whose PMU has `energy-psys` and no `energy-pkg` (some platforms):
/// the psys energy is attributed, `ergon_source_info` says so, and no
/// `domain="pkg"` series is served that no counter backs.
#[test]
fn a_host_with_psys_and_no_pkg_attributes_psys_and_serves_no_pkg_series() {
    require_root();
    let dir = std::env::temp_dir().join(format!("ergon-psys-pmu-{}", std::process::id()));
    let sys = power_pmu_tree(&dir, &[("psys", MOVING_EVENT)]);
    let sys = sys.display().to_string();
    let (ok, text) = check(&["--sysfs-root", &sys]);
    assert!(ok, "{text}");
    assert!(
        line(&text, "attribution").contains("psys"),
        "check names the base domain:\n{text}"
    );
    let d = Daemon::start(&["--source", "rapl", "--sysfs-root", &sys]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let m = d.metrics();
    assert_eq!(
        m.get("ergon_source_info{source=\"rapl\",domain=\"psys\"}"),
        Some(&1.0),
        "{m:?}"
    );
    let package: Vec<(&String, &f64)> = m
        .iter()
        .filter(|(k, _)| k.starts_with("ergon_package_energy_joules_total{"))
        .collect();
    assert!(
        package.iter().all(|(k, _)| k.contains("domain=\"psys\"")),
        "only psys series: {package:?}"
    );
    let psys: f64 = package.iter().map(|(_, v)| **v).sum();
    let cpus = tests::sum_of(&m, "ergon_cpu_energy_joules_total");
    assert!(psys > 0.0, "the psys counter moved: {psys} J");
    assert!(
        (psys - cpus).abs() <= 1e-6 * psys.max(1.0),
        "the CPUs split the psys energy: Σcpu {cpus} J vs psys {psys} J"
    );
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// AMD's per-core PMU (`power_core`, Linux 6.14) beside a `power` PMU
/// without `energy-cores`: its counters are the `cores` domain, the sum
/// of every core's. Each fixture core is a cpu-clock at 1 W, so the domain
/// draws 1 W × the cores. One whose counters all stand still is left out,
/// and said so, while rapl goes on.
#[test]
fn a_power_core_pmu_gives_the_cores_domain_and_a_dead_one_is_left_out() {
    require_root();
    let dir = std::env::temp_dir().join(format!("ergon-power-core-{}", std::process::id()));
    let sys = power_pmu_tree(&dir, &[("pkg", MOVING_EVENT)]);
    power_core_pmu(&dir, MOVING_EVENT);
    let sys = sys.display().to_string();
    let cores = tests::online_cpus().len();
    let (ok, text) = check(&["--sysfs-root", &sys]);
    assert!(ok, "{text}");
    assert!(
        line(&text, "power_core").contains(&format!("energy-core on {cores} cores")),
        "{text}"
    );
    let auto = line(&text, "auto source");
    assert!(
        auto.starts_with("ok    auto source  rapl: ")
            && auto.contains(&format!("power_core PMU with energy-core on {cores} cores")),
        "{auto}"
    );

    let d = Daemon::start(&["--source", "rapl", "--sysfs-root", &sys]);
    let domain = |m: &std::collections::BTreeMap<String, f64>| -> f64 {
        m.iter()
            .filter(|(k, _)| {
                k.starts_with("ergon_package_energy_joules_total{")
                    && k.contains("domain=\"cores\"")
            })
            .map(|(_, v)| v)
            .sum()
    };
    let t0 = std::time::Instant::now();
    let a = domain(&d.metrics());
    std::thread::sleep(std::time::Duration::from_secs(3));
    let b = domain(&d.metrics());
    let watts = (b - a) / t0.elapsed().as_secs_f64();
    println!("cores domain: {watts:.3} W from {cores} fixture cores of 1 W");
    // Read every RAPL interval while busy, every 50 ms while idle: a
    // reading can trail its scrape by up to that, on each side.
    assert!(
        (watts - cores as f64).abs() <= 0.05 * cores as f64,
        "{watts} W is not within 5% of {cores} W"
    );
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");

    // Every core's counter dead: left out, rapl goes on without cores.
    power_pmu_tree(&dir, &[("pkg", MOVING_EVENT)]);
    power_core_pmu(&dir, DEAD_EVENT);
    let (ok, text) = check(&["--sysfs-root", &sys]);
    assert!(ok, "{text}");
    let auto = line(&text, "auto source");
    assert!(
        auto.starts_with("ok    auto source  rapl: ")
            && auto.contains(&format!(
                "left out: power_core PMU energy-core moves on none of {cores} cores"
            )),
        "{auto}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
