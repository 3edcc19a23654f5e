//! End to end: remote_write into real Prometheus 2.42 (receiver behind basic
//! auth) and real VictoriaMetrics 1.79, both from Debian's archive. What is
//! stored is compared with what the daemon sampled (its own batch store,
//! read from the oldest sample), timestamp by timestamp.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use tests::{
    cgroup::Cgroup,
    free_port, http_get, http_get_status, online_cpus,
    prom::{parse_batch, peer_bin, urlencode, Options, Prometheus},
    require_root, Busy, Daemon,
};

const PKG: &str = "ergon_package_energy_joules_total";
const KEY: &str = "domain=pkg,package=0";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

struct State {
    dir: PathBuf,
}

impl State {
    fn new(tag: &str) -> State {
        let dir = std::env::temp_dir().join(format!("ergon-push-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("state dir");
        State { dir }
    }

    fn file(&self, name: &str, content: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, content).expect("write");
        p.display().to_string()
    }
}

impl Drop for State {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn push_args(url: &str, state: &State, password: &str) -> Vec<String> {
    [
        "--source",
        "synthetic",
        "--remote-write-url",
        url,
        "--remote-write-username",
        "ergon",
        "--remote-write-password-file",
        &state.file("password", password),
        "--push-interval",
        "1s",
        "--fsync-interval",
        "200ms",
        "--state-dir",
        &state.dir.join("state").display().to_string(),
        "--external-label",
        "node=test-node",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn start(args: &[String]) -> Daemon {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::start(&a)
}

fn receiver() -> Prometheus {
    Prometheus::start_with(
        &[],
        &Options {
            remote_write_receiver: true,
            basic_auth: Some(("ergon", "s3cret")),
        },
    )
}

/// The pushed package series as Prometheus stores it.
fn stored(p: &Prometheus) -> Vec<(i64, f64)> {
    p.raw(&format!("{PKG}{{node=\"test-node\"}}"), "15m")
        .remove("domain=pkg,node=test-node,package=0")
        .unwrap_or_default()
}

/// Waits until `f` holds, polling every 500 ms, for at most `secs`.
fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn gaps(s: &[(i64, f64)]) -> Vec<(i64, i64)> {
    s.windows(2)
        .filter(|w| w[1].0 - w[0].0 != 1)
        .map(|w| (w[0].0, w[1].0))
        .collect()
}

#[test]
fn pushes_every_sample_with_its_sampling_time_to_prometheus_behind_basic_auth() {
    require_root();
    let p = receiver();
    let state = State::new("ok");
    let url = format!("http://{}/api/v1/write", p.addr);
    let d = start(&push_args(&url, &state, "s3cret"));
    let _busy = Busy::on(&online_cpus());
    wait_for(40, "5 s of pushed samples", || stored(&p).len() >= 5000);
    let got = stored(&p);
    let truth = http_get(&d.addr, "/metrics/batch?consumer=truth&from=oldest").expect("truth");
    let truth = parse_batch(&truth, PKG)
        .remove(KEY)
        .expect("package series");
    assert_eq!(got[0], truth[0], "from the first sample on");
    assert_eq!(
        &truth[..got.len()],
        &got[..],
        "stored = sampled, timestamp by timestamp"
    );
    assert!(gaps(&got).is_empty(), "no gap: {:?}", gaps(&got));
    let (_, health) = http_get_status(&d.addr, "/health", &[]).expect("health");
    let v: serde_json::Value = serde_json::from_str(&health).expect("json");
    assert!(v["lastPushTime"].is_string(), "{health}");
    let m = d.metrics();
    assert!(m["ergon_push_samples_sent_total"] >= got.len() as f64);
}

#[test]
fn wrong_credentials_take_the_authentication_path_and_keep_the_samples() {
    require_root();
    let p = receiver();
    let state = State::new("auth");
    let url = format!("http://{}/api/v1/write", p.addr);
    let d = start(&push_args(&url, &state, "wrong"));
    wait_for(30, "an authentication failure", || {
        d.metrics()
            .get("ergon_push_failures_total{cause=\"auth\"}")
            .is_some_and(|&n| n >= 1.0)
    });
    let m = d.metrics();
    assert!(
        m["ergon_push_queue_samples"] + m["ergon_push_queue_memory_samples"] > 0.0,
        "kept"
    );
    assert_eq!(m["ergon_push_samples_sent_total"], 0.0);
    assert!(stored(&p).is_empty(), "nothing reached Prometheus");
    let (_, stderr) = d.stop();
    assert!(stderr.contains("authentication failed"), "{stderr}");
}

#[test]
fn a_receiver_outage_of_8_seconds_leaves_no_gap() {
    require_root();
    let mut p = receiver();
    let state = State::new("outage");
    let url = format!("http://{}/api/v1/write", p.addr);
    let d = start(&push_args(&url, &state, "s3cret"));
    let _busy = Busy::on(&online_cpus());
    wait_for(40, "pushed samples", || stored(&p).len() >= 2000);
    let down_from = now_ms();
    p.restart_after(Duration::from_secs(8));
    let up_at = now_ms();
    wait_for(60, "the backlog to arrive", || {
        stored(&p).last().is_some_and(|l| l.0 > up_at + 2000)
    });
    let got = stored(&p);
    eprintln!(
        "receiver down {} ms; {} samples stored from {} to {} without a gap",
        up_at - down_from,
        got.len(),
        got[0].0,
        got[got.len() - 1].0
    );
    assert!(got[0].0 < down_from - 1000 && got[got.len() - 1].0 > up_at);
    assert!(gaps(&got).is_empty(), "gaps: {:?}", gaps(&got));
    let m = d.metrics();
    assert!(
        m["ergon_push_failures_total{cause=\"network\"}"] >= 1.0,
        "{m:?}"
    );
}

#[test]
fn sigkill_and_restart_lose_at_most_the_fsync_window_and_counters_continue() {
    require_root();
    let p = receiver();
    let state = State::new("kill");
    let url = format!("http://{}/api/v1/write", p.addr);
    let args = push_args(&url, &state, "s3cret");
    let mut d = start(&args);
    let _busy = Busy::on(&online_cpus());
    wait_for(40, "pushed samples", || stored(&p).len() >= 3000);
    let killed_at = now_ms();
    d.child.kill().expect("SIGKILL");
    let _ = d.child.wait();
    let d2 = start(&args);
    let restarted = now_ms();
    wait_for(40, "samples from the second run", || {
        stored(&p).last().is_some_and(|l| l.0 > restarted + 3000)
    });
    let got = stored(&p);
    let g = gaps(&got);
    assert_eq!(g.len(), 1, "one gap, the time the daemon was down: {g:?}");
    let (last_before, first_after) = g[0];
    eprintln!(
        "SIGKILL at {killed_at}: last stored sample {} ms before it, first of the second run {} ms after it",
        killed_at - last_before,
        first_after - killed_at
    );
    // Committed every 200 ms; the grid lags the clock by a drain or two.
    assert!(
        last_before >= killed_at - 600,
        "lost more than the fsync window: last sample {} ms before the kill",
        killed_at - last_before
    );
    assert!(
        first_after >= killed_at,
        "the second run's samples come after the kill"
    );
    for w in got.windows(2) {
        assert!(
            w[1].1 >= w[0].1,
            "counter went back at {}: {} → {}",
            w[1].0,
            w[0].1,
            w[1].1
        );
    }
    // Prometheus sees no counter reset either.
    let q = format!("resets({PKG}{{node=\"test-node\",domain=\"pkg\"}}[15m])");
    let r = p.raw_query(&q);
    assert!(r.contains("\"0\""), "resets() is 0: {r}");
    drop(d2);
}

/// A cgroup removed and made again at its path (a restarted systemd unit,
/// with a new cgroup id) is pushed as one series that never goes back:
/// Prometheus stores one series for the path, without a counter reset, and
/// rejects nothing; it ends at what the daemon serves.
#[test]
fn a_cgroup_made_again_at_its_path_is_pushed_as_one_series_without_a_reset() {
    require_root();
    let p = receiver();
    let state = State::new("again");
    let url = format!("http://{}/api/v1/write", p.addr);
    let d = start(&push_args(&url, &state, "s3cret"));
    let mut rel = String::new();
    for _life in 0..2 {
        let cg = Cgroup::new("pushed");
        rel.clone_from(&cg.rel);
        let mut burn = cg.burn(env!("CARGO_BIN_EXE_burn"), 0.5, 1.0);
        assert!(burn.wait().expect("burn").success());
        d.metrics_complete_at(SystemTime::now());
        // Dropping `cg` removes the directory; the next life is a new cgroup.
    }
    let (m, _) = d.metrics_complete_at(SystemTime::now());
    let prefix = format!("ergon_cgroup_energy_joules_total{{cgroup=\"{rel}\",");
    let served: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, v)| v)
        .sum();
    assert!(served > 5.0, "two lives of 0.5 s at 10 W: {served} J");
    let selector = format!("ergon_cgroup_energy_joules_total{{cgroup=\"{rel}\"}}");
    let mut pushed = BTreeMap::new();
    wait_for(30, "the pushed series to reach the served joules", || {
        pushed = p.raw(&selector, "15m");
        pushed
            .values()
            .any(|s| s.last().is_some_and(|&(_, v)| (v - served).abs() < 1e-6))
    });
    assert_eq!(pushed.len(), 1, "one series for {rel}: {:?}", pushed.keys());
    let s = pushed.values().next().expect("a series");
    let back: Vec<_> = s.windows(2).filter(|w| w[1].1 < w[0].1).collect();
    assert!(back.is_empty(), "never goes back: {back:?}");
    println!("{rel}: {} samples pushed, ending at {served:.4} J", s.len());
    let m = d.metrics();
    assert_eq!(
        m["ergon_push_samples_rejected_total"], 0.0,
        "nothing rejected"
    );
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
}

fn victoria(port: u16, dir: &std::path::Path) -> Child {
    Command::new(peer_bin("victoria-metrics", "victoria-metrics"))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg(format!("-storageDataPath={}", dir.display()))
        .arg("-search.latencyOffset=0s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start victoria-metrics")
}

/// Raw samples of the package series from VictoriaMetrics' export API.
fn vm_export(addr: &str) -> Vec<(i64, f64)> {
    let q = format!(
        "/api/v1/export?match[]={}",
        urlencode(&format!("{PKG}{{domain=\"pkg\"}}"))
    );
    let Some((200, body)) = http_get_status(addr, &q, &[]) else {
        return Vec::new();
    };
    let mut out = BTreeMap::new();
    for line in body.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(ts), Some(vals)) = (v["timestamps"].as_array(), v["values"].as_array()) else {
            continue;
        };
        for (t, x) in ts.iter().zip(vals) {
            if let (Some(t), Some(x)) = (t.as_i64(), x.as_f64()) {
                out.insert(t, x);
            }
        }
    }
    out.into_iter().collect()
}

