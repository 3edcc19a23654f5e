//! Settings of remote_write and of the durable state. Secrets come from
//! files or `ERGON_*` variables only.

use std::{path::PathBuf, time::Duration};

use clap::Args;

use super::{
    duration_or, in_range, invalid,
    serve::{resolve_auth, Auth, AuthNames},
    ConfigError, FileConfig,
};

const PUSH_AUTH: AuthNames = AuthNames {
    user_field: "remote_write_username",
    password_field: "remote_write_password_file",
    token_field: "remote_write_bearer_token_file",
    password_env: PASSWORD_ENV,
    token_env: TOKEN_ENV,
    both_fix: "configure one of --remote-write-username or --remote-write-bearer-token-file",
    no_password_fix: "pass --remote-write-password-file, or set ERGON_REMOTE_WRITE_PASSWORD",
    no_user_fix: "pass --remote-write-username too",
};

pub const DEFAULT_PUSH_INTERVAL: Duration = Duration::from_secs(15);
pub const DEFAULT_MAX_SAMPLES: usize = 10_000;
pub const DEFAULT_PUSH_BUFFER: u64 = 5_000_000;
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ergon";
pub const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_STATE_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
pub const PASSWORD_ENV: &str = "ERGON_REMOTE_WRITE_PASSWORD";
pub const TOKEN_ENV: &str = "ERGON_REMOTE_WRITE_BEARER_TOKEN";

#[derive(Args, Clone, Debug, Default)]
pub struct PushArgs {
    /// Push every batch sample to this Prometheus remote_write endpoint
    /// (e.g. http://prometheus:9090/api/v1/write).
    #[arg(long, env = "ERGON_REMOTE_WRITE_URL")]
    pub remote_write_url: Option<String>,

    /// Basic-auth user for remote_write; the password comes from
    /// --remote-write-password-file or ERGON_REMOTE_WRITE_PASSWORD.
    #[arg(long, env = "ERGON_REMOTE_WRITE_USERNAME")]
    pub remote_write_username: Option<String>,

    /// File holding the remote_write basic-auth password.
    #[arg(long, env = "ERGON_REMOTE_WRITE_PASSWORD_FILE")]
    pub remote_write_password_file: Option<PathBuf>,

    /// File holding a bearer token for remote_write (or ERGON_REMOTE_WRITE_BEARER_TOKEN).
    #[arg(long, env = "ERGON_REMOTE_WRITE_BEARER_TOKEN_FILE")]
    pub remote_write_bearer_token_file: Option<PathBuf>,

    /// PEM CA certificates to trust for an https remote_write URL
    /// [default: the system's roots].
    #[arg(long, env = "ERGON_REMOTE_WRITE_CA_FILE")]
    pub remote_write_ca_file: Option<PathBuf>,

    /// Most samples per remote_write request [default: 10000].
    #[arg(long, env = "ERGON_REMOTE_WRITE_MAX_SAMPLES")]
    pub remote_write_max_samples: Option<usize>,

    /// Extra request header `NAME=VALUE` (repeatable; env: comma-separated).
    #[arg(
        long = "remote-write-header",
        env = "ERGON_REMOTE_WRITE_HEADERS",
        value_delimiter = ','
    )]
    pub remote_write_headers: Vec<String>,

    /// Label `NAME=VALUE` added to every pushed series, e.g. `node=web-1`
    /// (repeatable; env: comma-separated).
    #[arg(
        long = "external-label",
        env = "ERGON_EXTERNAL_LABELS",
        value_delimiter = ','
    )]
    pub external_labels: Vec<String>,

    /// How often to push [default: 15s].
    #[arg(long, env = "ERGON_PUSH_INTERVAL")]
    pub push_interval: Option<String>,

    /// Most samples queued for remote_write; the oldest are dropped beyond
    /// (counted) [default: 5000000].
    #[arg(long, env = "ERGON_PUSH_BUFFER")]
    pub push_buffer: Option<u64>,

    /// Where the push queue and the counter totals live [default: /var/lib/ergon].
    /// Without --remote-write-url, state is kept only when this is given.
    #[arg(long, env = "ERGON_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Most time a sample is held only in memory before it is committed
    /// to disk [default: 1s].
    #[arg(long, env = "ERGON_FSYNC_INTERVAL")]
    pub fsync_interval: Option<String>,

    /// How long the state keeps a series, a counter total or a job that is
    /// no longer seen (a container's cgroup that is gone); after that it is
    /// forgotten and starts at 0 if it comes back [default: 7d].
    #[arg(long, env = "ERGON_STATE_RETENTION")]
    pub state_retention: Option<String>,
}

#[derive(Clone, Debug)]
pub struct RemoteWrite {
    pub url: String,
    pub auth: Option<Auth>,
    pub ca_file: Option<PathBuf>,
    pub max_samples: usize,
    pub headers: Vec<(String, String)>,
    pub external_labels: Vec<(String, String)>,
    pub interval: Duration,
}

#[derive(Clone, Debug)]
pub struct PushSettings {
    /// The durable state (None: nothing is kept across restarts, and
    /// nothing is pushed: remote_write always queues through the state).
    pub state: Option<State>,
    pub push_buffer: u64,
    pub fsync_interval: Duration,
    pub state_retention: Duration,
}

/// The durable state directory and what rides on it. Pushing lives here,
/// so remote_write without a state directory cannot be represented.
#[derive(Clone, Debug)]
pub struct State {
    /// `--state-dir` (`/var/lib/ergon` when only remote_write is given).
    pub dir: PathBuf,
    /// `--remote-write-url` and its settings: samples are queued in the
    /// state and sent from there.
    pub remote_write: Option<RemoteWrite>,
}

