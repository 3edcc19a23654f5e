//! Tests of the HTTP endpoints, through the router (and, for TLS, through
//! a real listener).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    body::{to_bytes, Body},
    http::{Request, StatusCode},
};
use tower::ServiceExt;

use super::*;
use crate::{
    batch::{self, Family, SeriesKey, Store},
    snapshot::{shared, Snapshot},
};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn collector(
    name: &'static str,
    f: impl Fn() -> Result<String, std::fmt::Error> + Send + Sync + 'static,
) -> NamedCollector {
    NamedCollector {
        name,
        collect: Arc::new(f),
    }
}

fn app_with(collectors: Vec<NamedCollector>, max_scrapes: usize) -> App {
    let snap = Snapshot {
        last_reading_unix: now_ms() as f64 / 1000.0,
        ..Snapshot::default()
    };
    App::new(
        collectors,
        Arc::new(Mutex::new(Store::new(10_000, Duration::from_secs(600)))),
        shared(snap),
        Arc::new(AtomicU64::new(0)),
        Arc::new(HttpStats::default()),
        max_scrapes,
        Duration::from_secs(1),
    )
}

fn app() -> App {
    app_with(
        vec![collector("energy", || {
            Ok("# HELP ergon_x Joules.\n# TYPE ergon_x counter\n# UNIT ergon_x joules\nergon_x_total 1.5\n".into())
        })],
        8,
    )
}

