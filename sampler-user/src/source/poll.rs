//! The poller of the userspace sources: a thread that reads every
//! userspace counter of the plan once per interval — powercap files, MSRs,
//! the model's `/proc/stat` — and hands the readings, stamped with boot
//! time, to the drain, which applies them to the same books as the
//! kernel's readings. It stops when the drain goes away.

use std::{
    fs::File,
    os::unix::fs::FileExt,
    path::PathBuf,
    sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tracing::warn;

use super::{model::Integrator, UserRead};
use crate::{complaint::Complaint, perf::boot_ns};

/// (counter index, boot-time ns, raw count).
pub type Reading = (usize, u64, u64);

/// Readings waiting for the drain at most (beyond, the newest are dropped:
/// the next one carries the same energy, so only resolution is lost).
const QUEUE: usize = 1 << 16;

/// Parses a sysfs counter file's content.
fn parse(buf: &[u8]) -> Option<u64> {
    std::str::from_utf8(buf).ok()?.trim().parse().ok()
}

/// Nanoseconds per `/proc/stat` tick (`USER_HZ`, 100 on Linux).
pub fn ns_per_tick() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        1_000_000_000 / hz as u64
    } else {
        10_000_000
    }
}

/// One counter being polled.
enum Slot {
    /// A decimal file or a register, through an fd kept open between reads.
    Fd {
        idx: usize,
        path: PathBuf,
        /// `None`: a decimal file at offset 0; `Some(r)`: 8 bytes at `r`, low 32 bits.
        register: Option<u64>,
        file: Option<File>,
        complaint: Complaint,
    },
    Model {
        idx: usize,
        cpu: u32,
        integ: Integrator,
        complaint: Complaint,
    },
    /// A per-core register summed over cores, read every `stride` polls.
    Sum {
        idx: usize,
        sum: CoreSum,
        stride: u32,
        countdown: u32,
    },
}

/// One core of a [`Slot::Sum`].
struct Core {
    path: PathBuf,
    file: Option<File>,
    /// Last low 32 bits read; `None` until the first reading.
    last: Option<u64>,
    complaint: Complaint,
}

/// The running sum of a per-core register over cores: each core's advance
/// modulo 2^32 is added to a 64-bit total, so each core may wrap on its
/// own. A core that cannot be read keeps its last value, and its next
/// reading adds everything since (exact while that is under one wrap).
struct CoreSum {
    register: u64,
    cores: Vec<Core>,
    total: u64,
}

impl CoreSum {
    fn new(paths: Vec<PathBuf>, register: u64) -> Self {
        let cores = paths
            .into_iter()
            .map(|path| Core {
                path,
                file: None,
                last: None,
                complaint: Complaint::default(),
            })
            .collect();
        Self {
            register,
            cores,
            total: 0,
        }
    }

    /// Reads every core once and returns the total so far, in counts.
    fn read(&mut self) -> u64 {
        for core in &mut self.cores {
            if core.file.is_none() {
                core.file = File::open(&core.path).ok();
            }
            let value = core
                .file
                .as_ref()
                .and_then(|f| super::msr::read_reg(f, self.register))
                .map(|v| v & super::msr::MAX);
            match value {
                Some(v) => {
                    if let Some(prev) = core.last {
                        let d = crate::units::bounded_delta(prev, v, super::msr::MAX);
                        self.total = self.total.wrapping_add(d);
                    }
                    core.last = Some(v);
                }
                None => {
                    if let Some(failures) = core.complaint.failed(Instant::now()) {
                        warn!(path = %core.path.display(), failures, "reading a core's energy register failed; retrying (logged at most once a minute)");
                    }
                    core.file = None;
                }
            }
        }
        self.total
    }
}

/// Starts polling `counters` (index, source) every `every`. The receiver
/// goes to the drain; dropping it stops the thread.
pub fn start(
    counters: Vec<(usize, UserRead)>,
    every: Duration,
) -> std::io::Result<(Receiver<Reading>, JoinHandle<()>)> {
    let (tx, rx) = sync_channel(QUEUE);
    let handle = std::thread::Builder::new()
        .name("ergon-poll".into())
        .spawn(move || run(counters, every, tx))?;
    Ok((rx, handle))
}

fn send(tx: &SyncSender<Reading>, r: Reading) -> bool {
    !matches!(tx.try_send(r), Err(TrySendError::Disconnected(_)))
}

