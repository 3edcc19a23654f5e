//! Closing the timeline of a silent (idle) CPU from its kernel state.

use sampler_common::CgroupTime;

use super::{Attributor, Consumed, IdleState, Span};

impl Attributor {
    /// Closes CPU `cpu`'s timeline up to `to` from the kernel's per-CPU state,
    /// without waiting for the CPU's next record (a tickless idle CPU's timer
    /// can be throttled for seconds, and keeps its table unflushed).
    ///
    /// The kernel's unflushed table covers `[span_start, since]` exactly;
    /// `[since, to]` is booked as idle, so `to == since` closes without any
    /// guess. The daemon closes up to `since` a CPU that keeps switching
    /// without a timer sample, and up to now (the idle guess) one that has
    /// been silent for several timer periods: a CPU that runs a task takes a
    /// timer sample every period. What this closure books is remembered:
    /// when the CPU's record for that span arrives, exactly that part is
    /// taken out of it. A CPU closed before is closed again by the table's
    /// growth since: the books then hold exactly the kernel's table (plus the
    /// idle guess), so every later closure or record books only what is new.
    /// Returns true when it closed; false when there is nothing new, a record
    /// is still on its way, or the table contradicts an earlier idle guess.
    pub fn close_idle(&mut self, cpu: u32, st: &IdleState<'_>, to: u64) -> bool {
        let Some(&ci) = self.cpu_index.get(&cpu) else {
            return false;
        };
        let line = &mut self.cpus[ci];
        let Some(closed) = line.closed_until else {
            return false;
        };
        if to <= closed || to < st.since || st.since < st.span_start {
            return false;
        }
        // The kernel's table always sums to `[span_start, since]` once a
        // program run is over; a copy read while `sched_switch` was updating
        // it (it moves `since` before the slot) does not, and is not used.
        let table: u64 = st.idle_ns + st.other_ns + st.cgroups.iter().map(|e| e.ns).sum::<u64>();
        if table != st.since - st.span_start {
            return false;
        }
        let none = Consumed {
            start: st.span_start,
            end: closed,
            idle: 0,
            other: 0,
            cgroups: Vec::new(),
        };
        if line.consumed.is_none() && line.idle_until_first_event && st.since == 0 {
            // Still no program has run on it: idle all along.
            line.spans.push_back(Span {
                start: closed,
                end: to,
                idle_ns: to - closed,
                other_ns: 0,
                n: 0,
            });
            line.closed_until = Some(to);
            self.idle_closures += 1;
            return true;
        }
        if line.consumed.is_none() && line.idle_until_first_event && st.span_start > closed {
            // A CPU started by `start_unreported` had its first event at
            // `span_start`: it was idle up to there, and no record is in
            // flight. Book that as idle; the table follows.
            line.spans.push_back(Span {
                start: closed,
                end: st.span_start,
                idle_ns: st.span_start - closed,
                other_ns: 0,
                n: 0,
            });
            line.closed_until = Some(st.span_start);
            line.idle_until_first_event = false;
            return self.close_idle(cpu, st, to);
        }
        let before = match &line.consumed {
            // A record for this CPU is still on its way.
            None if st.span_start != closed => return false,
            None => &none,
            Some(c) if c.start != st.span_start => return false,
            Some(c) => c,
        };
        // What the books will hold of the unflushed table after this closure.
        let after = Consumed {
            start: st.span_start,
            end: to,
            idle: st.idle_ns + (to - st.since),
            other: st.other_ns,
            cgroups: st
                .cgroups
                .iter()
                .filter(|e| e.ns > 0)
                .map(|e| (e.cgroup_id, e.ns))
                .collect(),
        };
        // This closure books the growth; none of it may be negative (the
        // table contradicting an earlier idle guess waits for the record).
        let grown = |was: u64, now: u64| now.checked_sub(was);
        let (Some(idle), Some(other)) = (
            grown(before.idle, after.idle),
            grown(before.other, after.other),
        ) else {
            return false;
        };
        let mut cgroups = Vec::with_capacity(after.cgroups.len());
        for &(id, was) in &before.cgroups {
            if !after.cgroups.iter().any(|&(i, now)| i == id && now >= was) {
                return false;
            }
        }
        for &(id, now) in &after.cgroups {
            let was = before
                .cgroups
                .iter()
                .find(|&&(i, _)| i == id)
                .map_or(0, |&(_, w)| w);
            if now > was {
                cgroups.push(CgroupTime {
                    cgroup_id: id,
                    ns: now - was,
                });
            }
        }
        let span = Span {
            start: closed,
            end: to,
            idle_ns: idle,
            other_ns: other,
            n: cgroups.len(),
        };
        line.entries.extend(cgroups);
        line.consumed = Some(after);
        line.closed_until = Some(to);
        line.spans.push_back(span);
        self.idle_closures += 1;
        true
    }

    /// CPUs that have sent no record yet: their timeline has not started.
    pub fn unreported_cpus(&self) -> Vec<u32> {
        self.cpu_index
            .iter()
            .filter(|(_, &ci)| self.cpus[ci].closed_until.is_none())
            .map(|(&cpu, _)| cpu)
            .collect()
    }

    /// Starts the timeline of a CPU that has sent no record yet, from its
    /// kernel state, so [`Attributor::close_idle`] can close it like any
    /// lagging CPU (a CPU whose timer perf throttled from the start can stay
    /// without records for seconds, and the books wait for every CPU). The
    /// timeline starts where the kernel's table does; a CPU on which no
    /// program has run yet (`since == 0`: no switch, no timer run) has run
    /// its idle task since `from`, the moment sampling began. Returns true
    /// when it started.
    pub fn start_unreported(&mut self, cpu: u32, st: &IdleState<'_>, from: u64) -> bool {
        let Some(&ci) = self.cpu_index.get(&cpu) else {
            return false;
        };
        let line = &mut self.cpus[ci];
        if line.closed_until.is_some() {
            return false;
        }
        if st.since == 0 {
            line.closed_until = Some(from);
            line.idle_until_first_event = true;
        } else {
            line.closed_until = Some(st.span_start);
        }
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
