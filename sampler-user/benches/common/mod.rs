//! Records the benches feed the engine, built one way.

use sampler_common::{CgroupTime, TickRecord, RECORD_TICK};

/// The timer record of `cpu` for period `t` (`[(t − 1) × period, t ×
/// period]`) with a counter reading: each of `cgroups` ran `share` ns of
/// it, the CPU's idle task the rest.
pub fn tick(cpu: u32, t: u64, period: u64, cgroups: &[u64], share: u64) -> TickRecord {
    let mut r = TickRecord::zeroed();
    r.kind = RECORD_TICK;
    r.cpu = cpu;
    r.ts_ns = t * period;
    r.span_start_ns = (t - 1) * period;
    r.valid_mask = 1;
    for (slot, &id) in r.cgroups.iter_mut().zip(cgroups) {
        *slot = CgroupTime {
            cgroup_id: id,
            ns: share,
        };
    }
    let n = cgroups.len().min(r.cgroups.len());
    r.n_cgroups = n as u32;
    r.idle_ns = period - share * n as u64;
    r
}
