use core::{
    intrinsics::{atomic_cxchg, AtomicOrdering},
    ptr::{addr_of, read_volatile, write_volatile},
    sync::atomic::{compiler_fence, Ordering},
};

use aya_ebpf::{
    bindings::{
        bpf_perf_event_value, bpf_timer, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP,
    },
    btf_maps::Array as BtfArray,
    cty::c_void,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_task,
        bpf_get_smp_processor_id, bpf_ktime_get_boot_ns, bpf_ktime_get_ns,
        bpf_perf_event_read_value, bpf_probe_read_kernel, bpf_timer_cancel, bpf_timer_init,
        bpf_timer_set_callback, bpf_timer_start,
    },
    macros::{btf_map, btf_tracepoint, map, perf_event},
    maps::{Array, PerCpuArray, PerfEventArray, RingBuf},
    programs::{BtfTracePointContext, PerfEventContext},
};
use aya_log_ebpf::warn;
use sampler_common::{
    CgroupTime, CpuState, RqLayout, TickRecord, CGROUP_SLOTS, IRQ_CGROUP, MAX_CPUS, MAX_DOMAINS,
    MAX_PACKAGES, RECORD_CGROUP_FLUSH, RECORD_TICK, RUNNING_IDLE, RUNNING_TASK, RUNNING_UNKNOWN,
    STAT_CGROUP_OVERFLOW, STAT_COUNT, STAT_READ_ERRORS, STAT_RINGBUF_DROPS, STAT_TIMER_ERRORS,
    STEAL_CGROUP,
};

/// `CLOCK_MONOTONIC`, the clock of the silent path's timers.
const CLOCK_MONOTONIC: u64 = 1;

/// Records for the daemon. Size set by the daemon (`--ringbuf-size`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

// Energy counters opened by the daemon, one array per domain
// (`sampler_common::COUNTER_MAPS`); entry `cpu` holds the counter that CPU
// reads. Sized to the number of CPUs by the loader.
#[map]
static CTR_PKG: PerfEventArray<u32> = PerfEventArray::new(0);
#[map]
static CTR_CORES: PerfEventArray<u32> = PerfEventArray::new(0);
#[map]
static CTR_RAM: PerfEventArray<u32> = PerfEventArray::new(0);
#[map]
static CTR_PSYS: PerfEventArray<u32> = PerfEventArray::new(0);
#[map]
static CTR_GPU: PerfEventArray<u32> = PerfEventArray::new(0);

/// Bit `d` of entry `cpu`: that CPU's entry of the domain-`d` array holds a counter.
#[map]
static DOMAIN_MASK: Array<u32> = Array::with_max_entries(MAX_CPUS, 0);

/// Entry `cpu`: 1 + the index of the package whose read token this CPU
/// takes before reading its counters; 0 when its counters are its own (a
/// per-CPU layout) and need no token. Set by the daemon.
#[map]
static CPU_PACKAGE: Array<u32> = Array::with_max_entries(MAX_CPUS, 0);

/// Per package: boot ns of its counters' last read, the read token.
#[map]
static PKG_LAST_READ: Array<u64> = Array::with_max_entries(MAX_PACKAGES, 0);

/// Minimum ns between two reads of one package's counters (about one RAPL
/// update interval), set by the daemon; 0 (as `ergon check` loads it) for
/// no limit. Read-only data: the verifier sees the daemon's constant.
#[unsafe(no_mangle)]
static MIN_READ_NS: u64 = 0;

/// The reader is woken when the ring buffer holds this many unread bytes,
/// set by the daemon (half the ring); 0 for never (it drains on its own
/// timer). Read-only data.
#[unsafe(no_mangle)]
static WAKE_AT_BYTES: u64 = 0;

