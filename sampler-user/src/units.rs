//! Unit newtypes and the one wrap-aware delta every counter goes through.

use std::fmt;

/// Wall-clock time now, in Unix milliseconds (0 before 1970).
pub fn now_unix_ms() -> i64 {
    unix_ms(std::time::SystemTime::now())
}

/// A wall-clock time in Unix milliseconds (0 before 1970).
pub fn unix_ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Unix seconds as RFC 3339 (`2026-12-01T00:00:00Z`); a time before 1970
/// as its number.
pub fn rfc3339_seconds(unix_s: i64) -> String {
    u64::try_from(unix_s).map_or_else(
        |_| unix_s.to_string(),
        |s| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(s),
            )
            .to_string()
        },
    )
}

/// A duration in whole milliseconds, saturating at `i64::MAX`.
pub fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Energy in joules.
#[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd)]
pub struct Joules(pub f64);

impl fmt::Display for Joules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} J", self.0)
    }
}

/// Advance of a counter that counts up and wraps at `2^bits` (`bits` in
/// 1..=64), from `prev` to `cur`. The perf PMU hands out 64-bit accumulated
/// counts (`bits = 64`); the RAPL MSR is 32 bits wide. A counter that is read
/// at least once per wrap period is never misread.
pub fn counter_delta(prev: u64, cur: u64, bits: u32) -> u64 {
    let mask = if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    cur.wrapping_sub(prev) & mask
}

/// Advance of a counter that wraps at an arbitrary `max` (inclusive range
/// `0..=max`, as powercap's `max_energy_range_uj`).
pub fn bounded_delta(prev: u64, cur: u64, max: u64) -> u64 {
    if cur >= prev {
        cur - prev
    } else {
        // Wrapped: up to max, then from 0 to cur.
        (max - prev.min(max)) + cur + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_advance() {
        assert_eq!(counter_delta(10, 25, 64), 15);
        assert_eq!(counter_delta(10, 25, 32), 15);
    }

    #[test]
    fn wraps_at_64_bits() {
        assert_eq!(counter_delta(u64::MAX - 4, 5, 64), 10);
    }

    #[test]
    fn wraps_at_32_bits() {
        assert_eq!(counter_delta(0xffff_fff0, 0x10, 32), 0x20);
    }

    #[test]
    fn bounded_wrap() {
        // powercap: 0..=max, so max → 0 is one step.
        assert_eq!(bounded_delta(99, 0, 99), 1);
        assert_eq!(bounded_delta(90, 9, 99), 19);
        assert_eq!(bounded_delta(5, 9, 99), 4);
    }

    proptest! {
        #[test]
        fn delta_recovers_any_advance(start in any::<u64>(), adv in any::<u64>(), bits in 1u32..=64) {
            let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
            let adv = adv & mask;
            let prev = start & mask;
            let cur = prev.wrapping_add(adv) & mask;
            prop_assert_eq!(counter_delta(prev, cur, bits), adv);
        }

        #[test]
        fn bounded_delta_recovers_any_advance(max in 1u64..u64::MAX / 2, start in any::<u64>(), adv in any::<u64>()) {
            let prev = start % (max + 1);
            let adv = adv % (max + 1);
            let cur = (prev + adv) % (max + 1);
            prop_assert_eq!(bounded_delta(prev, cur, max), adv);
        }

        #[test]
        fn sum_of_deltas_is_total_advance(steps in proptest::collection::vec(0u64..1 << 31, 1..50), start in any::<u32>()) {
            // 32-bit counter read often enough: the sum of deltas equals the true advance.
            let mut raw = u64::from(start);
            let mut total = 0u64;
            let mut sum = 0u64;
            for s in steps {
                let next = (raw + s) & 0xffff_ffff;
                sum += counter_delta(raw, next, 32);
                total += s;
                raw = next;
            }
            prop_assert_eq!(sum, total);
        }
    }
}
