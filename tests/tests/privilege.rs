//! Least privilege, for real: the daemon as a non-root user holding only
//! `CAP_BPF` and `CAP_PERFMON` (`setpriv`, util-linux), and under a seccomp
//! filter that refuses `bpf(2)` the way a container runtime's default
//! profile does (EPERM), where `ergon check` and `ergon run` must name the
//! profile to use.

use std::{
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::PathBuf,
    process::Command,
};

use tests::{cgroup::Cgroup, check_line, ergon_bin, ergon_copy_in, require_root, Daemon};

const W: f64 = 10.0;

/// A copy of the binary in a directory `nobody` can enter (a fresh
/// `mktemp -d` clone sits in one only root can), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("ergon-priv-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        ergon_copy_in(&dir);
        Scratch(dir)
    }

    /// `setpriv` running the copy as `nobody` with CAP_BPF and CAP_PERFMON
    /// as its only capabilities (ambient, so they survive the exec; the
    /// bounding set holds nothing else).
    fn as_nobody_with_bpf_and_perfmon(&self) -> Command {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all,+bpf,+perfmon",
            "--ambient-caps=-all,+bpf,+perfmon",
            "--bounding-set=-all,+bpf,+perfmon",
        ])
        .arg(self.0.join("ergon"))
        .current_dir(&self.0);
        c
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn as_nobody_with_only_cap_bpf_and_cap_perfmon_it_serves_package_and_cgroup_energy() {
    require_root();
    let scratch = Scratch::new("caps");
    // The check first: it passes, and says what CAP_SYS_ADMIN would add.
    let out = scratch
        .as_nobody_with_bpf_and_perfmon()
        .arg("check")
        .output()
        .expect("run setpriv (util-linux)");
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    assert!(out.status.success(), "ergon check as nobody: {report}");
    let line = |item: &str| check_line(&report, item);
    assert!(
        line("privileges").starts_with("ok")
            && line("privileges").contains("CAP_BPF=true CAP_PERFMON=true CAP_SYS_ADMIN=false"),
        "{report}"
    );
    assert!(line("bpf").contains("CAP_SYS_ADMIN absent"), "{report}");
    assert!(line("programs").starts_with("ok"), "{report}");

    let d = Daemon::start_command(
        scratch.as_nobody_with_bpf_and_perfmon(),
        &["--source", "synthetic", "--synthetic-watts", "10"],
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).expect("status");
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap_or_default()
        .to_owned();
    let caps = status
        .lines()
        .find(|l| l.starts_with("CapEff:"))
        .unwrap_or_default()
        .to_owned();
    println!("{uid}; {caps}");
    assert!(
        uid.split_whitespace().nth(2) == Some("65534"),
        "runs as nobody: {uid}"
    );
    // CAP_PERFMON (38) and CAP_BPF (39): 0xc0_0000_0000.
    assert_eq!(
        caps.split_whitespace().nth(1),
        Some("000000c000000000"),
        "{caps}"
    );
    Cgroup::new("nobody").burns_within_2_percent(&d, env!("CARGO_BIN_EXE_burn"), W, "as nobody");
}

/// Installs, in the child before it execs, a seccomp filter that answers
/// `bpf(2)` with EPERM and allows everything else: what podman's and
/// docker's default profiles do without CAP_SYS_ADMIN (measured in the
/// issue: `failed to create map CTR_PKG: Operation not permitted`).
fn refuse_bpf(cmd: &mut Command) {
    // SAFETY: only async-signal-safe prctl calls between fork and exec; the
    // filter array outlives the call that copies it into the kernel.
    unsafe {
        cmd.pre_exec(|| {
            let stmt = |code: u32, k: u32| libc::sock_filter {
                code: code as u16,
                jt: 0,
                jf: 0,
                k,
            };
            let mut filter = [
                // A = seccomp_data.nr
                stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
                // nr == bpf ? next : skip one
                libc::sock_filter {
                    code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                    jt: 0,
                    jf: 1,
                    k: libc::SYS_bpf as u32,
                },
                stmt(
                    libc::BPF_RET | libc::BPF_K,
                    libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
                ),
                stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
            ];
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_mut_ptr(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn under_a_seccomp_filter_refusing_bpf_check_and_run_name_the_profile_to_use() {
    require_root();
    let mut check = Command::new(ergon_bin());
    check.arg("check");
    refuse_bpf(&mut check);
    let out = check.output().expect("run ergon check");
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    assert!(!out.status.success(), "the check fails: {report}");
    let programs = check_line(&report, "programs");
    assert!(
        programs.starts_with("FAIL")
            && programs.contains("a seccomp profile refuses bpf(2)")
            && programs.contains("deploy/seccomp/ergon.json"),
        "{programs}"
    );
    assert!(
        report.lines().any(|l| l.starts_with("info  seccomp")),
        "the filter is reported: {report}"
    );

    let mut run = Command::new(ergon_bin());
    run.args(["run", "--source", "synthetic", "--listen", "127.0.0.1:0"]);
    refuse_bpf(&mut run);
    let out = run.output().expect("run ergon run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "ergon run fails: {err}");
    assert!(
        err.contains("a seccomp profile refuses bpf(2)")
            && err.contains("deploy/seccomp/ergon.json"),
        "{err}"
    );
}
