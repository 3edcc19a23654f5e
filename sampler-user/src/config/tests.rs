//! Tests of flag, environment and file validation.

use super::*;
use std::path::Path;

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
    assert_eq!(s.drain_interval, Duration::from_secs(1));
    assert_eq!(s.root, SysRoot::default());
    assert_eq!(s.cgroup_retention, Duration::from_secs(600));
    assert_eq!(s.max_cgroups, 5000);
}

#[test]
fn the_drain_ticks_every_100ms_while_pushing_unless_told_otherwise() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = args();
    a.push.remote_write_url = Some("http://127.0.0.1:9/api/v1/write".into());
    a.push.state_dir = Some(dir.path().to_path_buf());
    let s = a.settings().expect("remote_write settings are valid");
    assert_eq!(s.drain_interval, PUSH_DRAIN_INTERVAL);
    a.drain_interval = Some("1s".into());
    let s = a.settings().expect("valid");
    assert_eq!(
        s.drain_interval,
        Duration::from_secs(1),
        "a given interval stands"
    );
    let mut a = args();
    a.drain_interval = Some("50ms".into());
    assert_eq!(
        a.settings().expect("valid").drain_interval,
        Duration::from_millis(50)
    );
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
fn roots_and_the_model_table_come_from_flags_and_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ergon.toml");
    std::fs::write(
        &path,
        "source = \"model\"\ndev_root = \"/fixture/dev\"\nprocfs_root = \"/fixture/proc\"\n[model]\nidle_watts = 1.5\nmax_watts = 6.0\n[[model.cpus]]\ncpus = \"1\"\nidle_watts = 0.5\nmax_watts = 2.0\n",
    )
    .expect("write");
    let mut a = args();
    a.config = Some(path.clone());
    a.sysfs_root = Some(PathBuf::from("/fixture/sys"));
    let s = a.settings().expect("valid");
    assert_eq!(s.source, SourceKind::Model);
    assert_eq!(s.root.dev, PathBuf::from("/fixture/dev"));
    assert_eq!(s.root.procfs, PathBuf::from("/fixture/proc"));
    assert_eq!(s.root.sysfs, PathBuf::from("/fixture/sys"));
    assert_eq!(s.model.of(0).max_watts, 6.0);
    assert_eq!(s.model.of(1).idle_watts, 0.5);
    a.dev_root = Some(PathBuf::from("/flag/dev"));
    assert_eq!(
        a.settings().expect("valid").root.dev,
        PathBuf::from("/flag/dev")
    );
    std::fs::write(&path, "[model]\nidle_wats = 1\n").expect("write");
    let e = a.settings().expect_err("typo in [model]").to_string();
    assert!(e.contains("idle_wats"), "{e}");
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

fn with_env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

#[test]
fn seed_aliases_fill_in_below_ergon_settings() {
    let env = with_env(&[
        ("EXPORTER_PORT", "9100"),
        ("SCRAPE_INTERVAL_SECONDS", "0.001"),
        ("MAX_QUEUE_LEN", "5000"),
    ]);
    let s = args().settings_with_env(&env).expect("aliases are valid");
    assert_eq!(s.listen, "0.0.0.0:9100".parse().expect("addr"));
    assert_eq!(s.period, Duration::from_millis(1));
    assert_eq!(s.serve.batch_buffer, 5000);
    let mut a = args();
    a.listen = Some("127.0.0.1:9200".into());
    a.period = Some("2ms".into());
    a.serve.batch_buffer = Some(7000);
    let s = a.settings_with_env(&env).expect("valid");
    assert_eq!(s.listen.port(), 9200, "ERGON_LISTEN / --listen wins");
    assert_eq!(s.period, Duration::from_millis(2));
    assert_eq!(s.serve.batch_buffer, 7000);
    for (k, v, needle) in [
        ("EXPORTER_PORT", "http", "EXPORTER_PORT"),
        ("SCRAPE_INTERVAL_SECONDS", "5", "50us..1s"),
        ("MAX_QUEUE_LEN", "lots", "MAX_QUEUE_LEN"),
    ] {
        let vars = [(k, v)];
        let e = args()
            .settings_with_env(&with_env(&vars))
            .expect_err(k)
            .to_string();
        assert!(e.contains(needle), "{e}");
    }
}

