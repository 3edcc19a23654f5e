//! Ring-buffer bytes → typed, validated events.

use sampler_common::{
    TickRecord, CGROUP_SLOTS, MAX_DOMAINS, RECORD_CGROUP_FLUSH, RECORD_HEADER_BYTES, RECORD_TICK,
};

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes, expected {expected} (the header and its cgroup slots in use): the eBPF object and the daemon were built from different sources; rebuild with `cargo xtask build`")]
    Size { len: usize, expected: usize },
    #[error("record kind {kind} is unknown")]
    Kind { kind: u32 },
    #[error("record claims {n} cgroups, at most {CGROUP_SLOTS} fit")]
    Cgroups { n: u32 },
    #[error("record span ends at {ts} before it starts at {start}")]
    Span { start: u64, ts: u64 },
}

/// What a record says happened on one CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A timer run: counters read and the time table flushed.
    Tick,
    /// An early flush of a full time table from `sched_switch`.
    CgroupFlush,
}

/// A validated record.
#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub kind: Kind,
    pub record: TickRecord,
}

impl Event {
    /// Fresh counter readings `(domain, raw value)` in this record.
    pub fn readings(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        (0..MAX_DOMAINS)
            .filter(|d| self.record.valid_mask & (1 << d) != 0)
            .map(|d| (d, self.record.values[d]))
    }

    /// Domains whose read failed on this CPU.
    pub fn read_errors(&self) -> impl Iterator<Item = usize> + '_ {
        (0..MAX_DOMAINS).filter(|d| self.record.error_mask & (1 << d) != 0)
    }

    /// Nanoseconds spent by tasks (any cgroup) in the span.
    pub fn busy_ns(&self) -> u64 {
        let n = self.record.n_cgroups as usize;
        self.record.cgroups[..n].iter().map(|c| c.ns).sum::<u64>() + self.record.other_ns
    }
}

/// Decodes one record as it travels: the header and `n_cgroups` slots
/// ([`TickRecord::wire_len`]); the slots not in use read as zero.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    if bytes.len() < RECORD_HEADER_BYTES || bytes.len() > std::mem::size_of::<TickRecord>() {
        return Err(DecodeError::Size {
            len: bytes.len(),
            expected: RECORD_HEADER_BYTES,
        });
    }
    let mut record = TickRecord::zeroed();
    // SAFETY: at most `size_of::<TickRecord>()` bytes (checked above) into
    // a TickRecord, which is plain integers (any bit pattern is valid); the
    // source may be unaligned, a byte copy makes no assumption.
    unsafe {
        std::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            (&mut record as *mut TickRecord).cast::<u8>(),
            bytes.len(),
        );
    }
    if record.n_cgroups as usize > CGROUP_SLOTS {
        return Err(DecodeError::Cgroups {
            n: record.n_cgroups,
        });
    }
    let expected = TickRecord::wire_len(record.n_cgroups as usize);
    if bytes.len() != expected {
        return Err(DecodeError::Size {
            len: bytes.len(),
            expected,
        });
    }
    let kind = match record.kind {
        RECORD_TICK => Kind::Tick,
        RECORD_CGROUP_FLUSH => Kind::CgroupFlush,
        kind => return Err(DecodeError::Kind { kind }),
    };
    if record.ts_ns < record.span_start_ns {
        return Err(DecodeError::Span {
            start: record.span_start_ns,
            ts: record.ts_ns,
        });
    }
    Ok(Event { kind, record })
}

/// The bytes of `r` as the kernel sends it: the header and its slots in use.
#[cfg(test)]
pub(crate) fn record_bytes(r: &TickRecord) -> Vec<u8> {
    // SAFETY: TickRecord is repr(C) plain data with explicit padding.
    let all = unsafe {
        std::slice::from_raw_parts(
            (r as *const TickRecord).cast::<u8>(),
            std::mem::size_of::<TickRecord>(),
        )
    };
    all[..TickRecord::wire_len(r.n_cgroups as usize)].to_vec()
}

#[cfg(test)]
pub(crate) fn blank_record() -> TickRecord {
    TickRecord {
        kind: RECORD_TICK,
        ..TickRecord::zeroed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_tick() {
        let mut r = blank_record();
        r.cpu = 3;
        r.ts_ns = 2_000;
        r.span_start_ns = 1_000;
        r.valid_mask = 0b101;
        r.error_mask = 0b010;
        r.values = [11, 0, 33, 0, 0];
        r.idle_ns = 400;
        r.other_ns = 100;
        r.n_cgroups = 2;
        r.cgroups[0] = sampler_common::CgroupTime {
            cgroup_id: 7,
            ns: 300,
        };
        r.cgroups[1] = sampler_common::CgroupTime {
            cgroup_id: 9,
            ns: 200,
        };
        let e = decode(&record_bytes(&r)).expect("valid record");
        assert_eq!(e.kind, Kind::Tick);
        assert_eq!(e.record.cpu, 3);
        assert_eq!(e.readings().collect::<Vec<_>>(), vec![(0, 11), (2, 33)]);
        assert_eq!(e.read_errors().collect::<Vec<_>>(), vec![1]);
        assert_eq!(e.busy_ns(), 600);
    }

    #[test]
    fn only_the_slots_in_use_travel_and_a_wrong_size_is_refused() {
        let mut r = blank_record();
        assert_eq!(record_bytes(&r).len(), 96);
        r.n_cgroups = 1;
        r.cgroups[0] = sampler_common::CgroupTime {
            cgroup_id: 7,
            ns: 5,
        };
        let bytes = record_bytes(&r);
        assert_eq!(bytes.len(), 112);
        let e = decode(&bytes).expect("valid record");
        assert_eq!(e.record.cgroups[0].cgroup_id, 7);
        assert_eq!(e.record.cgroups[1], sampler_common::CgroupTime::default());
        // A slot short, a slot too many, shorter than a header, longer than
        // a whole record.
        for len in [100, 128] {
            let mut b = bytes.clone();
            b.resize(len, 0);
            assert_eq!(
                decode(&b).unwrap_err(),
                DecodeError::Size { len, expected: 112 }
            );
        }
        for len in [40, 400] {
            let mut b = bytes.clone();
            b.resize(len, 0);
            assert_eq!(
                decode(&b).unwrap_err(),
                DecodeError::Size { len, expected: 96 }
            );
        }
    }

    #[test]
    fn rejects_bad_kind_count_and_span() {
        let mut r = blank_record();
        r.kind = 99;
        assert_eq!(
            decode(&record_bytes(&r)).unwrap_err(),
            DecodeError::Kind { kind: 99 }
        );
        let mut r = blank_record();
        r.n_cgroups = 17;
        assert_eq!(
            decode(&record_bytes(&r)).unwrap_err(),
            DecodeError::Cgroups { n: 17 }
        );
        let mut r = blank_record();
        r.span_start_ns = 5;
        r.ts_ns = 4;
        assert_eq!(
            decode(&record_bytes(&r)).unwrap_err(),
            DecodeError::Span { start: 5, ts: 4 }
        );
    }

    #[test]
    fn early_flush_kind() {
        let mut r = blank_record();
        r.kind = RECORD_CGROUP_FLUSH;
        assert_eq!(
            decode(&record_bytes(&r)).map(|e| e.kind),
            Ok(Kind::CgroupFlush)
        );
    }
}