/// The load-dependent synthetic counter (`--synthetic-idle-watts` below
/// `--synthetic-watts`): mW that a busy CPU draws above an idle one, set by
/// the daemon; 0 (the default, and every real source) leaves the counters
/// as read. Read-only data: with 0 the verifier drops every branch below.
///
/// With it, a CPU's domain-0 value is reported as
/// `(cpu-clock ns >> 10) × SYNTH_IDLE_SCALE[cpu] + (busy ns >> 10) × SYNTH_BUSY_MW`
/// (counts of mW × 1.024 µs): idle power over the whole wall time plus the
/// extra power over the time the CPU (per-CPU layout) or the package's
/// CPUs (package layout) ran a task. Busy time is the time the programs
/// book to a task that is not the idle task, as the attribution sees it.
#[unsafe(no_mangle)]
static SYNTH_BUSY_MW: u64 = 0;

/// Entry `cpu`: the idle-power multiplier of the counter that CPU reads
/// (mW per CPU × the CPUs the counter stands for), set by the daemon with
/// `SYNTH_BUSY_MW`.
#[map]
static SYNTH_IDLE_SCALE: Array<u64> = Array::with_max_entries(MAX_CPUS, 0);

/// Busy ns of this CPU since load (load-dependent synthetic only).
#[map]
static CPU_BUSY_NS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Busy ns of each package's CPUs since load, indexed as `PKG_LAST_READ`
/// (load-dependent synthetic, package layout).
#[map]
static PKG_BUSY_NS: Array<u64> = Array::with_max_entries(MAX_PACKAGES, 0);

/// Run-queue field offsets from the kernel's BTF, set by the daemon
/// (`sampler_user::kernel_layout`); all 0 (as `ergon check` loads it)
/// books spans in wall-clock time. Read-only data.
#[unsafe(no_mangle)]
static RQ_LAYOUT: RqLayout = RqLayout {
    task_cfs_rq: 0,
    cfs_rq_rq: 0,
    rq_cpu: 0,
    rq_steal: 0,
    rq_irq: 0,
    _pad: 0,
};

/// A `T` at `base + off` in kernel memory; None when the read faults.
#[inline(always)]
fn kread<T>(base: u64, off: u32) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel checks the address and fails on a fault.
    unsafe { bpf_probe_read_kernel((base + u64::from(off)) as *const T).ok() }
}

/// This CPU's run queue, found once from the running task
/// (`task->se.cfs_rq->rq`, every task's cfs_rq points at its CPU's run
/// queue) and kept when its `cpu` is this CPU; 0 when not found. Finding
/// it sets the baselines: steal and irq time before it are not owed.
#[inline(always)]
fn run_queue(st: &mut CpuState, l: &RqLayout) -> u64 {
    if st.rq != 0 {
        return st.rq;
    }
    // SAFETY: plain helper calls.
    let (task, cpu) = unsafe { (bpf_get_current_task(), bpf_get_smp_processor_id()) };
    let Some(cfs_rq) = kread::<u64>(task, l.task_cfs_rq).filter(|&p| p != 0) else {
        return 0;
    };
    let Some(rq) = kread::<u64>(cfs_rq, l.cfs_rq_rq).filter(|&p| p != 0) else {
        return 0;
    };
    if kread::<u32>(rq, l.rq_cpu) != Some(cpu) {
        return 0;
    }
    st.rq = rq;
    if l.rq_steal != 0 {
        st.steal_seen = kread::<u64>(rq, l.rq_steal).unwrap_or(0);
    }
    if l.rq_irq != 0 {
        st.irq_seen = kread::<u64>(rq, l.rq_irq).unwrap_or(0);
    }
    rq
}

/// Adds what the run-queue clock `off` gained since `seen` to `owed`.
#[inline(always)]
fn gained(rq: u64, off: u32, seen: &mut u64, owed: &mut u64) {
    if off == 0 {
        return;
    }
    if let Some(v) = kread::<u64>(rq, off) {
        if v > *seen {
            *owed += v - *seen;
            *seen = v;
        }
    }
}

