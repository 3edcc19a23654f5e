//! `ergon run --source powercap` with the real kernel programs, on a sysfs
//! tree that has this machine's CPU topology and a powercap RAPL zone whose
//! `energy_uj` a writer advances — across `max_energy_range_uj` — while the
//! daemon polls it. Ground truth is what the writer wrote.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use tests::{
    every_ms,
    fixture::{powercap_tree, write_counter},
    require_root, source_check_as_nobody, world_readable, Daemon, Preroll,
};

const PKG: &str = "ergon_package_energy_joules_total";
/// A small range, so the run wraps a few times.
const MAX_UJ: u64 = 2_000_000;
/// Where the fixture zone's count starts (0.1 J below its wrap).
const START_UJ: u64 = 1_900_000;

/// This machine's CPU topology plus one package zone, under a temp dir.
fn tree(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("ergon-powercap-{name}-{}", std::process::id()));
    let energy = powercap_tree(&dir, MAX_UJ, START_UJ);
    (dir, energy)
}

/// Advances `path` by `step` µJ every ms for `ms` ms, wrapping; returns µJ written.
fn write_steps(path: &Path, start: u64, step: u64, ms: u64) -> u64 {
    let mut v = start;
    every_ms(ms, |_| {
        v = (v + step) % (MAX_UJ + 1);
        write_counter(path, v);
    });
    step * ms
}

/// Keeps `energy` moving by 1 µJ a ms from 1.9 J while the daemon starts
/// (it refuses a zone that stands still), or from `from`.
fn preroll(energy: &Path) -> Preroll<u64> {
    preroll_from(energy, START_UJ)
}

fn preroll_from(energy: &Path, from: u64) -> Preroll<u64> {
    let energy = energy.to_path_buf();
    Preroll::start(from, move |v| {
        *v = (*v + 1) % (MAX_UJ + 1);
        write_counter(&energy, *v);
    })
}

/// A fixture tree (`name`) whose zone a preroll keeps moving, and
/// `ergon run --source SOURCE --sysfs-root` on it.
fn started(name: &str, source: &str) -> (PathBuf, PathBuf, Preroll<u64>, Daemon) {
    let (dir, energy) = tree(name);
    let pre = preroll(&energy);
    let d = Daemon::start(&[
        "--source",
        source,
        "--sysfs-root",
        &dir.join("sys").display().to_string(),
    ]);
    (dir, energy, pre, d)
}

/// Stops the preroll, takes what the books settled at as the baseline, then
/// advances `energy` by `step` µJ a ms for `ms` ms and asserts that the
/// package energy served grew by what was written, to the microjoule.
fn written_is_served(d: &Daemon, pre: Preroll<u64>, energy: &Path, step: u64, ms: u64) {
    let at = pre.stop();
    let (before, _) = d.settled_sum(PKG, std::time::SystemTime::now());
    // The preroll wrote 1 µJ a ms for as long as the daemon took to start.
    let preroll = at - START_UJ;
    assert!(
        before >= 0.0 && before <= preroll as f64 * 1e-6 + 1e-9,
        "{before} J booked from a preroll of {preroll} µJ"
    );
    let written = write_steps(energy, at, step, ms);
    d.serves_written_package_energy(before + written as f64 * 1e-6, "");
}

#[test]
fn powercap_zone_is_read_across_wraps_to_the_microjoule() {
    require_root();
    let (dir, energy, pre, d) = started("wrap", "powercap");
    let m = d.metrics();
    assert_eq!(
        m.get("ergon_source_info{source=\"powercap\",domain=\"pkg\"}"),
        Some(&1.0),
        "{m:?}"
    );
    // 3 s at 5 W (5,000 µJ per ms): 15 J, wrapping at 2 J about 7 times.
    written_is_served(&d, pre, &energy, 5_000, 3_000);
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("powercap"), "the log says which source: {log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a user who is not root gets since Linux 5.10, where the kernel
/// makes `energy_uj` readable by root only: the real `ergon check` run as
/// `nobody` on a tree whose `energy_uj` is mode 0400, as the kernel sets it.
#[test]
fn a_zone_readable_by_root_only_is_explained_to_a_user() {
    require_root();
    let (dir, energy) = tree("perm");
    world_readable(&dir);
    std::fs::set_permissions(&energy, std::fs::Permissions::from_mode(0o400)).expect("chmod");
    let line = source_check_as_nobody(&dir, "powercap", "--sysfs-root", &dir.join("sys"));
    assert!(
        line.contains("energy_uj is readable by root only") && line.contains("run ergon as root"),
        "the problem and the fix: {line}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--source auto` on a machine with powercap zones but no perf power PMU
/// (the fixture tree has none): the daemon reads the zone, exports
/// `ergon_source_info{source="powercap"}`, and its log says what it passed
/// over and what it found.
#[test]
fn auto_picks_a_powercap_zone_over_the_model_and_says_why() {
    require_root();
    let (dir, energy, pre, d) = started("auto", "auto");
    let sys = dir.join("sys");
    let m = d.metrics();
    assert_eq!(
        m.get("ergon_source_info{source=\"powercap\",domain=\"pkg\"}"),
        Some(&1.0),
        "{m:?}"
    );
    assert!(
        !m.keys()
            .any(|k| k.starts_with("ergon_source_info{source=\"model\"")),
        "{m:?}"
    );
    // 0.5 s at 2 W: what is served is what the zone counted.
    written_is_served(&d, pre, &energy, 2_000, 500);
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    let chosen = tests::source_choice(&log);
    for want in [
        "no perf power PMU at",
        &format!(
            "powercap RAPL zones at {}",
            sys.join("class/powercap").display()
        ),
        "package-",
    ] {
        assert!(chosen.contains(want), "`{want}` in: {chosen}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A zone that stops counting while the daemon runs and its CPUs are busy
/// is a stall: counted in `ergon_energy_counter_stalls_total`, `/health`
/// unhealthy naming the zone, logged; once it counts again, healthy.
#[test]
fn a_zone_that_stops_while_its_cpus_are_busy_is_a_stall_and_health_says_so() {
    require_root();
    let (dir, energy, pre, d) = started("stall", "powercap");
    let _busy = tests::Busy::on(&tests::online_cpus());
    // From here the zone stands still.
    let at = pre.stop();
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "no {what} within 15 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    wait_for("stall", &|| {
        d.metrics()["ergon_energy_counter_stalls_total"] >= 1.0
    });
    let (code, body) = tests::http_get_status(&d.addr, "/health", &[]).expect("GET /health");
    println!("{code} {body}");
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("energy counter stalled") && body.contains("energy_uj"),
        "/health names the stalled zone: {body}"
    );
    // It counts again: healthy again, and still one stall counted.
    let again = preroll_from(&energy, at);
    wait_for("recovery", &|| {
        tests::http_get_status(&d.addr, "/health", &[]).is_some_and(|(c, _)| c == 200)
    });
    assert_eq!(d.metrics()["ergon_energy_counter_stalls_total"], 1.0);
    again.stop();
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("stopped advancing"),
        "the stall is logged: {log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