async fn get(r: &Router, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
    let mut req = Request::builder().uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = r
        .clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let (parts, body) = resp.into_parts();
    let bytes = to_bytes(body, usize::MAX).await.expect("body");
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn push(app: &App, from: i64, n: i64) {
    let mut s = batch::lock(&app.store);
    for ts in from..from + n {
        s.push(
            &SeriesKey::Package {
                package: 0,
                domain: "pkg",
            },
            Family::Package,
            || "{package=\"0\",domain=\"pkg\"}".into(),
            ts,
            ts as f64,
        );
    }
}

fn sample_lines(body: &str) -> usize {
    body.lines().filter(|l| !l.starts_with('#')).count()
}

#[tokio::test]
async fn batch_serves_each_consumer_every_sample_once() {
    let app = app();
    let r = router(app.clone(), None, false);
    let (code, h, body) = get(&r, "/metrics/batch?consumer=a", &[]).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(h[header::CONTENT_TYPE], batch::encode::TEXT_CONTENT_TYPE);
    assert_eq!(sample_lines(&body), 0, "a new consumer starts from now");
    let t = now_ms() - 1000;
    push(&app, t, 100);
    let (_, _, body) = get(&r, "/metrics/batch?consumer=a", &[]).await;
    assert_eq!(sample_lines(&body), 100);
    let (_, _, body) = get(&r, "/metrics/batch?consumer=a", &[]).await;
    assert_eq!(sample_lines(&body), 0, "fully written: never sent again");
    let (_, h, body) = get(
        &r,
        "/metrics/batch?consumer=b&from=oldest",
        &[("accept", "application/openmetrics-text;version=1.0.0")],
    )
    .await;
    assert_eq!(
        h[header::CONTENT_TYPE],
        batch::encode::OPENMETRICS_CONTENT_TYPE
    );
    assert_eq!(sample_lines(&body), 100, "from=oldest: everything held");
    assert!(body.ends_with("# EOF\n"));
}

#[tokio::test]
async fn a_body_dropped_before_its_end_does_not_move_the_cursor() {
    let app = app();
    let r = router(app.clone(), None, false);
    get(&r, "/metrics/batch?consumer=a", &[]).await;
    push(&app, now_ms() - 100_000, 9_000);
    let resp = r
        .clone()
        .oneshot(
            Request::builder()
                .uri("/metrics/batch?consumer=a")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    // Read one frame, then drop the rest (the client went away).
    let mut body = resp.into_body();
    let first = http_body_util::BodyExt::frame(&mut body).await;
    assert!(first.is_some());
    drop(body);
    let (_, _, text) = get(&r, "/metrics/batch?consumer=a", &[]).await;
    assert_eq!(sample_lines(&text), 9_000, "nothing was lost");
}

#[tokio::test]
async fn malformed_requests_get_400_with_a_reason() {
    let r = router(app(), None, false);
    for (uri, headers, needle) in [
        ("/metrics/batch", vec![], "missing consumer"),
        ("/metrics/batch?consumer=a%20b", vec![], "invalid consumer"),
        (
            "/metrics/batch?consumer=a&from=yesterday",
            vec![],
            "invalid from",
        ),
        (
            "/metrics/batch?consumer=a&x=1",
            vec![],
            "unknown query parameter",
        ),
        (
            "/metrics/batch?consumer=a",
            vec![("x-prometheus-scrape-timeout-seconds", "soon")],
            "X-Prometheus-Scrape-Timeout-Seconds",
        ),
        (
            "/metrics",
            vec![("x-prometheus-scrape-timeout-seconds", "-1")],
            "X-Prometheus-Scrape-Timeout-Seconds",
        ),
        ("/metrics", vec![("accept", "text/plain;q=lots")], "Accept"),
        (
            "/health",
            vec![("x-prometheus-scrape-timeout-seconds", "NaN")],
            "malformed X-Prometheus-Scrape-Timeout-Seconds",
        ),
        (
            "/metrics",
            vec![("x-prometheus-scrape-timeout-seconds", "100000")],
            "above its maximum, 86400 s",
        ),
        (
            "/metrics/batch?consumer=a&consumer=b",
            vec![],
            "query parameter \"consumer\" given twice",
        ),
        (
            "/metrics/batch?consumer=a&from=oldest&from=now",
            vec![],
            "given twice",
        ),
    ] {
        let (code, _, body) = get(&r, uri, &headers).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert!(body.contains(needle), "{uri}: {body}");
    }
    let (code, _, body) = get(&r, "/nope", &[]).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(body.contains("/metrics/batch"), "{body}");
}

/// A 60 KB consumer name is refused without being echoed back whole.
#[tokio::test]
async fn a_huge_bad_value_is_quoted_not_echoed() {
    let r = router(app(), None, false);
    let name = "x".repeat(60_000);
    let (code, _, body) = get(&r, &format!("/metrics/batch?consumer={name}"), &[]).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("invalid consumer") && body.contains("(60000 bytes in all)"),
        "{body}"
    );
    assert!(body.len() < 300, "{} bytes answered", body.len());
}

/// A HEAD of the batch endpoint takes nothing: no consumer is registered,
/// so 64 HEADs squat no slot, and a later GET of the name is a new
/// consumer's (starting from now).
#[tokio::test]
async fn a_head_of_the_batch_endpoint_registers_no_consumer() {
    let app = app();
    let r = router(app.clone(), None, false);
    for i in 0..100 {
        let resp = r
            .clone()
            .oneshot(
                Request::builder()
                    .method("HEAD")
                    .uri(format!("/metrics/batch?consumer=h{i}"))
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("infallible");
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert!(
        batch::lock(&app.store).consumer_stats().is_empty(),
        "no consumer registered"
    );
}

#[tokio::test]
async fn metrics_negotiates_text_or_openmetrics() {
    let r = router(app(), None, false);
    let (_, h, text) = get(&r, "/metrics", &[]).await;
    assert_eq!(h[header::CONTENT_TYPE], batch::encode::TEXT_CONTENT_TYPE);
    assert_eq!(
        text,
        "# HELP ergon_x_total Joules.\n# TYPE ergon_x_total counter\nergon_x_total 1.5\n"
    );
    let (_, h, om) = get(
        &r,
        "/metrics",
        &[(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )],
    )
    .await;
    assert_eq!(
        h[header::CONTENT_TYPE],
        batch::encode::OPENMETRICS_CONTENT_TYPE
    );
    assert!(
        om.contains("# UNIT ergon_x joules\n") && om.ends_with("# EOF\n"),
        "{om}"
    );
}

#[tokio::test]
async fn a_slow_collector_is_cut_off_at_the_deadline_and_counted() {
    let app = app_with(
        vec![
            collector("energy", || Ok("# TYPE ergon_a gauge\nergon_a 1\n".into())),
            collector("slow", || {
                std::thread::sleep(Duration::from_secs(2));
                Ok("# TYPE ergon_slow gauge\nergon_slow 1\n".into())
            }),
        ],
        8,
    );
    let r = router(app.clone(), None, false);
    let t = std::time::Instant::now();
    let (code, h, body) = get(
        &r,
        "/metrics",
        &[("x-prometheus-scrape-timeout-seconds", "0.4")],
    )
    .await;
    let took = t.elapsed();
    assert_eq!(code, StatusCode::OK);
    assert!(
        body.contains("ergon_a 1") && !body.contains("ergon_slow"),
        "{body}"
    );
    assert_eq!(h["x-ergon-collectors-timed-out"], "slow");
    assert!(
        took < Duration::from_secs(2),
        "returned at the deadline, not after the collector: {took:?}"
    );
    assert_eq!(app.stats.collector_counts(), vec![("slow", 1, 0)]);
}

#[tokio::test]
async fn a_panicking_collector_fails_that_scrape_only() {
    let app = app_with(
        vec![collector("broken", || panic!("deliberate test panic"))],
        8,
    );
    let r = router(app.clone(), None, false);
    let (code, _, body) = get(&r, "/metrics", &[]).await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("broken"), "{body}");
    let (code, _, _) = get(&r, "/health", &[]).await;
    assert_eq!(code, StatusCode::OK, "the server goes on");
    let (code, _, _) = get(&r, "/metrics", &[]).await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(app.stats.collector_counts(), vec![("broken", 0, 2)]);
}

#[tokio::test]
async fn scrapes_beyond_the_cap_get_503() {
    let app = app_with(
        vec![collector("slow", || {
            std::thread::sleep(Duration::from_millis(500));
            Ok(String::new())
        })],
        1,
    );
    let r = router(app.clone(), None, false);
    let first = tokio::spawn({
        let r = r.clone();
        async move { get(&r, "/metrics", &[]).await.0 }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (code, h, body) = get(&r, "/metrics/batch?consumer=x", &[]).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("--max-concurrent-scrapes"), "{body}");
    assert_eq!(h[header::RETRY_AFTER], "1");
    assert_eq!(first.await.expect("join"), StatusCode::OK);
    let (code, _, _) = get(&r, "/metrics/batch?consumer=x", &[]).await;
    assert_eq!(code, StatusCode::OK, "the slot is free again");
}

#[tokio::test]
async fn health_follows_the_seed_document() {
    let app = app();
    let r = router(app.clone(), None, false);
    let (code, h, body) = get(&r, "/health", &[]).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(h[header::CONTENT_TYPE], "application/json");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["status"], "healthy");
    assert!(
        v["lastScrapeTime"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{body}"
    );
    assert!(v["lastPushTime"].is_null());
    assert_eq!(v["bufferedSamples"], 0);
    assert!(
        body.starts_with("{\"status\":"),
        "fields in the documented order: {body}"
    );

    let now = 1_800_000_000.0;
    let (code, h) = health::report(now - 0.5, now, Duration::from_secs(1), 7, None, &[], None);
    assert_eq!(
        (code, h.status, h.buffered_samples),
        (StatusCode::OK, "healthy", 7)
    );
    let (code, h) = health::report(
        now - 3.0,
        now,
        Duration::from_secs(1),
        7,
        Some(now - 10.0),
        &[],
        None,
    );
    assert_eq!(
        (code, h.status),
        (StatusCode::SERVICE_UNAVAILABLE, "unhealthy")
    );
    let e = h.error.expect("error details");
    assert!(e.message.contains("3.000 s"), "{}", e.message);
    assert_eq!(e.threshold_seconds, 1.0);
    let (code, h) = health::report(0.0, now, Duration::from_secs(1), 0, None, &[], None);
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(h.last_scrape_time.is_none());
    assert!(h
        .error
        .expect("error")
        .message
        .contains("no energy reading yet"));
    // Fresh readings, but a counter stopped while its CPUs run: unhealthy.
    let stalled = vec!["power PMU energy-pkg".to_string()];
    let (code, h) = health::report(
        now - 0.1,
        now,
        Duration::from_secs(1),
        0,
        None,
        &stalled,
        None,
    );
    assert_eq!(
        (code, h.status),
        (StatusCode::SERVICE_UNAVAILABLE, "unhealthy")
    );
    let e = h.error.expect("error");
    assert!(
        e.message
            .contains("energy counter stalled: power PMU energy-pkg has not advanced"),
        "{}",
        e.message
    );
    // Fresh readings, but the durable state cannot be committed: unhealthy,
    // with why, since when and what waits in memory.
    let failing = health::state_failure(
        &crate::push::queue::Outage::for_test(1_000, "No space left on device (os error 28)", 3),
        4_500,
        1234,
    );
    let (code, h) = health::report(
        now - 0.1,
        now,
        Duration::from_secs(1),
        0,
        None,
        &[],
        Some(failing),
    );
    assert_eq!(
        (code, h.status),
        (StatusCode::SERVICE_UNAVAILABLE, "unhealthy")
    );
    let m = h.error.expect("error").message;
    assert!(
        m.contains(
            "cannot be committed since 3.5 s ago (3 failed attempts; last: No space left on device"
        ) && m.contains("1234 samples wait in memory")
            && m.contains("--state-dir"),
        "{m}"
    );
}

#[tokio::test]
async fn basic_and_bearer_auth_protect_every_endpoint() {
    let basic = Auth::Basic {
        username: "prom".into(),
        password: "s3cret".into(),
    };
    let r = router(app(), Some(basic.clone()), false);
    // "prom:s3cret" and "prom:wrong"
    let good = "Basic cHJvbTpzM2NyZXQ=";
    let bad = "Basic cHJvbTp3cm9uZw==";
    for path in ["/metrics", "/metrics/batch?consumer=a", "/health"] {
        let (code, h, body) = get(&r, path, &[]).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{path}");
        assert!(h[header::WWW_AUTHENTICATE]
            .to_str()
            .is_ok_and(|v| v.starts_with("Basic")));
        assert!(body.contains("basic auth"), "{body}");
        assert_eq!(
            get(&r, path, &[("authorization", bad)]).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            get(&r, path, &[("authorization", good)]).await.0,
            StatusCode::OK,
            "{path}"
        );
    }
    let open_health = router(app(), Some(basic), true);
    assert_eq!(get(&open_health, "/health", &[]).await.0, StatusCode::OK);
    assert_eq!(
        get(&open_health, "/metrics", &[]).await.0,
        StatusCode::UNAUTHORIZED
    );

    let bearer = router(
        app(),
        Some(Auth::Bearer {
            token: "tok".into(),
        }),
        false,
    );
    assert_eq!(
        get(&bearer, "/metrics", &[("authorization", "Bearer tok")])
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        get(&bearer, "/metrics", &[("authorization", "Bearer tok2")])
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&bearer, "/metrics", &[("authorization", good)]).await.0,
        StatusCode::UNAUTHORIZED
    );
    let unprotected = router(app(), None, false);
    assert_eq!(get(&unprotected, "/metrics", &[]).await.0, StatusCode::OK);
}

#[tokio::test]
async fn tls_handshake_and_request_with_a_test_certificate() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::{rustls, TlsConnector};

    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let dir = tempfile::tempdir().expect("tempdir");
    let files = crate::config::TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    std::fs::write(&files.cert, cert.cert.pem()).expect("write cert");
    std::fs::write(&files.key, cert.key_pair.serialize_pem()).expect("write key");
    let cfg = tls::server_config(&files).expect("server config");

    let listener = bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let server = tokio::spawn(serve(
        listener,
        router(app(), None, false),
        Some(cfg),
        stop.clone(),
    ));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut resp = String::new();
    tls.read_to_string(&mut resp).await.expect("read");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"status\":\"healthy\""), "{resp}");

    // Plain HTTP to the TLS port gets no answer.
    let mut plain = tokio::net::TcpStream::connect(addr).await.expect("connect");
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), plain.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("healthy"));
    stop.cancel();
    server.await.expect("join").expect("serve");
}