/// Takes the steal and irq time the run queue gained (and any still owed)
/// out of a span of `d` ns, into the `STEAL_CGROUP` and `IRQ_CGROUP`
/// slots, and returns what is left for the task or the idle task: the
/// scheduler's clock (`rq_clock_task`, which `cpu.stat` and
/// `sum_exec_runtime` count in) is the wall clock less those two. The
/// kernel advances them at its clock updates (every switch and tick), so
/// time can be owed for up to a tick and is booked from the next spans.
#[inline(always)]
fn unaccounted(st: &mut CpuState, d: u64) -> u64 {
    // SAFETY: a plain read of the loader-set constant.
    let l = unsafe { read_volatile(&RQ_LAYOUT) };
    if l.task_cfs_rq == 0 || (l.rq_steal == 0 && l.rq_irq == 0) {
        return d;
    }
    let rq = run_queue(st, &l);
    if rq == 0 {
        return d;
    }
    gained(rq, l.rq_steal, &mut st.steal_seen, &mut st.steal_owed);
    gained(rq, l.rq_irq, &mut st.irq_seen, &mut st.irq_owed);
    let mut left = d;
    st.steal_owed -= book_owed(st, STEAL_CGROUP, st.steal_owed, &mut left);
    st.irq_owed -= book_owed(st, IRQ_CGROUP, st.irq_owed, &mut left);
    left
}

/// Books up to `owed` ns of the `left` ns of a span to slot `id` and
/// returns what it booked (taken from `left`); 0 when the table is full,
/// so the time stays owed.
#[inline(always)]
fn book_owed(st: &mut CpuState, id: u64, owed: u64, left: &mut u64) -> u64 {
    let take = owed.min(*left);
    if take == 0 || !add_cgroup(st, id, take) {
        return 0;
    }
    *left -= take;
    take
}

#[inline(always)]
fn synth_busy_mw() -> u64 {
    // SAFETY: a plain read of the loader-set constant.
    unsafe { core::ptr::read_volatile(&SYNTH_BUSY_MW) }
}

/// Books `d` ns of busy time on `cpu` for the load-dependent synthetic
/// counter: to the CPU, and to its package when it reads a package counter.
#[inline(always)]
fn add_busy(cpu: u32, d: u64) {
    if let Some(p) = CPU_BUSY_NS.get_ptr_mut(0) {
        // SAFETY: this CPU's own slot; programs do not nest on one CPU.
        unsafe { *p += d };
    }
    let slot = CPU_PACKAGE.get(cpu).copied().unwrap_or(0);
    if slot == 0 {
        return;
    }
    if let Some(p) = PKG_BUSY_NS.get_ptr_mut(slot - 1) {
        // Shared by the package's CPUs: an atomic add (BPF_ATOMIC | BPF_ADD,
        // without fetch: every kernel the programs load on has it).
        // SAFETY: `p` points to this package's u64 in an array map.
        unsafe {
            core::intrinsics::atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, d);
        }
    }
}

/// The load-dependent synthetic value of domain 0 for `cpu` (see
/// `SYNTH_BUSY_MW`), from the cpu-clock count just read.
#[inline(always)]
fn synth_value(cpu: u32, clock_ns: u64) -> u64 {
    let idle_scale = SYNTH_IDLE_SCALE.get(cpu).copied().unwrap_or(0);
    let slot = CPU_PACKAGE.get(cpu).copied().unwrap_or(0);
    let busy = if slot == 0 {
        CPU_BUSY_NS.get(0).copied().unwrap_or(0)
    } else {
        match PKG_BUSY_NS.get_ptr(slot - 1) {
            // SAFETY: as in `may_read`: an aligned 64-bit load is single-copy atomic.
            Some(p) => unsafe { core::ptr::read_volatile(p) },
            None => 0,
        }
    };
    (clock_ns >> 10)
        .wrapping_mul(idle_scale)
        .wrapping_add((busy >> 10).wrapping_mul(synth_busy_mw()))
}

/// Each CPU looks at the ring buffer's fill every this many records: the
/// query reads the reader's position, a cache line the reader writes, so
/// not on every record. Half the default ring is over 5,000 records, so
/// the check is never late by much.
const WAKE_CHECK_EVERY: u32 = 8;