fn run(counters: Vec<(usize, UserRead)>, every: Duration, tx: SyncSender<Reading>) {
    let stride = (super::msr::CORE_SUM_EVERY.as_nanos() / every.as_nanos().max(1)).max(1);
    let stride = u32::try_from(stride).unwrap_or(u32::MAX);
    let mut stat: Option<PathBuf> = None;
    let mut slots: Vec<Slot> = counters
        .into_iter()
        .map(|(idx, read)| match read {
            UserRead::File(path) => Slot::Fd {
                idx,
                path,
                register: None,
                file: None,
                complaint: Complaint::default(),
            },
            UserRead::Msr { path, register } => Slot::Fd {
                idx,
                path,
                register: Some(register),
                file: None,
                complaint: Complaint::default(),
            },
            UserRead::MsrSum { paths, register } => Slot::Sum {
                idx,
                sum: CoreSum::new(paths, register),
                stride,
                countdown: 0,
            },
            UserRead::Model {
                stat: s,
                cpu,
                idle_uw,
                busy_uw,
            } => {
                stat = Some(s);
                Slot::Model {
                    idx,
                    cpu,
                    integ: Integrator::new(idle_uw, busy_uw),
                    complaint: Complaint::default(),
                }
            }
        })
        .collect();
    let tick_ns = ns_per_tick();
    let mut stat_complaint = Complaint::default();
    let mut next = Instant::now();
    let mut buf = [0u8; 32];
    loop {
        // The model's CPUs all come from one read of /proc/stat.
        let busy = stat.as_ref().map(|p| match std::fs::read_to_string(p) {
            Ok(text) => super::model::busy_ticks(&text),
            Err(e) => {
                if let Some(failures) = stat_complaint.failed(Instant::now()) {
                    warn!(path = %p.display(), error = %e, failures, "reading CPU times for the model failed; retrying every period");
                }
                Default::default()
            }
        });
        let stat_ts = boot_ns();
        for slot in slots.iter_mut() {
            match slot {
                Slot::Fd {
                    idx,
                    path,
                    register,
                    file,
                    complaint,
                } => {
                    if file.is_none() {
                        *file = File::open(&*path).ok();
                    }
                    let value = file.as_ref().and_then(|f| match register {
                        // sysfs regenerates the value on every read at offset 0.
                        None => f.read_at(&mut buf, 0).ok().and_then(|n| parse(&buf[..n])),
                        Some(r) => super::msr::read_reg(f, *r).map(|v| v & super::msr::MAX),
                    });
                    let ts = boot_ns();
                    match value {
                        Some(v) => {
                            if !send(&tx, (*idx, ts, v)) {
                                return;
                            }
                        }
                        None => {
                            if let Some(failures) = complaint.failed(Instant::now()) {
                                warn!(path = %path.display(), failures, "reading an energy counter failed; retrying every period (logged at most once a minute)");
                            }
                            *file = None;
                        }
                    }
                }
                Slot::Model {
                    idx,
                    cpu,
                    integ,
                    complaint,
                } => match busy.as_ref().and_then(|b| b.get(cpu)) {
                    Some(&ticks) => {
                        let nj = integ.at(stat_ts, ticks, tick_ns);
                        if !send(&tx, (*idx, stat_ts, nj)) {
                            return;
                        }
                    }
                    // An unreadable /proc/stat was logged above.
                    None if busy.as_ref().is_some_and(|b| !b.is_empty()) => {
                        if let Some(failures) = complaint.failed(Instant::now()) {
                            warn!(
                                cpu = *cpu,
                                failures,
                                "no line for this CPU in /proc/stat; its model power is paused"
                            );
                        }
                    }
                    None => {}
                },
                Slot::Sum {
                    idx,
                    sum,
                    stride,
                    countdown,
                } => {
                    if *countdown > 0 {
                        *countdown -= 1;
                        continue;
                    }
                    *countdown = *stride - 1;
                    let total = sum.read();
                    if !send(&tx, (*idx, boot_ns(), total)) {
                        return;
                    }
                }
            }
        }
        next += every;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

/// Test helper: the plan of a userspace source's `counters` on `topo`, and
/// empty books for it.
#[cfg(test)]
pub(crate) fn books_for(
    source: super::Resolved,
    counters: Vec<super::CounterPlan>,
    topo: &crate::topology::Topology,
) -> (super::Plan, crate::energy::EnergyBooks) {
    let plan = super::Plan {
        source,
        reason: String::new(),
        counters,
        per_cpu: false,
    };
    let cpus: Vec<(u32, u32)> = topo.cpus.iter().map(|c| (c.cpu, c.package)).collect();
    let books = crate::energy::EnergyBooks::new(&plan, &cpus);
    (plan, books)
}

/// Test helper: applies the poller's readings to `books` until `done`
/// (within 30 s), then those of the next 20 ms.
#[cfg(test)]
pub(crate) fn feed_until(
    rx: &Receiver<Reading>,
    books: &mut crate::energy::EnergyBooks,
    mut done: impl FnMut() -> bool,
) {
    let feed = |books: &mut crate::energy::EnergyBooks| {
        while let Ok((idx, ts, raw)) = rx.try_recv() {
            books.reading(idx, ts, raw);
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        feed(books);
        if done() {
            break;
        }
        assert!(Instant::now() < deadline, "the writer did not finish");
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(20));
    feed(books);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counter_files() {
        assert_eq!(parse(b"123456\n"), Some(123_456));
        assert_eq!(parse(b"  7 "), Some(7));
        assert_eq!(parse(b"lots"), None);
        assert_eq!(parse(b""), None);
    }
}