#[test]
fn serve_defaults_and_resolutions() {
    let s = args().settings_with_env(&|_| None).expect("defaults");
    assert_eq!(s.serve.batch_resolution, Duration::from_millis(1));
    assert_eq!(s.serve.cgroup_batch_resolution, Duration::from_millis(100));
    assert_eq!(s.serve.batch_buffer, 1_000_000);
    assert_eq!(s.serve.consumer_ttl, Duration::from_secs(600));
    assert_eq!(s.serve.max_concurrent_scrapes, 8);
    assert!(s.serve.auth.is_none() && s.serve.tls.is_none());
    let mut a = args();
    a.serve.batch_resolution = Some("500us".into());
    let e = a
        .settings_with_env(&|_| None)
        .expect_err("sub-ms")
        .to_string();
    assert!(
        e.contains("batch_resolution") && e.contains("--batch-resolution"),
        "{e}"
    );
    let mut a = args();
    a.serve.cgroup_batch_resolution = Some("1500us".into());
    let e = a
        .settings_with_env(&|_| None)
        .expect_err("not whole ms")
        .to_string();
    assert!(e.contains("whole milliseconds"), "{e}");
    let mut a = args();
    a.serve.max_concurrent_scrapes = Some(0);
    assert!(a.settings_with_env(&|_| None).is_err());
}

#[test]
fn credentials_come_from_files_or_env_and_must_be_complete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "s3cret\n").expect("write");
    let mut a = args();
    a.serve.basic_auth_username = Some("prom".into());
    a.serve.basic_auth_password_file = Some(pw.clone());
    let s = a.settings_with_env(&|_| None).expect("valid");
    assert_eq!(
        s.serve.auth,
        Some(Auth::Basic {
            username: "prom".into(),
            password: "s3cret".into()
        })
    );
    assert!(
        !format!("{:?}", s.serve.auth).contains("s3cret"),
        "never printed"
    );
    let mut a = args();
    a.serve.basic_auth_username = Some("prom".into());
    let e = a
        .settings_with_env(&|_| None)
        .expect_err("no password")
        .to_string();
    assert!(
        e.contains("ERGON_BASIC_AUTH_PASSWORD") && e.contains("--basic-auth-password-file"),
        "{e}"
    );
    let env = with_env(&[("ERGON_BASIC_AUTH_PASSWORD", "fromenv")]);
    let s = a.settings_with_env(&env).expect("password from env");
    assert!(
        matches!(s.serve.auth, Some(Auth::Basic { ref password, .. }) if password == "fromenv")
    );
    let env = with_env(&[("ERGON_BEARER_TOKEN", "tok")]);
    let s = args().settings_with_env(&env).expect("token from env");
    assert_eq!(
        s.serve.auth,
        Some(Auth::Bearer {
            token: "tok".into()
        })
    );
    let e = a.settings_with_env(&env).expect_err("both").to_string();
    assert!(e.contains("both"), "{e}");
    let mut a = args();
    a.serve.bearer_token_file = Some(dir.path().join("missing"));
    let e = a
        .settings_with_env(&|_| None)
        .expect_err("missing file")
        .to_string();
    assert!(
        e.contains("bearer_token_file") && e.contains("missing"),
        "{e}"
    );
    let mut a = args();
    a.serve.tls_cert_file = Some(pw);
    let e = a
        .settings_with_env(&|_| None)
        .expect_err("cert without key")
        .to_string();
    assert!(e.contains("--tls-key-file"), "{e}");
}

