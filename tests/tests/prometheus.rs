//! End to end with real Prometheus (Debian's 2.42): what `/metrics/batch`
//! serves is what Prometheus stores, timestamp by timestamp, for two
//! servers at once; a cut-off scrape loses nothing; `/metrics` passes
//! `promtool check metrics`.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    os::fd::FromRawFd,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use tests::{
    http_get, http_get_status, online_cpus,
    prom::{parse_batch, peer_bin, Job, Prometheus},
    require_root, Busy, Daemon,
};

const PKG: &str = "ergon_package_energy_joules_total";
const CGROUP: &str = "ergon_cgroup_energy_joules_total";

/// Every stored sample of `stored` is in `truth` with the same value, and
/// the stored package series has no gap: one sample per millisecond.
fn assert_complete(who: &str, stored: &[(i64, f64)], truth: &[(i64, f64)]) {
    assert!(
        stored.len() >= 10_000,
        "{who}: only {} package samples stored",
        stored.len()
    );
    for w in stored.windows(2) {
        assert_eq!(
            w[1].0 - w[0].0,
            1,
            "{who}: gap between {} and {} ms",
            w[0].0,
            w[1].0
        );
    }
    let first = stored[0].0;
    let i = truth
        .iter()
        .position(|p| p.0 == first)
        .unwrap_or_else(|| panic!("{who}: first stored ts {first} was never served"));
    let served = &truth[i..i + stored.len()];
    assert_eq!(stored, served, "{who}: stored differs from served");
}

#[test]
fn two_prometheus_servers_each_store_every_millisecond_sample() {
    require_root();
    let d = Daemon::start(&["--source", "synthetic", "--synthetic-watts", "10"]);
    let _busy = Busy::on(&online_cpus());
    let job = |consumer| Job {
        name: "ergon",
        target: &d.addr,
        path: "/metrics/batch",
        consumer: Some(consumer),
        interval: "2s",
    };
    let a = Prometheus::start(&[job("prom-a")]);
    let b = Prometheus::start(&[job("prom-b")]);
    // 2 s scrapes until both hold at least 10 s of 1 ms samples.
    let selector = format!("{PKG}{{job=\"ergon\"}}");
    let key = "domain=pkg,package=0";
    let deadline = Instant::now() + Duration::from_secs(60);
    let (stored_a, stored_b) = loop {
        std::thread::sleep(Duration::from_secs(2));
        let (sa, sb) = (a.raw(&selector, "10m"), b.raw(&selector, "10m"));
        let n = |s: &BTreeMap<String, Vec<(i64, f64)>>| s.get(key).map_or(0, Vec::len);
        if n(&sa) >= 10_000 && n(&sb) >= 10_000 {
            break (sa, sb);
        }
        assert!(
            Instant::now() < deadline,
            "after 60 s prom-a holds {} and prom-b {} package samples (want 10 s' worth each)\nprom-a log:\n{}",
            n(&sa),
            n(&sb),
            a.log()
        );
    };
    let cg_a = a.raw(&format!("{CGROUP}{{job=\"ergon\"}}"), "10m");
    // Everything either server could have stored is still held: read it as
    // a third consumer from the oldest sample.
    let truth = http_get(&d.addr, "/metrics/batch?consumer=truth&from=oldest").expect("truth");
    let truth_pkg = parse_batch(&truth, PKG);
    let truth_cg = parse_batch(&truth, CGROUP);
    let t = truth_pkg.get(key).expect("package series served");
    for (who, stored) in [("prom-a", &stored_a), ("prom-b", &stored_b)] {
        let s = stored
            .get(key)
            .unwrap_or_else(|| panic!("{who} stored no package series: {stored:?}"));
        assert_complete(who, s, t);
    }
    // The per-cgroup series are stored on the 100 ms grid, as served.
    assert!(!cg_a.is_empty(), "prom-a stored no cgroup series");
    for (labels, stored) in &cg_a {
        assert!(
            stored.iter().all(|p| p.0 % 100 == 0),
            "{labels}: off the 100 ms grid"
        );
        let served = truth_cg
            .get(labels)
            .unwrap_or_else(|| panic!("{labels} stored but never served"));
        for p in stored {
            assert!(served.contains(p), "{labels}: stored {p:?} was not served");
        }
    }
    let m = d.metrics();
    assert!(
        m["ergon_batch_samples_served_total{consumer=\"prom-a\"}"] >= stored_a[key].len() as f64
    );
    a.stop();
    b.stop();
}

