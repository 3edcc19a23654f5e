//! `ergon run --source model` with the real kernel programs on this
//! machine's real `/proc/stat`. Ground truth: the declared model and the
//! kernel's own accounting. A cgroup that keeps a CPU fully busy is charged
//! the model's full-load watts for its `cpu.stat` time, and the package
//! draws idle watts on every CPU plus (max − idle) over the busy time
//! `/proc/stat` counted meanwhile.

use std::time::{Duration, Instant};

use tests::{
    cgroup::Cgroup, online_cpus, proc_stat_cpu_seconds, require_root, steal_seconds, sum_of, Daemon,
};

const IDLE: f64 = 2.0;
const MAX: f64 = 12.0;
const PKG: &str = "ergon_package_energy_joules_total";

/// Busy seconds of all CPUs so far: user + nice + system + irq + softirq.
fn busy_seconds() -> f64 {
    let v = proc_stat_cpu_seconds();
    v[0] + v[1] + v[2] + v[5] + v[6]
}

#[test]
fn model_joules_follow_the_declared_watts_and_the_kernels_busy_time() {
    require_root();
    let d = Daemon::start(&[
        "--source",
        "model",
        "--model-idle-watts",
        &IDLE.to_string(),
        "--model-max-watts",
        &MAX.to_string(),
    ]);
    let m = d.metrics();
    assert_eq!(
        m.get("ergon_source_info{source=\"model\"}"),
        Some(&1.0),
        "the estimate is labelled as such: {m:?}"
    );
    let cpus = online_cpus().len() as f64;
    let cg = Cgroup::new("model");
    // Let the first readings arrive, then open the window.
    std::thread::sleep(Duration::from_millis(300));
    let (pkg0, busy0, steal0, t0) = (
        sum_of(&d.metrics(), PKG),
        busy_seconds(),
        steal_seconds(),
        Instant::now(),
    );
    let mut p = cg.burn(env!("CARGO_BIN_EXE_burn"), 3.0, 1.0);
    assert!(p.wait().expect("burn").success());
    // The model is read every 100 ms: let the books pass the burn's end.
    std::thread::sleep(Duration::from_millis(400));
    let (pkg1, busy1, steal1, wall) = (
        sum_of(&d.metrics(), PKG),
        busy_seconds(),
        steal_seconds(),
        t0.elapsed().as_secs_f64(),
    );
    let got = pkg1 - pkg0;
    let want = IDLE * cpus * wall + (MAX - IDLE) * (busy1 - busy0);
    println!("package: {got:.3} J in {wall:.3} s, model on /proc/stat: {want:.3} J");
    assert!(
        (got - want).abs() <= 0.05 * want,
        "package {got:.3} J, the model on /proc/stat says {want:.3} J"
    );
    // The burning cgroup ran its CPU at full load: MAX watts for its CPU time.
    // A VM's stolen time is in the kernel programs' spans but not in
    // cpu.stat, and the model's CPU draws IDLE watts during it.
    let joules = cg.joules(&d);
    let usage = cg.usage_seconds();
    let truth = MAX * usage;
    let stolen = steal1 - steal0;
    println!("cgroup: {joules:.3} J for {usage:.3} s of CPU; {truth:.3} J at {MAX} W (steal {stolen:.3} s)");
    assert!(
        (joules - truth).abs() <= 0.05 * truth + IDLE * stolen,
        "cgroup {joules:.3} J, {MAX} W × cpu.stat {usage:.3} s = {truth:.3} J"
    );
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
}
