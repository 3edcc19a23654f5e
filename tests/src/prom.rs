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
    args: Vec<String>,
    /// `Authorization` header value for its API, when basic auth is on.
    auth: Option<String>,
}

/// Options beyond scrape jobs.
#[derive(Default)]
pub struct Options<'a> {
    /// Accept remote_write on /api/v1/write.
    pub remote_write_receiver: bool,
    /// Require basic auth (user, password) on every endpoint.
    pub basic_auth: Option<(&'a str, &'a str)>,
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
        Self::start_with(jobs, &Options::default())
    }

    pub fn start_with(jobs: &[Job<'_>], opts: &Options<'_>) -> Prometheus {
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
        let mut args = vec![
            format!("--config.file={}", cfg_path.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address={addr}"),
        ];
        if opts.remote_write_receiver {
            args.push("--web.enable-remote-write-receiver".into());
        }
        let mut auth = None;
        if let Some((user, password)) = opts.basic_auth {
            let hash = bcrypt::hash(password, 4).expect("bcrypt");
            let web = dir.join("web.yml");
            std::fs::write(&web, format!("basic_auth_users:\n  {user}: {hash}\n"))
                .expect("web.yml");
            args.push(format!("--web.config.file={}", web.display()));
            use base64::Engine;
            auth = Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            ));
        }
        let mut p = Prometheus {
            child: Self::spawn(&dir, &args),
            addr,
            _dir: tempfile_dir::Dir(dir),
            args,
            auth,
        };
        p.wait_ready();
        p
    }

    fn spawn(dir: &std::path::Path, args: &[String]) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("prometheus.log"))
            .expect("log file");
        Command::new(peer_bin("prometheus", "prometheus"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus")
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let auth = self.auth.clone();
        let headers = auth_headers(auth.as_deref());
        while http_get_status(&self.addr, "/-/ready", &headers).map(|r| r.0) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops it (SIGTERM, by PID) and leaves it down for `down`, then
    /// starts it again on the same port and data.
    pub fn restart_after(&mut self, down: Duration) {
        self.pause();
        std::thread::sleep(down);
        self.resume();
    }

    /// Stops it (SIGTERM, by PID) until [`Self::resume`].
    pub fn pause(&mut self) {
        self.terminate();
    }

    /// Starts it again on the same port and data, and waits until ready.
    pub fn resume(&mut self) {
        self.child = Self::spawn(&self._dir.0, &self.args);
        self.wait_ready();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.0.join("prometheus.log")).unwrap_or_default()
    }

    /// Raw samples of every series matching `selector` over the last
    /// `range` (e.g. `10m`): labels (sorted `k=v,…`) → [(ms, value)].
    pub fn raw(&self, selector: &str, range: &str) -> BTreeMap<String, Vec<(i64, f64)>> {
        let q = format!("{selector}[{range}]");
        let path = format!("/api/v1/query?query={}", urlencode(&q));
        let auth = self.auth.clone();
        let headers = auth_headers(auth.as_deref());
        let (status, body) =
            http_get_status(&self.addr, &path, &headers).expect("query prometheus");
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

    /// The raw JSON answer of an instant query.
    pub fn raw_query(&self, q: &str) -> String {
        let auth = self.auth.clone();
        let headers = auth_headers(auth.as_deref());
        let path = format!("/api/v1/query?query={}", urlencode(q));
        let (status, body) =
            http_get_status(&self.addr, &path, &headers).expect("query prometheus");
        assert_eq!(status, 200, "query {q}: {body}");
        body
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

/// The `Authorization` header, if any, as `http_get_status` takes headers.
fn auth_headers(auth: Option<&str>) -> Vec<(&'static str, &str)> {
    auth.map(|a| vec![("Authorization", a)]).unwrap_or_default()
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

/// The `(name, value)` pairs of a series' labels as Ergon writes them
/// (`a="x",b=""`, no braces; values without `",`), empty values included.
pub fn label_pairs(labels: &str) -> impl Iterator<Item = (&str, &str)> {
    labels.split("\",").filter_map(|kv| {
        let (k, v) = kv.split_once("=\"")?;
        Some((k, v.trim_end_matches('"')))
    })
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
        let mut pairs: Vec<String> = label_pairs(labels)
            // Prometheus drops empty labels: so do we.
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        pairs.sort();
        out.entry(pairs.join(",")).or_default().push((ts, v));
    }
    out
}
