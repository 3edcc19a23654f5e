//! A counter proves it moves before it is used.
//!
//! A machine can expose an energy counter whose register is not there: a
//! hypervisor that shows the perf `power` PMU (`energy-psys`) but faults the
//! MSR behind it (`dmesg`: `unchecked MSR access error: RDMSR from 0x64d`)
//! makes the event count 0 forever. Used as is, it serves 0 W for ever and
//! attributes nothing. So every candidate counter of a counter source (perf
//! power PMU events, powercap zones, RAPL MSRs) is read twice, [`GAP`] apart —
//! about 25 RAPL update intervals (976 µs each): a real package never stands
//! still that long — before `auto` picks it and when `--source` names it. A
//! counter that reads the same twice is *present but dead*; one that cannot
//! be read is unreadable. Both are left out of the plan, and a source left
//! with none of its counters is passed over (`auto`) or refused (`--source`),
//! saying which counter and why.
//!
//! The probe is a trait so that fixture trees whose files do not move can
//! still be planned in unit tests ([`Assume`]); the daemon, `ergon check` and
//! `ergon measure` use [`Reads`].

use std::{fs::File, os::unix::fs::FileExt, time::Duration};

use sampler_common::DOMAIN_NAMES;

use super::{msr, CounterPlan, UserRead};
use crate::perf;

/// Time between the two reads of a candidate counter.
pub const GAP: Duration = Duration::from_millis(25);

/// Reads of a counter file before it is called unreadable.
const FILE_TRIES: u32 = 3;

/// What two reads of one counter found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// The second read differs from the first.
    Moves,
    /// Both reads gave `value`.
    Dead { value: u64 },
    /// The counter cannot be read (the reason, with the fix where there is one).
    Unreadable { reason: String },
}

/// Decides which counters of a plan move.
pub trait Probe {
    /// One verdict per counter, in order.
    fn probe(&self, counters: &[CounterPlan]) -> Vec<Liveness>;
}

/// Reads each counter twice, [`GAP`] apart (one sleep for all of them).
#[derive(Clone, Copy, Debug)]
pub struct Reads {
    pub gap: Duration,
}

impl Default for Reads {
    fn default() -> Self {
        Self { gap: GAP }
    }
}

/// Takes every counter as moving: for fixture trees in unit tests, whose
/// counter files stand still; the probe itself is tested in this module.
#[derive(Clone, Copy, Debug, Default)]
pub struct Assume;

impl Probe for Assume {
    fn probe(&self, counters: &[CounterPlan]) -> Vec<Liveness> {
        vec![Liveness::Moves; counters.len()]
    }
}

/// An open counter the probe reads.
enum Handle {
    Perf(perf::Counter),
    File(File),
    Msr(File, u64),
    /// Counters that are not hardware registers (the model's busy time, a
    /// per-core sum read every 100 ms) are not probed.
    Skip,
}

fn open(c: &CounterPlan) -> Result<Handle, String> {
    match &c.user {
        None => perf::Counter::open(c.pmu_type, c.config, c.open_cpu)
            .map(Handle::Perf)
            .map_err(|e| super::chain(&e)),
        Some(u) => match &u.read {
            UserRead::File(path) => File::open(path)
                .map(Handle::File)
                .map_err(|e| format!("cannot open {}: {e}", path.display())),
            UserRead::Msr { path, register } => File::open(path)
                .map(|f| Handle::Msr(f, *register))
                .map_err(|e| format!("cannot open {}: {e}", path.display())),
            UserRead::MsrSum { .. } | UserRead::Model { .. } => Ok(Handle::Skip),
        },
    }
}

fn read(h: &Handle) -> Result<Option<u64>, String> {
    match h {
        Handle::Perf(c) => c.read().map(Some).map_err(|e| super::chain(&e)),
        Handle::File(f) => {
            // A file rewritten in place (a fixture writer; sysfs never) can
            // be caught empty: a few tries, 1 ms apart, before giving up.
            let mut buf = [0u8; 32];
            let mut last = String::new();
            for attempt in 0..FILE_TRIES {
                if attempt > 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                match f.read_at(&mut buf, 0) {
                    Ok(n) => match std::str::from_utf8(&buf[..n])
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                    {
                        Some(v) => return Ok(Some(v)),
                        None => last = "does not hold a number".into(),
                    },
                    Err(e) => last = format!("read failed: {e}"),
                }
            }
            Err(last)
        }
        Handle::Msr(f, register) => msr::read_reg(f, *register)
            .map(|v| Some(v & msr::MAX))
            .ok_or_else(|| format!("register {register:#x} cannot be read")),
        Handle::Skip => Ok(None),
    }
}

