//! Types shared by the kernel programs (`sampler-ebpf`) and the daemon
//! (`sampler-user`). Every type is `#[repr(C)]` with explicit padding and a
//! compile-time size assertion, so both sides agree on the byte layout.
#![no_std]

pub mod cpu_state;
pub mod domain;
pub mod record;
pub mod stats;

pub use cpu_state::{CpuState, RUNNING_IDLE, RUNNING_TASK, RUNNING_UNKNOWN};
pub use domain::{DOMAIN_NAMES, MAX_DOMAINS};
pub use record::{
    CgroupTime, RqLayout, TickRecord, CGROUP_SLOTS, IRQ_CGROUP, RECORD_CGROUP_FLUSH,
    RECORD_HEADER_BYTES, RECORD_TICK, STEAL_CGROUP,
};
pub use stats::{
    STAT_CGROUP_OVERFLOW, STAT_COUNT, STAT_READ_ERRORS, STAT_RINGBUF_DROPS, STAT_TIMER_ERRORS,
};

/// Upper bound on CPU ids the maps are sized for at compile time. The
/// counter arrays are sized to the machine by the loader; this bound only
/// limits the per-CPU domain-mask table.
pub const MAX_CPUS: u32 = 4096;
/// Most packages the read tokens cover (`PKG_LAST_READ`).
pub const MAX_PACKAGES: u32 = 64;

/// Names of the perf-event arrays holding the energy counters, one per domain
/// (in `DOMAIN_NAMES` order), each indexed by the reading CPU. One array per
/// domain because loaders size perf-event arrays to the number of CPUs.
pub const COUNTER_MAPS: [&str; MAX_DOMAINS] =
    ["CTR_PKG", "CTR_CORES", "CTR_RAM", "CTR_PSYS", "CTR_GPU"];
