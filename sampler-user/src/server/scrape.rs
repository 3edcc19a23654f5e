//! `GET /metrics`: the latest values from the snapshot plus self-metrics,
//! gathered from named collectors. Each collector runs on the blocking
//! pool; one that overruns the scrape deadline is left out (counted), one
//! that panics fails that scrape with 500 (counted) and nothing else.

use std::{sync::Arc, time::Instant};

use tokio::task::JoinHandle;

use super::stats::HttpStats;

/// Encodes one collector's families (OpenMetrics text, without `# EOF`).
pub type CollectFn = Arc<dyn Fn() -> Result<String, std::fmt::Error> + Send + Sync>;

#[derive(Clone)]
pub struct NamedCollector {
    pub name: &'static str,
    pub collect: CollectFn,
}

/// What the collectors produced by the deadline.
#[derive(Debug, PartialEq)]
pub enum Gathered {
    /// OpenMetrics families of every collector that finished, in order,
    /// and the names of those cut off.
    Text {
        body: String,
        timed_out: Vec<&'static str>,
    },
    /// A collector panicked or failed to encode.
    Failed { collector: &'static str },
}

pub async fn gather(
    collectors: &[NamedCollector],
    deadline: Instant,
    stats: &HttpStats,
) -> Gathered {
    let handles: Vec<(&'static str, JoinHandle<Result<String, std::fmt::Error>>)> = collectors
        .iter()
        .map(|c| {
            let f = c.collect.clone();
            (c.name, tokio::task::spawn_blocking(move || f()))
        })
        .collect();
    let mut body = String::new();
    let mut timed_out = Vec::new();
    let mut failed = None;
    for (name, h) in handles {
        if failed.is_some() {
            h.abort();
            continue;
        }
        match tokio::time::timeout_at(deadline.into(), h).await {
            Ok(Ok(Ok(text))) => body.push_str(&text),
            Ok(Ok(Err(_))) => failed = Some(name),
            Ok(Err(e)) => {
                if e.is_panic() {
                    stats.panicked(name);
                }
                failed = Some(name);
            }
            Err(_) => {
                // The thread finishes on its own; its result is dropped.
                stats.timed_out(name);
                timed_out.push(name);
            }
        }
    }
    match failed {
        Some(collector) => Gathered::Failed { collector },
        None => Gathered::Text { body, timed_out },
    }
}

/// Rewrites OpenMetrics families as the classic text format 0.0.4:
/// counters' `# HELP`/`# TYPE` name the `_total` series, `# UNIT` and
/// `# EOF` go, `info`/`stateset`/`unknown` become `gauge`/`untyped`.
pub fn to_text(om: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, "counter")) = rest.split_once(' ') {
                counters.insert(name);
            }
        }
    }
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = line
            .strip_prefix("# HELP ")
            .map(|r| ("HELP", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("TYPE", r)));
        match meta {
            Some((kw, rest)) => {
                let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
                let text = match (kw, text) {
                    ("TYPE", "info") | ("TYPE", "stateset") => "gauge",
                    ("TYPE", "unknown") => "untyped",
                    _ => text,
                };
                out.push_str("# ");
                out.push_str(kw);
                out.push(' ');
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(text);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Encodes a registry and strips its `# EOF` (the response adds one).
pub fn encode_registry(
    r: &prometheus_client::registry::Registry,
) -> Result<String, std::fmt::Error> {
    let mut s = String::with_capacity(4096);
    prometheus_client::encoding::text::encode_registry(&mut s, r)?;
    Ok(s)
}
