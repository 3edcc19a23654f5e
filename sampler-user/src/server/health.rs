//! `GET /health` as seed document 001 specifies: 200 and
//! `{"status":"healthy","lastScrapeTime":…,"lastPushTime":…,"bufferedSamples":…}`
//! while the sampler produces data; 503 with the same fields, `"status":
//! "unhealthy"` and an `error` when its newest energy reading is older than
//! the threshold. "Scrape" in that document is the sampler's read of the
//! energy source. With remote_write, `lastPushTime` is the last acknowledged
//! push and `bufferedSamples` the samples waiting for the receiver; without
//! it, `lastPushTime` is null and `bufferedSamples` the batch store's size.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};

use super::App;
use crate::{batch, push::queue::Outage};

pub const ENDPOINT: &str = "/health";

fn rfc3339(unix: f64) -> Option<String> {
    (unix > 0.0).then(|| {
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs_f64(unix)).to_string()
    })
}

/// The `/health` body, fields in the order of the seed document.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub status: &'static str,
    pub last_scrape_time: Option<String>,
    pub last_push_time: Option<String>,
    pub buffered_samples: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<HealthError>,
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthError {
    pub message: String,
    pub last_reading_age_seconds: Option<f64>,
    pub threshold_seconds: f64,
}

/// Why `/health` is unhealthy while the durable state's commits fail.
pub fn state_failure(outage: &Outage, now_ms: i64, held: usize) -> String {
    format!(
        "the durable state cannot be committed since {:.1} s ago ({} failed attempts; last: {}); {held} samples wait in memory (at most --push-buffer; beyond it the oldest are dropped, counted in ergon_push_samples_dropped_total); free space under --state-dir: Ergon reopens the database and retries on its own, and a stop now loses what waits in memory",
        (now_ms - outage.since_ms).max(0) as f64 / 1000.0,
        outage.attempts,
        outage.error,
    )
}

/// (status code, body) for a newest reading at `last_unix`, now `now_unix`,
/// with the energy counters `stalled` now (stopped while their CPUs run)
/// and `state_failure` while the durable state cannot be committed.
pub fn report(
    last_unix: f64,
    now_unix: f64,
    threshold: Duration,
    buffered: usize,
    last_push_unix: Option<f64>,
    stalled: &[String],
    state_failure: Option<String>,
) -> (StatusCode, Health) {
    let age = now_unix - last_unix;
    let fresh = last_unix > 0.0 && age <= threshold.as_secs_f64();
    let healthy = fresh && stalled.is_empty() && state_failure.is_none();
    let mut v = Health {
        status: if healthy { "healthy" } else { "unhealthy" },
        last_scrape_time: rfc3339(last_unix),
        last_push_time: last_push_unix.and_then(rfc3339),
        buffered_samples: buffered,
        error: None,
    };
    if healthy {
        return (StatusCode::OK, v);
    }
    let message = if let (true, Some(m)) = (fresh, state_failure) {
        m
    } else if fresh {
        format!(
            "energy counter stalled: {} has not advanced for over 1 s while its CPUs were busy (counted in ergon_energy_counter_stalls_total); its energy is missing until it moves again; see the daemon log",
            stalled.join("; ")
        )
    } else if last_unix > 0.0 {
        format!(
            "no energy reading for {age:.3} s (threshold {:.3} s): the sampler has stopped producing data; see the daemon log",
            threshold.as_secs_f64()
        )
    } else {
        "no energy reading yet: the sampler has not produced data since start-up; see the daemon log".to_string()
    };
    v.error = Some(HealthError {
        message,
        last_reading_age_seconds: (last_unix > 0.0).then_some(age),
        threshold_seconds: threshold.as_secs_f64(),
    });
    (StatusCode::SERVICE_UNAVAILABLE, v)
}

pub async fn handler(State(app): State<App>, headers: axum::http::HeaderMap) -> Response {
    let started = Instant::now();
    // The same contract as the scrape endpoints: a malformed timeout is a
    // 400, though health has no deadline of its own to set.
    if let Err(e) = super::deadline(&headers, started) {
        return super::bad_request(e);
    }
    app.fresh().await;
    let snap = app.snapshot.load();
    let last = snap.last_reading_unix;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    // Pushing: the samples waiting for the receiver; else the batch store.
    let (buffered, last_push) = match &app.push {
        Some(p) => (
            (p.queue.len() as usize) + p.queue.in_memory(),
            p.stats.last_push_unix(),
        ),
        None => (batch::lock(&app.store).len(), None),
    };
    let failing = app.state.as_ref().and_then(|q| {
        q.outage().map(|o| {
            let now_ms = crate::units::now_unix_ms();
            state_failure(&o, now_ms, q.in_memory())
        })
    });
    let (code, body) = report(
        last,
        now,
        app.health_stale_after,
        buffered,
        last_push,
        &snap.stalled_counters,
        failing,
    );
    app.stats.observe(ENDPOINT, started.elapsed().as_secs_f64());
    let json = serde_json::to_string(&body).unwrap_or_else(|_| "{}".into());
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        json + "\n",
    )
        .into_response()
}
