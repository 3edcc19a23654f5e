//! Rate-limited complaints about a failure that repeats (a counter that
//! cannot be read): logged at once, then at most once a minute with a count,
//! so a flapping source cannot flood the log.

use std::time::{Duration, Instant};

/// A failing read is logged at its first failure, then at most once a
/// minute with the number of failures since (a file that fails now and then
/// must not flood the log).
#[derive(Debug, Default)]
pub struct Complaint {
    last: Option<Instant>,
    failures: u64,
}

impl Complaint {
    const EVERY: Duration = Duration::from_secs(60);

    /// Counts a failure; `Some(failures)` when a warning is due.
    pub fn failed(&mut self, now: Instant) -> Option<u64> {
        self.failures += 1;
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Self::EVERY)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.failures))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_logged_first_then_once_a_minute_with_their_count() {
        let mut c = Complaint::default();
        let t0 = Instant::now();
        assert_eq!(c.failed(t0), Some(1));
        for s in 1..60 {
            assert_eq!(c.failed(t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(c.failed(t0 + Duration::from_secs(60)), Some(60));
        assert_eq!(c.failed(t0 + Duration::from_secs(61)), None);
    }
}
