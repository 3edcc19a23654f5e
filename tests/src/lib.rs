//! Helpers for the privileged end-to-end tests in `tests/`: they load the real
//! kernel programs, so they run as root (`cargo xtask test` runs them with
//! `--test-threads=1`). A test that cannot run fails with the reason: every
//! development and CI machine here has root, BTF and a 5.8+ kernel.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

pub mod cgroup;
pub mod fixture;
pub mod kubelet;
pub mod podman;
pub mod prom;

/// Fails the test (with the reason) unless we are root.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test loads BPF programs and needs root (CAP_BPF, CAP_PERFMON); run `cargo xtask test` as root"
    );
}

/// Runs kubernetes-validate (`ERGON_KUBERNETES_VALIDATE`, fetched by
/// `cargo xtask test` from PyPI) as `python3 ARGS FILE`, `text` written to
/// `FILE` (named `name`); returns whether it passed and its report.
pub fn kubernetes_validate(args: &[&str], name: &str, text: &str) -> (bool, String) {
    let tool = std::env::var_os("ERGON_KUBERNETES_VALIDATE").unwrap_or_else(|| {
        panic!("ERGON_KUBERNETES_VALIDATE is not set: run the tests with `cargo xtask test`, which fetches kubernetes-validate")
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(name);
    std::fs::write(&file, text).expect("write");
    let out = Command::new("python3")
        .args(args)
        .arg(&file)
        .env("PYTHONPATH", tool)
        .output()
        .expect("run kubernetes-validate");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), report)
}

/// The repository's root (for the files under `deploy/`).
pub fn repo_root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
        .to_path_buf()
}

/// A copy of the binary under test as `dir/ergon`, mode 0755: for running
/// it as another user from a directory that user can enter (the build tree
/// may sit in one only root can, as a fresh `mktemp -d` clone does).
pub fn ergon_copy_in(dir: &std::path::Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("ergon");
    std::fs::copy(ergon_bin(), &bin).expect("copy ergon");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    bin
}

/// The `ergon` binary under test (`ERGON_BIN`, set by xtask).
pub fn ergon_bin() -> PathBuf {
    std::env::var_os("ERGON_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/release/ergon"
            ))
        })
}

pub fn online_cpus() -> Vec<u32> {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/online").expect("read online cpus");
    let mut out = Vec::new();
    for part in s.trim().split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                out.extend(a.parse::<u32>().expect("cpu")..=b.parse::<u32>().expect("cpu"))
            }
            None => out.push(part.parse().expect("cpu")),
        }
    }
    out
}

/// A port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// Makes a fixture tree readable by everyone, whatever the umask it was
/// made under: directories 0755, files 0644.
pub fn world_readable(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => world_readable(&e.path()),
            Ok(t) if t.is_file() => {
                std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o644))
                    .expect("chmod");
            }
            _ => {}
        }
    }
}

/// `ergon check --source SOURCE ROOT_FLAG ROOT` run as the unprivileged
/// user `nobody`: a copy of the binary in `scratch`, a directory `nobody`
/// can enter (the build tree may sit in one only root can, as a fresh
/// `mktemp -d` clone does). Asserts that the check fails and that its
/// `--source` line says FAIL; returns that line.
pub fn source_check_as_nobody(
    scratch: &std::path::Path,
    source: &str,
    root_flag: &str,
    root: &std::path::Path,
) -> String {
    use std::os::unix::process::CommandExt;
    let out = Command::new(ergon_copy_in(scratch))
        .args(["check", "--source", source, root_flag])
        .arg(root)
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run ergon check as nobody");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "ergon check must fail: {report}");
    let line = check_line(&report, "--source");
    println!("{line}");
    assert!(line.starts_with("FAIL"), "{line}");
    line.to_owned()
}

/// The line of an `ergon check` report whose item (second column) is
/// `item`: `programs`, `--source`, or the first word of a two-word item
/// (`bpf` for `bpf stats`).
pub fn check_line<'a>(report: &'a str, item: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(item))
        .unwrap_or_else(|| panic!("no {item} line in: {report}"))
}

/// The daemon log's `energy source chosen` line (the source and why).
pub fn source_choice(log: &str) -> &str {
    log.lines()
        .find(|l| l.contains("energy source chosen"))
        .unwrap_or_else(|| panic!("the choice is logged: {log}"))
}

