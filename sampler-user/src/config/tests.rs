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