/// Records since this CPU last looked at the fill.
#[map]
static WAKE_CHECK: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// The submit flag of a record: wake the reader when the ring buffer holds
/// `WAKE_AT_BYTES` or more unread, else submit silently. While the reader
/// has not yet drained, each CPU wakes it again at most every
/// `WAKE_CHECK_EVERY` records.
#[inline(always)]
fn wakeup_flag() -> u64 {
    // SAFETY: a plain read of the loader-set constant.
    let at = unsafe { core::ptr::read_volatile(&WAKE_AT_BYTES) };
    if at == 0 {
        return BPF_RB_NO_WAKEUP.into();
    }
    let Some(n) = WAKE_CHECK.get_ptr_mut(0) else {
        return BPF_RB_NO_WAKEUP.into();
    };
    // SAFETY: this CPU's own slot; the program does not migrate mid-run.
    unsafe {
        *n += 1;
        if *n < WAKE_CHECK_EVERY {
            return BPF_RB_NO_WAKEUP.into();
        }
        *n = 0;
    }
    if EVENTS.query(BPF_RB_AVAIL_DATA.into()) >= at {
        BPF_RB_FORCE_WAKEUP.into()
    } else {
        BPF_RB_NO_WAKEUP.into()
    }
}

/// Whether this CPU may read its package's counters now: one reader per
/// package at a time and at most one read per `MIN_READ_NS`. The kernel's
/// `rapl_event_update()` is atomic only against its own CPU, so two CPUs
/// reading one package event at once can count a delta twice or lose it.
/// The CPU whose compare-exchange moves the package's last-read time to
/// `now` is the only one to read in this interval; an idle CPU takes no
/// timer run, so the token passes to whichever busy CPU comes next.
#[inline(always)]
fn may_read(cpu: u32, now: u64) -> bool {
    let slot = CPU_PACKAGE.get(cpu).copied().unwrap_or(0);
    if slot == 0 {
        return true;
    }
    let Some(p) = PKG_LAST_READ.get_ptr_mut(slot - 1) else {
        return true;
    };
    // SAFETY: a plain read of the loader-set constant.
    let min = unsafe { core::ptr::read_volatile(&MIN_READ_NS) };
    // The BPF target's `core` has no `AtomicU64::compare_exchange` (no
    // `target_has_atomic = "64"` CAS), so the intrinsic: LLVM lowers it to
    // BPF_ATOMIC | BPF_CMPXCHG (cpu v3, Linux 5.12).
    // An aligned 64-bit load is single-copy atomic on BPF (LLVM's BPF
    // backend has no relaxed atomic load before cpu v4): a volatile read.
    // SAFETY: `p` points to this package's u64 in an array map, shared by
    // the package's CPUs and only ever written by the exchange below.
    let last = unsafe { core::ptr::read_volatile(p) };
    if now.wrapping_sub(last) < min {
        return false;
    }
    // SAFETY: as above.
    let (_, won) = unsafe {
        atomic_cxchg::<u64, { AtomicOrdering::Relaxed }, { AtomicOrdering::Relaxed }>(p, last, now)
    };
    won
}

/// Per-CPU time table and switch state.
#[map]
static CPU_STATE: PerCpuArray<CpuState> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU failure counters, indexed by `STAT_*`.
#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_COUNT, 0);

#[inline(always)]
fn bump(stat: u32) -> u64 {
    match STATS.get_ptr_mut(stat) {
        Some(p) => {
            // SAFETY: per-CPU value, this program is the only writer on this CPU
            // (programs do not nest on one CPU for these attach types).
            unsafe {
                let old = *p;
                *p = old + 1;
                old
            }
        }
        None => 0,
    }
}

