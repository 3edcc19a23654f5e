//! Types shared by the kernel programs (`sampler-ebpf`) and the daemon
//! (`sampler-user`). Every type is `#[repr(C)]` with explicit padding and a
//! compile-time size assertion, so both sides agree on the byte layout.
#![no_std]

pub mod cpu_state;
pub mod domain;
pub mod record;
pub mod stats;

pub use cpu_state::CpuState;
pub use domain::{DOMAIN_NAMES, MAX_DOMAINS};
pub use record::{CgroupTime, TickRecord, CGROUP_SLOTS, RECORD_CGROUP_FLUSH, RECORD_TICK};
pub use stats::{STAT_COUNT, STAT_CGROUP_OVERFLOW, STAT_READ_ERRORS, STAT_RINGBUF_DROPS};

/// Upper bound on CPU ids the maps are sized for at compile time. The daemon
/// sizes the counter array to the machine (`set_max_entries`); this bound only
/// limits the per-CPU domain-mask table.
pub const MAX_CPUS: u32 = 4096;

/// Index of a counter in the `COUNTERS` perf-event array.
#[inline(always)]
pub const fn counter_slot(cpu: u32, domain: u32) -> u32 {
    cpu * MAX_DOMAINS as u32 + domain
}