/// A certificate outside its dates is warned about with them (it started
/// silently before); one inside them is not.
#[test]
fn an_expired_or_not_yet_valid_certificate_is_named_with_its_dates() {
    let cert = |from: (i32, u8, u8), until: (i32, u8, u8)| {
        let mut p = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params");
        p.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        p.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
        let key = rcgen::KeyPair::generate().expect("key");
        p.self_signed(&key).expect("cert").der().to_vec()
    };
    let path = std::path::Path::new("/etc/ergon/tls.crt");
    // 2026-12-01T00:00:00Z
    let now = 1_796_083_200;
    let w = tls::validity_warning(path, &cert((2024, 1, 1), (2025, 1, 1)), now).expect("expired");
    assert!(
        w.contains(
            "/etc/ergon/tls.crt expired on 2025-01-01T00:00:00Z (valid from 2024-01-01T00:00:00Z)"
        ) && w.contains("--tls-cert-file"),
        "{w}"
    );
    let w = tls::validity_warning(path, &cert((2027, 6, 1), (2028, 6, 1)), now).expect("not yet");
    assert!(
        w.contains("is not valid before 2027-06-01T00:00:00Z (until 2028-06-01T00:00:00Z)")
            && w.contains("clock"),
        "{w}"
    );
    assert_eq!(
        tls::validity_warning(path, &cert((2026, 1, 1), (2027, 1, 1)), now),
        None
    );
    assert_eq!(tls::validity_warning(path, b"junk", now), None);
}

