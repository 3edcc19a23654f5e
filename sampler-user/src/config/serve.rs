//! Settings of the HTTP side: batch export, scrape limits, `/health`, TLS
//! and authentication. Secrets come from files or `ERGON_*` variables only,
//! never from a command-line value (which every user of the host can read
//! in /proc).

use std::{fmt, path::PathBuf, time::Duration};

use clap::Args;

use super::{duration_or, in_range, invalid, parse_duration, ConfigError, FileConfig};

pub const DEFAULT_BATCH_RESOLUTION: Duration = Duration::from_millis(1);
pub const DEFAULT_CGROUP_BATCH_RESOLUTION: Duration = Duration::from_millis(100);
pub const DEFAULT_BATCH_BUFFER: usize = 1_000_000;
pub const DEFAULT_CONSUMER_TTL: Duration = Duration::from_secs(600);
pub const DEFAULT_MAX_CONCURRENT_SCRAPES: usize = 8;
pub const DEFAULT_HEALTH_STALE_AFTER: Duration = Duration::from_secs(1);

/// Environment variable holding the basic-auth password (no flag on purpose).
pub const PASSWORD_ENV: &str = "ERGON_BASIC_AUTH_PASSWORD";
/// Environment variable holding the bearer token (no flag on purpose).
pub const TOKEN_ENV: &str = "ERGON_BEARER_TOKEN";

#[derive(Args, Clone, Debug, Default)]
pub struct ServeArgs {
    /// Spacing of package samples in `/metrics/batch`: whole milliseconds,
    /// at least 1ms [default: 1ms].
    #[arg(long, env = "ERGON_BATCH_RESOLUTION")]
    pub batch_resolution: Option<String>,

    /// Spacing of per-cgroup samples in `/metrics/batch`: whole
    /// milliseconds, at least 1ms [default: 100ms].
    #[arg(long, env = "ERGON_CGROUP_BATCH_RESOLUTION")]
    pub cgroup_batch_resolution: Option<String>,

    /// Most samples held for `/metrics/batch` consumers; the oldest are
    /// dropped beyond (counted per consumer) [default: 1000000, about 20 MB].
    /// Alias: MAX_QUEUE_LEN.
    #[arg(long, env = "ERGON_BATCH_BUFFER")]
    pub batch_buffer: Option<usize>,

    /// A `/metrics/batch` consumer not seen for this long is forgotten [default: 10m].
    #[arg(long, env = "ERGON_CONSUMER_TTL")]
    pub consumer_ttl: Option<String>,

    /// Scrapes served at once; more get 503 [default: 8].
    #[arg(long, env = "ERGON_MAX_CONCURRENT_SCRAPES")]
    pub max_concurrent_scrapes: Option<usize>,

    /// `/health` answers 503 when the newest energy reading is older than
    /// this or 2 × --drain-interval, whichever is larger [default: 1s].
    #[arg(long, env = "ERGON_HEALTH_STALE_AFTER")]
    pub health_stale_after: Option<String>,

    /// PEM certificate chain: serve HTTPS (with --tls-key-file).
    #[arg(long, env = "ERGON_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key of --tls-cert-file.
    #[arg(long, env = "ERGON_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,

    /// Require HTTP basic auth with this user name; the password comes from
    /// --basic-auth-password-file or ERGON_BASIC_AUTH_PASSWORD.
    #[arg(long, env = "ERGON_BASIC_AUTH_USERNAME")]
    pub basic_auth_username: Option<String>,

    /// File holding the basic-auth password (trailing newline ignored).
    #[arg(long, env = "ERGON_BASIC_AUTH_PASSWORD_FILE")]
    pub basic_auth_password_file: Option<PathBuf>,

    /// Require `Authorization: Bearer <token>` with the token in this file
    /// (or in ERGON_BEARER_TOKEN).
    #[arg(long, env = "ERGON_BEARER_TOKEN_FILE")]
    pub bearer_token_file: Option<PathBuf>,

    /// Leave `/health` open when authentication is on (for probes).
    #[arg(long, env = "ERGON_HEALTH_NO_AUTH")]
    pub health_no_auth: bool,
}

/// Who may read the endpoints.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    Basic { username: String, password: String },
    Bearer { token: String },
}

