//! Encoders for timestamped batches: the classic text format 0.0.4 (integer
//! millisecond timestamps) and OpenMetrics 1.0 (seconds, `# UNIT`, `# EOF`).
//!
//! Hand-written because `prometheus-client` cannot write sample timestamps.
//! Each series' label set is rendered once (when the series is created), so
//! a line costs a copy, a float and an integer.

use std::time::Instant;

use super::store::{Family, Lease};

pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The deadline is checked once per this many lines.
const CHECK_EVERY: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    OpenMetrics,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AcceptError {
    #[error("malformed Accept header: bad q value {value:?} (expected a number from 0 to 1)")]
    BadQ { value: String },
}

impl Format {
    /// OpenMetrics when the client prefers it to the text format (as
    /// Prometheus does); the text format otherwise, and on a tie.
    pub fn negotiate(accept: Option<&str>) -> Result<Self, AcceptError> {
        let Some(accept) = accept else {
            return Ok(Format::Text);
        };
        let (mut q_om, mut q_text) = (0.0f64, 0.0f64);
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let mut q = 1.0;
            for p in parts {
                if let Some((k, v)) = p.split_once('=') {
                    if k.trim().eq_ignore_ascii_case("q") {
                        q = v
                            .trim()
                            .parse::<f64>()
                            .ok()
                            .filter(|q| (0.0..=1.0).contains(q))
                            .ok_or_else(|| AcceptError::BadQ {
                                value: v.trim().to_owned(),
                            })?;
                    }
                }
            }
            match media.as_str() {
                "application/openmetrics-text" => q_om = q_om.max(q),
                "text/plain" | "text/*" | "*/*" => q_text = q_text.max(q),
                _ => {}
            }
        }
        Ok(if q_om > q_text {
            Format::OpenMetrics
        } else {
            Format::Text
        })
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// Family name (without `_total`), unit and help of a batch family.
pub fn family_meta(f: Family) -> (&'static str, &'static str, &'static str) {
    match f {
        Family::Package => (
            "ergon_package_energy_joules",
            "joules",
            "Energy consumed by a package in an energy domain since the daemon started.",
        ),
        Family::Cgroup => (
            "ergon_cgroup_energy_joules",
            "joules",
            "Package energy attributed to a cgroup by its on-CPU time, since the daemon started.",
        ),
    }
}

/// Renders a label set, escaping values as both formats require.
pub fn render_labels(pairs: &[(&str, &str)]) -> String {
    let mut s = String::with_capacity(16 + pairs.len() * 24);
    s.push('{');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(k);
        s.push_str("=\"");
        for ch in v.chars() {
            match ch {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s.push('}');
    s
}

/// An encoded batch and what it holds.
#[derive(Debug, Default)]
pub struct Encoded {
    pub body: Vec<u8>,
    /// Per series: the timestamp of its last sample in `body`.
    pub written: Vec<(u64, i64)>,
    pub samples: u64,
    /// The deadline cut the batch short; the rest stays for the next scrape.
    pub cut: bool,
    /// The lease's [`Lease::covers_to`] when every sample of it was
    /// written (for [`super::Store::commit`]), `None` when cut.
    pub complete: Option<u64>,
}

/// Encodes `lease` until `deadline` (if any) passes.
pub fn encode(lease: &Lease, format: Format, deadline: Option<Instant>) -> Encoded {
    let mut out = Encoded {
        body: Vec::with_capacity(64 + lease.samples() * 80),
        ..Encoded::default()
    };
    let body = &mut out.body;
    let mut family = None;
    let mut lines = 0usize;
    let mut fbuf = ryu::Buffer::new();
    let mut ibuf = itoa::Buffer::new();
    'series: for s in &lease.series {
        let (fam, labels, id, points) = (&s.family, &s.labels, &s.id, &s.points);
        if family != Some(*fam) {
            family = Some(*fam);
            let (name, unit, help) = family_meta(*fam);
            // Text 0.0.4 names the `_total` series; OpenMetrics the family,
            // with its unit.
            let (suffix, lines): (&str, &[(&str, &str)]) = match format {
                Format::Text => ("_total", &[("HELP", help), ("TYPE", "counter")]),
                Format::OpenMetrics => ("", &[("HELP", help), ("TYPE", "counter"), ("UNIT", unit)]),
            };
            for (kw, text) in lines {
                for part in ["# ", kw, " ", name, suffix, " ", text, "\n"] {
                    body.extend_from_slice(part.as_bytes());
                }
            }
        }
        let (name, _, _) = family_meta(*fam);
        let mut last = None;
        for &(ts, v) in points {
            if lines.is_multiple_of(CHECK_EVERY)
                && lines > 0
                && deadline.is_some_and(|d| Instant::now() >= d)
            {
                out.cut = true;
                if let Some(t) = last {
                    out.written.push((*id, t));
                }
                break 'series;
            }
            body.extend_from_slice(name.as_bytes());
            body.extend_from_slice(b"_total");
            body.extend_from_slice(labels.as_bytes());
            body.push(b' ');
            body.extend_from_slice(format_value(&mut fbuf, v));
            body.push(b' ');
            match format {
                Format::Text => body.extend_from_slice(ibuf.format(ts).as_bytes()),
                Format::OpenMetrics => {
                    // Seconds with exactly three decimals: parsing this and
                    // multiplying by 1000 gives back the integer ms (the error
                    // stays below half a unit in the last place until 2038+).
                    let (s, ms) = (ts.div_euclid(1000), ts.rem_euclid(1000));
                    body.extend_from_slice(ibuf.format(s).as_bytes());
                    body.push(b'.');
                    body.extend_from_slice(&[
                        b'0' + (ms / 100) as u8,
                        b'0' + (ms / 10 % 10) as u8,
                        b'0' + (ms % 10) as u8,
                    ]);
                }
            }
            body.push(b'\n');
            lines += 1;
            last = Some(ts);
        }
        if let Some(t) = last {
            out.written.push((*id, t));
        }
    }
    if format == Format::OpenMetrics {
        body.extend_from_slice(b"# EOF\n");
    }
    out.samples = lines as u64;
    out.complete = (!out.cut).then_some(lease.covers_to);
    out
}

/// Shortest round-trip decimal of `v` (`NaN`, `+Inf`, `-Inf` as the formats spell them).
fn format_value(buf: &mut ryu::Buffer, v: f64) -> &[u8] {
    if v.is_finite() {
        buf.format_finite(v).as_bytes()
    } else if v.is_nan() {
        b"NaN"
    } else if v > 0.0 {
        b"+Inf"
    } else {
        b"-Inf"
    }
}

#[cfg(test)]
#[path = "encode_tests.rs"]
mod tests;
