//! The systemd unit and its sample configuration, checked with Debian's
//! systemd tools: `systemd-analyze verify` accepts the unit, and
//! `systemd-analyze security` rates its exposure (printed, and held at or
//! below the level measured when it was written, 1.8 of 10, "OK"). These
//! machines do not run systemd as PID 1, so the unit is verified, not
//! started; the privileges it grants are the ones `tests/privilege.rs`
//! runs the daemon with for real.

use std::{path::Path, process::Command};

use tests::ergon_bin;

/// The unit with its `ExecStart` pointing at the binary under test (verify
/// checks that the command exists).
fn unit_under_test(dir: &Path) -> std::path::PathBuf {
    let unit = std::fs::read_to_string(tests::repo_root().join("deploy/systemd/ergon.service"))
        .expect("unit");
    assert!(unit.contains("ExecStart=/usr/local/bin/ergon run --config /etc/ergon.toml"));
    let path = dir.join("ergon.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/ergon", &ergon_bin().display().to_string()),
    )
    .expect("write unit");
    path
}

#[test]
fn the_systemd_unit_verifies_and_its_exposure_stays_low() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_under_test(dir.path());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("run systemd-analyze (Debian's systemd)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "verify: {err}"
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    let level: f64 = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for ergon.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {text}"));
    println!("systemd-analyze security: exposure {level} of 10");
    for l in text.lines().filter(|l| l.starts_with('✗')) {
        println!("{l}");
    }
    assert!(
        level <= 1.8,
        "exposure {level} above the 1.8 measured: {text}"
    );
    let unit = std::fs::read_to_string(tests::repo_root().join("deploy/systemd/ergon.service"))
        .expect("unit");
    for line in [
        "AmbientCapabilities=CAP_BPF CAP_PERFMON",
        "CapabilityBoundingSet=CAP_BPF CAP_PERFMON",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=ergon",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @resources",
        "SystemCallFilter=bpf perf_event_open",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit sets {line}");
    }
}

/// The sample `/etc/ergon.toml` is a valid configuration (unknown keys
/// are errors, so a stale sample would fail here).
#[test]
fn the_sample_config_is_accepted() {
    let out = Command::new(ergon_bin())
        .args(["check", "--config"])
        .arg(tests::repo_root().join("deploy/systemd/ergon.toml"))
        .output()
        .expect("run ergon check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("error: "),
        "the sample config is refused: {err}"
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("ergon run can"), "{report}{err}");
}

/// The system calls of a systemd group (`systemd-analyze syscall-filter`),
/// nested groups expanded.
fn syscall_group(group: &str) -> std::collections::BTreeSet<String> {
    let out = Command::new("systemd-analyze")
        .args(["syscall-filter", group])
        .output()
        .expect("run systemd-analyze syscall-filter");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut names = std::collections::BTreeSet::new();
    for l in text.lines().skip(1).map(str::trim) {
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if l.starts_with('@') {
            if l != group {
                names.extend(syscall_group(l));
            }
        } else {
            names.insert(l.to_owned());
        }
    }
    names
}

/// Every system call the daemon makes while it samples, serves all three
/// endpoints, commits its state and tries to push (strace, the whole
/// process tree) is in the set the unit's `SystemCallFilter=` lines allow,
/// computed from them with systemd's own group definitions.
#[test]
fn every_system_call_the_daemon_makes_is_in_the_units_filter() {
    tests::require_root();
    let unit = std::fs::read_to_string(tests::repo_root().join("deploy/systemd/ergon.service"))
        .expect("unit");
    let mut allowed = std::collections::BTreeSet::new();
    for value in unit
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
    {
        let (deny, list) = match value.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, value),
        };
        for item in list.split_whitespace() {
            let set = if item.starts_with('@') {
                syscall_group(item)
            } else {
                std::iter::once(item.to_owned()).collect()
            };
            if deny {
                allowed.retain(|n| !set.contains(n));
            } else {
                allowed.extend(set);
            }
        }
    }
    assert!(allowed.contains("bpf") && allowed.contains("perf_event_open"));
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("trace");
    let port = tests::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .arg(ergon_bin())
        .args(["run", "--source", "synthetic", "--listen", &addr])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--fsync-interval", "200ms", "--push-interval", "1s"])
        .args([
            "--remote-write-url",
            &format!("http://127.0.0.1:{}/api/v1/write", tests::free_port()),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run strace (Debian's strace; `cargo xtask test` installs it)");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while tests::http_get(&addr, "/metrics").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "ergon under strace did not serve"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    for path in ["/metrics", "/metrics/batch?consumer=strace", "/health"] {
        let _ = tests::http_get_status(&addr, path, &[]);
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    // strace blocks fatal signals while it runs a command (`-o FILE PROG`
    // means `-I3`): stop the daemon itself, strace's child.
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()))
        .expect("strace's children");
    let daemon: i32 = children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the daemon under strace");
    // SAFETY: signalling our own grandchild by pid.
    unsafe { libc::kill(daemon, libc::SIGTERM) };
    let _ = child.wait();
    let text = std::fs::read_to_string(&trace).expect("trace");
    let used: std::collections::BTreeSet<String> = text
        .lines()
        .filter_map(|l| {
            let call = l.split_whitespace().nth(1)?;
            let name = call.split('(').next()?;
            (call.contains('(')
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .then(|| name.to_owned())
        })
        .collect();
    println!("{} distinct system calls: {used:?}", used.len());
    assert!(
        used.contains("bpf") && used.contains("perf_event_open"),
        "{used:?}"
    );
    let outside: Vec<_> = used.difference(&allowed).collect();
    assert!(
        outside.is_empty(),
        "calls the unit's filter refuses: {outside:?}"
    );
}