/// How many table slots are in use, read so that LLVM cannot fold it into
/// a loop's trip count.
///
/// Every scan of the table runs `i` from 0 to `CGROUP_SLOTS` and stops early
/// at `i >= slots_in_use(st)`. When LLVM knows the bound it rewrites such a
/// loop into a count-down from `min(n, CGROUP_SLOTS)`. Newer verifiers
/// follow that counter; Linux 6.1's does not (it cannot narrow a range on
/// `!= 0`), walks on past the last slot and rejects the program
/// ("invalid access to map value, value_size=304 off=304"). With the bound
/// re-read each round the loop keeps `i` as its counter, a constant in each
/// round the verifier walks, and the constant bound ends it. One extra load
/// per slot. See docs/kernels.md.
#[inline(always)]
fn slots_in_use(st: &CpuState) -> usize {
    // SAFETY: `st` is a valid reference; a volatile read of a plain u32.
    unsafe { read_volatile(&st.record.n_cgroups) as usize }
}

/// Begins a change of this CPU's state: `seq_begun` moves first (see
/// `CpuState`: a copy that overlaps the change sees it ahead of `seq_done`).
#[inline(always)]
fn begin(st: &mut CpuState) {
    // SAFETY: plain volatile accesses of this CPU's own map value.
    unsafe { write_volatile(&mut st.seq_begun, read_volatile(&st.seq_begun) + 1) };
    compiler_fence(Ordering::SeqCst);
}

/// Ends the change `begin` began: `seq_done` catches up last.
#[inline(always)]
fn done(st: &mut CpuState) {
    compiler_fence(Ordering::SeqCst);
    // SAFETY: as in `begin`.
    unsafe { write_volatile(&mut st.seq_done, read_volatile(&st.seq_begun)) };
}

/// Gives `d` ns to `cgroup_id` in the table; false when the table is full.
#[inline(always)]
fn add_cgroup(st: &mut CpuState, cgroup_id: u64, d: u64) -> bool {
    for i in 0..CGROUP_SLOTS {
        if i >= slots_in_use(st) {
            break;
        }
        if let Some(slot) = st.record.cgroups.get_mut(i) {
            if slot.cgroup_id == cgroup_id {
                slot.ns += d;
                return true;
            }
        }
    }
    let n = slots_in_use(st);
    match st.record.cgroups.get_mut(n) {
        Some(slot) => {
            *slot = CgroupTime { cgroup_id, ns: d };
            st.record.n_cgroups = n as u32 + 1;
            true
        }
        None => false,
    }
}

/// Closes the running task's span `[since_ns, now]`, steal and irq time
/// first (`unaccounted`). Returns `Some(d)` with the rest of the span
/// when the table had no room for the task's cgroup.
#[inline(always)]
fn close_span(st: &mut CpuState, now: u64, idle: bool, cgroup_id: u64) -> Option<u64> {
    if st.since_ns == 0 {
        // First event on this CPU: the table starts here.
        st.since_ns = now;
        st.record.span_start_ns = now;
        return None;
    }
    let d = now.saturating_sub(st.since_ns);
    st.since_ns = now;
    if !idle && synth_busy_mw() != 0 {
        // SAFETY: plain helper call.
        add_busy(unsafe { bpf_get_smp_processor_id() }, d);
    }
    let d = unaccounted(st, d);
    if idle {
        st.record.idle_ns += d;
        None
    } else if add_cgroup(st, cgroup_id, d) {
        None
    } else {
        Some(d)
    }
}

/// Sends the table as a record (the header and the slots in use, straight
/// from this CPU's state) and clears it. `counters` fill in the header.
/// Returns false when the ring buffer was full (the table is then kept, so
/// the time is reported by the next successful flush).
#[inline(always)]
fn flush(st: &mut CpuState, kind: u32, cpu: u32, now: u64, counters: &Counters) -> bool {
    let n = slots_in_use(st);
    if n > CGROUP_SLOTS {
        // Never: `add_cgroup` stops at the last slot. Bounds `len` below.
        return false;
    }
    let r = &mut st.record;
    r.kind = kind;
    r.cpu = cpu;
    r.ts_ns = now;
    r.valid_mask = counters.valid;
    r.error_mask = counters.errors;
    r.values = counters.values;
    r._pad = 0;
    let len = TickRecord::wire_len(n);
    // SAFETY: the record is the first `size_of::<TickRecord>()` >= `len`
    // bytes of `record` in this CPU's map value, plain integers.
    let bytes = unsafe { core::slice::from_raw_parts(addr_of!(st.record).cast::<u8>(), len) };
    if EVENTS.output::<[u8]>(bytes, wakeup_flag()).is_err() {
        bump(STAT_RINGBUF_DROPS);
        return false;
    }
    let r = &mut st.record;
    r.span_start_ns = now;
    r.idle_ns = 0;
    r.other_ns = 0;
    r.n_cgroups = 0;
    true
}

