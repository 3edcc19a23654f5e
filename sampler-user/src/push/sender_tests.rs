//! Seed document 001's push scenarios, one by one, against an in-process
//! receiver that decodes the protobuf and answers scripted status codes.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{body::Bytes, extract::State, http::HeaderMap, routing::post, Router};

use super::*;
use crate::{
    config::{Auth, RemoteWrite},
    push::{client::Remote, queue::descriptor},
};

#[derive(Default)]
struct Receiver {
    /// Status to answer per request (then 204 once empty), with a body.
    script: VecDeque<(u16, &'static str)>,
    /// Answer 400 "out of order" to any request holding this timestamp.
    poison_ts: Option<i64>,
    stored: Vec<WriteRequest>,
    requests: Vec<(Instant, HeaderMap)>,
}

type Shared = Arc<Mutex<Receiver>>;

async fn write(
    State(r): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let req = proto::decode(&body).expect("a valid remote_write body");
    let mut r = r.lock().expect("lock");
    r.requests.push((Instant::now(), headers));
    let poisoned = r.poison_ts.is_some_and(|p| {
        req.timeseries
            .iter()
            .any(|t| t.samples.iter().any(|s| s.timestamp == p))
    });
    let (code, msg) = if poisoned {
        (400, "out of order sample")
    } else {
        r.script.pop_front().unwrap_or((204, ""))
    };
    if (200..300).contains(&code) {
        r.stored.push(req);
    }
    let status = axum::http::StatusCode::from_u16(code).expect("status");
    if code == 429 {
        return (status, [("retry-after", "1")], msg).into_response();
    }
    if code == 302 {
        return (
            status,
            [("location", "https://elsewhere/api/v1/write")],
            msg,
        )
            .into_response();
    }
    (status, msg).into_response()
}

async fn receiver(script: &[(u16, &'static str)]) -> (String, Shared) {
    let shared: Shared = Arc::new(Mutex::new(Receiver {
        script: script.iter().copied().collect(),
        ..Receiver::default()
    }));
    let app = Router::new()
        .route("/api/v1/write", post(write))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/api/v1/write"), shared)
}

fn now_ms() -> i64 {
    crate::units::now_unix_ms()
}

struct Fixture {
    _dir: tempfile::TempDir,
    queue: Arc<Queue>,
    sender: Sender,
    desc: Arc<str>,
}

fn fixture(url: &str, auth: Option<Auth>, interval: Duration) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Arc::new(Queue::open(dir.path(), 100_000).expect("queue"));
    let rw = RemoteWrite {
        url: url.to_string(),
        auth,
        ca_file: None,
        max_samples: 10_000,
        headers: vec![("X-Scope-OrgID".into(), "team-a".into())],
        external_labels: vec![("node".into(), "web-1".into())],
        interval,
    };
    let sender = Sender {
        queue: queue.clone(),
        remote: Remote::new(&rw).expect("client"),
        stats: Arc::new(PushStats::default()),
        interval,
        max_samples: rw.max_samples,
        external_labels: rw.external_labels.clone(),
    };
    let desc: Arc<str> = descriptor(
        "ergon_package_energy_joules_total",
        &[("package", "0"), ("domain", "pkg")],
    )
    .into();
    Fixture {
        _dir: dir,
        queue,
        sender,
        desc,
    }
}

/// Queues `n` samples, 1 ms apart, ending 1 s ago; returns their timestamps.
fn fill(f: &Fixture, n: i64) -> Vec<i64> {
    let start = now_ms() - 1000 - n;
    let ts: Vec<i64> = (start..start + n).collect();
    for &t in &ts {
        f.queue.append(&f.desc, t, t as f64 / 1000.0);
    }
    f.queue.commit(&[]).expect("commit");
    ts
}

fn stored_ts(r: &Shared) -> Vec<i64> {
    let r = r.lock().expect("lock");
    r.stored
        .iter()
        .flat_map(|w| {
            w.timeseries
                .iter()
                .flat_map(|t| t.samples.iter().map(|s| s.timestamp))
        })
        .collect()
}

#[tokio::test]
async fn successful_push_sends_everything_with_sampling_timestamps_and_clears_the_buffer() {
    let (url, recv) = receiver(&[]).await;
    let mut f = fixture(
        &url,
        Some(Auth::Basic {
            username: "u".into(),
            password: "p".into(),
        }),
        Duration::from_secs(2),
    );
    let ts = fill(&f, 2500);
    f.sender.push_round(&CancellationToken::new()).await;
    assert_eq!(
        f.queue.len(),
        0,
        "the buffer is cleared after a successful push"
    );
    assert_eq!(
        stored_ts(&recv),
        ts,
        "every sample, with the time it was sampled"
    );
    let r = recv.lock().expect("lock");
    let (_, h) = &r.requests[0];
    assert_eq!(h["content-encoding"], "snappy");
    assert_eq!(h["content-type"], "application/x-protobuf");
    assert_eq!(h["x-prometheus-remote-write-version"], "0.1.0");
    assert_eq!(h["authorization"], "Basic dTpw");
    assert_eq!(h["x-scope-orgid"], "team-a");
    let labels: Vec<(&str, &str)> = r.stored[0].timeseries[0]
        .labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    assert_eq!(
        labels,
        vec![
            ("__name__", "ergon_package_energy_joules_total"),
            ("domain", "pkg"),
            ("node", "web-1"),
            ("package", "0"),
        ],
        "sorted, external label added"
    );
    assert_eq!(f.sender.stats.sent.load(Ordering::Relaxed), 2500);
    assert!(f.sender.stats.last_push_unix().is_some());
}

#[tokio::test]
async fn requests_are_capped_at_max_samples() {
    let (url, recv) = receiver(&[]).await;
    let mut f = fixture(&url, None, Duration::from_secs(2));
    f.sender.max_samples = 1000;
    fill(&f, 2500);
    f.sender.push_round(&CancellationToken::new()).await;
    let r = recv.lock().expect("lock");
    let sizes: Vec<usize> = r
        .stored
        .iter()
        .map(|w| w.timeseries.iter().map(|t| t.samples.len()).sum())
        .collect();
    assert_eq!(sizes, vec![1000, 1000, 500]);
}

#[tokio::test]
async fn an_authentication_failure_is_retried_three_times_then_kept() {
    let (url, recv) = receiver(&[(401, "bad credentials"); 10]).await;
    let mut f = fixture(&url, None, Duration::from_secs(30));
    fill(&f, 100);
    f.sender.push_round(&CancellationToken::new()).await;
    assert_eq!(
        recv.lock().expect("lock").requests.len(),
        4,
        "one try and three retries"
    );
    assert_eq!(f.queue.len(), 100, "kept in the buffer");
    assert_eq!(f.sender.stats.failures().get("auth"), Some(&4));
}

#[tokio::test]
async fn a_network_failure_keeps_the_samples_for_the_next_push() {
    // Nothing listens on this port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut f = fixture(
        &format!("http://127.0.0.1:{port}/api/v1/write"),
        None,
        Duration::from_millis(800),
    );
    fill(&f, 50);
    f.sender.push_round(&CancellationToken::new()).await;
    assert_eq!(f.queue.len(), 50, "maintained for the next attempt");
    assert!(f
        .sender
        .stats
        .failures()
        .get("network")
        .is_some_and(|&n| n >= 1));
    assert!(
        f.sender.stats.attempts.load(Ordering::Relaxed) >= 2,
        "the push was retried"
    );
}

#[tokio::test]
async fn server_errors_back_off_honour_retry_after_and_then_succeed() {
    let (url, recv) = receiver(&[(503, "busy"), (500, "oops"), (429, "slow down")]).await;
    let mut f = fixture(&url, None, Duration::from_secs(20));
    let ts = fill(&f, 10);
    f.sender.push_round(&CancellationToken::new()).await;
    assert_eq!(stored_ts(&recv), ts, "no gap after the retries");
    assert_eq!(f.queue.len(), 0);
    let fails = f.sender.stats.failures();
    assert_eq!(
        (fails.get("server"), fails.get("throttled")),
        (Some(&2), Some(&1))
    );
    let r = recv.lock().expect("lock");
    let gap = r.requests[3].0 - r.requests[2].0;
    assert!(
        gap >= Duration::from_secs(1),
        "Retry-After: 1 honoured: {gap:?}"
    );
    assert_eq!(
        f.sender.stats.consecutive_failures.load(Ordering::Relaxed),
        0
    );
}

#[tokio::test]
async fn five_consecutive_failures_log_a_critical_line_and_buffering_goes_on() {
    use std::io::Write;
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(sub);
    let (url, _recv) = receiver(&[(500, "down"); 20]).await;
    let mut f = fixture(&url, None, Duration::from_secs(60));
    fill(&f, 10);
    // Each round retries until the window closes; run rounds with a short window.
    f.sender.interval = Duration::from_millis(300);
    for _ in 0..10 {
        f.sender.push_round(&CancellationToken::new()).await;
        if f.sender.stats.consecutive_failures.load(Ordering::Relaxed) >= 5 {
            break;
        }
    }
    assert!(f.sender.stats.consecutive_failures.load(Ordering::Relaxed) >= 5);
    let log = String::from_utf8_lossy(&buf.0.lock().expect("lock")).into_owned();
    assert!(log.contains("CRITICAL") && log.contains("ERROR"), "{log}");
    // Buffering continues.
    f.queue.append(&f.desc, now_ms(), 1.0);
    f.queue.commit(&[]).expect("commit");
    assert_eq!(f.queue.len(), 11);
}

/// A redirect is refused with its status and where it pointed (the
/// reason was empty before), and the samples stay queued.
#[tokio::test]
async fn a_redirect_is_refused_naming_its_status_and_location() {
    let (url, _r) = receiver(&[(302, "")]).await;
    let f = fixture(&url, None, Duration::from_secs(15));
    let body = proto::encode(&proto::WriteRequest::default()).expect("encode");
    match f.sender.remote.send(body).await {
        Answer::Refused { status, message } => {
            assert_eq!(status, 302);
            assert!(
                message.contains("HTTP 302 redirect to https://elsewhere/api/v1/write")
                    && message.contains("redirects are not followed"),
                "{message}"
            );
        }
        other => panic!("a redirect must be refused, got {other:?}"),
    }
}

#[tokio::test]
async fn an_empty_buffer_skips_the_push_with_a_warning() {
    let (url, recv) = receiver(&[]).await;
    let mut f = fixture(&url, None, Duration::from_secs(2));
    f.sender.push_round(&CancellationToken::new()).await;
    assert!(recv.lock().expect("lock").requests.is_empty(), "no request");
    assert_eq!(f.sender.stats.skipped_empty.load(Ordering::Relaxed), 1);
}

/// Samples made since the last commit go in this push: with
/// --push-interval equal to --fsync-interval a push used to find only the
/// committed part, skip, and warn that the sampler made nothing.
#[tokio::test]
async fn a_push_sends_what_the_sampler_made_even_if_not_yet_committed() {
    let (url, recv) = receiver(&[]).await;
    let mut f = fixture(&url, None, Duration::from_secs(2));
    let start = now_ms() - 2000;
    let samples: Vec<(Arc<str>, i64, f64)> = (0..1672)
        .map(|i| (f.desc.clone(), start + i, i as f64))
        .collect();
    f.queue
        .append_with_totals(samples, Box::new(|| vec![("t".into(), 1.0)]));
    assert_eq!(f.queue.len(), 0, "nothing committed yet");
    f.sender.push_round(&CancellationToken::new()).await;
    assert_eq!(f.sender.stats.skipped_empty.load(Ordering::Relaxed), 0);
    assert_eq!(stored_ts(&recv).len(), 1672, "all of them pushed");
    assert_eq!(f.queue.totals().get("t"), Some(&1.0), "with their totals");
}

#[tokio::test]
async fn one_bad_sample_is_isolated_and_the_rest_stored() {
    let (url, recv) = receiver(&[]).await;
    let mut f = fixture(&url, None, Duration::from_secs(5));
    let ts = fill(&f, 1000);
    recv.lock().expect("lock").poison_ts = Some(ts[617]);
    f.sender.push_round(&CancellationToken::new()).await;
    let mut want = ts.clone();
    want.remove(617);
    let mut got = stored_ts(&recv);
    got.sort();
    assert_eq!(got, want, "every good sample stored, once");
    assert_eq!(f.sender.stats.rejected.load(Ordering::Relaxed), 1);
    assert_eq!(f.queue.len(), 0);
}

#[tokio::test]
async fn future_samples_wait_and_acknowledged_ones_are_never_resent() {
    let (url, recv) = receiver(&[]).await;
    let mut f = fixture(&url, None, Duration::from_secs(2));
    let ts = fill(&f, 5);
    f.queue.append(&f.desc, now_ms() + 60_000, 9.0);
    f.queue.commit(&[]).expect("commit");
    f.sender.push_round(&CancellationToken::new()).await;
    assert_eq!(stored_ts(&recv), ts, "the future sample is not sent");
    assert_eq!(f.queue.len(), 1);
    // A sample older than what was acknowledged (e.g. re-queued) is dropped, not sent.
    f.queue.append(&f.desc, ts[0], 0.0);
    f.queue.commit(&[]).expect("commit");
    let (req, _) = f.sender.build(&f.queue.peek(10).expect("peek")[1..]);
    assert!(req.timeseries.is_empty(), "{req:?}");
}

#[test]
fn backoff_is_full_jitter_and_capped() {
    for attempt in 0..40 {
        let d = backoff(attempt);
        assert!(
            d <= BACKOFF_BASE
                .saturating_mul(1 << attempt.min(16))
                .min(BACKOFF_CAP)
        );
    }
    let spread: std::collections::HashSet<u128> = (0..50).map(|_| backoff(6).as_millis()).collect();
    assert!(spread.len() > 10, "jittered, not fixed: {spread:?}");
}

#[test]
fn the_default_push_interval_is_15_seconds() {
    let s = crate::config::RunArgs::default()
        .settings_with_env(&|k| (k == "ERGON_NONE").then(String::new))
        .expect("defaults");
    assert_eq!(
        crate::config::push::DEFAULT_PUSH_INTERVAL,
        Duration::from_secs(15)
    );
    assert!(s.push.state.is_none());
    let mut a = crate::config::RunArgs::default();
    a.push.remote_write_url = Some("http://127.0.0.1:9/api/v1/write".into());
    let s = a.settings_with_env(&|_| None).expect("valid");
    let state = s.push.state.as_ref().expect("a state to push through");
    let rw = state.remote_write.as_ref().expect("remote write");
    assert_eq!(rw.interval, Duration::from_secs(15));
    assert_eq!(rw.max_samples, 10_000);
    assert_eq!(state.dir, std::path::Path::new("/var/lib/ergon"));
    assert_eq!(s.push.fsync_interval, Duration::from_secs(1));
    assert_eq!(s.push.state_retention, Duration::from_secs(7 * 24 * 3600));
    let mut a = crate::config::RunArgs::default();
    a.push.state_retention = Some("30d".into());
    let s = a.settings_with_env(&|_| None).expect("valid");
    assert_eq!(s.push.state_retention, Duration::from_secs(30 * 24 * 3600));
    a.push.state_retention = Some("5m".into());
    let e = a
        .settings_with_env(&|_| None)
        .expect_err("too short")
        .to_string();
    assert!(
        e.contains("state_retention") && e.contains("--state-retention 7d"),
        "{e}"
    );
}
