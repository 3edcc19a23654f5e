//! Configuration: command-line flags, `ERGON_*` environment variables and a
//! TOML file (`--config`), in that order of precedence, validated at
//! start-up into [`Settings`] with messages that name the field and the fix.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Args;
use serde::Deserialize;

use crate::{
    source::{
        synthetic::{Layout, Synthetic},
        SourceKind,
    },
    sysroot::SysRoot,
};

pub const DEFAULT_LISTEN: &str = "0.0.0.0:9092";
pub const DEFAULT_PERIOD: Duration = Duration::from_micros(500);
pub const MIN_PERIOD: Duration = Duration::from_micros(50);
pub const MAX_PERIOD: Duration = Duration::from_secs(1);
pub const DEFAULT_SYNTHETIC_WATTS: f64 = 10.0;
pub const DEFAULT_RINGBUF_BYTES: u64 = 4 << 20;
pub const DEFAULT_DRAIN_INTERVAL: Duration = Duration::from_millis(10);
pub const DEFAULT_CGROUP_RETENTION: Duration = Duration::from_secs(600);
pub const DEFAULT_MAX_CGROUPS: usize = 5000;

/// Flags of `ergon run` (and of `ergon check` where they apply). Every flag
/// also reads `ERGON_<NAME>` and the `--config` file; unset means "from the
/// file, else the default".
#[derive(Args, Clone, Debug, Default)]
pub struct RunArgs {
    /// TOML file with any of the settings below (keys as the flags, with `_`).
    #[arg(long, env = "ERGON_CONFIG")]
    pub config: Option<PathBuf>,

    /// Energy source: auto picks the best this machine has [default: auto].
    #[arg(long, env = "ERGON_SOURCE", value_enum)]
    pub source: Option<SourceKind>,

    /// Timer period per CPU, 50us..1s, e.g. `500us`, `1ms` [default: 500us].
    #[arg(long, env = "ERGON_PERIOD")]
    pub period: Option<String>,

    /// Constant power each CPU draws under `--source synthetic` [default: 10].
    #[arg(long, env = "ERGON_SYNTHETIC_WATTS")]
    pub synthetic_watts: Option<f64>,

    /// Counter layout of `--source synthetic`: per-cpu, or package (one
    /// counter per package like RAPL; exercises read-scope detection) [default: per-cpu].
    #[arg(long, env = "ERGON_SYNTHETIC_LAYOUT", value_enum)]
    pub synthetic_layout: Option<Layout>,

    /// Address of the HTTP server (`/metrics`) [default: 0.0.0.0:9092].
    #[arg(long, env = "ERGON_LISTEN")]
    pub listen: Option<String>,

    /// Ring buffer size in bytes: a power of two, at least 4096 [default: 4194304].
    #[arg(long, env = "ERGON_RINGBUF_SIZE")]
    pub ringbuf_size: Option<u64>,

    /// How often the daemon drains the ring buffer, 1ms..1s [default: 10ms].
    #[arg(long, env = "ERGON_DRAIN_INTERVAL")]
    pub drain_interval: Option<String>,

    /// How long a dead cgroup stays in the output after it was exported once,
    /// e.g. `10m` [default: 10m].
    #[arg(long, env = "ERGON_CGROUP_RETENTION")]
    pub cgroup_retention: Option<String>,

    /// Most cgroups shown; beyond, the smallest consumers fold into
    /// `cgroup="other"` [default: 5000].
    #[arg(long, env = "ERGON_MAX_CGROUPS")]
    pub max_cgroups: Option<usize>,

    /// Where sysfs is mounted [default: /sys].
    #[arg(long, env = "ERGON_SYSFS_ROOT")]
    pub sysfs_root: Option<PathBuf>,

    /// Where procfs is mounted [default: /proc].
    #[arg(long, env = "ERGON_PROCFS_ROOT")]
    pub procfs_root: Option<PathBuf>,

    /// Where the cgroup hierarchy is mounted [default: /sys/fs/cgroup].
    #[arg(long, env = "ERGON_CGROUP_ROOT")]
    pub cgroup_root: Option<PathBuf>,
}

/// The `--config` file. Unknown keys are an error (a typo must not be ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub source: Option<SourceKind>,
    pub period: Option<String>,
    pub synthetic_watts: Option<f64>,
    pub synthetic_layout: Option<Layout>,
    pub listen: Option<String>,
    pub ringbuf_size: Option<u64>,
    pub drain_interval: Option<String>,
    pub cgroup_retention: Option<String>,
    pub max_cgroups: Option<usize>,
    pub sysfs_root: Option<PathBuf>,
    pub procfs_root: Option<PathBuf>,
    pub cgroup_root: Option<PathBuf>,
}

/// Validated settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub source: SourceKind,
    pub period: Duration,
    pub synthetic: Synthetic,
    pub listen: SocketAddr,
    pub ringbuf_bytes: u32,
    pub drain_interval: Duration,
    pub cgroup_retention: Duration,
    pub max_cgroups: usize,
    pub root: SysRoot,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read config file {path}: {source}; check the path given to --config / ERGON_CONFIG"
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid {field} `{value}`: {problem}; {fix}")]
    Invalid {
        field: &'static str,
        value: String,
        problem: String,
        fix: &'static str,
    },
}

