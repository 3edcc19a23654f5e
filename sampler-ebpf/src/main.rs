//! Ergon's kernel programs.
//!
//! - `on_timer` (perf_event, software `cpu-clock` per CPU): reads this CPU's
//!   energy counters with `bpf_perf_event_read_value`, closes the CPU's
//!   time table up to now and writes one [`TickRecord`] to the ring buffer
//!   without waking the reader (`BPF_RB_NO_WAKEUP`), except for the record
//!   that takes the unread bytes past half the ring (`BPF_RB_FORCE_WAKEUP`):
//!   the daemon drains on its own slow timer, on demand, and when the ring
//!   fills.
//! - `sched_switch` (tp_btf): adds the outgoing task's on-CPU time to its
//!   cgroup's slot in the per-CPU table. It emits a record only when the
//!   table is full, so record volume follows the timer rate, not the
//!   context-switch rate.
//!
//! All the code is compiled only for the BPF target; on the host this crate is
//! an empty binary so that `cargo check --workspace` and clippy work.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// The package read token's compare-exchange (see `programs::may_read`).
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

#[cfg(target_arch = "bpf")]
mod programs;

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier rejects any program with a reachable panic path,
    // so a loaded program never gets here.
    unsafe { core::hint::unreachable_unchecked() }
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
