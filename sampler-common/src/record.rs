//! The record the timer program writes to the ring buffer.

use crate::domain::MAX_DOMAINS;

#[cfg(feature = "user")]
mod user;

/// Distinct cgroups one CPU can accumulate between two flushes before
/// `sched_switch` flushes early (counted in `STAT_CGROUP_OVERFLOW`).
pub const CGROUP_SLOTS: usize = 16;

/// A timer run: counters read and the CPU's time table flushed.
pub const RECORD_TICK: u32 = 1;
/// An early flush of the time table from `sched_switch` (no counter values).
pub const RECORD_CGROUP_FLUSH: u32 = 2;

/// The table slot id of wall-clock time the scheduler gave to no task
/// because the hypervisor ran something else (steal): not a cgroup (cgroup
/// v2 ids are kernfs node ids, far below these).
pub const STEAL_CGROUP: u64 = u64::MAX - 1;
/// The table slot id of time spent in hard and soft interrupts where the
/// kernel accounts it apart from tasks (`CONFIG_IRQ_TIME_ACCOUNTING`).
pub const IRQ_CGROUP: u64 = u64::MAX - 2;

/// Run-queue field offsets from the kernel's BTF (`/sys/kernel/btf/vmlinux`),
/// handed to the programs as read-only data (`RQ_LAYOUT`); a 0 offset
/// means the field is not there and that part is left out (all 0: no
/// steal or irq time is told apart, spans are booked in wall-clock time).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RqLayout {
    /// `task_struct.se` + `sched_entity.cfs_rq`.
    pub task_cfs_rq: u32,
    /// `cfs_rq.rq`.
    pub cfs_rq_rq: u32,
    /// `rq.cpu`.
    pub rq_cpu: u32,
    /// `rq.prev_steal_time_rq` (`CONFIG_PARAVIRT_TIME_ACCOUNTING`).
    pub rq_steal: u32,
    /// `rq.prev_irq_time` (`CONFIG_IRQ_TIME_ACCOUNTING`).
    pub rq_irq: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<RqLayout>() == 24);

/// On-CPU nanoseconds of one cgroup (v2 id) on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupTime {
    pub cgroup_id: u64,
    pub ns: u64,
}

const _: () = assert!(core::mem::size_of::<CgroupTime>() == 16);

/// One ring-buffer record, of which only the first
/// [`TickRecord::wire_len`]`(n_cgroups)` bytes travel. The time table covers `[span_start_ns, ts_ns]` on
/// `cpu` exactly: `idle_ns + other_ns + Σ cgroups[..n_cgroups].ns == ts_ns - span_start_ns`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TickRecord {
    /// `RECORD_TICK` or `RECORD_CGROUP_FLUSH`.
    pub kind: u32,
    pub cpu: u32,
    /// `bpf_ktime_get_boot_ns()` when the counters were read.
    pub ts_ns: u64,
    /// Start of the time this record accounts for.
    pub span_start_ns: u64,
    /// Bit `d` set: `values[d]` holds a fresh read of this CPU's domain-`d` counter.
    pub valid_mask: u32,
    /// Bit `d` set: reading domain `d` failed (a counter was configured).
    pub error_mask: u32,
    /// Raw counter values (64-bit accumulated counts, scale per counter).
    pub values: [u64; MAX_DOMAINS],
    /// Nanoseconds the idle task ran in the span.
    pub idle_ns: u64,
    /// Nanoseconds of tasks whose cgroup could not be tracked because the
    /// table was full and the early flush failed (exported as `other`).
    pub other_ns: u64,
    /// Number of valid entries in `cgroups`.
    pub n_cgroups: u32,
    pub _pad: u32,
    pub cgroups: [CgroupTime; CGROUP_SLOTS],
}

const _: () = assert!(core::mem::size_of::<TickRecord>() == 352);

/// Bytes of a record before its table of cgroups.
pub const RECORD_HEADER_BYTES: usize = core::mem::offset_of!(TickRecord, cgroups);

impl TickRecord {
    /// A record of zeros (kind 0, no slots in use).
    pub const fn zeroed() -> Self {
        Self {
            kind: 0,
            cpu: 0,
            ts_ns: 0,
            span_start_ns: 0,
            valid_mask: 0,
            error_mask: 0,
            values: [0; MAX_DOMAINS],
            idle_ns: 0,
            other_ns: 0,
            n_cgroups: 0,
            _pad: 0,
            cgroups: [CgroupTime {
                cgroup_id: 0,
                ns: 0,
            }; CGROUP_SLOTS],
        }
    }

    /// Bytes a record with `n_cgroups` slots in use takes on the wire: the
    /// header and those slots (at most all of them).
    pub const fn wire_len(n_cgroups: usize) -> usize {
        let n = if n_cgroups < CGROUP_SLOTS {
            n_cgroups
        } else {
            CGROUP_SLOTS
        };
        RECORD_HEADER_BYTES + n * core::mem::size_of::<CgroupTime>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn layout_is_what_both_sides_assume() {
        assert_eq!(size_of::<TickRecord>(), 352);
        assert_eq!(align_of::<TickRecord>(), 8);
        assert_eq!(offset_of!(TickRecord, ts_ns), 8);
        assert_eq!(offset_of!(TickRecord, valid_mask), 24);
        assert_eq!(offset_of!(TickRecord, values), 32);
        assert_eq!(offset_of!(TickRecord, idle_ns), 72);
        assert_eq!(offset_of!(TickRecord, n_cgroups), 88);
        assert_eq!(offset_of!(TickRecord, cgroups), 96);
        assert_eq!(size_of::<CgroupTime>(), 16);
        assert_eq!(RECORD_HEADER_BYTES, 96);
        assert_eq!(TickRecord::wire_len(0), 96);
        assert_eq!(TickRecord::wire_len(1), 112);
        assert_eq!(TickRecord::wire_len(CGROUP_SLOTS), 352);
        assert_eq!(TickRecord::wire_len(CGROUP_SLOTS + 5), 352);
    }
}