struct Counters {
    values: [u64; MAX_DOMAINS],
    valid: u32,
    errors: u32,
}

impl Counters {
    const NONE: Self = Self {
        values: [0; MAX_DOMAINS],
        valid: 0,
        errors: 0,
    };
}

#[inline(always)]
fn read_counters(cpu: u32, now: u64) -> Counters {
    let mut c = Counters::NONE;
    let mask = DOMAIN_MASK.get(cpu).copied().unwrap_or(0);
    if mask == 0 || !may_read(cpu, now) {
        return c;
    }
    for d in 0..MAX_DOMAINS {
        if mask & (1 << d) == 0 {
            continue;
        }
        let mut v = bpf_perf_event_value {
            counter: 0,
            enabled: 0,
            running: 0,
        };
        let map = match d {
            0 => addr_of!(CTR_PKG),
            1 => addr_of!(CTR_CORES),
            2 => addr_of!(CTR_RAM),
            3 => addr_of!(CTR_PSYS),
            _ => addr_of!(CTR_GPU),
        };
        // SAFETY: each CTR_* is a PERF_EVENT_ARRAY map definition (the wrapper
        // is `repr(transparent)` over it); the helper bounds-checks the index.
        let r = unsafe {
            bpf_perf_event_read_value(
                map as *mut _,
                u64::from(cpu),
                &mut v,
                core::mem::size_of::<bpf_perf_event_value>() as u32,
            )
        };
        if r == 0 {
            c.values[d] = v.counter;
            c.valid |= 1 << d;
        } else {
            c.errors |= 1 << d;
        }
    }
    c
}

/// This CPU's accounting state.
#[inline(always)]
fn cpu_state() -> Option<&'static mut CpuState> {
    let st = CPU_STATE.get_ptr_mut(0)?;
    // SAFETY: per-CPU map value; programs on one CPU do not nest: the perf
    // timer fires in hard-irq context, the BPF timer's callback in softirq
    // context (preemption off, so no switch in between; a PREEMPT_RT
    // kernel, whose softirqs are preemptible, is not supported by the
    // silent path), and sched_switch runs with irqs disabled.
    Some(unsafe { &mut *st })
}

/// The task running now: (is it the idle task, its cgroup v2 id).
#[inline(always)]
fn current_task() -> (bool, u64) {
    let idle = bpf_get_current_pid_tgid() as u32 == 0;
    if idle {
        (true, 0)
    } else {
        // SAFETY: plain helper call.
        (false, unsafe { bpf_get_current_cgroup_id() })
    }
}

/// One timer run on `cpu`: reads its counters, closes its table up to now
/// and writes the record; the first failed read is logged.
#[inline(always)]
fn tick(cpu: u32) {
    // SAFETY: plain helper calls.
    let mut counters = read_counters(cpu, unsafe { bpf_ktime_get_boot_ns() });
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if counters.errors != 0 && bump(STAT_READ_ERRORS) == 0 {
        // aya-log does not use its context argument (its records go
        // through its own ring buffer), so the timer callback, which has
        // none, logs the same way.
        warn!(
            &(),
            "cpu {}: energy counter read failed (mask {})", cpu, counters.errors
        );
    }
    let Some(st) = cpu_state() else {
        return;
    };
    begin(st);
    let (idle, cgroup_id) = current_task();
    st.running = if idle { RUNNING_IDLE } else { RUNNING_TASK };
    if let Some(d) = close_span(st, now, idle, cgroup_id) {
        // Table full at a timer run: the record below carries it anyway, so
        // the time goes to `other` only for this span.
        bump(STAT_CGROUP_OVERFLOW);
        st.record.other_ns += d;
    }
    if synth_busy_mw() != 0 && counters.valid & 1 != 0 {
        // After the span is closed, so this CPU's busy time is counted up to now.
        counters.values[0] = synth_value(cpu, counters.values[0]);
    }
    flush(st, RECORD_TICK, cpu, now, &counters);
    done(st);
}

