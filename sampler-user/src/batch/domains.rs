//! Batch points of the package counters outside the attribution books
//! (domains `cores`, `ram`, `psys`, `gpu`): each is one package-wide
//! counter, interpolated at the batch instants between its own readings.
//! Values are the same cumulative joules `/metrics` shows for the domain.

use rustc_hash::FxHashMap as HashMap;

use crate::attribution::grid::instants;

#[derive(Clone, Debug)]
struct Line {
    package: u32,
    domain: &'static str,
    joules_per_count: f64,
    /// Last reading (boot ns, cumulative counts).
    last: Option<(u64, u128)>,
    last_ms: Option<i64>,
}

#[derive(Clone, Debug, Default)]
pub struct DomainGrid {
    lines: HashMap<usize, Line>,
    res_ns: u64,
}

impl DomainGrid {
    /// `counters`: (counter index, package, domain, joules per count) of
    /// the package-wide counters of domains other than `pkg`.
    pub fn new(
        counters: impl IntoIterator<Item = (usize, u32, &'static str, f64)>,
        res_ns: u64,
    ) -> Self {
        let lines = counters
            .into_iter()
            .map(|(idx, package, domain, joules_per_count)| {
                (
                    idx,
                    Line {
                        package,
                        domain,
                        joules_per_count,
                        last: None,
                        last_ms: None,
                    },
                )
            })
            .collect();
        Self { lines, res_ns }
    }

    /// A reading of counter `idx`; appends (package, domain, wall ms,
    /// joules) for every batch instant since its previous reading.
    pub fn on_reading(
        &mut self,
        idx: usize,
        ts: u64,
        counts: u128,
        offset_ns: i128,
        out: &mut Vec<(u32, &'static str, i64, f64)>,
    ) {
        let Some(l) = self.lines.get_mut(&idx) else {
            return;
        };
        if let Some((t0, c0)) = l.last {
            if ts <= t0 {
                return;
            }
            let ms_per_k = (self.res_ns / 1_000_000) as i64;
            for (k, at) in instants(t0, ts, offset_ns, self.res_ns) {
                let ms = k.saturating_mul(ms_per_k);
                if l.last_ms.is_some_and(|m| ms <= m) {
                    continue;
                }
                let c = c0 as f64
                    + (counts.saturating_sub(c0)) as f64 * (at - t0) as f64 / (ts - t0) as f64;
                out.push((l.package, l.domain, ms, c * l.joules_per_count));
                l.last_ms = Some(ms);
            }
        }
        l.last = Some((ts, counts));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_counters_are_interpolated_at_each_instant() {
        let mut g = DomainGrid::new([(3, 0, "ram", 0.5)], 1_000_000);
        let mut out = Vec::new();
        // 2 counts per ms: 1 J per ms; wall = boot + 0.5 ms.
        g.on_reading(3, 10_000_000, 20, 500_000, &mut out);
        g.on_reading(3, 13_000_000, 26, 500_000, &mut out);
        g.on_reading(7, 14_000_000, 99, 500_000, &mut out);
        let want: Vec<(u32, &str, i64, f64)> = vec![
            (0, "ram", 11, 10.5),
            (0, "ram", 12, 11.5),
            (0, "ram", 13, 12.5),
        ];
        assert_eq!(out, want);
    }
}