#[test]
fn bad_tls_files_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").expect("write");
    let files = crate::config::TlsFiles {
        cert: junk.clone(),
        key: junk.clone(),
    };
    let e = tls::server_config(&files).expect_err("junk").to_string();
    assert!(
        e.contains("junk.pem") && e.contains("--tls-cert-file"),
        "{e}"
    );
    let files = crate::config::TlsFiles {
        cert: dir.path().join("missing.pem"),
        key: junk,
    };
    let e = tls::server_config(&files).expect_err("missing").to_string();
    assert!(e.contains("missing.pem"), "{e}");
    // An endless file is refused at its cap; it aborted the process with
    // an allocation failure before.
    let files = crate::config::TlsFiles {
        cert: "/dev/zero".into(),
        key: "/dev/zero".into(),
    };
    let e = crate::source::chain(&tls::server_config(&files).expect_err("endless"));
    assert!(
        e.contains("/dev/zero") && e.contains("larger than 1024 KiB"),
        "{e}"
    );
    // An encrypted key: named as such (rustls said only "no items found").
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let cert_pem = dir.path().join("cert.pem");
    std::fs::write(&cert_pem, cert.cert.pem()).expect("write cert");
    let enc = dir.path().join("enc.pem");
    std::fs::write(
        &enc,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .expect("write");
    let files = crate::config::TlsFiles {
        cert: cert_pem.clone(),
        key: enc,
    };
    let e = tls::server_config(&files)
        .expect_err("encrypted")
        .to_string();
    assert!(
        e.contains("is encrypted") && e.contains("openssl pkey"),
        "{e}"
    );
    // Another certificate's key: the pair, not the certificate, is blamed.
    let other = rcgen::generate_simple_self_signed(vec!["other".into()]).expect("cert");
    let wrong = dir.path().join("wrong.pem");
    std::fs::write(&wrong, other.key_pair.serialize_pem()).expect("write key");
    let files = crate::config::TlsFiles {
        cert: cert_pem,
        key: wrong,
    };
    let e = tls::server_config(&files)
        .expect_err("mismatch")
        .to_string();
    assert!(
        e.contains("check that the key belongs to the certificate"),
        "{e}"
    );
    // An X.509 v1 certificate with its own key: the certificate is blamed
    // (it was blamed on the key before).
    let v1 = crate::testdata::fixture("tls-v1");
    let files = crate::config::TlsFiles {
        cert: v1.join("cert.pem"),
        key: v1.join("key.pem"),
    };
    let e = tls::server_config(&files).expect_err("v1").to_string();
    assert!(
        e.contains("cannot be used") && e.contains("X.509 v1") && !e.contains("key belongs"),
        "{e}"
    );
}