impl RunArgs {
    /// Merges flags/env with the config file and validates.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let file = match &self.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let source = self.source.or(file.source).unwrap_or(SourceKind::Auto);
        let period = match self.period.as_ref().or(file.period.as_ref()) {
            Some(s) => parse_duration("period", s, MIN_PERIOD, MAX_PERIOD, PERIOD_FIX)?,
            None => DEFAULT_PERIOD,
        };
        let synthetic_watts = self
            .synthetic_watts
            .or(file.synthetic_watts)
            .unwrap_or(DEFAULT_SYNTHETIC_WATTS);
        if !(synthetic_watts.is_finite() && synthetic_watts > 0.0 && synthetic_watts <= 10_000.0) {
            return Err(invalid(
                "synthetic_watts",
                synthetic_watts.to_string(),
                "must be a number of watts above 0 and at most 10000",
                "pass e.g. --synthetic-watts 10",
            ));
        }
        let listen_s = self
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen: SocketAddr = listen_s.parse().map_err(|e: std::net::AddrParseError| {
            invalid(
                "listen",
                listen_s.clone(),
                &e.to_string(),
                "give an IP and a port, e.g. --listen 0.0.0.0:9092 or [::1]:9092",
            )
        })?;
        let ringbuf = self
            .ringbuf_size
            .or(file.ringbuf_size)
            .unwrap_or(DEFAULT_RINGBUF_BYTES);
        if !(4096..=1 << 30).contains(&ringbuf) || !ringbuf.is_power_of_two() {
            return Err(invalid(
                "ringbuf_size",
                ringbuf.to_string(),
                "must be a power of two between 4096 and 1073741824 bytes",
                "pass e.g. --ringbuf-size 4194304",
            ));
        }
        let drain_interval = match self
            .drain_interval
            .as_ref()
            .or(file.drain_interval.as_ref())
        {
            Some(s) => parse_duration(
                "drain_interval",
                s,
                Duration::from_millis(1),
                Duration::from_secs(1),
                "pass e.g. --drain-interval 10ms (1ms..1s)",
            )?,
            None => DEFAULT_DRAIN_INTERVAL,
        };
        let cgroup_retention = match self
            .cgroup_retention
            .as_ref()
            .or(file.cgroup_retention.as_ref())
        {
            Some(s) => parse_duration(
                "cgroup_retention",
                s,
                Duration::ZERO,
                Duration::from_secs(7 * 24 * 3600),
                "pass e.g. --cgroup-retention 10m (0s..7d)",
            )?,
            None => DEFAULT_CGROUP_RETENTION,
        };
        let max_cgroups = self
            .max_cgroups
            .or(file.max_cgroups)
            .unwrap_or(DEFAULT_MAX_CGROUPS);
        if !(1..=1_000_000).contains(&max_cgroups) {
            return Err(invalid(
                "max_cgroups",
                max_cgroups.to_string(),
                "must be between 1 and 1000000",
                "pass e.g. --max-cgroups 5000",
            ));
        }
        let d = SysRoot::default();
        let root = SysRoot {
            sysfs: self
                .sysfs_root
                .clone()
                .or(file.sysfs_root)
                .unwrap_or(d.sysfs),
            procfs: self
                .procfs_root
                .clone()
                .or(file.procfs_root)
                .unwrap_or(d.procfs),
            cgroup: self
                .cgroup_root
                .clone()
                .or(file.cgroup_root)
                .unwrap_or(d.cgroup),
            dev: d.dev,
        };
        let layout = self
            .synthetic_layout
            .or(file.synthetic_layout)
            .unwrap_or_default();
        Ok(Settings {
            source,
            period,
            synthetic: Synthetic {
                watts: synthetic_watts,
                layout,
            },
            listen,
            ringbuf_bytes: ringbuf as u32,
            drain_interval,
            cgroup_retention,
            max_cgroups,
            root,
        })
    }
}

const PERIOD_FIX: &str = "pass a duration between 50us and 1s, e.g. --period 500us or --period 1ms";

fn invalid(field: &'static str, value: String, problem: &str, fix: &'static str) -> ConfigError {
    ConfigError::Invalid {
        field,
        value,
        problem: problem.to_string(),
        fix,
    }
}

/// Parses a humane duration (`500us`, `1ms`, `0.5ms` is not accepted: use `500us`).
pub fn parse_duration(
    field: &'static str,
    s: &str,
    min: Duration,
    max: Duration,
    fix: &'static str,
) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| invalid(field, s.to_string(), &e.to_string(), fix))?;
    if d < min || d > max {
        return Err(invalid(
            field,
            s.to_string(),
            &format!(
                "must be between {} and {}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
            fix,
        ));
    }
    Ok(d)
}

