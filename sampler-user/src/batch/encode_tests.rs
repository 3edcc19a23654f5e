//! Encoder output against golden files, content negotiation, deadlines.

use std::{sync::Arc, time::Duration};

use super::*;
use crate::batch::store::LeasedSeries;

fn lease() -> Lease {
    let pkg: Arc<str> = render_labels(&[("package", "0"), ("domain", "pkg")]).into();
    let cg: Arc<str> = render_labels(&[
        ("cgroup", "/system.slice/a\"b\\c.service"),
        ("unit", "a\"b\\c.service"),
        ("runtime", ""),
        ("container_id", ""),
        ("pod_uid", ""),
    ])
    .into();
    Lease {
        consumer: "t".into(),
        series: vec![
            LeasedSeries {
                family: Family::Package,
                labels: pkg,
                id: 0,
                points: vec![
                    (1_700_000_000_001, 0.5),
                    (1_700_000_000_002, 1.25),
                    (1_700_000_000_010, 1e-7),
                ],
            },
            LeasedSeries {
                family: Family::Cgroup,
                labels: cg,
                id: 1,
                points: vec![(1_700_000_000_100, 0.125)],
            },
        ],
        covers_to: 42,
    }
}

fn golden(name: &str, got: &[u8]) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/batch")
        .join(name);
    if std::env::var_os("ERGON_BLESS").is_some() {
        std::fs::write(&path, got).expect("write golden file");
    }
    let want = std::fs::read(&path).expect("golden file (ERGON_BLESS=1 writes it)");
    assert_eq!(
        String::from_utf8_lossy(got),
        String::from_utf8_lossy(&want),
        "{name} differs from the golden file"
    );
}

#[test]
fn text_format_matches_the_golden_file() {
    let e = encode(&lease(), Format::Text, None);
    golden("batch.txt", &e.body);
    assert_eq!(e.samples, 4);
    assert_eq!(
        e.complete,
        Some(42),
        "all written: the next read starts after"
    );
    assert_eq!(
        e.written,
        vec![(0, 1_700_000_000_010), (1, 1_700_000_000_100)]
    );
    assert!(!e.cut);
}

#[test]
fn openmetrics_matches_the_golden_file_and_its_timestamps_parse_back_to_the_ms() {
    let e = encode(&lease(), Format::OpenMetrics, None);
    golden("batch.om.txt", &e.body);
    let text = String::from_utf8(e.body).expect("utf-8");
    assert!(text.ends_with("# EOF\n"));
    // What Prometheus' OpenMetrics parser does: int64(float(ts) * 1000).
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let ts: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|t| t.parse().ok())
            .expect("ts");
        let ms = (ts * 1000.0) as i64;
        assert!(
            [
                1_700_000_000_001,
                1_700_000_000_002,
                1_700_000_000_010,
                1_700_000_000_100
            ]
            .contains(&ms),
            "{line} parses to {ms}"
        );
    }
}

#[test]
fn openmetrics_seconds_survive_the_float_round_trip_for_every_millisecond() {
    // A whole day of ms around now: the truncating parse never lands a ms early.
    let base = 1_790_000_000_000i64;
    for ts in (base..base + 86_400_000).step_by(61) {
        let s = format!("{}.{:03}", ts / 1000, ts % 1000);
        let back = (s.parse::<f64>().expect("float") * 1000.0) as i64;
        assert_eq!(back, ts, "{s}");
    }
}

#[test]
fn a_passed_deadline_cuts_the_batch_and_says_how_far_each_series_got() {
    let points: Vec<(i64, f64)> = (0..5000)
        .map(|i| (1_700_000_000_000 + i, i as f64))
        .collect();
    let l = Lease {
        consumer: "t".into(),
        series: vec![LeasedSeries {
            family: Family::Package,
            labels: "{package=\"0\",domain=\"pkg\"}".into(),
            id: 3,
            points,
        }],
        covers_to: 5000,
    };
    let e = encode(
        &l,
        Format::Text,
        Some(Instant::now() - Duration::from_millis(1)),
    );
    assert!(e.cut);
    assert_eq!(e.complete, None, "cut: the next read looks again");
    assert_eq!(e.samples, 1024, "cut at the first check");
    assert_eq!(e.written, vec![(3, 1_700_000_000_000 + 1023)]);
    let lines = String::from_utf8(e.body)
        .expect("utf-8")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    assert_eq!(lines, 1024);
}

#[test]
fn accept_negotiation_follows_the_q_values() {
    let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(Format::negotiate(Some(prom)), Ok(Format::OpenMetrics));
    assert_eq!(Format::negotiate(None), Ok(Format::Text));
    assert_eq!(Format::negotiate(Some("*/*")), Ok(Format::Text));
    assert_eq!(
        Format::negotiate(Some("text/plain;version=0.0.4")),
        Ok(Format::Text)
    );
    assert_eq!(
        Format::negotiate(Some("application/openmetrics-text;q=0.3,text/plain;q=0.2")),
        Ok(Format::OpenMetrics)
    );
    assert!(matches!(
        Format::negotiate(Some("text/plain;q=high")),
        Err(AcceptError::BadQ { .. })
    ));
}