/// The perf timer: a `cpu-clock` sampling event per CPU, which fires every
/// period whatever the CPU runs (idle CPUs included; see `timer_fired` for
/// the path that leaves them alone).
#[perf_event]
pub fn on_timer(_ctx: PerfEventContext) -> u32 {
    // SAFETY: plain helper call.
    tick(unsafe { bpf_get_smp_processor_id() });
    0
}

/// Per CPU (the key), the BPF timer of the silent path and its state.
#[repr(C)]
pub struct CpuTimer {
    timer: bpf_timer,
    /// Initialised (`bpf_timer_init`).
    ready: u32,
    /// Started and not cancelled: it fires again.
    armed: u32,
    /// When it is due to fire next (CLOCK_MONOTONIC ns).
    due_ns: u64,
    /// The last error of `bpf_timer_init`/`_set_callback`/`_start` (a
    /// negative errno, 0 for none), for `STAT_TIMER_ERRORS`' diagnosis.
    error: i64,
}

/// The silent path's timers, one per CPU. A BTF map: the kernel finds the
/// `bpf_timer` in its value type by BTF.
#[btf_map]
static TIMERS: BtfArray<CpuTimer, { MAX_CPUS as usize }> = BtfArray::new();

/// The silent path's period in ns (`--period`), set by the daemon; 0 when
/// the perf timer is used instead. Read-only data.
#[unsafe(no_mangle)]
static TIMER_PERIOD_NS: u64 = 0;

/// Flags for `bpf_timer_start`: `BPF_F_TIMER_CPU_PIN` where the kernel
/// has it (6.7), else 0 (the timer is then started on, and re-armed from,
/// the CPU it samples, which keeps it there; `timer_fired` checks).
#[unsafe(no_mangle)]
static TIMER_START_FLAGS: u64 = 0;

#[inline(always)]
fn timer_period_ns() -> u64 {
    // SAFETY: a plain read of the loader-set constant.
    unsafe { core::ptr::read_volatile(&TIMER_PERIOD_NS) }
}

#[inline(always)]
fn start_timer(t: &mut CpuTimer, first: bool) {
    let period = timer_period_ns();
    // SAFETY: plain helper call (CLOCK_MONOTONIC, the timers' clock).
    let now = unsafe { bpf_ktime_get_ns() };
    // The next expiry is one period after the last one, not after this
    // callback ran: the callback's own latency does not slow the cadence.
    // Behind by a whole period (a late softirq): from now.
    let mut due = if first {
        now + period
    } else {
        t.due_ns + period
    };
    if due <= now {
        due = now + period;
    }
    t.due_ns = due;
    // SAFETY: a plain read of the loader-set constant; `t.timer` is the
    // initialised timer of a map value.
    let r = unsafe {
        let flags = core::ptr::read_volatile(&TIMER_START_FLAGS);
        bpf_timer_start(&mut t.timer, due - now, flags)
    };
    if r == 0 {
        t.armed = 1;
    } else {
        t.armed = 0;
        t.error = r;
        bump(STAT_TIMER_ERRORS);
    }
}

/// The silent path's timer callback: today's timer run, on the CPU the
/// timer belongs to, re-armed while that CPU runs a task. A timer that
/// the kernel moved to another CPU (its CPU went offline) stops; the CPU
/// arms its own again at its first switch when it comes back.
extern "C" fn timer_fired(_map: *mut c_void, key: *mut u32, t: *mut CpuTimer) -> i32 {
    // SAFETY: the kernel passes this map's key and value of the timer
    // that fired; plain helper call.
    let (cpu, t) = unsafe { (*key, &mut *t) };
    if cpu != unsafe { bpf_get_smp_processor_id() } {
        t.armed = 0;
        return 0;
    }
    tick(cpu);
    if current_task().0 {
        t.armed = 0;
    } else {
        start_timer(t, false);
    }
    0
}

