//! Self-metrics of the HTTP side: scrape durations, rejected scrapes,
//! collector time-outs and panics, and the batch store's consumers.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Mutex,
};

use prometheus_client::{
    collector::Collector,
    encoding::DescriptorEncoder,
    metrics::{
        family::Family,
        histogram::{exponential_buckets, Histogram},
    },
};

use crate::{
    batch::{self, SharedStore},
    families::{counter, counter1, gauge, gauge1},
};

/// Endpoints with their own duration histogram.
pub const ENDPOINTS: [&str; 3] = ["/metrics", "/metrics/batch", "/health"];

type Durations = Family<Vec<(String, String)>, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 0.1 ms .. ~3.3 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

#[derive(Debug)]
pub struct HttpStats {
    pub durations: Durations,
    /// Per endpoint: scrapes refused with 503 (--max-concurrent-scrapes).
    rejected: [AtomicU64; 3],
    /// `/metrics/batch` responses cut short by the scrape deadline.
    pub batch_cut: AtomicU64,
    /// (collector, time-outs, panics).
    collectors: Mutex<Vec<(&'static str, u64, u64)>>,
}

impl Default for HttpStats {
    fn default() -> Self {
        Self {
            durations: Family::new_with_constructor(duration_histogram),
            rejected: Default::default(),
            batch_cut: AtomicU64::new(0),
            collectors: Mutex::new(Vec::new()),
        }
    }
}

impl HttpStats {
    pub fn observe(&self, endpoint: &str, seconds: f64) {
        self.durations
            .get_or_create(&vec![("endpoint".into(), endpoint.into())])
            .observe(seconds);
    }

    pub fn rejected(&self, endpoint: &str) {
        if let Some(i) = ENDPOINTS.iter().position(|&e| e == endpoint) {
            self.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn bump(&self, collector: &'static str, timeout: bool) {
        let mut c = self.collectors.lock().unwrap_or_else(|p| p.into_inner());
        let i = match c.iter().position(|e| e.0 == collector) {
            Some(i) => i,
            None => {
                c.push((collector, 0, 0));
                c.len() - 1
            }
        };
        if timeout {
            c[i].1 += 1;
        } else {
            c[i].2 += 1;
        }
    }

    pub fn timed_out(&self, collector: &'static str) {
        self.bump(collector, true);
    }

    pub fn panicked(&self, collector: &'static str) {
        self.bump(collector, false);
    }

    /// (collector, time-outs, panics).
    pub fn collector_counts(&self) -> Vec<(&'static str, u64, u64)> {
        self.collectors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Encodes [`HttpStats`] and the store's figures into `/metrics`.
#[derive(Debug)]
pub struct StatsCollector {
    pub stats: std::sync::Arc<HttpStats>,
    pub store: SharedStore,
}

impl Collector for StatsCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let (consumers, held, capacity, dropped) = {
            let s = batch::lock(&self.store);
            (s.consumer_stats(), s.len(), s.capacity(), s.dropped())
        };
        let per = |f: fn(&batch::store::ConsumerStats) -> u64| {
            consumers
                .iter()
                .map(move |c| (vec![("consumer", c.name.clone())], f(c) as f64))
                .collect::<Vec<_>>()
        };
        counter(
            &mut enc,
            "ergon_batch_samples_served",
            "Samples sent to a /metrics/batch consumer in fully written responses.",
            per(|c| c.served),
        )?;
        counter(
            &mut enc,
            "ergon_batch_samples_dropped",
            "Samples a /metrics/batch consumer never got: dropped from the full buffer, or older than 55 minutes, before it scraped them.",
            per(|c| c.dropped),
        )?;
        gauge(
            &mut enc,
            "ergon_batch_consumer_lag_samples",
            "Samples held that a /metrics/batch consumer has not been sent yet.",
            per(|c| c.pending),
        )?;
        gauge1(
            &mut enc,
            "ergon_batch_buffer_samples",
            "Samples held for /metrics/batch consumers.",
            held as f64,
        )?;
        gauge1(
            &mut enc,
            "ergon_batch_buffer_capacity_samples",
            "Most samples held for /metrics/batch consumers (--batch-buffer).",
            capacity as f64,
        )?;
        counter1(
            &mut enc,
            "ergon_batch_buffer_evicted",
            "Samples evicted from the batch buffer (full, or older than 55 minutes).",
            dropped as f64,
        )?;
        counter1(
            &mut enc,
            "ergon_batch_responses_cut",
            "/metrics/batch responses cut short by the scrape deadline (the rest is sent next time).",
            self.stats.batch_cut.load(Ordering::Relaxed) as f64,
        )?;
        counter(
            &mut enc,
            "ergon_scrapes_rejected",
            "Scrapes answered 503 because --max-concurrent-scrapes were already running.",
            ENDPOINTS.iter().zip(&self.stats.rejected).map(|(e, n)| {
                (
                    vec![("endpoint", e.to_string())],
                    n.load(Ordering::Relaxed) as f64,
                )
            }),
        )?;
        let counts = self.stats.collector_counts();
        counter(
            &mut enc,
            "ergon_collector_timeouts",
            "Collectors cut off by a scrape deadline (the scrape returned without them).",
            counts
                .iter()
                .map(|c| (vec![("collector", c.0.to_string())], c.1 as f64)),
        )?;
        counter(
            &mut enc,
            "ergon_collector_panics",
            "Collectors that panicked (that scrape failed with 500; the server went on).",
            counts
                .iter()
                .map(|c| (vec![("collector", c.0.to_string())], c.2 as f64)),
        )?;
        Ok(())
    }
}