#[test]
fn empty_doubled_and_oversized_secrets_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    // An empty token from the environment would switch auth on and accept
    // `Authorization: Bearer` with nothing after it.
    let env = with_env(&[("ERGON_BEARER_TOKEN", "")]);
    let e = args()
        .settings_with_env(&env)
        .expect_err("empty token")
        .to_string();
    assert!(
        e.contains("ERGON_BEARER_TOKEN") && e.contains("empty"),
        "{e}"
    );
    // An empty password, and an empty user name.
    let mut a = args();
    a.serve.basic_auth_username = Some("u".into());
    let env = with_env(&[("ERGON_BASIC_AUTH_PASSWORD", "")]);
    let e = a
        .settings_with_env(&env)
        .expect_err("empty password")
        .to_string();
    assert!(
        e.contains("ERGON_BASIC_AUTH_PASSWORD") && e.contains("empty"),
        "{e}"
    );
    let mut a = args();
    a.serve.basic_auth_username = Some(String::new());
    let env = with_env(&[("ERGON_BASIC_AUTH_PASSWORD", "pw")]);
    let e = a
        .settings_with_env(&env)
        .expect_err("empty user")
        .to_string();
    assert!(
        e.contains("basic_auth_username") && e.contains("is empty"),
        "{e}"
    );
    // The same secret in a file and in its variable: an error naming both.
    let tok = dir.path().join("tok");
    std::fs::write(&tok, "t0k\n").expect("write");
    let mut a = args();
    a.serve.bearer_token_file = Some(tok.clone());
    let env = with_env(&[("ERGON_BEARER_TOKEN", "other")]);
    let e = a.settings_with_env(&env).expect_err("twice").to_string();
    assert!(
        e.contains("bearer_token_file") && e.contains("ERGON_BEARER_TOKEN") && e.contains("twice"),
        "{e}"
    );
    // A file far bigger than any secret, and one that never ends.
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'x'; 70 * 1024]).expect("write");
    for path in [big, std::path::PathBuf::from("/dev/zero")] {
        let mut a = args();
        a.serve.bearer_token_file = Some(path.clone());
        let e = a
            .settings_with_env(&|_| None)
            .expect_err("too big")
            .to_string();
        assert!(e.contains("larger than 64 KiB"), "{}: {e}", path.display());
    }
}

#[test]
fn a_secret_file_other_users_can_read_is_told_apart() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let tok = dir.path().join("tok");
    std::fs::write(&tok, "t0k\n").expect("write");
    let mode = |m: u32| {
        std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(m)).expect("chmod");
        super::serve::readable_by_others(&tok)
    };
    assert!(mode(0o644), "world-readable");
    assert!(mode(0o640), "group-readable");
    assert!(!mode(0o600), "the owner's only");
}

#[test]
fn a_huge_config_is_refused_and_a_bad_long_line_is_not_echoed_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let huge = dir.path().join("huge.toml");
    std::fs::write(&huge, format!("# {}\n", "x".repeat(2 << 20))).expect("write");
    let mut a = args();
    a.config = Some(huge);
    let e = crate::source::chain(&a.settings_with_env(&|_| None).expect_err("huge"));
    assert!(e.contains("larger than 1024 KiB"), "{e}");
    // 600 KB on one line that is not TOML: the error quotes a preview.
    let long = dir.path().join("long.toml");
    std::fs::write(&long, format!("period = {}\n", "9".repeat(600_000))).expect("write");
    let mut a = args();
    a.config = Some(long);
    let e = a
        .settings_with_env(&|_| None)
        .expect_err("not TOML")
        .to_string();
    assert!(e.len() < 2_000, "{} bytes of error", e.len());
}

/// A header the client could not send is refused at start-up, naming it
/// (it was refused at the first push, without its name, after the state
/// had been opened).
#[test]
fn a_remote_write_header_with_cr_lf_is_refused_at_start_up_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (header, why) in [
        ("X-Scope-OrgID=team\r\nX-Evil: 1", "control character"),
        ("Bad Name=1", "not a valid HTTP header name"),
    ] {
        let mut a = args();
        a.push.remote_write_url = Some("http://127.0.0.1:9/api/v1/write".into());
        a.push.state_dir = Some(dir.path().to_path_buf());
        a.push.remote_write_headers = vec![header.into()];
        let e = a
            .settings_with_env(&|_| None)
            .expect_err("bad header")
            .to_string();
        let name = header.split('=').next().unwrap_or_default();
        assert!(
            e.contains("remote_write_header") && e.contains(name) && e.contains(why),
            "{e}"
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Any bytes as the config file: settings or an error that names the
    /// file, never a panic, and never the file echoed back whole.
    #[test]
    fn arbitrary_config_bytes_give_settings_or_an_error_naming_the_file(
        bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2000),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ergon.toml");
        std::fs::write(&path, &bytes).expect("write");
        let mut a = args();
        a.config = Some(path.clone());
        if let Err(e) = a.settings_with_env(&|_| None) {
            let e = e.to_string();
            proptest::prop_assert!(e.contains("ergon.toml") || e.contains("invalid"), "{e}");
            proptest::prop_assert!(e.len() < 4096, "{} bytes", e.len());
        }
    }
}

