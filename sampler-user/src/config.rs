//! Configuration: command-line flags, `ERGON_*` environment variables and a
//! TOML file (`--config`), in that order of precedence, validated at
//! start-up into [`Settings`] with messages that name the field and the fix.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Args;
use serde::Deserialize;

pub mod attribution;
pub mod model;
pub mod names;
pub mod push;
pub mod serve;
pub use attribution::AttributionArgs;
pub use model::ModelArgs;
pub use names::{Kubelet, NamesArgs, NamesSettings};
pub use push::{PushArgs, PushSettings, RemoteWrite, State};
pub use serve::{Auth, ServeArgs, ServeSettings, TlsFiles};

use crate::{
    source::{
        model::Model,
        synthetic::{Layout, Synthetic},
        Declared, SourceKind,
    },
    sysroot::SysRoot,
};

pub const DEFAULT_LISTEN: &str = "0.0.0.0:9092";
pub const DEFAULT_PERIOD: Duration = Duration::from_micros(500);
pub const MIN_PERIOD: Duration = Duration::from_micros(50);
pub const MAX_PERIOD: Duration = Duration::from_secs(1);
pub const DEFAULT_SYNTHETIC_WATTS: f64 = 10.0;
pub const DEFAULT_RINGBUF_BYTES: u64 = 4 << 20;
/// The safety tick when nothing else wakes the drain: a reader drains at
/// once and a half-full ring buffer wakes it, so the tick only bounds how
/// long records wait in the kernel when nobody looks (docs/architecture.md,
/// "When the drain wakes"). Each wake-up costs ~100 µs of CPU on these VMs
/// whatever it finds, so it is slow.
pub const DEFAULT_DRAIN_INTERVAL: Duration = Duration::from_secs(1);
/// The tick while pushing (`--remote-write-url`): points reach the durable
/// push queue one drain after they happen, so the drain is the queue's
/// durability window beside `--fsync-interval`.
pub const PUSH_DRAIN_INTERVAL: Duration = Duration::from_millis(100);
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

    /// Power each CPU draws under `--source synthetic` while idle: below
    /// `--synthetic-watts`, the draw follows the load, counted in the kernel
    /// programs [default: --synthetic-watts].
    #[arg(long, env = "ERGON_SYNTHETIC_IDLE_WATTS")]
    pub synthetic_idle_watts: Option<f64>,

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

    /// How often the daemon drains the ring buffer when nothing else wakes
    /// it (a read of /metrics, /metrics/batch or /health, or a half-full
    /// ring buffer), 1ms..1s [default: 100ms while pushing, else 1s].
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

    /// Switch on the kernel's BPF run-time statistics and serve
    /// `ergon_bpf_program_*`. Host-wide: while on, every BPF program on the
    /// node pays two clock reads per run; needs CAP_SYS_ADMIN [default: off].
    #[arg(long, env = "ERGON_BPF_STATS")]
    pub bpf_stats: bool,

    /// Which timer samples each CPU every --period: bpf (a BPF timer run
    /// only while the CPU runs a task: idle CPUs get no wake-ups; Linux
    /// 5.15), perf (a cpu-clock perf event, which wakes every CPU every
    /// period), or auto (bpf where it loads, else perf) [default: auto].
    #[arg(long, env = "ERGON_TIMER", value_enum)]
    pub timer: Option<TimerChoice>,

    /// Where sysfs is mounted [default: /sys].
    #[arg(long, env = "ERGON_SYSFS_ROOT")]
    pub sysfs_root: Option<PathBuf>,

    /// Where procfs is mounted [default: /proc].
    #[arg(long, env = "ERGON_PROCFS_ROOT")]
    pub procfs_root: Option<PathBuf>,

    /// Where the cgroup hierarchy is mounted [default: /sys/fs/cgroup].
    #[arg(long, env = "ERGON_CGROUP_ROOT")]
    pub cgroup_root: Option<PathBuf>,

    /// Where device nodes are (the msr source reads `cpu/N/msr` below it) [default: /dev].
    #[arg(long, env = "ERGON_DEV_ROOT")]
    pub dev_root: Option<PathBuf>,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub attribution: AttributionArgs,

    #[command(flatten)]
    pub serve: ServeArgs,

    #[command(flatten)]
    pub push: PushArgs,

    #[command(flatten)]
    pub names: NamesArgs,
}

