//! Attribution by cause: a package's energy over an interval is a static
//! part — its idle power × the interval, never more than the interval's
//! energy — and a dynamic part, the rest. The dynamic part is caused by
//! what ran: it goes to the cgroups (and `other`) by their on-CPU time
//! across the package. The static part is the package's standing cost:
//! under [`IdleEnergy::Separate`] it goes to the idle bucket, under
//! [`IdleEnergy::Share`] to the cgroups by on-CPU time as well.
//!
//! The idle power is declared (`--package-idle-watts`) or learned here,
//! from the package's own books: [`IdlePower::observe`] is shown every
//! booked interval and keeps the near-idle ones (see [`Learner`]). Until a
//! package's idle power is known its energy is split by time, as without
//! this model (equally over its CPUs, then by time on each CPU).
//!
//! This applies to packages measured by one package-wide counter (RAPL's
//! `pkg`, `psys`, the synthetic package layout): that is where a split by
//! time under-attributes the work. A per-CPU counter already measures each
//! CPU's own energy, and per-core counters (AMD's `power_core`) already
//! weigh the package's energy by each core's, so those keep their split.

use std::collections::{BTreeMap, VecDeque};

use serde::Deserialize;

/// `--idle-energy`: where the static (idle) part of a package's energy goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdleEnergy {
    /// To the idle bucket: cgroups carry the energy they caused.
    #[default]
    Separate,
    /// To the cgroups by on-CPU time: what runs carries the node's standing
    /// cost too (chargeback).
    Share,
}

/// `--package-idle-watts`: declared idle power, for every package or per package.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IdleWatts {
    /// For every package without its own entry.
    pub all: Option<f64>,
    /// Package id → watts.
    pub packages: BTreeMap<u32, f64>,
}

impl IdleWatts {
    pub fn of(&self, package: u32) -> Option<f64> {
        self.packages.get(&package).copied().or(self.all)
    }
}

/// How the engine splits a package's energy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cause {
    pub idle_energy: IdleEnergy,
    pub idle_watts: IdleWatts,
}

/// Where a package's idle power comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum IdleOrigin {
    /// `--package-idle-watts`.
    Declared,
    /// Learned from this many near-idle samples.
    Learned { samples: usize },
}

/// One package's idle power, as known so far.
#[derive(Clone, Debug)]
pub struct IdlePower {
    declared: Option<f64>,
    learner: Learner,
}

impl IdlePower {
    pub fn new(declared: Option<f64>) -> Self {
        Self {
            declared,
            learner: Learner::default(),
        }
    }

    /// Watts and where they come from, once known.
    pub fn known(&self) -> Option<(f64, IdleOrigin)> {
        match self.declared {
            Some(w) => Some((w, IdleOrigin::Declared)),
            None => self.learner.estimate.map(|w| {
                (
                    w,
                    IdleOrigin::Learned {
                        samples: self.learner.samples.len(),
                    },
                )
            }),
        }
    }

    /// One booked interval of the package: its energy, length, and the
    /// on-CPU time of everything but the idle task on its `cpus` CPUs.
    pub fn observe(&mut self, joules: f64, ns: u64, busy_ns: u64, cpus: usize) {
        if self.declared.is_none() {
            self.learner.observe(joules, ns, busy_ns, cpus);
        }
    }
}

/// Length of one sample: consecutive booked intervals are summed until they
/// span this much (a drain books one interval: 1 s at the default tick, less
/// when readers drain more often; a RAPL counter moves every ~1 ms, so one
/// sample averages many counter updates).
pub const SAMPLE_NS: u64 = 100_000_000;
/// A sample is near idle when the package's CPUs ran anything but the idle
/// task for at most this share of their time. Not zero: the daemon itself
/// and the kernel's housekeeping run on every node, every 100 ms.
pub const NEAR_IDLE: f64 = 0.02;
/// Near-idle samples kept (the newest): 60 s to 10 min of near-idle time,
/// with samples of one drain each.
pub const WINDOW: usize = 600;
/// Near-idle samples needed before the estimate is used: 2 to 20 s of them.
pub const MIN_SAMPLES: usize = 20;
/// The estimate is this quantile of the window's corrected powers: low,
/// because residual activity only ever adds power, and not the minimum,
/// which one short counter glitch would set.
pub const QUANTILE: f64 = 0.1;
/// The fitted slope (watts per busy CPU) corrects the samples only when it
/// is this many standard errors above zero: a slope the samples do not
/// show is not applied.
pub const SLOPE_T: f64 = 3.0;
/// Nor when the samples' busy CPUs vary by less than this (standard
/// deviation, in CPUs: 10 µs per 100 ms sample).
pub const MIN_SPREAD: f64 = 1e-4;