/// `ergon run`'s arguments as the binary parses them.
#[derive(clap::Parser, Debug)]
struct RunCli {
    #[command(flatten)]
    run: RunArgs,
}

/// The config-file key of a flag: its name with `_` for `-`; the model
/// flags live in the `[model]` table.
fn file_key(long: &str) -> String {
    let key = long.replace('-', "_");
    match key.strip_prefix("model_") {
        Some(k) => format!("model.{k}"),
        None => key,
    }
}

/// A value for every flag of `ergon run` (not the default), as given on the
/// command line and as written in TOML. A new flag fails the test below
/// until it is added here.
fn sample(long: &str, files: &Path) -> Option<(Option<String>, String)> {
    let file = |name: &str| {
        let p = files.join(name);
        std::fs::write(&p, "secret-or-pem\n").expect("write sample file");
        p.display().to_string()
    };
    let s = |v: &str| Some((Some(v.to_string()), format!("{v:?}")));
    let n = |v: &str| Some((Some(v.to_string()), v.to_string()));
    let list = |v: &str| Some((Some(v.to_string()), format!("[{v:?}]")));
    let path = |name: &str| {
        let p = file(name);
        Some((Some(p.clone()), format!("{p:?}")))
    };
    let switch = || Some((None, "true".to_string()));
    match long {
        "source" => s("synthetic"),
        "period" => s("1ms"),
        "synthetic-watts" => n("12.5"),
        "synthetic-idle-watts" => n("2.5"),
        "synthetic-layout" => s("package"),
        "idle-energy" => s("share"),
        "package-idle-watts" => Some((Some("0=25.5".into()), "{ 0 = 25.5 }".into())),
        "model-idle-watts" => n("1.5"),
        "model-max-watts" => n("5.5"),
        "listen" => s("127.0.0.1:9999"),
        "ringbuf-size" => n("8192"),
        "drain-interval" => s("50ms"),
        "cgroup-retention" => s("5m"),
        "max-cgroups" => n("77"),
        "bpf-stats" => switch(),
        "timer" => s("perf"),
        "sysfs-root" => s("/fixture/sys"),
        "procfs-root" => s("/fixture/proc"),
        "cgroup-root" => s("/fixture/cgroup"),
        "dev-root" => s("/fixture/dev"),
        "batch-resolution" => s("5ms"),
        "cgroup-batch-resolution" => s("200ms"),
        "batch-buffer" => n("1234"),
        "consumer-ttl" => s("3m"),
        "max-concurrent-scrapes" => n("3"),
        "health-stale-after" => s("2s"),
        "tls-cert-file" => path("cert.pem"),
        "tls-key-file" => path("key.pem"),
        "basic-auth-username" => s("alice"),
        "basic-auth-password-file" => path("password"),
        "bearer-token-file" => path("token"),
        "health-no-auth" => switch(),
        "remote-write-url" => s("https://receiver.example/api/v1/write"),
        "remote-write-username" => s("bob"),
        "remote-write-password-file" => path("rw-password"),
        "remote-write-bearer-token-file" => path("rw-token"),
        "remote-write-ca-file" => path("ca.pem"),
        "remote-write-max-samples" => n("500"),
        "remote-write-header" => list("X-Scope-OrgID=team-a"),
        "external-label" => list("node=web-1"),
        "push-interval" => s("30s"),
        "push-buffer" => n("1000"),
        "state-dir" => s("/fixture/state"),
        "fsync-interval" => s("2s"),
        "state-retention" => s("1d"),
        "kubelet-url" => s("https://127.0.0.1:10250"),
        "node-name" => s("node-1"),
        "kubelet-token-file" => path("kubelet-token"),
        "kubelet-ca-file" => path("kubelet-ca.pem"),
        "kubelet-insecure-tls" => switch(),
        "runtime-socket" => list("/fixture/docker.sock"),
        _ => None,
    }
}