#[test]
fn openmetrics_becomes_text_0_0_4() {
    let om = "# HELP ergon_e Energy.\n# TYPE ergon_e counter\n# UNIT ergon_e joules\nergon_e_total{a=\"1\"} 2.0\n# HELP ergon_g G.\n# TYPE ergon_g gauge\nergon_g 1\n# TYPE ergon_i info\nergon_i_info 1\n";
    assert_eq!(
        scrape::to_text(om),
        "# HELP ergon_e_total Energy.\n# TYPE ergon_e_total counter\nergon_e_total{a=\"1\"} 2.0\n# HELP ergon_g G.\n# TYPE ergon_g gauge\nergon_g 1\n# TYPE ergon_i gauge\nergon_i_info 1\n"
    );
}

#[tokio::test]
async fn a_taken_port_is_a_clear_error() {
    let held = bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let addr = held.local_addr().expect("addr");
    let e = bind(addr).await.expect_err("taken").to_string();
    assert!(
        e.contains(&addr.to_string()) && e.contains("--listen") && e.contains("in use"),
        "{e}"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Whatever a client sends in the parts of a request Ergon parses (the
    /// query, the scrape timeout, `Accept`, `Authorization`), every
    /// endpoint answers with a status from its contract and never panics;
    /// a wrong credential is never let in.
    #[test]
    fn arbitrary_queries_and_headers_get_a_contract_status(
        path in proptest::sample::select(vec!["/metrics", "/metrics/batch", "/health"]),
        query in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
        timeout in proptest::collection::vec(0x20u8..0x7f, 0..40),
        accept in proptest::collection::vec(0x20u8..0x7f, 0..80),
        authorization in proptest::prop_oneof![
            proptest::strategy::Just(b"Bearer tok".to_vec()),
            proptest::collection::vec(0x20u8..0x7f, 0..80),
        ],
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let bearer = router(app(), Some(Auth::Bearer { token: "tok".into() }), false);
        // The query percent-encoded, so any byte can reach the parser.
        let q: String = query.iter().map(|b| format!("%{b:02X}")).collect();
        let uri = format!("{path}?{q}");
        let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
        let (timeout, accept, authorization) = (text(&timeout), text(&accept), text(&authorization));
        let headers = [
            ("x-prometheus-scrape-timeout-seconds", timeout.as_str()),
            ("accept", accept.as_str()),
            ("authorization", authorization.as_str()),
        ];
        let (code, _, _) = rt.block_on(get(&bearer, &uri, &headers));
        let allowed = [
            StatusCode::OK,
            StatusCode::BAD_REQUEST,
            StatusCode::UNAUTHORIZED,
            StatusCode::NOT_ACCEPTABLE,
            StatusCode::SERVICE_UNAVAILABLE,
        ];
        proptest::prop_assert!(allowed.contains(&code), "{uri}: {code}");
        if authorization != "Bearer tok" {
            proptest::prop_assert_eq!(code, StatusCode::UNAUTHORIZED, "{}", authorization);
        }
    }
}
