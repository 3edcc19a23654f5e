//! CPU hotplug while the daemon runs: which CPUs went offline or came back.
//!
//! A CPU taken offline (`echo 0 > /sys/devices/system/cpu/cpuN/online`)
//! loses every perf event opened on it for good: the kernel removes them
//! from the CPU's context at offline and does not put them back when the
//! CPU returns (measured on 6.18: a cpu-clock count stands still after its
//! CPU is back, while a new event opened on it counts). So a CPU that comes
//! back needs its timer event, and the counters that died with it, opened
//! again ([`crate::bpf::Sampler::attach_cpu`]). While it is away its
//! timeline is closed as idle from its kernel state, as for any silent CPU,
//! and its package's counters are read by the package's other CPUs (the
//! read token passes to whichever busy CPU comes next).
//!
//! [`Watch`] finds the changes: `devices/system/cpu/online` is read every
//! [`CHECK_EVERY`]; a CPU that went offline and came back between two reads
//! is caught by a counting cpu-clock event kept on each CPU (counting
//! events arm no timer, so it costs the CPU nothing), which stops for good
//! at offline: it is read every [`SENTINEL_EVERY`]. A CPU that was offline
//! when the daemon started is not sampled; its coming online is logged
//! once (restart to sample it; docs/sources.md).

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use tracing::warn;

use crate::{perf, sysroot::SysRoot, topology::parse_cpulist};

/// How often the online CPU list is read.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);
/// How often each CPU's sentinel event is read (one read per CPU).
pub const SENTINEL_EVERY: Duration = Duration::from_secs(1);

/// One CPU's change of state, in the order to apply them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Offline(u32),
    Online(u32),
}

/// What changed between two looks at the CPUs, for the CPUs sampled since
/// start (`known`): `was` and `now` are the online sets, `bounced` the CPUs
/// whose sentinel stopped although they are online in both (offline and
/// back in between). Pure: unit-tested.
pub fn changes(
    known: &BTreeSet<u32>,
    was: &BTreeSet<u32>,
    now: &BTreeSet<u32>,
    bounced: &BTreeSet<u32>,
) -> Vec<Change> {
    let mut out = Vec::new();
    for &cpu in known {
        match (was.contains(&cpu), now.contains(&cpu)) {
            (true, false) => out.push(Change::Offline(cpu)),
            (false, true) => out.push(Change::Online(cpu)),
            (true, true) if bounced.contains(&cpu) => {
                out.push(Change::Offline(cpu));
                out.push(Change::Online(cpu));
            }
            _ => {}
        }
    }
    out
}

/// The CPU the kernel moves a package event to when `gone`, the CPU it
/// was opened on, goes offline: the lowest-numbered other online CPU of
/// the package (`cpumask_any_but(topology_die_cpumask(cpu), cpu)` in
/// `rapl_cpu_offline`, arch/x86/events/rapl.c). `None` when `gone` was
/// the package's last online CPU.
pub fn successor(package_cpus: &[u32], online: &[u32], gone: u32) -> Option<u32> {
    package_cpus
        .iter()
        .copied()
        .filter(|c| *c != gone && online.contains(c))
        .min()
}

/// The last count of a CPU's sentinel event.
struct Sentinel {
    counter: perf::Counter,
    last: u64,
}

/// Watches the CPUs the daemon samples.
pub struct Watch {
    root: SysRoot,
    known: BTreeSet<u32>,
    online: BTreeSet<u32>,
    sentinels: BTreeMap<u32, Sentinel>,
    /// CPUs not sampled since start that are online now (logged once each).
    unsampled: BTreeSet<u32>,
    last_check: Option<Instant>,
    last_sentinels: Option<Instant>,
    /// The online list could not be read (logged once).
    unreadable: bool,
}

impl Watch {
    /// Watches `cpus` (those sampled, all online now) under `root`'s sysfs.
    pub fn new(root: SysRoot, cpus: &[u32]) -> Self {
        let known: BTreeSet<u32> = cpus.iter().copied().collect();
        let mut w = Self {
            root,
            online: known.clone(),
            known,
            sentinels: BTreeMap::new(),
            unsampled: BTreeSet::new(),
            last_check: None,
            last_sentinels: None,
            unreadable: false,
        };
        for &cpu in cpus {
            w.arm(cpu);
        }
        w
    }

    /// Opens (again) `cpu`'s sentinel; without one, only the online list
    /// tells its changes.
    fn arm(&mut self, cpu: u32) {
        match perf::Counter::cpu_clock(cpu).and_then(|c| Ok((c.read()?, c))) {
            Ok((last, counter)) => {
                self.sentinels.insert(cpu, Sentinel { counter, last });
            }
            Err(e) => {
                self.sentinels.remove(&cpu);
                warn!(cpu, error = %e, "no hotplug sentinel on this cpu: an offline-and-back within 250 ms would go unseen");
            }
        }
    }