/// What `ergon run ARGS` would run with (or the error it would stop with),
/// with no environment.
fn outcome(args: &[String]) -> String {
    use clap::Parser;
    let cli =
        RunCli::try_parse_from(std::iter::once("ergon".to_string()).chain(args.iter().cloned()))
            .expect("the flags parse");
    format!("{:?}", cli.run.settings_with_env(&|_| None))
}

#[test]
fn every_flag_of_run_has_a_file_key_with_the_same_value_and_meaning() {
    use clap::CommandFactory;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut checked = 0;
    for arg in RunCli::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "config" || long == "help" {
            continue;
        }
        let Some((value, toml_value)) = sample(long, dir.path()) else {
            panic!(
                "--{long} has no sample value in this test: add one (and its file key {})",
                file_key(long)
            );
        };
        // A setting that only means something beside another gets it, both ways.
        let context: Vec<String> = if long.starts_with("remote-write-")
            && long != "remote-write-url"
            || matches!(long, "external-label" | "push-interval")
        {
            vec!["--remote-write-url=https://receiver.example/api/v1/write".into()]
        } else if long.starts_with("kubelet-") && long != "kubelet-url" || long == "node-name" {
            vec!["--kubelet-url=https://127.0.0.1:10250".into()]
        } else {
            Vec::new()
        };
        let default = outcome(&context);
        let mut flag = context.clone();
        flag.push(format!("--{long}"));
        flag.extend(value);
        let from_flag = outcome(&flag);
        let key = file_key(long);
        let toml = match key.split_once('.') {
            Some((table, k)) => format!("[{table}]\n{k} = {toml_value}\n"),
            None => format!("{key} = {toml_value}\n"),
        };
        let config = dir.path().join(format!("{long}.toml"));
        std::fs::write(&config, &toml).expect("write config");
        let mut file = context;
        file.extend(["--config".into(), config.display().to_string()]);
        let from_file = outcome(&file);
        assert_eq!(
            from_flag,
            from_file,
            "--{long} on the command line and `{}` in the file",
            toml.trim()
        );
        assert_ne!(
            from_flag, default,
            "--{long}'s sample value changes nothing: pick one that does"
        );
        // The environment variable is the flag's, upper case, with ERGON_.
        let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        let want = format!("ERGON_{}", long.replace('-', "_").to_uppercase());
        let plural = matches!(long, "remote-write-header" | "external-label");
        assert!(
            env.as_deref() == Some(want.as_str()) || (plural && env == Some(format!("{want}S"))),
            "--{long} reads {env:?}, not {want}"
        );
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} flags seen");
}

#[test]
fn a_list_follows_the_precedence_and_the_old_key_still_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write config");
        p.display().to_string()
    };
    let url = "--remote-write-url=https://receiver.example/api/v1/write";
    let new = write("new.toml", "remote_write_header = [\"X-A=file\"]\n");
    let old = write("old.toml", "remote_write_headers = [\"X-A=file\"]\n");
    let both = write(
        "both.toml",
        "remote_write_header = [\"X-A=1\"]\nremote_write_headers = [\"X-A=2\"]\n",
    );
    let headers = |args: &[&str]| {
        use clap::Parser;
        let cli = RunCli::try_parse_from(std::iter::once("ergon").chain(args.iter().copied()))
            .expect("parse");
        cli.run
            .settings_with_env(&|_| None)
            .map(|s| {
                s.push
                    .remote_write()
                    .map(|r| r.headers.clone())
                    .unwrap_or_default()
            })
            .map_err(|e| e.to_string())
    };
    let file = Ok(vec![("X-A".to_string(), "file".to_string())]);
    assert_eq!(headers(&[url, "--config", &new]), file);
    assert_eq!(
        headers(&[url, "--config", &old]),
        file,
        "the deprecated key is accepted"
    );
    // The flag wins over the file, as for every other setting: not merged.
    assert_eq!(
        headers(&[url, "--config", &new, "--remote-write-header", "X-A=flag"]),
        Ok(vec![("X-A".to_string(), "flag".to_string())])
    );
    let e = headers(&[url, "--config", &both]).expect_err("both spellings");
    assert!(
        e.contains("remote_write_header") && e.contains("deprecated"),
        "{e}"
    );
}