/// The silent path at a switch on `cpu`: the timer runs while the CPU
/// runs a task and is cancelled when it switches to its idle task
/// (`next_idle`), so an idle CPU gets no interrupt from Ergon.
#[inline(always)]
fn steer_timer(cpu: u32, next_idle: bool) {
    let Some(t) = TIMERS.get_ptr_mut(cpu) else {
        return;
    };
    // SAFETY: this CPU's own entry; programs do not nest on one CPU, and
    // the callback writes it only on this CPU (or after it went offline).
    let t = unsafe { &mut *t };
    if next_idle {
        if t.armed != 0 {
            t.armed = 0;
            // SAFETY: an initialised timer of a map value (armed implies ready).
            unsafe { bpf_timer_cancel(&mut t.timer) };
        }
        return;
    }
    if t.armed != 0 {
        return;
    }
    let map = addr_of!(TIMERS) as *mut c_void;
    // SAFETY: the timer of this map's value; the callback has the
    // signature the kernel calls (map, key, value). The callback is set at
    // every start from here: `bpf_timer_cancel` drops it.
    let r = unsafe {
        let r = if t.ready == 0 {
            bpf_timer_init(&mut t.timer, map, CLOCK_MONOTONIC)
        } else {
            0
        };
        // -EBUSY: initialised already.
        if r == 0 || r == -16 {
            t.ready = 1;
            bpf_timer_set_callback(&mut t.timer, timer_fired as *mut c_void)
        } else {
            r
        }
    };
    if r != 0 {
        t.error = r;
        bump(STAT_TIMER_ERRORS);
        return;
    }
    start_timer(t, true);
}

/// `next`, the task a switch hands the CPU to: argument 2 of
/// `sched_switch` on every kernel since 4.x (preempt, prev, next[,
/// prev_state]); only compared, never read through.
#[inline(always)]
fn next_task(ctx: &BtfTracePointContext) -> u64 {
    ctx.arg::<u64>(2)
}

/// `sched_switch` of the silent path: the same books, and the timer
/// steered (`steer_timer`).
#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch_silent(ctx: BtfTracePointContext) -> u32 {
    let next_idle = switch(next_task(&ctx));
    // SAFETY: plain helper call.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    steer_timer(cpu, next_idle);
    0
}

#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> u32 {
    switch(next_task(&ctx));
    0
}

/// The books at a switch to `next`: the outgoing task's span closed, and
/// what runs from now on written down (`CpuState::running`). Returns
/// whether `next` is the CPU's idle task.
#[inline(always)]
fn switch(next: u64) -> bool {
    // SAFETY: plain helper calls. `current` is still the outgoing task here.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let Some(st) = cpu_state() else {
        return false;
    };
    begin(st);
    let (idle, cgroup_id) = current_task();
    if idle {
        // The outgoing pid-0 task is this CPU's idle task.
        // SAFETY: plain helper call.
        st.idle_task = unsafe { bpf_get_current_task() };
    }
    let next_idle = st.idle_task != 0 && next == st.idle_task;
    st.running = match (st.idle_task, next_idle) {
        (0, _) => RUNNING_UNKNOWN,
        (_, true) => RUNNING_IDLE,
        (_, false) => RUNNING_TASK,
    };
    if let Some(d) = close_span(st, now, idle, cgroup_id) {
        bump(STAT_CGROUP_OVERFLOW);
        let cpu = unsafe { bpf_get_smp_processor_id() };
        // Flush the full table early (up to the start of the span just
        // closed, where `flush` starts the next table); that span opens it.
        if flush(
            st,
            RECORD_CGROUP_FLUSH,
            cpu,
            now.saturating_sub(d),
            &Counters::NONE,
        ) {
            if !add_cgroup(st, cgroup_id, d) {
                st.record.other_ns += d;
            }
        } else {
            st.record.other_ns += d;
        }
    }
    done(st);
    next_idle
}
