//! Per-CPU accounting state kept by the kernel programs.

use crate::record::{CgroupTime, CGROUP_SLOTS};

#[cfg(feature = "user")]
mod user;

/// The on-CPU time table of one CPU since its last flush, and what runs now.
/// Userspace can read it at any time (per-CPU array) to learn which cgroup
/// each CPU is running and since when, without waking the CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CpuState {
    /// Time of the last context switch or flush on this CPU (boot-time ns).
    pub since_ns: u64,
    /// Start of the span the table covers (the last flush).
    pub span_start_ns: u64,
    /// cgroup v2 id of the task the last timer run found on the CPU.
    pub last_cgroup: u64,
    /// 1 when the last timer run found the idle task.
    pub last_idle: u32,
    pub n_cgroups: u32,
    pub idle_ns: u64,
    /// Time that could not be given to a cgroup (see `TickRecord::other_ns`).
    pub other_ns: u64,
    pub cgroups: [CgroupTime; CGROUP_SLOTS],
}

const _: () = assert!(core::mem::size_of::<CpuState>() == 304);

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layout_is_what_both_sides_assume() {
        assert_eq!(size_of::<CpuState>(), 304);
        assert_eq!(offset_of!(CpuState, last_idle), 24);
        assert_eq!(offset_of!(CpuState, idle_ns), 32);
        assert_eq!(offset_of!(CpuState, cgroups), 48);
    }
}