/// The rows of the README's configuration table: (flags, env, key, the
/// default cell's `code` spans).
fn readme_rows() -> Vec<(Vec<String>, String, String, Vec<String>)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    readme
        .lines()
        .skip_while(|l| !l.starts_with("| flag | env | TOML key | default | meaning |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let flags = ticked(cells[1])
                .iter()
                .map(|f| {
                    f.split_whitespace()
                        .next()
                        .unwrap_or("")
                        .trim_start_matches("--")
                        .to_string()
                })
                .collect();
            (
                flags,
                cells[2].to_string(),
                cells[3].to_string(),
                ticked(cells[4]),
            )
        })
        .collect()
}

#[test]
fn the_readme_configuration_table_is_the_flags() {
    use clap::CommandFactory;
    let rows = readme_rows();
    assert!(
        rows.len() >= 40,
        "the table was not found or is short: {} rows",
        rows.len()
    );
    let cmd = RunCli::command();
    let args: Vec<_> = cmd
        .get_arguments()
        .filter(|a| a.get_long().is_some_and(|l| l != "help"))
        .collect();
    for arg in &args {
        let long = arg.get_long().unwrap_or_default();
        let Some((_, env, key, default)) = rows.iter().find(|r| r.0.iter().any(|f| f == long))
        else {
            panic!("--{long} is missing from the README's configuration table");
        };
        if let Some(e) = arg.get_env() {
            let e = e.to_string_lossy();
            assert!(
                env.contains(&format!("`{e}`")),
                "--{long}: README says env {env}, the code reads {e}"
            );
        }
        if long != "config" {
            let k = file_key(long);
            assert!(
                key.contains(&format!("`{k}`")),
                "--{long}: README says key {key}, the file takes `{k}`"
            );
        }
        // A default the help states is the README's.
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        if let Some(d) = help
            .split("[default: ")
            .nth(1)
            .and_then(|d| d.split(']').next())
        {
            if default.len() == 1 && !d.contains(' ') {
                assert_eq!(default[0], d, "--{long}: README default vs --help");
            }
        }
    }
    for (flags, ..) in &rows {
        for f in flags {
            assert!(
                args.iter().any(|a| a.get_long() == Some(f.as_str())),
                "the README lists --{f}, which `ergon run` does not take"
            );
        }
    }
}

#[test]
fn every_default_the_help_states_is_the_default() {
    use clap::CommandFactory;
    // With remote_write on, so the push settings' defaults count too.
    let base = ["--remote-write-url", "http://127.0.0.1:9/api/v1/write"].map(String::from);
    let default = outcome(&base);
    let mut checked = 0;
    for arg in RunCli::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let Some(stated) = help
            .split("[default: ")
            .nth(1)
            .and_then(|d| d.split([']', ',']).next())
        else {
            continue;
        };
        // Not values: a switch's "off", and the defaults found at run time
        // ($NODE_NAME, the service account's files, the system's roots, the
        // sockets that exist). Giving --model-*-watts at all declares this
        // machine's watts (no warning), a different outcome by design. A
        // default that is another flag's value (`--synthetic-watts`) or
        // found as the daemon runs (`learned`) is not a value either.
        if stated == "off"
            || stated == "learned"
            || stated.starts_with("--")
            || stated.starts_with('$')
            || stated.starts_with("the ")
            || stated.contains(' ')
            || long.starts_with("model-")
        {
            continue;
        }
        let mut args = base.to_vec();
        args.extend([format!("--{long}"), stated.to_string()]);
        assert_eq!(
            outcome(&args),
            default,
            "--{long} {stated}, the default its help states, is not what no flag gives"
        );
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} stated defaults checked");
}