#[test]
fn a_scrape_cut_off_mid_response_loses_nothing() {
    require_root();
    // 1 ms cgroup points too, so the body is several MB: larger than what
    // the connection can buffer, hence truly cut.
    let d = Daemon::start(&["--source", "synthetic", "--cgroup-batch-resolution", "1ms"]);
    let _busy = Busy::on(&online_cpus());
    // Register the consumer, then let samples pile up.
    let first = http_get(&d.addr, "/metrics/batch?consumer=cut").expect("register");
    assert!(parse_batch(&first, PKG).is_empty());
    std::thread::sleep(Duration::from_secs(10));
    // Read the head and a little of the body, stall, then hang up. A small
    // receive buffer keeps the kernel from taking the body on our behalf.
    let mut s = small_window_connect(&d.addr);
    write!(
        s,
        "GET /metrics/batch?consumer=cut HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .expect("write");
    let mut head = [0u8; 4096];
    let n = s.read(&mut head).expect("read");
    let head = String::from_utf8_lossy(&head[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let first_line = head
        .lines()
        .find(|l| l.starts_with(PKG))
        .expect("a package line in the first bytes")
        .to_string();
    let first_ts: i64 = first_line
        .rsplit(' ')
        .next()
        .and_then(|t| t.trim().parse().ok())
        .expect("timestamp");
    std::thread::sleep(Duration::from_secs(2));
    drop(s);
    std::thread::sleep(Duration::from_millis(200));
    let again = http_get(&d.addr, "/metrics/batch?consumer=cut").expect("scrape again");
    let pkg = parse_batch(&again, PKG);
    let series = pkg.get("domain=pkg,package=0").expect("package series");
    assert_eq!(
        series[0].0, first_ts,
        "the next scrape starts where the cut one did"
    );
    assert!(series.len() >= 9_000, "{} samples", series.len());
    for w in series.windows(2) {
        assert_eq!(w[1].0 - w[0].0, 1, "gap at {}", w[0].0);
    }
}

#[test]
fn promtool_check_metrics_is_clean_on_metrics() {
    require_root();
    let d = Daemon::start(&["--source", "synthetic"]);
    // A batch consumer, so the per-consumer self-metrics are present too.
    http_get(&d.addr, "/metrics/batch?consumer=lint").expect("batch");
    let body = http_get(&d.addr, "/metrics").expect("metrics");
    for name in [
        "ergon_batch_samples_served_total{consumer=\"lint\"}",
        "ergon_scrape_duration_seconds_bucket",
        "ergon_batch_buffer_samples",
    ] {
        assert!(body.contains(name), "{name} missing");
    }
    let mut child = Command::new(peer_bin("prometheus", "promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // One lint is known and kept: `ergon_energy_counter_stalls_total` is a
    // name users' alerts depend on (the issue that asked for it fixed it),
    // and promtool flags any name with "counter" in it. Every other line
    // of the report fails the test.
    const KEPT: &str =
        "ergon_energy_counter_stalls_total metric name should not include type 'counter'";
    let other: Vec<&str> = report
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != KEPT)
        .collect();
    assert!(
        other.is_empty() && (out.status.success() || report.contains(KEPT)),
        "promtool: {report}"
    );
}

#[test]
fn health_is_healthy_while_sampling_and_errors_are_clear() {
    require_root();
    let d = Daemon::start(&["--source", "synthetic"]);
    // Past the first booked millisecond, so samples are buffered.
    std::thread::sleep(Duration::from_millis(200));
    let (code, body) = http_get_status(&d.addr, "/health", &[]).expect("health");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["status"], "healthy");
    assert!(
        v["bufferedSamples"].as_u64().is_some_and(|n| n > 0),
        "{body}"
    );
    let (code, body) = http_get_status(&d.addr, "/metrics/batch", &[]).expect("batch");
    assert_eq!(code, 400);
    assert!(body.contains("consumer"), "{body}");
    let t = v["lastScrapeTime"].as_str().expect("lastScrapeTime");
    assert!(t.len() == 20 && t.ends_with('Z'), "RFC 3339 seconds: {t}");
    assert!(v["lastPushTime"].is_null(), "no push path yet: {body}");
}

/// A TCP connection whose receive buffer is set to 4 KiB before connecting
/// (so the advertised window stays small).
fn small_window_connect(addr: &str) -> TcpStream {
    let sa: SocketAddr = addr.parse().expect("addr");
    let SocketAddr::V4(v4) = sa else {
        panic!("IPv4 expected: {addr}")
    };
    // SAFETY: plain socket calls on a descriptor we own; on success it is
    // handed to TcpStream, which closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let size: libc::c_int = 4096;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert!(rc == 0, "connect: {}", std::io::Error::last_os_error());
        TcpStream::from_raw_fd(fd)
    }
}
