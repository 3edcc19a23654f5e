//! A real Prometheus (Debian's 2.42, unpacked by `cargo xtask test` under
//! `target/peers/prometheus`) started on 127.0.0.1 by a test and stopped by
//! PID, and the parts of its HTTP API the tests read.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{free_port, http_get_status};

/// `usr/bin/<bin>` of Debian package `pkg`: from `ERGON_PEERS` (set by
/// `cargo xtask test`), else the system's `/usr/bin`.
pub fn peer_bin(pkg: &str, bin: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("ERGON_PEERS") {
        let p = PathBuf::from(dir).join(pkg).join("usr/bin").join(bin);
        if p.exists() {
            return p;
        }
    }
    let sys = PathBuf::from("/usr/bin").join(bin);
    assert!(
        sys.exists(),
        "{bin} (Debian package {pkg}) not found: run the tests with `cargo xtask test`, which fetches it into target/peers/"
    );
    sys
}

/// One scrape job of a test Prometheus.
pub struct Job<'a> {
    pub name: &'a str,
    pub target: &'a str,
    pub path: &'a str,
    pub consumer: Option<&'a str>,
    pub interval: &'a str,
}

pub struct Prometheus {
    child: Child,
    pub addr: String,
    _dir: tempfile_dir::Dir,
}

mod tempfile_dir {
    /// A directory removed on drop (no tempfile dependency for one use).
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Prometheus {
    /// Starts Prometheus with `jobs` (honor_timestamps: true) and waits until ready.
    pub fn start(jobs: &[Job<'_>]) -> Prometheus {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let dir = std::env::temp_dir().join(format!("ergon-prom-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("prometheus dir");
        let mut cfg =
            String::from("global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\nscrape_configs:\n");
        for j in jobs {
            cfg.push_str(&format!(
                "  - job_name: {}\n    honor_timestamps: true\n    scrape_interval: {}\n    scrape_timeout: {}\n    metrics_path: {}\n    static_configs:\n      - targets: ['{}']\n",
                j.name, j.interval, j.interval, j.path, j.target
            ));
            if let Some(c) = j.consumer {
                cfg.push_str(&format!("    params:\n      consumer: ['{c}']\n"));
            }
        }
        let cfg_path = dir.join("prometheus.yml");
        std::fs::write(&cfg_path, cfg).expect("write prometheus.yml");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
        let child = Command::new(peer_bin("prometheus", "prometheus"))
            .arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            child,
            addr,
            _dir: tempfile_dir::Dir(dir),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get_status(&p.addr, "/-/ready", &[]).map(|r| r.0) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within 30 s:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.0.join("prometheus.log")).unwrap_or_default()
    }

    /// Raw samples of every series matching `selector` over the last
    /// `range` (e.g. `10m`): labels (sorted `k=v,…`) → [(ms, value)].
    pub fn raw(&self, selector: &str, range: &str) -> BTreeMap<String, Vec<(i64, f64)>> {
        let q = format!("{selector}[{range}]");
        let path = format!("/api/v1/query?query={}", urlencode(&q));
        let (status, body) = http_get_status(&self.addr, &path, &[]).expect("query prometheus");
        assert_eq!(status, 200, "query {q}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("prometheus json");
        let mut out = BTreeMap::new();
        for series in v["data"]["result"].as_array().into_iter().flatten() {
            let labels = series["metric"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| !matches!(k.as_str(), "__name__" | "job" | "instance"))
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let points = series["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    let ts = p[0].as_f64()?;
                    let v: f64 = p[1].as_str()?.parse().ok()?;
                    Some(((ts * 1000.0).round() as i64, v))
                })
                .collect();
            out.insert(labels, points);
        }
        out
    }

    /// Stops Prometheus by PID (SIGTERM, then wait).
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Parses a classic-text batch body: labels (sorted `k=v,…`, as
/// [`Prometheus::raw`] gives them) → [(ms, value)], for metric `name`.
pub fn parse_batch(body: &str, name: &str) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut out: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix('{') else {
            continue;
        };
        let Some((labels, tail)) = rest.split_once("} ") else {
            continue;
        };
        let mut it = tail.split(' ');
        let (Some(v), Some(ts)) = (it.next(), it.next()) else {
            continue;
        };
        let (Ok(v), Ok(ts)) = (v.parse::<f64>(), ts.parse::<i64>()) else {
            continue;
        };
        let mut pairs: Vec<String> = labels
            .split("\",")
            .filter_map(|kv| {
                let (k, v) = kv.split_once("=\"")?;
                let v = v.trim_end_matches('"');
                // Prometheus drops empty labels: so do we.
                (!v.is_empty()).then(|| format!("{k}={v}"))
            })
            .collect();
        pairs.sort();
        out.entry(pairs.join(",")).or_default().push((ts, v));
    }
    out
}