#[test]
fn victoria_metrics_stores_every_pushed_sample() {
    require_root();
    let state = State::new("vm");
    let port = free_port();
    let mut vm = victoria(port, &state.dir.join("vm"));
    let addr = format!("127.0.0.1:{port}");
    wait_for(30, "victoria-metrics to listen", || {
        http_get_status(&addr, "/health", &[]).is_some_and(|r| r.0 == 200)
    });
    let url = format!("http://{addr}/api/v1/write");
    let args: Vec<String> = [
        "--source",
        "synthetic",
        "--remote-write-url",
        &url,
        "--push-interval",
        "1s",
        "--state-dir",
        &state.dir.join("state").display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let d = start(&args);
    let _busy = Busy::on(&online_cpus());
    wait_for(60, "5 s of samples in victoria-metrics", || {
        vm_export(&addr).len() >= 5000
    });
    let got = vm_export(&addr);
    let truth = http_get(&d.addr, "/metrics/batch?consumer=truth&from=oldest").expect("truth");
    let truth = parse_batch(&truth, PKG)
        .remove(KEY)
        .expect("package series");
    assert_eq!(got[0].0, truth[0].0, "from the first sample on");
    assert!(gaps(&got).is_empty(), "gaps: {:?}", gaps(&got));
    for (g, t) in got.iter().zip(&truth) {
        assert_eq!(g.0, t.0);
        // VictoriaMetrics stores floats with limited precision.
        assert!(
            (g.1 - t.1).abs() <= 1e-9 * t.1.abs().max(1.0),
            "{g:?} vs {t:?}"
        );
    }
    drop(d);
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(vm.id() as i32, libc::SIGTERM) };
    let _ = vm.wait();
}

