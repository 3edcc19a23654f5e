//! Tests of flag, environment and file validation.

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
    assert_eq!(s.drain_interval, Duration::from_millis(100));
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
