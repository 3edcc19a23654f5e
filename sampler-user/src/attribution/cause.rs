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
/// span this much (a drain books ~10–100 ms at a time, a RAPL counter
/// moves every ~1 ms, so one sample averages many counter updates).
pub const SAMPLE_NS: u64 = 100_000_000;
/// A sample is near idle when the package's CPUs ran anything but the idle
/// task for at most this share of their time. Not zero: the daemon itself
/// and the kernel's housekeeping run on every node, every 100 ms.
pub const NEAR_IDLE: f64 = 0.02;
/// Near-idle samples kept (the newest): 60 s of near-idle time.
pub const WINDOW: usize = 600;
/// Near-idle samples needed before the estimate is used: 2 s of them.
pub const MIN_SAMPLES: usize = 20;
/// The estimate is this quantile of the window's powers: low, because
/// residual activity only ever adds power, and not the minimum, which one
/// short counter glitch would set.
pub const QUANTILE: f64 = 0.1;

/// Learns a package's idle power from its near-idle samples: the
/// [`QUANTILE`] of the powers of the last [`WINDOW`] samples of
/// [`SAMPLE_NS`] whose busy share was at most [`NEAR_IDLE`], once there are
/// [`MIN_SAMPLES`]. Its error is the dynamic power of that residual
/// activity: at most `NEAR_IDLE` × the package's dynamic range, much less
/// where the quietest samples are quieter (docs/attribution.md).
#[derive(Clone, Debug, Default)]
pub struct Learner {
    joules: f64,
    ns: u64,
    busy_ns: u64,
    cpu_ns: u64,
    samples: VecDeque<f64>,
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
        (self.joules, self.ns, self.busy_ns, self.cpu_ns) = (0.0, 0, 0, 0);
        if !quiet || !watts.is_finite() || watts < 0.0 {
            return;
        }
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(watts);
        if self.samples.len() >= MIN_SAMPLES {
            let mut sorted: Vec<f64> = self.samples.iter().copied().collect();
            sorted.sort_by(f64::total_cmp);
            let i = ((sorted.len() - 1) as f64 * QUANTILE).round() as usize;
            self.estimate = sorted.get(i).copied();
        }
    }
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
        // Residual activity only adds power: the estimate stays low.
        for k in 0..100 {
            sample(&mut l, 4.0 + f64::from(k % 10) * 0.01, 0.01);
        }
        let (w, _) = l.known().expect("known");
        assert!((4.0..=4.011).contains(&w), "{w}");
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