impl PushSettings {
    /// The remote_write settings, when pushing.
    pub fn remote_write(&self) -> Option<&RemoteWrite> {
        self.state.as_ref()?.remote_write.as_ref()
    }
}

fn pairs(
    field: &'static str,
    items: &[String],
    fix: &'static str,
) -> Result<Vec<(String, String)>, ConfigError> {
    items
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
            _ => Err(invalid(field, s.clone(), "expected NAME=VALUE", fix)),
        })
        .collect()
}

fn valid_label_name(n: &str) -> bool {
    let mut b = n.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && !n.starts_with("__")
}

impl PushArgs {
    pub fn settings(
        &self,
        file: &FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<PushSettings, ConfigError> {
        let url = self
            .remote_write_url
            .clone()
            .or(file.remote_write_url.clone());
        let interval = duration_or(
            "push_interval",
            &self.push_interval,
            &file.push_interval,
            Duration::from_millis(100),
            Duration::from_secs(3600),
            DEFAULT_PUSH_INTERVAL,
            "pass e.g. --push-interval 15s (100ms..1h)",
        )?;
        let fsync_interval = duration_or(
            "fsync_interval",
            &self.fsync_interval,
            &file.fsync_interval,
            Duration::from_millis(10),
            Duration::from_secs(60),
            DEFAULT_FSYNC_INTERVAL,
            "pass e.g. --fsync-interval 1s (10ms..60s)",
        )?;
        let state_retention = duration_or(
            "state_retention",
            &self.state_retention,
            &file.state_retention,
            Duration::from_secs(3600),
            Duration::from_secs(10 * 365 * 24 * 3600),
            DEFAULT_STATE_RETENTION,
            "pass e.g. --state-retention 7d (1h..3650d)",
        )?;
        let push_buffer = in_range(
            "push_buffer",
            self.push_buffer
                .or(file.push_buffer)
                .unwrap_or(DEFAULT_PUSH_BUFFER),
            1000..=1_000_000_000,
            " samples",
            "pass e.g. --push-buffer 5000000",
        )?;
        let state_dir = self.state_dir.clone().or(file.state_dir.clone());
        let remote_write = match url {
            None => None,
            Some(url) => {
                let lower = url.to_ascii_lowercase();
                if !(lower.starts_with("http://") || lower.starts_with("https://"))
                    || url.parse::<hyper::Uri>().is_err()
                {
                    return Err(invalid(
                        "remote_write_url",
                        url,
                        "is not an http:// or https:// URL",
                        "pass e.g. --remote-write-url http://prometheus:9090/api/v1/write",
                    ));
                }
                let max_samples = in_range(
                    "remote_write_max_samples",
                    self.remote_write_max_samples
                        .or(file.remote_write_max_samples)
                        .unwrap_or(DEFAULT_MAX_SAMPLES),
                    1..=1_000_000,
                    "",
                    "pass e.g. --remote-write-max-samples 10000",
                )?;
                let headers = super::list_setting(
                    &self.remote_write_headers,
                    &file.remote_write_header,
                    &file.remote_write_headers,
                    "remote_write_header",
                    "remote_write_headers",
                )?;
                let headers = pairs(
                    "remote_write_header",
                    &headers,
                    "pass --remote-write-header NAME=VALUE, e.g. X-Scope-OrgID=team-a",
                )?;
                // Checked here, before the state is opened: a header the
                // client could not send is a start-up error naming it.
                if let Some((k, why)) = headers.iter().find_map(|(k, v)| {
                    if hyper::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
                        Some((k, "is not a valid HTTP header name"))
                    } else if hyper::header::HeaderValue::from_str(v).is_err() {
                        Some((
                            k,
                            "has a value with a control character (CR, LF, …), which HTTP forbids",
                        ))
                    } else {
                        None
                    }
                }) {
                    return Err(invalid(
                        "remote_write_header",
                        k.clone(),
                        why,
                        "pass --remote-write-header NAME=VALUE with a token name and a printable value",
                    ));
                }
                let labels = super::list_setting(
                    &self.external_labels,
                    &file.external_label,
                    &file.external_labels,
                    "external_label",
                    "external_labels",
                )?;
                let external_labels = pairs(
                    "external_label",
                    &labels,
                    "pass --external-label NAME=VALUE, e.g. node=web-1",
                )?;
                if let Some((k, _)) = external_labels.iter().find(|(k, _)| !valid_label_name(k)) {
                    return Err(invalid(
                        "external_label",
                        k.clone(),
                        "is not a valid label name",
                        "use letters, digits and _, not starting with a digit or __",
                    ));
                }
                let auth = resolve_auth(
                    self.remote_write_username
                        .clone()
                        .or(file.remote_write_username.clone()),
                    self.remote_write_password_file
                        .clone()
                        .or(file.remote_write_password_file.clone()),
                    self.remote_write_bearer_token_file
                        .clone()
                        .or(file.remote_write_bearer_token_file.clone()),
                    env,
                    &PUSH_AUTH,
                )?;
                Some(RemoteWrite {
                    url,
                    auth,
                    ca_file: self
                        .remote_write_ca_file
                        .clone()
                        .or(file.remote_write_ca_file.clone()),
                    max_samples,
                    headers,
                    external_labels,
                    interval,
                })
            }
        };
        let state = match (remote_write, state_dir) {
            (remote_write, Some(dir)) => Some(State { dir, remote_write }),
            (Some(rw), None) => Some(State {
                dir: PathBuf::from(DEFAULT_STATE_DIR),
                remote_write: Some(rw),
            }),
            (None, None) => None,
        };
        Ok(PushSettings {
            state,
            push_buffer,
            fsync_interval,
            state_retention,
        })
    }
}