/// A running `ergon run`, killed on drop. Its stderr is read continuously
/// by a thread (a pipe nobody reads would block a chatty daemon).
pub struct Daemon {
    pub child: Child,
    pub addr: String,
    log: Option<JoinHandle<String>>,
}

/// Reads a child's stderr to the end on a thread.
fn collect(child: &mut Child) -> Option<JoinHandle<String>> {
    let mut pipe = child.stderr.take()?;
    Some(std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }))
}

impl Daemon {
    /// Starts `ergon run ARGS --listen 127.0.0.1:<free>` and waits for `/metrics`.
    pub fn start(args: &[&str]) -> Daemon {
        Self::start_with(&ergon_bin(), args)
    }

    /// [`Daemon::start`] with a given `ergon` binary.
    pub fn start_with(bin: &std::path::Path, args: &[&str]) -> Daemon {
        Self::start_command(Command::new(bin), args)
    }

    /// [`Daemon::start`] through `cmd`, which runs the binary (e.g.
    /// `setpriv … ergon`): `run ARGS --listen …` are appended to it.
    pub fn start_command(mut cmd: Command, args: &[&str]) -> Daemon {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut child = cmd
            .arg("run")
            .args(args)
            .args(["--listen", &addr])
            .env("ERGON_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ergon (build it with `cargo xtask build`)");
        let log = collect(&mut child);
        let mut d = Daemon { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(body) = http_get(&d.addr, "/metrics") {
                // Serving, and the attribution books have started.
                let m = parse_metrics(&body);
                if m.get("ergon_books_timestamp_seconds")
                    .copied()
                    .unwrap_or(0.0)
                    > 0.0
                {
                    return d;
                }
            }
            if let Ok(Some(status)) = d.child.try_wait() {
                let err = d.log.take().and_then(|h| h.join().ok()).unwrap_or_default();
                panic!("ergon exited early ({status}):\n{err}");
            }
            assert!(
                Instant::now() < deadline,
                "ergon did not serve /metrics within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `/metrics`, parsed. Every scrape also asserts that no record has
    /// contradicted a closure of a silent CPU's timeline
    /// (`ergon_idle_closure_corrections_total`): the daemon closes them
    /// from a consistent copy of the kernel's state, without guessing, so
    /// every privileged test that scrapes checks it.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let body = http_get(&self.addr, "/metrics").expect("GET /metrics");
        let m = parse_metrics(&body);
        let corrections = m
            .get("ergon_idle_closure_corrections_total")
            .copied()
            .unwrap_or(0.0);
        assert_eq!(
            corrections, 0.0,
            "a record contradicted {corrections} closures of a silent CPU's timeline (ergon_idle_closure_corrections_total)"
        );
        m
    }

    /// The metrics once the daemon's books are complete past `instant`
    /// (`ergon_books_timestamp_seconds`, the attribution frontier), so every
    /// energy series includes all that happened before it (for a polled
    /// source, see [`Daemon::settled_sum`]). The frontier trails
    /// real time by the slowest CPU's last event, which a loaded machine can
    /// hold back for a while: waiting for it, rather than a fixed sleep, is
    /// what makes an exact comparison with ground truth sound. Returns the
    /// metrics and how long the books took to pass `instant`.
    pub fn metrics_complete_at(&self, instant: SystemTime) -> (BTreeMap<String, f64>, Duration) {
        let want = instant
            .duration_since(UNIX_EPOCH)
            .expect("after the epoch")
            .as_secs_f64();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let m = self.metrics();
            let books = m
                .get("ergon_books_timestamp_seconds")
                .copied()
                .unwrap_or(0.0);
            if books > want {
                let late = SystemTime::now()
                    .duration_since(instant)
                    .unwrap_or_default();
                return (m, late);
            }
            assert!(
                Instant::now() < deadline,
                "the books stayed at {books:.3}, {:.3} s before the instant waited for \
                 (last drain at {:?})",
                want - books,
                m.get("ergon_last_drain_timestamp_seconds")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The sum of the `name` series once a polled counter has stopped
    /// moving (its writer finished before `after`), with how long the books
    /// took to pass `after`.
    ///
    /// The books passing `after` is not enough for a polled source: between
    /// two polls the books interpolate, so at a frontier between the last
    /// poll before the final write and the first one after it they hold
    /// only part of the last interval's energy (CI saw 14 mJ of 15 J
    /// missing 21 ms after the last write). Polls are not visible from
    /// here, but the total at two frontiers both inside that interval
    /// differs, and at two frontiers past its end it is the same: so this
    /// waits until two successive frontiers (each past the wall time the
    /// previous wait ended at, hence distinct) give the same total. A lost
    /// or doubled wrap settles too, at the wrong value, for the caller's
    /// assertion to catch.
    pub fn settled_sum(&self, name: &str, after: SystemTime) -> (f64, Duration) {
        let (m, late) = self.metrics_complete_at(after);
        let mut prev = sum_of(&m, name);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (m, _) = self.metrics_complete_at(SystemTime::now());
            let now = sum_of(&m, name);
            if now == prev {
                return (now, late);
            }
            assert!(
                Instant::now() < deadline,
                "{name} still moved after 20 s ({prev} then {now}) with nothing writing"
            );
            prev = now;
        }
    }

    /// Asserts that the package energy served, once settled after a writer
    /// of a polled counter has just finished ([`Self::settled_sum`]), is
    /// `written` joules to the microjoule (`what` says how it was written);
    /// prints how long the books took to pass the last write.
    pub fn serves_written_package_energy(&self, written: f64, what: &str) {
        let (served, late) = self.settled_sum(PACKAGE_ENERGY, SystemTime::now());
        println!("the books passed the last write {late:?} after it");
        assert!(
            (served - written).abs() < 1e-6,
            "{served} J booked, {written} J written{what}"
        );
    }

    /// Sends SIGTERM and waits; returns (exit status, stderr).
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("wait for ergon");
        let err = self
            .log
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        (status, err)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 GET (no client library needed for one request):
/// the body of a 200 answer, de-chunked.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    let (status, body) = http_get_status(addr, path, &[])?;
    (status == 200).then_some(body)
}

/// GET with extra headers: (status code, body).
pub fn http_get_status(addr: &str, path: &str, headers: &[(&str, &str)]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let buf = String::from_utf8(buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Some((status, body))
}

fn dechunk(mut rest: &str) -> Option<String> {
    let mut out = String::with_capacity(rest.len());
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let n = usize::from_str_radix(size.trim(), 16).ok()?;
        if n == 0 {
            return Some(out);
        }
        out.push_str(after.get(..n)?);
        rest = after.get(n + 2..)?;
    }
}

/// `name{labels} value` lines → map from `name{labels}` to value.
pub fn parse_metrics(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// Sum of the values of every series of `name`.
/// Every package's energy, all domains (a fixture source has only `pkg`).
pub const PACKAGE_ENERGY: &str = "ergon_package_energy_joules_total";

pub fn sum_of(m: &BTreeMap<String, f64>, name: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| k.as_str() == name || k.starts_with(&format!("{name}{{")))
        .map(|(_, v)| v)
        .sum()
}

/// The base domain's (`pkg`) package energy served, all packages.
pub fn pkg_joules(m: &BTreeMap<String, f64>) -> f64 {
    m.iter()
        .filter(|(k, _)| {
            k.starts_with("ergon_package_energy_joules_total{") && k.contains("domain=\"pkg\"")
        })
        .map(|(_, v)| v)
        .sum()
}

/// What the package energy is split into: Σ cgroups + idle + unattributed
/// (steal, irq); every snapshot has it equal to [`pkg_joules`].
pub fn booked_joules(m: &BTreeMap<String, f64>) -> f64 {
    sum_of(m, "ergon_cgroup_energy_joules_total")
        + sum_of(m, "ergon_idle_energy_joules_total")
        + sum_of(m, "ergon_unattributed_energy_joules_total")
}

/// Threads spinning on the given CPUs until dropped.
pub struct Busy {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Busy {
    pub fn on(cpus: &[u32]) -> Busy {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = cpus
            .iter()
            .map(|&cpu| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    pin_to(cpu);
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        Busy { stop, threads }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Pins the calling thread to one CPU.
pub fn pin_to(cpu: u32) {
    // SAFETY: cpu_set_t is plain data; CPU_SET indexes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        let r = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(r, 0, "sched_setaffinity to cpu {cpu} failed");
    }
}

/// The aggregate `cpu` line of `/proc/stat` in seconds: user, nice, system,
/// idle, iowait, irq, softirq, steal, …
pub fn proc_stat_cpu_seconds() -> Vec<f64> {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    stat.lines()
        .find(|l| l.starts_with("cpu "))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse::<f64>().ok())
                .map(|ticks| ticks / hz)
                .collect()
        })
        .unwrap_or_default()
}

/// Hypervisor steal time so far, all CPUs, in seconds (`/proc/stat`, in
/// ticks of 10 ms).
///
/// Where the programs cannot tell steal apart ([`steal_booked_apart`]),
/// their spans include time the host took from a running vCPU while
/// `cpu.stat` leaves it out: over-attribution up to W × the steal during a
/// test is that difference. On bare metal it is 0.
pub fn steal_seconds() -> f64 {
    proc_stat_cpu_seconds().get(7).copied().unwrap_or(0.0)
}

/// Whether the kernel programs book steal time apart on this kernel (what
/// the daemon probes: `rq.prev_steal_time_rq` in its BTF,
/// [`ergon::kernel_layout`]); where they do, a cgroup's spans are on the
/// scheduler's clock, the one `cpu.stat` counts in.
pub fn steal_booked_apart() -> bool {
    ergon::kernel_layout::rq_layout(std::path::Path::new(ergon::kernel_layout::KERNEL_BTF))
        .is_ok_and(|l| l.rq_steal != 0)
}

/// Asserts that `what` was attributed `got` J against its ground truth
/// `truth` J: within `tol` (a fraction) each way. On a kernel whose steal
/// time the programs cannot tell apart ([`steal_booked_apart`]) the spans
/// count it and `cpu.stat` does not, so `watts` × `stolen` s (what the host
/// stole meanwhile, [`steal_seconds`]) is allowed above; where they can,
/// nothing is.
pub fn assert_attributed(what: &str, got: f64, truth: f64, tol: f64, watts: f64, stolen: f64) {
    let pct = tol * 100.0;
    let allowance = if steal_booked_apart() {
        0.0
    } else {
        eprintln!("{what}: this kernel's steal time is not told apart (no rq.prev_steal_time_rq in its BTF): {stolen} s × {watts} W allowed above");
        watts * stolen
    };
    assert!(
        got >= truth * (1.0 - tol),
        "{what}: {got} J is more than {pct}% below {truth} J"
    );
    assert!(
        got <= truth * (1.0 + tol) + allowance,
        "{what}: {got} J is above {truth} J by more than {pct}% (plus {allowance} J for the {stolen} s the host stole where it is not told apart)"
    );
}

/// Every online CPU with its package id, from sysfs.
pub fn cpu_packages() -> Vec<(u32, String)> {
    online_cpus()
        .into_iter()
        .map(|c| {
            let src = format!("/sys/devices/system/cpu/cpu{c}/topology/physical_package_id");
            let id = std::fs::read_to_string(&src).expect("package id");
            (c, id.trim().to_string())
        })
        .collect()
}

/// Calls `step(i)` for `i` in `0..ms`, one call per millisecond of wall
/// time (a writer standing in for hardware that counts).
pub fn every_ms(ms: u64, mut step: impl FnMut(u64)) {
    let t0 = Instant::now();
    for i in 0..ms {
        step(i);
        let due = t0 + Duration::from_millis(i + 1);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
}

/// A writer that keeps a polled fixture counter moving while the daemon
/// starts: Ergon reads a candidate counter twice before it uses it and
/// refuses one that stands still (a dead register), so a fixture counter
/// must move from the start. `step` advances `state` once a millisecond until
/// [`Preroll::stop`], which returns the state it reached; what the books
/// hold at that point (settled) is the test's baseline.
pub struct Preroll<T> {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<T>,
}

impl<T: Send + 'static> Preroll<T> {
    pub fn start(mut state: T, mut step: impl FnMut(&mut T) + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let t0 = Instant::now();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    step(&mut state);
                    i += 1;
                    let due = t0 + Duration::from_millis(i);
                    if let Some(d) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    }
                }
                state
            }
        });
        Self { stop, thread }
    }

    pub fn stop(self) -> T {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("preroll writer")
    }
}