/// Learns a package's idle power from its near-idle samples (the last
/// [`WINDOW`] samples of [`SAMPLE_NS`] whose busy share was at most
/// [`NEAR_IDLE`]), once there are [`MIN_SAMPLES`]:
///
/// 1. a least-squares line of power against busy CPUs over the window
///    gives the watts one busy CPU adds near idle, when the samples show
///    such a slope (at least [`SLOPE_T`] standard errors above 0);
/// 2. each sample is corrected to zero busy CPUs along that slope (not at
///    all without one);
/// 3. the estimate is the [`QUANTILE`] of the corrected powers.
///
/// The fit is local — busy shares of 0 to 2%, where power is close to
/// linear in load whatever turbo does at full load — and removes the
/// dynamic power of the residual activity (the daemon, the kernel's
/// housekeeping, a neighbour's short wake-ups), which otherwise makes the
/// estimate err high by that much (docs/attribution.md).
#[derive(Clone, Debug, Default)]
pub struct Learner {
    joules: f64,
    ns: u64,
    busy_ns: u64,
    cpu_ns: u64,
    /// (watts, busy CPUs) of each near-idle sample, oldest first.
    samples: VecDeque<(f64, f64)>,
    estimate: Option<f64>,
}

impl Learner {
    fn observe(&mut self, joules: f64, ns: u64, busy_ns: u64, cpus: usize) {
        self.joules += joules;
        self.ns += ns;
        self.busy_ns += busy_ns;
        self.cpu_ns += ns.saturating_mul(cpus as u64);
        if self.ns < SAMPLE_NS {
            return;
        }
        let quiet = self.cpu_ns > 0 && (self.busy_ns as f64) <= NEAR_IDLE * self.cpu_ns as f64;
        let watts = self.joules / (self.ns as f64 * 1e-9);
        let busy_cpus = self.busy_ns as f64 / self.ns as f64;
        (self.joules, self.ns, self.busy_ns, self.cpu_ns) = (0.0, 0, 0, 0);
        if !quiet || !watts.is_finite() || watts < 0.0 {
            return;
        }
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back((watts, busy_cpus));
        if self.samples.len() >= MIN_SAMPLES {
            self.estimate = estimate(&self.samples);
        }
    }
}

/// The [`Learner`]'s estimate from its samples (steps 1–3 there).
fn estimate(samples: &VecDeque<(f64, f64)>) -> Option<f64> {
    let slope = fitted_slope(samples).unwrap_or(0.0);
    let mut corrected: Vec<f64> = samples.iter().map(|&(w, x)| w - slope * x).collect();
    corrected.sort_by(f64::total_cmp);
    let i = ((corrected.len().checked_sub(1)?) as f64 * QUANTILE).round() as usize;
    corrected.get(i).map(|w| w.max(0.0))
}