/// `--timer`: which timer samples each CPU (docs/architecture.md, "The timer").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimerChoice {
    /// `bpf` where its program passes the verifier here, else `perf`.
    #[default]
    Auto,
    /// A BPF timer per CPU, run only while the CPU runs a task.
    Bpf,
    /// A `cpu-clock` perf event per CPU, firing whatever the CPU runs.
    Perf,
}

/// The `--config` file. Unknown keys are an error (a typo must not be ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub source: Option<SourceKind>,
    pub period: Option<String>,
    pub synthetic_watts: Option<f64>,
    pub synthetic_idle_watts: Option<f64>,
    pub synthetic_layout: Option<Layout>,
    pub listen: Option<String>,
    pub ringbuf_size: Option<u64>,
    pub drain_interval: Option<String>,
    pub cgroup_retention: Option<String>,
    pub max_cgroups: Option<usize>,
    pub bpf_stats: Option<bool>,
    pub timer: Option<TimerChoice>,
    pub sysfs_root: Option<PathBuf>,
    pub procfs_root: Option<PathBuf>,
    pub cgroup_root: Option<PathBuf>,
    pub dev_root: Option<PathBuf>,
    /// The `[model]` table.
    pub model: Option<model::FileModel>,
    pub idle_energy: Option<crate::attribution::IdleEnergy>,
    pub package_idle_watts: Option<attribution::FileIdleWatts>,
    pub batch_resolution: Option<String>,
    pub cgroup_batch_resolution: Option<String>,
    pub batch_buffer: Option<usize>,
    pub consumer_ttl: Option<String>,
    pub max_concurrent_scrapes: Option<usize>,
    pub health_stale_after: Option<String>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub basic_auth_username: Option<String>,
    pub basic_auth_password_file: Option<PathBuf>,
    pub bearer_token_file: Option<PathBuf>,
    pub health_no_auth: Option<bool>,
    pub remote_write_url: Option<String>,
    pub remote_write_username: Option<String>,
    pub remote_write_password_file: Option<PathBuf>,
    pub remote_write_bearer_token_file: Option<PathBuf>,
    pub remote_write_ca_file: Option<PathBuf>,
    pub remote_write_max_samples: Option<usize>,
    pub remote_write_header: Option<Vec<String>>,
    /// Deprecated spelling of `remote_write_header` (accepted, with a warning).
    pub remote_write_headers: Option<Vec<String>>,
    pub external_label: Option<Vec<String>>,
    /// Deprecated spelling of `external_label` (accepted, with a warning).
    pub external_labels: Option<Vec<String>>,
    pub push_interval: Option<String>,
    pub push_buffer: Option<u64>,
    pub state_dir: Option<PathBuf>,
    pub fsync_interval: Option<String>,
    pub state_retention: Option<String>,
    pub kubelet_url: Option<String>,
    pub node_name: Option<String>,
    pub kubelet_token_file: Option<PathBuf>,
    pub kubelet_ca_file: Option<PathBuf>,
    pub kubelet_insecure_tls: Option<bool>,
    pub runtime_socket: Option<Vec<PathBuf>>,
}

