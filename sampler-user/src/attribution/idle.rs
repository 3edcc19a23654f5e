//! Closing the timeline of a silent (idle) CPU from its kernel state.

use sampler_common::CgroupTime;

use super::{Attributor, Consumed, IdleState, Span};

impl Attributor {
    /// Closes CPU `cpu`'s timeline up to `to` from the kernel's per-CPU state,
    /// without waiting for the CPU's next record. The daemon calls it only
    /// for a CPU that has been silent for several timer periods, which means
    /// it is idle: a CPU that runs a task takes a timer sample every period.
    /// The unflushed table `[span_start, since]` is booked as it is, and
    /// `[since, to]` as idle; when the CPU's record for that span arrives,
    /// exactly this part is taken out of it. Returns true when it closed.
    pub fn close_idle(&mut self, cpu: u32, st: &IdleState<'_>, to: u64) -> bool {
        let Some(&ci) = self.cpu_index.get(&cpu) else {
            return false;
        };
        let line = &mut self.cpus[ci];
        let Some(closed) = line.closed_until else {
            return false;
        };
        if to <= closed || to <= st.since || st.since < st.span_start {
            return false;
        }
        let span = match &mut line.consumed {
            None => {
                if st.span_start != closed {
                    // A record for this CPU is still on its way.
                    return false;
                }
                let idle = st.idle_ns + (to - st.since);
                let cgroups: Vec<(u64, u64)> = st
                    .cgroups
                    .iter()
                    .filter(|e| e.ns > 0)
                    .map(|e| (e.cgroup_id, e.ns))
                    .collect();
                line.entries.extend(
                    cgroups
                        .iter()
                        .map(|&(cgroup_id, ns)| CgroupTime { cgroup_id, ns }),
                );
                let span = Span {
                    start: closed,
                    end: to,
                    idle_ns: idle,
                    other_ns: st.other_ns,
                    n: cgroups.len(),
                };
                line.consumed = Some(Consumed {
                    start: closed,
                    end: to,
                    idle,
                    other: st.other_ns,
                    cgroups,
                });
                span
            }
            Some(c) => {
                // Still silent since the last closure: extend it as idle.
                if st.span_start != c.start || st.since > c.end {
                    return false;
                }
                let add = to - closed;
                c.end = to;
                c.idle += add;
                Span {
                    start: closed,
                    end: to,
                    idle_ns: add,
                    other_ns: 0,
                    n: 0,
                }
            }
        };
        line.closed_until = Some(to);
        line.spans.push_back(span);
        self.idle_closures += 1;
        true
    }

    /// CPUs whose timeline ends before `before` (boot ns).
    pub fn lagging_cpus(&self, before: u64) -> Vec<u32> {
        self.cpu_index
            .iter()
            .filter(|(_, &ci)| self.cpus[ci].closed_until.is_some_and(|t| t < before))
            .map(|(&cpu, _)| cpu)
            .collect()
    }

    /// (closures made, closures the kernel's record contradicted).
    pub fn closure_stats(&self) -> (u64, u64) {
        (self.idle_closures, self.closure_corrections)
    }
}