/// The least-squares slope of watts against busy CPUs, when it is at least
/// [`SLOPE_T`] standard errors above zero.
fn fitted_slope(samples: &VecDeque<(f64, f64)>) -> Option<f64> {
    let n = samples.len() as f64;
    if n < 3.0 {
        return None;
    }
    let (sx, sy) = samples
        .iter()
        .fold((0.0, 0.0), |(a, b), &(w, x)| (a + x, b + w));
    let (mx, my) = (sx / n, sy / n);
    let (sxx, sxy) = samples.iter().fold((0.0, 0.0), |(a, b), &(w, x)| {
        (a + (x - mx) * (x - mx), b + (x - mx) * (w - my))
    });
    // Busy shares that do not vary (beyond rounding) show no slope.
    if sxx <= n * MIN_SPREAD * MIN_SPREAD {
        return None;
    }
    let slope = sxy / sxx;
    let ssr: f64 = samples
        .iter()
        .map(|&(w, x)| {
            let r = w - my - slope * (x - mx);
            r * r
        })
        .sum();
    let se = (ssr / (n - 2.0) / sxx).sqrt();
    (slope.is_finite() && slope > 0.0 && slope >= SLOPE_T * se).then_some(slope)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 100 ms of a 2-CPU package at `watts` with `busy` of its CPU time busy.
    fn sample(l: &mut IdlePower, watts: f64, busy: f64) {
        let ns = SAMPLE_NS;
        l.observe(watts * 0.1, ns, (busy * 2.0 * ns as f64) as u64, 2);
    }

    #[test]
    fn unknown_until_enough_near_idle_samples_then_a_low_quantile() {
        let mut l = IdlePower::new(None);
        for _ in 0..MIN_SAMPLES - 1 {
            sample(&mut l, 4.0, 0.001);
        }
        assert_eq!(
            l.known(),
            None,
            "{} samples are not enough",
            MIN_SAMPLES - 1
        );
        sample(&mut l, 4.0, 0.001);
        assert_eq!(
            l.known(),
            Some((
                4.0,
                IdleOrigin::Learned {
                    samples: MIN_SAMPLES
                }
            ))
        );
        // Busy samples are not idle power: they change nothing.
        for _ in 0..100 {
            sample(&mut l, 14.0, 0.5);
        }
        assert_eq!(l.known().map(|k| k.0), Some(4.0));
    }

    #[test]
    fn the_dynamic_power_of_residual_activity_is_fitted_out() {
        // 4 W idle, and 10 W per busy CPU of housekeeping at 0.1–1.9% busy:
        // the quietest samples alone would say 4.02 W or more.
        let mut l = IdlePower::new(None);
        for k in 0..200 {
            let busy = 0.001 + f64::from(k % 10) * 0.002;
            sample(&mut l, 4.0 + 10.0 * busy * 2.0, busy);
        }
        let (w, _) = l.known().expect("known");
        assert!((w - 4.0).abs() < 1e-6, "{w}");
    }

    #[test]
    fn noise_that_does_not_follow_the_load_is_not_fitted() {
        // Power noise uncorrelated with the busy share: no slope is applied
        // and the estimate is the low quantile of the powers, as measured.
        let mut l = IdlePower::new(None);
        for k in 0..100 {
            let busy = 0.002 * f64::from((k / 10) % 5);
            sample(&mut l, 4.0 + f64::from(k % 10) * 0.01, busy);
        }
        let (w, _) = l.known().expect("known");
        assert!((4.0..=4.011).contains(&w), "{w}");
        assert_eq!(fitted_slope(&l.learner.samples), None);
    }

    #[test]
    fn short_intervals_add_up_to_one_sample() {
        let mut l = IdlePower::new(None);
        // 10 ms intervals at 4 W: ten make one sample.
        for _ in 0..10 * MIN_SAMPLES {
            l.observe(0.04, 10_000_000, 0, 2);
        }
        let (w, origin) = l.known().expect("learned");
        assert!((w - 4.0).abs() < 1e-9, "{w}");
        assert_eq!(
            origin,
            IdleOrigin::Learned {
                samples: MIN_SAMPLES
            }
        );
    }

    #[test]
    fn the_window_forgets_old_samples() {
        let mut l = IdlePower::new(None);
        for _ in 0..WINDOW {
            sample(&mut l, 3.0, 0.0);
        }
        for _ in 0..WINDOW {
            sample(&mut l, 5.0, 0.0);
        }
        assert_eq!(l.known().map(|k| k.0), Some(5.0));
    }

    #[test]
    fn declared_watts_win_and_are_not_learned_over() {
        let mut l = IdlePower::new(Some(25.0));
        for _ in 0..100 {
            sample(&mut l, 4.0, 0.0);
        }
        assert_eq!(l.known(), Some((25.0, IdleOrigin::Declared)));
        let w = IdleWatts {
            all: Some(20.0),
            packages: BTreeMap::from([(1, 30.0)]),
        };
        assert_eq!((w.of(0), w.of(1)), (Some(20.0), Some(30.0)));
    }
}