/// Validated settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub source: SourceKind,
    pub period: Duration,
    pub synthetic: Synthetic,
    pub model: Model,
    /// `--idle-energy` and `--package-idle-watts`.
    pub cause: crate::attribution::Cause,
    pub listen: SocketAddr,
    pub ringbuf_bytes: u32,
    pub drain_interval: Duration,
    pub cgroup_retention: Duration,
    pub max_cgroups: usize,
    /// `--bpf-stats`: the kernel's run-time statistics while Ergon runs.
    pub bpf_stats: bool,
    /// `--timer`, resolved against the kernel when the sampler loads
    /// ([`crate::bpf::timer_path`]).
    pub timer: TimerChoice,
    pub root: SysRoot,
    pub serve: ServeSettings,
    pub push: PushSettings,
    pub names: NamesSettings,
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
        self.settings_with_env(&|k| std::env::var(k).ok())
    }

    /// As [`Self::settings`], reading the compatibility variables and
    /// secrets through `env`. Precedence: flag, `ERGON_*`, the seed
    /// documents' aliases (`EXPORTER_PORT`, `SCRAPE_INTERVAL_SECONDS`,
    /// `MAX_QUEUE_LEN`), the file, the default.
    pub fn settings_with_env(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let file = match &self.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let source = self.source.or(file.source).unwrap_or(SourceKind::Auto);
        let period = match (self.period.as_ref(), env("SCRAPE_INTERVAL_SECONDS")) {
            (Some(s), _) => parse_duration("period", s, MIN_PERIOD, MAX_PERIOD, PERIOD_FIX)?,
            (None, Some(secs)) => {
                let fix = "set SCRAPE_INTERVAL_SECONDS to seconds between 0.00005 and 1, e.g. 0.001 (or use --period)";
                let d = secs
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(|v| Duration::try_from_secs_f64(v).ok())
                    .ok_or_else(|| {
                        invalid(
                            "SCRAPE_INTERVAL_SECONDS",
                            secs.clone(),
                            "is not a number of seconds",
                            fix,
                        )
                    })?;
                if d < MIN_PERIOD || d > MAX_PERIOD {
                    return Err(invalid(
                        "SCRAPE_INTERVAL_SECONDS",
                        secs,
                        "is outside 50us..1s",
                        fix,
                    ));
                }
                d
            }
            (None, None) => match file.period.as_ref() {
                Some(s) => parse_duration("period", s, MIN_PERIOD, MAX_PERIOD, PERIOD_FIX)?,
                None => DEFAULT_PERIOD,
            },
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
        let synthetic_idle_watts = self
            .synthetic_idle_watts
            .or(file.synthetic_idle_watts)
            .unwrap_or(synthetic_watts);
        if !(synthetic_idle_watts.is_finite()
            && (0.0..=synthetic_watts).contains(&synthetic_idle_watts))
        {
            return Err(invalid(
                "synthetic_idle_watts",
                synthetic_idle_watts.to_string(),
                &format!(
                    "must be a number of watts from 0 to --synthetic-watts ({synthetic_watts})"
                ),
                "pass e.g. --synthetic-watts 12 --synthetic-idle-watts 2",
            ));
        }
        let listen_s = match (self.listen.clone(), env("EXPORTER_PORT")) {
            (Some(l), _) => l,
            (None, Some(port)) => {
                let port: u16 = port.trim().parse().map_err(|_| {
                    invalid(
                        "EXPORTER_PORT",
                        port.clone(),
                        "is not a port number",
                        "set EXPORTER_PORT to a port from 1 to 65535, or use --listen / ERGON_LISTEN",
                    )
                })?;
                format!("0.0.0.0:{port}")
            }
            (None, None) => file
                .listen
                .clone()
                .unwrap_or_else(|| DEFAULT_LISTEN.to_string()),
        };
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
        let cgroup_retention = duration_or(
            "cgroup_retention",
            &self.cgroup_retention,
            &file.cgroup_retention,
            Duration::ZERO,
            Duration::from_secs(7 * 24 * 3600),
            DEFAULT_CGROUP_RETENTION,
            "pass e.g. --cgroup-retention 10m (0s..7d)",
        )?;
        let max_cgroups = in_range(
            "max_cgroups",
            self.max_cgroups
                .or(file.max_cgroups)
                .unwrap_or(DEFAULT_MAX_CGROUPS),
            1..=1_000_000,
            "",
            "pass e.g. --max-cgroups 5000",
        )?;
        let serve = self.serve.settings(&file, env)?;
        let push = self.push.settings(&file, env)?;
        let pushing = push
            .state
            .as_ref()
            .is_some_and(|s| s.remote_write.is_some());
        let drain_interval = duration_or(
            "drain_interval",
            &self.drain_interval,
            &file.drain_interval,
            Duration::from_millis(1),
            Duration::from_secs(1),
            if pushing {
                PUSH_DRAIN_INTERVAL
            } else {
                DEFAULT_DRAIN_INTERVAL
            },
            "pass e.g. --drain-interval 100ms (1ms..1s)",
        )?;
        let names = self.names.settings(&file, env)?;
        let cause = self.attribution.settings(&file)?;
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
            dev: self.dev_root.clone().or(file.dev_root).unwrap_or(d.dev),
        };
        let model = self.model.settings(file.model.as_ref())?;
        let layout = self
            .synthetic_layout
            .or(file.synthetic_layout)
            .unwrap_or_default();
        Ok(Settings {
            source,
            period,
            synthetic: Synthetic {
                watts: synthetic_watts,
                idle_watts: synthetic_idle_watts,
                layout,
            },
            model,
            cause,
            listen,
            ringbuf_bytes: ringbuf as u32,
            drain_interval,
            cgroup_retention,
            max_cgroups,
            bpf_stats: self.bpf_stats || file.bpf_stats.unwrap_or(false),
            timer: self.timer.or(file.timer).unwrap_or_default(),
            root,
            serve,
            push,
            names,
        })
    }
}