impl fmt::Debug for Auth {
    // Never print a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Auth::Bearer { .. } => write!(f, "Bearer(<redacted>)"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, Debug)]
pub struct ServeSettings {
    pub batch_resolution: Duration,
    pub cgroup_batch_resolution: Duration,
    pub batch_buffer: usize,
    pub consumer_ttl: Duration,
    pub max_concurrent_scrapes: usize,
    pub health_stale_after: Duration,
    pub tls: Option<TlsFiles>,
    pub auth: Option<Auth>,
    pub health_no_auth: bool,
}

impl Default for ServeSettings {
    fn default() -> Self {
        Self {
            batch_resolution: DEFAULT_BATCH_RESOLUTION,
            cgroup_batch_resolution: DEFAULT_CGROUP_BATCH_RESOLUTION,
            batch_buffer: DEFAULT_BATCH_BUFFER,
            consumer_ttl: DEFAULT_CONSUMER_TTL,
            max_concurrent_scrapes: DEFAULT_MAX_CONCURRENT_SCRAPES,
            health_stale_after: DEFAULT_HEALTH_STALE_AFTER,
            tls: None,
            auth: None,
            health_no_auth: false,
        }
    }
}

impl ServeArgs {
    pub fn settings(
        &self,
        file: &FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ServeSettings, ConfigError> {
        let d = ServeSettings::default();
        let resolution = |field,
                          flag: &Option<String>,
                          from_file: &Option<String>,
                          default,
                          fix| match flag.as_ref().or(from_file.as_ref()) {
            Some(s) => {
                let r = parse_duration(
                    field,
                    s,
                    Duration::from_millis(1),
                    Duration::from_secs(60),
                    fix,
                )?;
                if r.subsec_nanos() % 1_000_000 != 0 {
                    return Err(invalid(field, s.clone(), "must be whole milliseconds", fix));
                }
                Ok(r)
            }
            None => Ok(default),
        };
        let batch_resolution = resolution(
            "batch_resolution",
            &self.batch_resolution,
            &file.batch_resolution,
            d.batch_resolution,
            "pass whole milliseconds from 1ms to 60s, e.g. --batch-resolution 1ms",
        )?;
        let cgroup_batch_resolution = resolution(
            "cgroup_batch_resolution",
            &self.cgroup_batch_resolution,
            &file.cgroup_batch_resolution,
            d.cgroup_batch_resolution,
            "pass whole milliseconds from 1ms to 60s, e.g. --cgroup-batch-resolution 100ms",
        )?;
        let batch_buffer = match self.batch_buffer.or(file.batch_buffer) {
            Some(n) => n,
            None => match env("MAX_QUEUE_LEN") {
                Some(v) => v.trim().parse().map_err(|_| {
                    invalid(
                        "MAX_QUEUE_LEN",
                        v.clone(),
                        "is not a whole number of samples",
                        "set MAX_QUEUE_LEN (or --batch-buffer) to e.g. 1000000",
                    )
                })?,
                None => d.batch_buffer,
            },
        };
        let batch_buffer = in_range(
            "batch_buffer",
            batch_buffer,
            1000..=100_000_000,
            " samples",
            "pass e.g. --batch-buffer 1000000 (about 20 MB)",
        )?;
        let consumer_ttl = duration_or(
            "consumer_ttl",
            &self.consumer_ttl,
            &file.consumer_ttl,
            Duration::from_secs(1),
            Duration::from_secs(7 * 24 * 3600),
            d.consumer_ttl,
            "pass e.g. --consumer-ttl 10m (1s..7d)",
        )?;
        let max_concurrent_scrapes = in_range(
            "max_concurrent_scrapes",
            self.max_concurrent_scrapes
                .or(file.max_concurrent_scrapes)
                .unwrap_or(d.max_concurrent_scrapes),
            1..=1024,
            "",
            "pass e.g. --max-concurrent-scrapes 8",
        )?;
        let health_stale_after = duration_or(
            "health_stale_after",
            &self.health_stale_after,
            &file.health_stale_after,
            Duration::from_millis(1),
            Duration::from_secs(3600),
            d.health_stale_after,
            "pass e.g. --health-stale-after 1s (1ms..1h)",
        )?;
        let cert = self.tls_cert_file.clone().or(file.tls_cert_file.clone());
        let key = self.tls_key_file.clone().or(file.tls_key_file.clone());
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(p), None) | (None, Some(p)) => {
                return Err(invalid(
                    "tls_cert_file/tls_key_file",
                    p.display().to_string(),
                    "TLS needs both a certificate and its key",
                    "pass both --tls-cert-file and --tls-key-file, or neither",
                ))
            }
        };
        let auth = auth(self, file, env)?;
        Ok(ServeSettings {
            batch_resolution,
            cgroup_batch_resolution,
            batch_buffer,
            consumer_ttl,
            max_concurrent_scrapes,
            health_stale_after,
            tls,
            auth,
            health_no_auth: self.health_no_auth || file.health_no_auth.unwrap_or(false),
        })
    }
}

/// Flag and variable names of one set of credentials, for the messages.
pub(super) struct AuthNames {
    pub user_field: &'static str,
    pub password_field: &'static str,
    pub token_field: &'static str,
    pub password_env: &'static str,
    pub token_env: &'static str,
    pub both_fix: &'static str,
    pub no_password_fix: &'static str,
    pub no_user_fix: &'static str,
}

