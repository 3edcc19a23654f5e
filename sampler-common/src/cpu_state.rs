//! Per-CPU accounting state kept by the kernel programs.

use crate::record::TickRecord;

#[cfg(feature = "user")]
mod user;

/// `CpuState::running`: no program has seen what runs (the CPU's idle task
/// is not known yet when it switched).
pub const RUNNING_UNKNOWN: u32 = 0;
/// `CpuState::running`: the CPU's idle task runs since `since_ns`.
pub const RUNNING_IDLE: u32 = 1;
/// `CpuState::running`: a task other than the idle task runs since `since_ns`.
pub const RUNNING_TASK: u32 = 2;

/// The on-CPU time table of one CPU since its last flush, and what runs now.
/// Userspace reads it at any time (per-CPU array) to close an idle CPU's
/// timeline without waking the CPU.
///
/// A sequence count pair makes a copy usable without locks: every program
/// run that changes the state adds 1 to `seq_begun` first and to
/// `seq_done` last, and the kernel copies a per-CPU value to userspace
/// forward, 8 bytes at a time (`bpf_long_memcpy`), so a copy reads
/// `seq_done` (the first field) before the state and `seq_begun` (the last)
/// after it. A copy with `seq_begun == seq_done` saw no write in progress:
/// a write under way had raised `seq_begun` past `seq_done` already, one
/// begun during the copy raises it before the copy reads it. This relies
/// on stores and loads staying in program order (x86's memory model; the
/// programs order them for the compiler with volatile accesses).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CpuState {
    /// Program runs that finished changing the state.
    pub seq_done: u64,
    /// Time of the last context switch or timer run on this CPU (boot ns).
    pub since_ns: u64,
    /// This CPU's idle task (its `task_struct` address, only compared),
    /// learned when a pid-0 task switched out; 0 until then.
    pub idle_task: u64,
    /// What runs since `since_ns`: `RUNNING_IDLE`, `RUNNING_TASK` or
    /// `RUNNING_UNKNOWN`.
    pub running: u32,
    pub _pad: u32,
    /// The unflushed table (`span_start_ns`, `idle_ns`, `other_ns`,
    /// `n_cgroups`, `cgroups`); a flush fills in the rest and sends the
    /// record's first [`TickRecord::wire_len`] bytes, so only the slots in
    /// use travel.
    pub record: TickRecord,
    /// This CPU's run queue (`struct rq` address, reached from a task's
    /// `se.cfs_rq->rq` once and checked by its `cpu`), read for the time
    /// the scheduler leaves out of tasks' runtime; 0 until found, or when
    /// the kernel's layout is not known (`RqLayout`).
    pub rq: u64,
    /// The run queue's cumulative steal and irq ns (`prev_steal_time_rq`,
    /// `prev_irq_time`) at the last look.
    pub steal_seen: u64,
    pub irq_seen: u64,
    /// Steal and irq ns seen but not yet booked: each closed span gives up
    /// to its length to them (as the `STEAL_CGROUP` / `IRQ_CGROUP` slots)
    /// before the rest goes to what ran.
    pub steal_owed: u64,
    pub irq_owed: u64,
    /// Program runs that began changing the state.
    pub seq_begun: u64,
}

const _: () = assert!(core::mem::size_of::<CpuState>() == 432);

impl CpuState {
    /// No write was in progress while this copy was taken.
    pub fn consistent(&self) -> bool {
        self.seq_begun == self.seq_done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layout_is_what_both_sides_assume() {
        assert_eq!(size_of::<CpuState>(), 432);
        assert_eq!(offset_of!(CpuState, seq_done), 0);
        assert_eq!(offset_of!(CpuState, running), 24);
        assert_eq!(offset_of!(CpuState, record), 32);
        assert_eq!(offset_of!(CpuState, rq), 384);
        assert_eq!(offset_of!(CpuState, seq_begun), 424);
        // The record's start is 8-aligned: the ring buffer copy is of
        // whole 8-byte words from there.
        assert_eq!(offset_of!(CpuState, record) % 8, 0);
    }
}