/// A tmpfs of a given size mounted for one test, unmounted on drop: a disk
/// that can be filled and then grown for real.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(tag: &str, size: &str) -> Tmpfs {
        let dir = std::env::temp_dir().join(format!("ergon-tmpfs-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(ok.success(), "mount a {size} tmpfs at {}", dir.display());
        Tmpfs { dir }
    }

    /// Writes zeros to `filler` until the filesystem refuses (ENOSPC).
    fn fill(&self) -> u64 {
        use std::io::Write;
        let mut f = std::fs::File::create(self.dir.join("filler")).expect("filler");
        let block = vec![0u8; 4096];
        let mut written = 0;
        while let Ok(n) = f.write(&block) {
            if n == 0 {
                break;
            }
            written += n as u64;
        }
        written
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .status()
            .expect("run mount");
        assert!(ok.success(), "grow the tmpfs to {size}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// [`push_args`] with the state on `disk` and `--push-buffer buffer`.
fn args_on(disk: &Tmpfs, url: &str, state: &State, buffer: u64) -> Vec<String> {
    let mut args = push_args(url, state, "s3cret");
    let at = args
        .iter()
        .position(|a| a == "--state-dir")
        .expect("state dir")
        + 1;
    args[at] = disk.dir.join("state").display().to_string();
    args.extend(["--push-buffer".to_string(), buffer.to_string()]);
    args
}

/// (status, body) of `/health`.
fn health(d: &Daemon) -> (u16, String) {
    http_get_status(&d.addr, "/health", &[]).expect("GET /health")
}

/// The durable state on a small tmpfs, filled while the receiver is down so
/// the queue must grow: commits fail with ENOSPC, `/health` says so, the
/// samples wait in memory; once the tmpfs is grown the database is reopened
/// (redb refuses everything after an I/O error until then) and every
/// sample reaches Prometheus, without a gap, nothing dropped, exit 0.
#[test]
fn a_full_disk_holds_the_samples_in_memory_and_loses_none_once_it_is_grown() {
    require_root();
    let mut p = receiver();
    let state = State::new("fulldisk");
    let disk = Tmpfs::mount("fulldisk", "4m");
    let url = format!("http://{}/api/v1/write", p.addr);
    let args = args_on(&disk, &url, &state, 1_000_000);
    let d = start(&args);
    let _busy = Busy::on(&online_cpus());
    wait_for(40, "pushed samples", || stored(&p).len() >= 2000);
    p.pause();
    let filled = disk.fill();
    wait_for(30, "/health to report the failing commits", || {
        let (code, body) = health(&d);
        code == 503 && body.contains("the durable state cannot be committed")
    });
    let (_, body) = health(&d);
    assert!(
        body.contains("No space left on device") && body.contains("--state-dir"),
        "{body}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let m = d.metrics();
    let held = m["ergon_push_queue_memory_samples"];
    eprintln!("tmpfs filled with {filled} bytes; {held} samples held in memory 2 s later");
    assert!(held > 1000.0, "the samples wait in memory: {m:?}");
    disk.resize("64m");
    let grown = now_ms();
    wait_for(30, "/health to recover after the disk grew", || {
        health(&d).0 == 200
    });
    eprintln!("healthy again {} ms after the tmpfs grew", now_ms() - grown);
    p.resume();
    let up_at = now_ms();
    wait_for(60, "the backlog to arrive", || {
        stored(&p).last().is_some_and(|l| l.0 > up_at + 2000)
    });
    let got = stored(&p);
    assert!(gaps(&got).is_empty(), "gaps: {:?}", gaps(&got));
    let m = d.metrics();
    assert_eq!(m["ergon_push_samples_dropped_total"], 0.0, "{m:?}");
    let (status, log) = d.stop();
    assert!(status.success(), "{status}: {log}");
    assert!(
        log.contains("the durable state commits again"),
        "the recovery is logged: {log}"
    );
}

/// Commits failing on a full tmpfs with a small `--push-buffer`: memory
/// stays within it and the oldest samples are dropped and counted; a stop
/// that cannot commit exits non-zero and says how many samples it lost.
#[test]
fn a_full_disk_bounds_memory_by_the_push_buffer_and_a_stop_that_cannot_commit_fails() {
    require_root();
    let state = State::new("fullstop");
    let disk = Tmpfs::mount("fullstop", "4m");
    // A receiver that is not there: nothing leaves the queue.
    let url = format!("http://127.0.0.1:{}/api/v1/write", free_port());
    let args = args_on(&disk, &url, &state, 3000);
    let d = start(&args);
    let _busy = Busy::on(&online_cpus());
    // Full before the queue on disk reaches its 3000 samples, so it must
    // grow to commit.
    disk.fill();
    wait_for(30, "/health to report the failing commits", || {
        let (code, body) = health(&d);
        code == 503 && body.contains("the durable state cannot be committed")
    });
    let mut most = 0.0f64;
    let mut dropped = 0.0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline || dropped == 0.0 {
        let m = d.metrics();
        most = most.max(m["ergon_push_queue_memory_samples"]);
        dropped = m["ergon_push_samples_dropped_total"];
        assert!(
            Instant::now() < deadline + Duration::from_secs(20),
            "nothing dropped 25 s into the outage: {m:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("at most {most} samples in memory; {dropped} dropped");
    assert!(most <= 3000.0, "memory beyond --push-buffer: {most}");
    let (status, log) = d.stop();
    eprintln!("{}", log.lines().last().unwrap_or_default());
    assert!(!status.success(), "a stop that lost samples fails: {log}");
    let lost: u64 = log
        .split("samples held in memory are lost")
        .next()
        .and_then(|head| head.rsplit(": ").next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("the lost count is named: {log}"));
    assert!(lost > 0 && lost <= 3000, "{lost} lost: {log}");
}