const SERVE_AUTH: AuthNames = AuthNames {
    user_field: "basic_auth_username",
    password_field: "basic_auth_password_file",
    token_field: "bearer_token_file",
    password_env: PASSWORD_ENV,
    token_env: TOKEN_ENV,
    both_fix: "configure one of --basic-auth-username or --bearer-token-file (ERGON_BEARER_TOKEN)",
    no_password_fix: "put the password in a file and pass --basic-auth-password-file, or set ERGON_BASIC_AUTH_PASSWORD",
    no_user_fix: "pass --basic-auth-username too",
};

fn auth(
    a: &ServeArgs,
    file: &FileConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Auth>, ConfigError> {
    resolve_auth(
        a.basic_auth_username
            .clone()
            .or(file.basic_auth_username.clone()),
        a.basic_auth_password_file
            .clone()
            .or(file.basic_auth_password_file.clone()),
        a.bearer_token_file
            .clone()
            .or(file.bearer_token_file.clone()),
        env,
        &SERVE_AUTH,
    )
}

/// Whether users other than the owner may read the file (mode `0o044`).
pub(super) fn readable_by_others(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
}

/// Basic auth (user + password from a file or env), a bearer token (file
/// or env), or none; both, or half of basic auth, is an error.
pub(super) fn resolve_auth(
    username: Option<String>,
    password_file: Option<PathBuf>,
    token_file: Option<PathBuf>,
    env: &dyn Fn(&str) -> Option<String>,
    n: &AuthNames,
) -> Result<Option<Auth>, ConfigError> {
    let password = secret(
        password_file.as_ref(),
        n.password_field,
        n.password_env,
        env,
    )?;
    let token = secret(token_file.as_ref(), n.token_field, n.token_env, env)?;
    if username.as_deref() == Some("") {
        return Err(invalid(
            n.user_field,
            String::new(),
            "is empty",
            "give the user name the client sends, or leave basic auth off",
        ));
    }
    match (username, password, token) {
        (Some(_), _, Some(_)) => Err(invalid(
            n.user_field,
            String::new(),
            "basic auth and a bearer token are both configured",
            n.both_fix,
        )),
        (Some(username), Some(password), None) => Ok(Some(Auth::Basic { username, password })),
        (Some(username), None, None) => Err(invalid(
            n.user_field,
            username,
            "has no password",
            n.no_password_fix,
        )),
        (None, Some(_), None) => Err(invalid(
            n.password_field,
            password_file
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| n.password_env.into()),
            "a password without a user name",
            n.no_user_fix,
        )),
        (None, _, Some(token)) => Ok(Some(Auth::Bearer { token })),
        (None, None, None) => Ok(None),
    }
}

/// A secret from its file (`field`) or its variable (`var`): never both,
/// never empty. An empty value would switch auth on and accept an empty
/// credential.
fn secret(
    file: Option<&PathBuf>,
    field: &'static str,
    var: &'static str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, ConfigError> {
    match (file, env(var)) {
        (Some(path), Some(_)) => Err(invalid(
            field,
            path.display().to_string(),
            &format!("the secret is given twice: in this file and in {var}"),
            "keep one of the two",
        )),
        (Some(path), None) => secret_file(field, path).map(Some),
        (None, Some(v)) if v.is_empty() => Err(invalid(
            var,
            String::new(),
            "is set but empty (an empty secret would accept an empty credential)",
            "set it to the secret, or unset it",
        )),
        (None, v) => Ok(v),
    }
}

/// The most a secret file may hold: a password or token is bytes, not
/// kilobytes; a bigger file is the wrong path (or `/dev/zero`).
pub(super) const SECRET_FILE_MAX: u64 = 64 * 1024;

pub(super) fn secret_file(
    field: &'static str,
    path: &std::path::Path,
) -> Result<String, ConfigError> {
    let bytes =
        crate::files::read_capped(path, SECRET_FILE_MAX, "password or token").map_err(|e| {
            let fix = if e.kind() == std::io::ErrorKind::InvalidData {
                "point it at the file that holds only the secret"
            } else {
                "check the file exists and is readable by ergon"
            };
            invalid(field, path.display().to_string(), &e.to_string(), fix)
        })?;
    if readable_by_others(path) {
        tracing::warn!(
            file = %path.display(),
            "a secret file other users can read: chmod 600 {}",
            path.display()
        );
    }
    let s = String::from_utf8(bytes).map_err(|_| {
        invalid(
            field,
            path.display().to_string(),
            "is not UTF-8 text",
            "write the secret as text into the file",
        )
    })?;
    let s = s.trim_end_matches(['\n', '\r']).to_owned();
    if s.is_empty() {
        return Err(invalid(
            field,
            path.display().to_string(),
            "the file is empty",
            "write the secret into the file",
        ));
    }
    Ok(s)
}
