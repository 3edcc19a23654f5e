//! Indices into the per-CPU `STATS` counter array. A failure in the kernel
//! is never silent: each one bumps one of these and the daemon exports it.

/// Ring-buffer reservations that failed (the record was lost).
pub const STAT_RINGBUF_DROPS: u32 = 0;
/// `bpf_perf_event_read_value` calls that failed.
pub const STAT_READ_ERRORS: u32 = 1;
/// Times the per-CPU cgroup table filled up between two timer runs and had
/// to be flushed early from `sched_switch`.
pub const STAT_CGROUP_OVERFLOW: u32 = 2;
/// The silent path's timer could not be initialised or started
/// (`bpf_timer_init`/`bpf_timer_start` failed): that CPU is sampled only
/// at its switches until the next attempt.
pub const STAT_TIMER_ERRORS: u32 = 3;
/// Number of entries in `STATS`.
pub const STAT_COUNT: u32 = 4;