impl Settings {
    /// What the sources that need declarations were given.
    pub fn declared(&self) -> Declared {
        Declared {
            synthetic: self.synthetic,
            model: self.model.clone(),
        }
    }

    /// The energy source plan for `--source` on this machine, its counters
    /// proven to move ([`crate::source::liveness`]): what `ergon run` and
    /// `ergon measure` load.
    pub fn plan(
        &self,
        topo: &crate::topology::Topology,
    ) -> Result<crate::source::Plan, crate::source::SourceError> {
        crate::source::select(
            self.source,
            &self.root,
            topo,
            &self.declared(),
            &crate::source::liveness::Reads::default(),
        )
    }
}

const PERIOD_FIX: &str = "pass a duration between 50us and 1s, e.g. --period 500us or --period 1ms";

pub(crate) fn invalid(
    field: &'static str,
    value: String,
    problem: &str,
    fix: &'static str,
) -> ConfigError {
    ConfigError::Invalid {
        field,
        // A value is quoted, never echoed back whole.
        value: crate::files::preview(&value, 200),
        problem: problem.to_string(),
        fix,
    }
}

/// `value` when it lies in `range`, else an error that names the field and
/// the range (`must be between LOW and HIGH{unit}`): each range is written
/// once, in the check that also words its message.
pub(crate) fn in_range<T>(
    field: &'static str,
    value: T,
    range: std::ops::RangeInclusive<T>,
    unit: &str,
    fix: &'static str,
) -> Result<T, ConfigError>
where
    T: PartialOrd + std::fmt::Display,
{
    if range.contains(&value) {
        return Ok(value);
    }
    Err(invalid(
        field,
        value.to_string(),
        &format!(
            "must be between {} and {}{unit}",
            range.start(),
            range.end()
        ),
        fix,
    ))
}

/// A duration from the flag (or its `ERGON_*` variable), else the file,
/// else `default`, checked against `min..=max`.
pub(crate) fn duration_or(
    field: &'static str,
    flag: &Option<String>,
    file: &Option<String>,
    min: Duration,
    max: Duration,
    default: Duration,
    fix: &'static str,
) -> Result<Duration, ConfigError> {
    match flag.as_ref().or(file.as_ref()) {
        Some(s) => parse_duration(field, s, min, max, fix),
        None => Ok(default),
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

/// A list setting: the flag's values (or its `ERGON_*` variable's) when
/// given, else the file's, under its key or its deprecated spelling
/// (warned about; both at once is an error). Lists follow the precedence
/// of every other setting: they are not merged.
pub(crate) fn list_setting<T: Clone>(
    flag: &[T],
    file: &Option<Vec<T>>,
    deprecated: &Option<Vec<T>>,
    key: &'static str,
    old_key: &'static str,
) -> Result<Vec<T>, ConfigError> {
    match (file, deprecated) {
        (Some(_), Some(_)) => Err(invalid(
            key,
            old_key.to_string(),
            "is given twice in the config file, as the key and as its deprecated spelling",
            "keep only the key spelled like the flag, with `_` for `-`",
        )),
        _ if !flag.is_empty() => Ok(flag.to_vec()),
        (Some(v), None) => Ok(v.clone()),
        (None, Some(v)) => {
            tracing::warn!(
                "the config key `{old_key}` is deprecated: rename it `{key}` (the flag's name with `_`)"
            );
            Ok(v.clone())
        }
        (None, None) => Ok(Vec::new()),
    }
}

fn load_file(path: &std::path::Path) -> Result<FileConfig, ConfigError> {
    let read = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let bytes =
        crate::files::read_capped(path, crate::files::CONFIG_MAX, "config file").map_err(read)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        read(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not UTF-8 text (a TOML file is)",
        ))
    })?;
    // toml quotes the offending line: a 2 MB one-line file is not echoed.
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: crate::files::preview(e.to_string().trim_end(), 512).replace('\n', " "),
    })
}

#[cfg(test)]
#[path = "config/tests.rs"]
mod tests;