    fn read_online(&mut self) -> Option<BTreeSet<u32>> {
        let path = self.root.sys("devices/system/cpu/online");
        match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| parse_cpulist(&t).map_err(|e| e.reason))
        {
            Ok(cpus) => Some(cpus.into_iter().collect()),
            Err(e) => {
                if !self.unreadable {
                    self.unreadable = true;
                    warn!(path = %path.display(), error = %e, "cannot read the online CPU list: CPU hotplug is not followed");
                }
                None
            }
        }
    }

    /// The changes since the last call, when a check is due at `now`.
    pub fn poll(&mut self, now: Instant) -> Vec<Change> {
        if self
            .last_check
            .is_some_and(|t| now.duration_since(t) < CHECK_EVERY)
        {
            return Vec::new();
        }
        self.last_check = Some(now);
        let Some(online) = self.read_online() else {
            return Vec::new();
        };
        let mut bounced = BTreeSet::new();
        if self
            .last_sentinels
            .is_none_or(|t| now.duration_since(t) >= SENTINEL_EVERY)
        {
            self.last_sentinels = Some(now);
            for (&cpu, s) in &mut self.sentinels {
                // A dead event reads its last count (or fails): it stopped.
                match s.counter.read() {
                    Ok(v) if v != s.last => s.last = v,
                    _ => {
                        bounced.insert(cpu);
                    }
                }
            }
        }
        for &cpu in online.difference(&self.known) {
            if self.unsampled.insert(cpu) {
                warn!(cpu, "cpu came online that was offline when ergon started: it is not sampled (its share of its package's energy goes to idle); restart ergon to sample it");
            }
        }
        let out = changes(&self.known, &self.online, &online, &bounced);
        for c in &out {
            if let Change::Online(cpu) = *c {
                self.arm(cpu);
            }
        }
        self.online = online;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(cpus: &[u32]) -> BTreeSet<u32> {
        cpus.iter().copied().collect()
    }

    #[test]
    fn offline_online_and_a_bounce_between_two_looks() {
        let known = set(&[0, 1, 2, 3]);
        assert_eq!(
            changes(&known, &set(&[0, 1, 2, 3]), &set(&[0, 2, 3]), &set(&[])),
            vec![Change::Offline(1)]
        );
        assert_eq!(
            changes(&known, &set(&[0, 2, 3]), &set(&[0, 1, 2, 3]), &set(&[])),
            vec![Change::Online(1)]
        );
        assert_eq!(
            changes(&known, &set(&[0, 1, 2, 3]), &set(&[0, 1, 2, 3]), &set(&[2])),
            vec![Change::Offline(2), Change::Online(2)],
            "offline and back between two looks"
        );
        assert_eq!(
            changes(&known, &set(&[0, 2, 3]), &set(&[0, 2, 3]), &set(&[1])),
            vec![],
            "a CPU still offline whose sentinel is dead has not changed"
        );
        assert_eq!(
            changes(&set(&[0, 1]), &set(&[0, 1]), &set(&[0, 1, 5]), &set(&[])),
            vec![],
            "a CPU not sampled since start is no change to apply"
        );
    }

    #[test]
    fn a_package_event_moves_to_the_lowest_other_online_cpu_of_its_package() {
        // Package of CPUs 8..=11, opened on 8; 9 is offline already.
        assert_eq!(successor(&[8, 9, 10, 11], &[0, 10, 11, 12], 8), Some(10));
        assert_eq!(successor(&[8, 9], &[0, 1], 8), None, "its last CPU");
    }

    #[test]
    fn the_online_list_of_a_fixture_tree_is_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = SysRoot::under(dir.path());
        let online = root.sys("devices/system/cpu/online");
        std::fs::create_dir_all(online.parent().expect("parent")).expect("mkdir");
        std::fs::write(&online, "0-1\n").expect("write");
        // No sentinel can be opened for CPU ids this machine may not have:
        // the list alone drives the changes here.
        let mut w = Watch::new(root, &[0, 1]);
        w.sentinels.clear();
        let t0 = Instant::now();
        assert_eq!(w.poll(t0), vec![]);
        std::fs::write(&online, "0\n").expect("write");
        assert_eq!(w.poll(t0 + CHECK_EVERY / 2), vec![], "not due yet");
        assert_eq!(w.poll(t0 + CHECK_EVERY), vec![Change::Offline(1)]);
        std::fs::write(&online, "0-1\n").expect("write");
        w.sentinels.clear();
        assert_eq!(w.poll(t0 + CHECK_EVERY * 2), vec![Change::Online(1)]);
    }
}
