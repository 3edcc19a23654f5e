//! Test cgroups under the cgroup2 hierarchy, with their `cpu.stat` as
//! ground truth.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::Daemon;

/// A cgroup under the cgroup2 hierarchy, removed on drop.
pub struct Cgroup {
    pub path: PathBuf,
    /// The path as Ergon labels it (`/ergon-test-<pid>-<name>`).
    pub rel: String,
    /// Parents made for it ([`Cgroup::at`]), innermost first, removed after it.
    parents: Vec<PathBuf>,
    /// Made by the test (removed on drop), not by someone else.
    owned: bool,
}

fn cgroup2_root() -> &'static Path {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .map(Path::new)
        .find(|p| p.join("cgroup.procs").exists() && p.join("cgroup.stat").exists())
        .expect("a cgroup2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified")
}

impl Cgroup {
    pub fn new(name: &str) -> Cgroup {
        let rel = format!("/ergon-test-{}-{name}", std::process::id());
        let path = cgroup2_root().join(&rel[1..]);
        std::fs::create_dir(&path).expect("create test cgroup");
        Cgroup {
            path,
            rel,
            parents: Vec::new(),
            owned: true,
        }
    }

    /// The cgroup at `rel` that someone else made (a container runtime):
    /// read, never removed.
    pub fn existing(rel: &str) -> Cgroup {
        let path = cgroup2_root().join(rel.trim_start_matches('/'));
        assert!(path.is_dir(), "no cgroup at {}", path.display());
        Cgroup {
            path,
            rel: rel.to_owned(),
            parents: Vec::new(),
            owned: false,
        }
    }

    /// A cgroup at `rel` (e.g. `/x.slice/docker-<id>.scope`, shaped as a
    /// runtime names its cgroups), its missing parents made too.
    pub fn at(rel: &str) -> Cgroup {
        let root = cgroup2_root();
        let path = root.join(rel.trim_start_matches('/'));
        let mut parents = Vec::new();
        let mut p = path.parent();
        while let Some(dir) = p.filter(|d| *d != root && !d.exists()) {
            parents.push(dir.to_path_buf());
            p = dir.parent();
        }
        std::fs::create_dir_all(&path).expect("create test cgroup");
        Cgroup {
            path,
            rel: rel.to_owned(),
            parents,
            owned: true,
        }
    }

    pub fn usage_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(self.path.join("cpu.stat")).expect("cpu.stat");
        stat.lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .expect("usage_usec in cpu.stat")
            * 1e-6
    }

    /// Starts the `burn` test workload (its path: `env!("CARGO_BIN_EXE_burn")`) in this cgroup.
    pub fn burn(&self, bin: &str, seconds: f64, duty: f64) -> std::process::Child {
        Command::new(bin)
            .args([seconds.to_string(), duty.to_string()])
            .arg(&self.path)
            .spawn()
            .expect("start burn")
    }

    /// Runs `n` processes of `seconds` of the `burn` workload one after
    /// another in this cgroup, started by a parent inside it, as a container
    /// or a systemd scope starts them (a process that moves itself in is
    /// counted a little differently by `cpu.stat`: docs/attribution.md).
    pub fn run_one_after_another(&self, bin: &str, n: u32, seconds: f64) {
        let status = Command::new("sh")
            .arg("-c")
            .arg(r#"echo 0 > "$1/cgroup.procs" && i=0 && while [ $i -lt "$3" ]; do "$2" "$4" 1 || exit 1; i=$((i+1)); done"#)
            .arg("sh")
            .arg(&self.path)
            .arg(bin)
            .arg(n.to_string())
            .arg(seconds.to_string())
            .status()
            .expect("run the processes");
        assert!(status.success(), "the processes ran: {status}");
    }

    /// Burns one CPU in this cgroup for 2 s (`burn`: the `burn` binary's
    /// path) while `d` runs a synthetic source of `watts` per CPU, then
    /// asserts the package energy is served and the cgroup's joules are
    /// within 2% of `watts` × its `cpu.stat` ([`crate::assert_attributed`]:
    /// plus what the host stole meanwhile only where steal is not told
    /// apart); prints the figures
    /// after `what`.
    pub fn burns_within_2_percent(&self, d: &Daemon, burn: &str, watts: f64, what: &str) {
        let steal0 = crate::steal_seconds();
        let mut child = self.burn(burn, 2.0, 1.0);
        assert!(child.wait().expect("wait").success());
        let (m, _) = d.metrics_complete_at(std::time::SystemTime::now());
        let stolen = crate::steal_seconds() - steal0;
        let pkg = crate::sum_of(&m, "ergon_package_energy_joules_total");
        let truth = watts * self.usage_seconds();
        let got = self.joules(d);
        println!(
            "{what}: package {pkg:.3} J; {}: {got:.4} J vs W × cpu.stat {truth:.4} J (steal {stolen:.3} s)",
            self.rel
        );
        assert!(pkg > 0.0, "package energy served: {m:?}");
        assert!(truth > 1.0, "the cgroup ran: {truth} J");
        crate::assert_attributed(&self.rel, got, truth, 0.02, watts, stolen);
    }

    pub fn joules(&self, d: &Daemon) -> f64 {
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
        if !self.owned {
            return;
        }
        // A task that just exited can keep its cgroup busy for a moment.
        for dir in std::iter::once(&self.path).chain(&self.parents) {
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
