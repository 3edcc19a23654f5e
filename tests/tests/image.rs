//! The container image (`cargo xtask image`, which `cargo xtask test`
//! builds and names in `ERGON_IMAGE`) run for real with podman and runc,
//! with the least privilege docs/deploy.md gives: every capability dropped
//! but CAP_BPF and CAP_PERFMON, the shipped seccomp profile, a read-only
//! root filesystem and the cgroup tree mounted read-only. Podman's default
//! crun refuses hybrid-cgroup hosts and its default ulimits exceed this
//! sandbox's hard limits, hence `--runtime runc` and a containers.conf with
//! `default_ulimits = []`.

use std::{path::Path, process::Command};

use tests::{
    cgroup::Cgroup,
    check_line,
    podman::{image, Podman},
    require_root, Daemon,
};

const W: f64 = 10.0;

/// A `podman run` of the image under `name`, removed (`podman rm -f`) on drop.
struct Container {
    name: String,
    podman: Podman,
}

impl Container {
    fn new(tag: &str) -> Container {
        Container {
            name: format!("ergon-test-{tag}-{}", std::process::id()),
            podman: Podman::new(),
        }
    }

    /// `podman run` with the documented privileges and `seccomp` as the
    /// profile (`None`: the runtime's default); the image's arguments follow.
    fn run(&self, seccomp: Option<&Path>) -> Command {
        let mut c = self.podman.command();
        c.args(["run", "--rm", "--name", &self.name, "--runtime", "runc"])
            .args(["--network", "host", "--pid", "host", "--cgroupns", "host"])
            .args(["--cap-drop", "all", "--cap-add", "bpf,perfmon"])
            .args(["--read-only", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro"]);
        if let Some(p) = seccomp {
            c.arg("--security-opt")
                .arg(format!("seccomp={}", p.display()));
        }
        c.arg(image());
        c
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self
            .podman
            .command()
            .args(["rm", "-f", "-t", "0", &self.name])
            .output();
    }
}

#[test]
fn the_image_with_the_shipped_profile_serves_package_and_cgroup_energy() {
    require_root();
    let profile = tests::repo_root().join("deploy/seccomp/ergon.json");
    let c = Container::new("serve");
    let d = Daemon::start_command(
        c.run(Some(&profile)),
        &["--source", "synthetic", "--synthetic-watts", "10"],
    );
    Cgroup::new("image").burns_within_2_percent(
        &d,
        env!("CARGO_BIN_EXE_burn"),
        W,
        "in the container",
    );
    let (status, log) = d.stop();
    assert!(status.success(), "{status}: {log}");
}

#[test]
fn under_the_runtime_default_profile_check_names_the_profile_to_use() {
    require_root();
    let c = Container::new("default");
    let out = c.run(None).arg("check").output().expect("podman run");
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    assert!(!out.status.success(), "the check fails: {report}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let programs = check_line(&report, "programs");
    assert!(
        programs.contains("a seccomp profile refuses bpf(2)")
            && programs.contains("deploy/seccomp/ergon.json"),
        "{programs}"
    );
    // With the shipped profile the same check passes.
    let c = Container::new("profile");
    let out = c
        .run(Some(&tests::repo_root().join("deploy/seccomp/ergon.json")))
        .arg("check")
        .output()
        .expect("podman run");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
}

/// The shipped profile is the runtime's default (podman's, from Debian's
/// containers-common) with exactly `bpf` and `perf_event_open` allowed.
#[test]
fn the_shipped_profile_is_the_runtime_default_plus_bpf_and_perf_event_open() {
    let default = Path::new("/usr/share/containers/seccomp.json");
    let read = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).expect("read profile")).expect("JSON")
    };
    assert!(
        default.exists(),
        "{} missing: `cargo xtask test` installs podman, which brings it",
        default.display()
    );
    // Every (syscall, action, conditions) the profile allows or refuses.
    let rules = |v: &serde_json::Value| {
        let mut out = std::collections::BTreeSet::new();
        for s in v["syscalls"].as_array().expect("syscalls") {
            let mut cond = s.clone();
            cond.as_object_mut().expect("object").remove("names");
            cond.as_object_mut().expect("object").remove("comment");
            for n in s["names"].as_array().expect("names") {
                out.insert((n.as_str().expect("name").to_owned(), cond.to_string()));
            }
        }
        out
    };
    let ours = read(&tests::repo_root().join("deploy/seccomp/ergon.json"));
    let theirs = read(default);
    assert_eq!(ours["defaultAction"], theirs["defaultAction"]);
    let (ours_r, theirs_r) = (rules(&ours), rules(&theirs));
    let added: Vec<_> = ours_r.difference(&theirs_r).collect();
    let removed: Vec<_> = theirs_r
        .difference(&ours_r)
        .map(|(n, _)| n.as_str())
        .collect();
    let added_names: Vec<_> = added.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(added_names, ["bpf", "perf_event_open"], "{added:?}");
    assert!(
        added
            .iter()
            .all(|(_, c)| c.contains("SCMP_ACT_ALLOW") && c.contains("\"includes\":{}")),
        "allowed unconditionally: {added:?}"
    );
    // Only the default's capability-gated rules for those two are gone.
    assert!(
        removed
            .iter()
            .all(|n| *n == "bpf" || *n == "perf_event_open"),
        "{removed:?}"
    );
}