impl Probe for Reads {
    fn probe(&self, counters: &[CounterPlan]) -> Vec<Liveness> {
        let handles: Vec<Result<Handle, String>> = counters.iter().map(open).collect();
        let first: Vec<Result<Option<u64>, String>> = handles
            .iter()
            .map(|h| h.as_ref().map_err(Clone::clone).and_then(read))
            .collect();
        std::thread::sleep(self.gap);
        handles
            .iter()
            .zip(first)
            .map(|(h, a)| {
                let b = h.as_ref().map_err(Clone::clone).and_then(read);
                verdict(a, b)
            })
            .collect()
    }
}

fn verdict(a: Result<Option<u64>, String>, b: Result<Option<u64>, String>) -> Liveness {
    match (a, b) {
        (Err(reason), _) | (_, Err(reason)) => Liveness::Unreadable { reason },
        (Ok(Some(a)), Ok(Some(b))) if a == b => Liveness::Dead { value: a },
        _ => Liveness::Moves,
    }
}

/// How a counter is named in reasons: `energy-psys` (perf), the file's path,
/// or `MSR 0x611 (/dev/cpu/0/msr)`; with its package when there are several.
pub fn describe(c: &CounterPlan, packages: usize) -> String {
    let domain = DOMAIN_NAMES.get(c.domain).copied().unwrap_or("unknown");
    let what = match c.user.as_ref().map(|u| &u.read) {
        None => format!("power PMU energy-{domain}"),
        Some(UserRead::File(path)) => format!("{} ({domain})", path.display()),
        Some(UserRead::Msr { path, register }) => {
            format!("MSR {register:#x} ({domain}, {})", path.display())
        }
        Some(UserRead::MsrSum { register, .. }) => format!("MSR {register:#x} sum ({domain})"),
        Some(UserRead::Model { cpu, .. }) => format!("model cpu {cpu}"),
    };
    if packages > 1 {
        format!("{what} of package {}", c.package)
    } else {
        what
    }
}

/// One clause for a counter that did not pass: `power PMU energy-psys reads 0
/// and does not advance (…)`.
pub fn why(c: &CounterPlan, packages: usize, l: &Liveness) -> Option<String> {
    let name = describe(c, packages);
    match l {
        Liveness::Moves => None,
        Liveness::Dead { value } => Some(format!(
            "{name} reads {value} and does not advance in {} ms{}",
            GAP.as_millis(),
            if c.user.is_none() && *value == 0 {
                " (a hypervisor exposing the PMU without the registers)"
            } else {
                " (a counter that is there but counts nothing)"
            }
        )),
        Liveness::Unreadable { reason } => Some(format!("{name} cannot be read: {reason}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::UserCounter;

    fn file_counter(path: &std::path::Path) -> CounterPlan {
        CounterPlan {
            domain: 0,
            package: 0,
            open_cpu: 0,
            readers: vec![0],
            pmu_type: 0,
            config: 0,
            joules_per_count: 1e-6,
            user: Some(UserCounter {
                read: UserRead::File(path.to_path_buf()),
                max: u64::from(u32::MAX),
                max_watts: None,
            }),
        }
    }

    #[test]
    fn a_file_that_stands_still_is_dead_and_one_that_moves_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let still = dir.path().join("still");
        let moving = dir.path().join("moving");
        let gone = dir.path().join("gone");
        std::fs::write(&still, "4242\n").expect("write");
        std::fs::write(&moving, "1\n").expect("write");
        let counters = [
            file_counter(&still),
            file_counter(&moving),
            file_counter(&gone),
        ];
        // A writer advances `moving` while the probe sleeps.
        let writer = {
            let moving = moving.clone();
            std::thread::spawn(move || {
                for i in 2..100u64 {
                    std::fs::write(&moving, format!("{i}\n")).expect("write");
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        let got = Reads {
            gap: Duration::from_millis(50),
        }
        .probe(&counters);
        writer.join().expect("writer");
        assert_eq!(got[0], Liveness::Dead { value: 4242 });
        assert_eq!(got[1], Liveness::Moves);
        assert!(
            matches!(&got[2], Liveness::Unreadable { reason } if reason.contains("cannot open")),
            "{:?}",
            got[2]
        );
        let why = why(&counters[0], 1, &got[0]).expect("a reason");
        assert!(
            why.contains("still (pkg) reads 4242 and does not advance"),
            "{why}"
        );
        assert_eq!(super::why(&counters[1], 1, &got[1]), None);
    }

    #[test]
    fn a_dead_perf_event_is_named_as_a_hypervisor_without_registers() {
        let c = CounterPlan {
            domain: 3,
            package: 1,
            open_cpu: 0,
            readers: vec![0],
            pmu_type: 9,
            config: 5,
            joules_per_count: 1e-6,
            user: None,
        };
        assert_eq!(
            why(&c, 2, &Liveness::Dead { value: 0 }).as_deref(),
            Some("power PMU energy-psys of package 1 reads 0 and does not advance in 25 ms (a hypervisor exposing the PMU without the registers)")
        );
    }
}
