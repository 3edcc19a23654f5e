//! The immutable state a scrape encodes. The drain task builds a new one
//! after every drain and swaps it in; a scrape reads one `Arc` and so always
//! sees one consistent set of books.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::{
    bpf::ProgramStats,
    cgroups::CgroupLabels,
    energy::{CpuEnergy, CpuTime, PackageEnergy},
    series::Series,
};

/// Energy and on-CPU time of one cgroup.
#[derive(Clone, Debug)]
pub struct CgroupEnergy {
    /// The cgroup's id (its cgroup2 directory's inode).
    pub id: u64,
    pub labels: Arc<CgroupLabels>,
    pub joules: f64,
    pub cpu_seconds: f64,
}

impl CgroupEnergy {
    /// The series of its energy.
    pub fn energy_series(&self) -> Series {
        Series::Cgroup {
            id: self.id,
            labels: self.labels.clone(),
        }
    }

    /// The series of its on-CPU time.
    pub fn cpu_series(&self) -> Series {
        Series::CgroupCpu {
            id: self.id,
            labels: self.labels.clone(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub source: &'static str,
    /// The attribution base domain (`pkg`, or `psys` where there is no
    /// `pkg` counter): its series, the CPUs' and the cgroups' come from the
    /// attribution books.
    pub base_domain: &'static str,
    pub packages: Vec<PackageEnergy>,
    pub cpus: Vec<CpuEnergy>,
    pub cpu_time: Vec<(u32, CpuTime)>,
    /// Per cgroup, in the same books as `packages` (domain pkg) and `idle`.
    pub cgroups: Vec<CgroupEnergy>,
    /// Idle energy per package.
    pub idle: Vec<(u32, f64)>,
    /// Energy of time no task ran on the scheduler's clock, per (package,
    /// reason: `steal`, `irq`); with `idle` and `cgroups` it sums to the
    /// package.
    pub unattributed: Vec<(u32, &'static str, f64)>,
    /// Idle power per package split by cause, once known (declared or learned).
    pub idle_power: Vec<(u32, f64)>,
    /// Cgroups folded into `other` because of `--max-cgroups`.
    pub cgroup_folds: u64,
    /// Dead cgroups still shown (retention).
    pub cgroups_dead: u64,
    /// Timelines of silent CPUs closed from their kernel state, and how many
    /// of those the CPU's later record contradicted.
    pub idle_closures: u64,
    pub idle_closure_corrections: u64,
    pub records_decoded: u64,
    pub records_malformed: u64,
    pub ringbuf_dropped: u64,
    pub counter_read_errors: u64,
    pub cgroup_table_overflows: u64,
    /// Failed starts of the silent path's per-CPU timers (`--timer bpf`).
    pub timer_errors: u64,
    /// Counter reads the daemon made itself for counters whose CPUs were idle.
    pub idle_counter_reads: u64,
    /// Times an energy counter stopped advancing while its CPUs were busy.
    pub counter_stalls: u64,
    /// The counters stopped now (named as in `ergon check`).
    pub stalled_counters: Vec<String>,
    /// Counter readings applied per package (base domain), by package.
    pub energy_reads: Vec<(u32, u64)>,
    /// Counter readings the books refused (went back, implausible wrap).
    pub readings_rejected: crate::energy::Rejected,
    pub programs: Vec<ProgramStats>,
    /// Wall-clock time of the last drain, seconds since the epoch (0 before the first).
    pub last_drain_unix: f64,
    /// Wall-clock time up to which the attribution books are complete
    /// (0 before the first interval is booked).
    pub books_complete_unix: f64,
    /// Wall-clock time of the newest energy counter reading (0 before the first).
    pub last_reading_unix: f64,
    pub period_seconds: f64,
}

/// Shared, swappable current snapshot.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

pub fn shared(initial: Snapshot) -> SharedSnapshot {
    Arc::new(ArcSwap::from_pointee(initial))
}

/// Readers' demand for books up to now. The drain builds a snapshot only
/// when one is read (a scrape, `/metrics/batch`, `/health`, `ergon
/// measure`) or every [`crate::drain::PUBLISH_EVERY`], not on every
/// drain: a reader asks, the drain wakes at once, drains, publishes, and
/// the reader goes on with what was just computed.
#[derive(Debug)]
pub struct Demand {
    asked: tokio::sync::Notify,
    published: tokio::sync::watch::Sender<u64>,
}

impl Default for Demand {
    fn default() -> Self {
        Self {
            asked: tokio::sync::Notify::new(),
            published: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Demand {
    /// Asks for a snapshot of the books as of now and waits for it, at
    /// most `within` (then the reader goes on with the current one).
    /// Concurrent readers share one drain.
    pub async fn fresh(&self, within: std::time::Duration) {
        let mut rx = self.published.subscribe();
        let seen = *rx.borrow_and_update();
        self.asked.notify_one();
        let _ = tokio::time::timeout(within, rx.wait_for(|&g| g > seen)).await;
    }

    /// Resolves once a reader has asked since the last call.
    pub async fn asked(&self) {
        self.asked.notified().await
    }

    /// A snapshot was published: the readers waiting go on.
    pub fn published(&self) {
        self.published.send_modify(|g| *g += 1);
    }
}
