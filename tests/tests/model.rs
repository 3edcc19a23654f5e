//! `ergon run --source model` with the real kernel programs on this
//! machine's real `/proc/stat`. Ground truth: the declared model and the
//! kernel's own accounting. A cgroup that keeps a CPU fully busy is charged
//! the model's full-load watts for its `cpu.stat` time, and the package
//! draws idle watts on every CPU plus (max − idle) over the busy time
//! `/proc/stat` counted meanwhile.

use std::time::SystemTime;

use tests::{
    cgroup::Cgroup, online_cpus, proc_stat_cpu_seconds, require_root, steal_seconds, sum_of, Daemon,
};

const IDLE: f64 = 2.0;
const MAX: f64 = 12.0;
const PKG: &str = "ergon_package_energy_joules_total";
const BOOKS: &str = "ergon_books_timestamp_seconds";

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
        m.get("ergon_source_info{source=\"model\",domain=\"pkg\"}"),
        Some(&1.0),
        "the estimate is labelled as such: {m:?}"
    );
    let cpus = online_cpus().len() as f64;
    let cg = Cgroup::new("model");
    // The window is the books' own advance (`ergon_books_timestamp_seconds`
    // at each end, waited for past the /proc/stat read), so however far the
    // books trail real time, energy and time cover the same interval. The
    // machine is idle at both ends: the busy time read just before each end
    // is the busy time of the window.
    let window_end = |d: &Daemon| {
        let (busy, steal) = (busy_seconds(), steal_seconds());
        let (m, _) = d.metrics_complete_at(SystemTime::now());
        (sum_of(&m, PKG), m[BOOKS], busy, steal)
    };
    let (pkg0, books0, busy0, steal0) = window_end(&d);
    let mut p = cg.burn(env!("CARGO_BIN_EXE_burn"), 3.0, 1.0);
    assert!(p.wait().expect("burn").success());
    let (pkg1, books1, busy1, steal1) = window_end(&d);
    let wall = books1 - books0;
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
