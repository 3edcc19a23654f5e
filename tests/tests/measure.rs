//! `ergon measure -- CMD`: the command's joules against the declared
//! synthetic wattage and the command's own CPU time, exit codes, the 1 ms
//! CSV, the SVG, and Ctrl-C.

use std::{
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use tests::{ergon_bin, require_root, steal_seconds};

const WATTS: f64 = 10.0;

/// `ergon measure --source synthetic --synthetic-watts 10 --json EXTRA -- CMD`.
fn measure_cmd(extra: &[&str], cmd: &[&str]) -> Command {
    let mut c = Command::new(ergon_bin());
    c.args([
        "measure",
        "--source",
        "synthetic",
        "--synthetic-watts",
        "10",
        "--json",
    ])
    .args(extra)
    .arg("--")
    .args(cmd)
    .stderr(Stdio::piped());
    c
}

fn measure(extra: &[&str], cmd: &[&str]) -> (Output, serde_json::Value) {
    let out = measure_cmd(extra, cmd).output().expect("run ergon measure");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let v = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "not one JSON object ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, v)
}

fn f(v: &serde_json::Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

#[test]
fn a_two_second_busy_loop_gets_its_true_joules() {
    require_root();
    let steal0 = steal_seconds();
    let (out, v) = measure(&[], &[env!("CARGO_BIN_EXE_burn"), "2", "1.0"]);
    let steal = steal_seconds() - steal0;
    assert!(out.status.success(), "{v}");
    for k in [
        "elapsed_seconds",
        "package_joules",
        "command_joules",
        "average_watts",
        "peak_watts",
        "exit_code",
    ] {
        assert!(v.get(k).is_some(), "{k} missing: {v}");
    }
    let joules = f(&v, "command_joules");
    let cpu = f(&v, "command_cpu_seconds");
    eprintln!("measure: {joules:.3} J for {cpu:.3} s of CPU (steal {steal:.3} s): {v}");
    // Ground truth 1: the declared wattage × the command's own cpu.stat.
    let truth = WATTS * cpu;
    tests::assert_attributed("measure", joules, truth, 0.02, WATTS, steal);
    // Ground truth 2: 2 s at 100% of one CPU × 10 W = 20 J, within 5%.
    assert!(
        joules >= 0.95 * 20.0 - WATTS * steal && joules <= 1.05 * 20.0,
        "{joules} J vs 20 J"
    );
    assert!(
        f(&v, "package_joules") >= joules * 0.98,
        "the package holds the command: {v}"
    );
    let avg = f(&v, "average_watts");
    assert!((avg - joules / f(&v, "elapsed_seconds")).abs() < 1e-9);
    assert!(
        f(&v, "peak_watts") >= avg * 0.9 && f(&v, "peak_watts") <= WATTS * 1.3,
        "{v}"
    );
}

#[test]
fn the_command_exit_code_becomes_ours() {
    require_root();
    let (out, v) = measure(&[], &["sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(v["exit_code"], 3);
    let (out, _) = measure(&[], &["true"]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn csv_has_a_row_per_millisecond_and_the_svg_parses() {
    require_root();
    let dir = std::env::temp_dir().join(format!("ergon-measure-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let csv = dir.join("power.csv");
    let svg = dir.join("power.svg");
    let (out, v) = measure(
        &[
            "--csv",
            &csv.display().to_string(),
            "--plot",
            &svg.display().to_string(),
        ],
        &[env!("CARGO_BIN_EXE_burn"), "1", "0.5"],
    );
    assert!(out.status.success());
    let text = std::fs::read_to_string(&csv).expect("csv");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("time_ms,package_watts,command_watts"));
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|x| x.parse().expect("number")).collect())
        .collect();
    let ms = (f(&v, "elapsed_seconds") * 1000.0).round() as i64;
    assert!(
        (rows.len() as i64 - ms).abs() <= 5,
        "{} rows for {ms} ms",
        rows.len()
    );
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[0] as usize, i, "one row per millisecond");
    }
    // The rows add up to the command's joules (1 ms each).
    let sum: f64 = rows.iter().map(|r| r[2] / 1000.0).sum();
    assert!(
        (sum - f(&v, "command_joules")).abs() <= 0.02 * f(&v, "command_joules") + 0.01,
        "{sum} vs {v}"
    );
    let doc = std::fs::read_to_string(&svg).expect("svg");
    let parsed = roxmltree::Document::parse(&doc).expect("the SVG parses as XML");
    assert_eq!(parsed.root_element().tag_name().name(), "svg");
    assert!(doc.contains("command") && doc.contains("package"), "legend");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ctrl_c_is_forwarded_and_the_partial_result_printed() {
    require_root();
    let marker = std::env::temp_dir().join(format!("ergon-measure-running-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    // The command says when it runs, then sleeps (exec: SIGINT reaches sleep).
    let script = format!("touch {}; exec sleep 30", marker.display());
    let child = Command::new(ergon_bin())
        .args([
            "measure",
            "--source",
            "synthetic",
            "--json",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ergon measure");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the command never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().expect("wait");
    let _ = std::fs::remove_file(&marker);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "stopped soon after Ctrl-C"
    );
    let v: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim())
        .unwrap_or_else(|e| {
            panic!(
                "the partial result as JSON ({e}); stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert_eq!(v["exit_code"], 130, "sleep died of SIGINT: {v}");
    assert_eq!(out.status.code(), Some(130));
    assert!(
        f(&v, "elapsed_seconds") >= 0.4 && f(&v, "elapsed_seconds") < 10.0,
        "{v}"
    );
}

/// `ergon measure … --json` as a child process (for running several at once).
fn spawn_measure(extra: &[&str], cmd: &[&str]) -> std::process::Child {
    measure_cmd(extra, cmd)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start ergon measure")
}

fn command_joules(child: std::process::Child) -> f64 {
    let out = child.wait_with_output().expect("ergon measure");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    f(&v, "command_joules")
}

/// Waits until the daemon serves `runs` runs of `job`; returns its joules.
fn job_joules(d: &tests::Daemon, job: &str, runs: f64) -> f64 {
    let runs_key = format!("ergon_job_runs_total{{job=\"{job}\"}}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = d.metrics();
        if m.get(&runs_key) == Some(&runs) {
            return m[&format!("ergon_job_energy_joules_total{{job=\"{job}\"}}")];
        }
        assert!(
            Instant::now() < deadline,
            "{runs_key} never reached {runs}: {:?}",
            m.get(&runs_key)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn concurrent_recorded_jobs_are_all_counted_and_survive_a_restart() {
    require_root();
    let state = tempfile::tempdir().expect("tempdir");
    let dir = state.path().display().to_string();
    let d = tests::Daemon::start(&["--source", "synthetic", "--state-dir", &dir]);
    let burn = env!("CARGO_BIN_EXE_burn");
    let rec = ["--record-to", dir.as_str(), "--job", "nightly"];
    // Two recorders at once, and a third job name.
    let a = spawn_measure(&rec, &[burn, "1", "1.0"]);
    let b = spawn_measure(&rec, &[burn, "1", "0.5"]);
    let c = spawn_measure(
        &["--record-to", &dir, "--job", "hourly"],
        &[burn, "0.3", "1.0"],
    );
    let (ja, jb, jc) = (command_joules(a), command_joules(b), command_joules(c));
    println!("nightly runs: {ja:.3} J + {jb:.3} J; hourly: {jc:.3} J");
    let got = job_joules(&d, "nightly", 2.0);
    assert!(
        (got - (ja + jb)).abs() < 1e-9,
        "served {got} J, the two runs reported {ja} + {jb} J"
    );
    assert!((job_joules(&d, "hourly", 1.0) - jc).abs() < 1e-9);
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    // The totals are durable: a new daemon on the same state serves them.
    let d = tests::Daemon::start(&["--source", "synthetic", "--state-dir", &dir]);
    assert!((job_joules(&d, "nightly", 2.0) - (ja + jb)).abs() < 1e-9);
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn recording_to_a_directory_without_a_daemon_store_fails_before_the_command_runs() {
    require_root();
    let empty = tempfile::tempdir().expect("tempdir");
    let marker = empty.path().join("ran");
    let out = Command::new(ergon_bin())
        .args(["measure", "--source", "synthetic", "--record-to"])
        .arg(empty.path())
        .args(["--job", "nightly", "--", "touch"])
        .arg(&marker)
        .output()
        .expect("run ergon measure");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("ergon.redb") && err.contains("--state-dir"),
        "{err}"
    );
    assert!(!marker.exists(), "the command must not have run");
    // --job without --record-to is a usage error.
    let out = Command::new(ergon_bin())
        .args(["measure", "--job", "x", "--", "true"])
        .output()
        .expect("run ergon measure");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--record-to"));
}

/// `ergon measure -- sleep 1`, 50 times in a row on an otherwise idle
/// machine (the case where a CPU's timer is throttled and its records lag):
/// every result covers the whole command, `package_joules` within 1% of the
/// declared 10 W × CPUs × elapsed. A run that cannot cover its window must
/// fail rather than print a short result, so every run must also succeed.
#[test]
fn fifty_idle_measurements_are_never_short() {
    require_root();
    let cpus = tests::online_cpus().len() as f64;
    let mut worst: f64 = 0.0;
    for run in 1..=50 {
        let (out, v) = measure(&[], &["sleep", "1"]);
        assert!(
            out.status.success(),
            "run {run}: {v}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (pkg, secs) = (f(&v, "package_joules"), f(&v, "elapsed_seconds"));
        let want = WATTS * cpus * secs;
        let err = pkg / want - 1.0;
        worst = if err.abs() > worst.abs() { err } else { worst };
        assert!(
            err.abs() < 0.01,
            "run {run}: {pkg} J, want {want} J = {WATTS} W × {cpus} CPUs × {secs} s"
        );
        assert!(
            f(&v, "window_missing_seconds") <= 0.01 * secs,
            "run {run}: {v}"
        );
    }
    println!(
        "50 runs of `sleep 1`: worst {:+.3}% off W × CPUs × elapsed",
        worst * 100.0
    );
}