fn load_file(path: &PathBuf) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.clone(),
        message: e.to_string().trim_end().replace('\n', " "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> RunArgs {
        RunArgs::default()
    }

    #[test]
    fn defaults() {
        let s = args().settings().expect("defaults are valid");
        assert_eq!(s.source, SourceKind::Auto);
        assert_eq!(s.period, Duration::from_micros(500));
        assert_eq!(s.listen, "0.0.0.0:9092".parse().expect("addr"));
        assert_eq!(s.synthetic.watts, 10.0);
        assert_eq!(s.synthetic.layout, Layout::PerCpu);
        assert_eq!(s.ringbuf_bytes, 4 << 20);
        assert_eq!(s.drain_interval, Duration::from_millis(10));
        assert_eq!(s.root, SysRoot::default());
        assert_eq!(s.cgroup_retention, Duration::from_secs(600));
        assert_eq!(s.max_cgroups, 5000);
    }

    #[test]
    fn cgroup_limits_are_validated() {
        let mut a = args();
        a.max_cgroups = Some(0);
        let e = a.settings().expect_err("zero").to_string();
        assert!(
            e.contains("max_cgroups") && e.contains("--max-cgroups"),
            "{e}"
        );
        let mut a = args();
        a.cgroup_retention = Some("forever".into());
        let e = a.settings().expect_err("not a duration").to_string();
        assert!(
            e.contains("cgroup_retention") && e.contains("--cgroup-retention"),
            "{e}"
        );
        let mut a = args();
        a.cgroup_retention = Some("30s".into());
        assert_eq!(
            a.settings().expect("valid").cgroup_retention,
            Duration::from_secs(30)
        );
    }

    #[test]
    fn period_units_and_bounds() {
        let p = |s: &str| parse_duration("period", s, MIN_PERIOD, MAX_PERIOD, PERIOD_FIX);
        assert_eq!(p("500us").expect("ok"), Duration::from_micros(500));
        assert_eq!(p("50us").expect("ok"), Duration::from_micros(50));
        assert_eq!(p("1ms").expect("ok"), Duration::from_millis(1));
        assert_eq!(p(" 1s ").expect("ok"), Duration::from_secs(1));
        assert_eq!(p("100ms").expect("ok"), Duration::from_millis(100));
        let low = p("49us").expect_err("below 50us").to_string();
        assert!(low.contains("period") && low.contains("50us"), "{low}");
        let high = p("2s").expect_err("above 1s").to_string();
        assert!(high.contains("between 50us and 1s"), "{high}");
        let junk = p("fast").expect_err("not a duration").to_string();
        assert!(
            junk.contains("invalid period `fast`") && junk.contains("--period"),
            "{junk}"
        );
        assert!(p("500").is_err(), "a unit is required");
    }

    #[test]
    fn bad_values_name_field_and_fix() {
        let mut a = args();
        a.listen = Some("localhost".into());
        let e = a.settings().expect_err("no port").to_string();
        assert!(e.contains("listen") && e.contains("--listen"), "{e}");

        let mut a = args();
        a.synthetic_watts = Some(-1.0);
        let e = a.settings().expect_err("negative").to_string();
        assert!(
            e.contains("synthetic_watts") && e.contains("--synthetic-watts"),
            "{e}"
        );

        let mut a = args();
        a.ringbuf_size = Some(5000);
        let e = a.settings().expect_err("not a power of two").to_string();
        assert!(
            e.contains("ringbuf_size") && e.contains("power of two"),
            "{e}"
        );
    }

    #[test]
    fn file_fills_what_flags_leave_unset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ergon.toml");
        std::fs::write(
            &path,
            "source = \"synthetic\"\nperiod = \"1ms\"\nsynthetic_watts = 7.0\nsynthetic_layout = \"package\"\nlisten = \"127.0.0.1:9999\"\n",
        )
        .expect("write");
        let mut a = args();
        a.config = Some(path);
        a.listen = Some("127.0.0.1:1234".into());
        let s = a.settings().expect("valid");
        assert_eq!(s.source, SourceKind::Synthetic);
        assert_eq!(s.period, Duration::from_millis(1));
        assert_eq!(s.synthetic.watts, 7.0);
        assert_eq!(s.synthetic.layout, Layout::Package);
        assert_eq!(s.listen.port(), 1234, "the flag wins over the file");
    }

    #[test]
    fn unknown_or_mistyped_keys_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ergon.toml");
        std::fs::write(&path, "perid = \"1ms\"\n").expect("write");
        let mut a = args();
        a.config = Some(path.clone());
        let e = a.settings().expect_err("typo").to_string();
        assert!(
            e.contains("perid") && e.contains(&path.display().to_string()),
            "{e}"
        );

        std::fs::write(&path, "synthetic_watts = \"ten\"\n").expect("write");
        let e = a.settings().expect_err("wrong type").to_string();
        assert!(e.contains("synthetic_watts"), "{e}");
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let mut a = args();
        a.config = Some(PathBuf::from("/nonexistent/ergon.toml"));
        let e = a.settings().expect_err("missing").to_string();
        assert!(
            e.contains("/nonexistent/ergon.toml") && e.contains("--config"),
            "{e}"
        );
    }
}
