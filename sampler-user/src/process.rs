//! Ergon's own cost as the kernel counts it: `ergon_process_cpu_seconds_total`
//! and `ergon_process_resident_memory_bytes`, read from `/proc/self` when
//! scraped (two small reads of values the kernel keeps, like the
//! `process_*` metrics of Prometheus' client libraries, named `ergon_*`
//! here like every metric of Ergon's).

use prometheus_client::{collector::Collector, encoding::DescriptorEncoder};

use crate::families::{counter1, gauge1};

/// What `/proc/self` says of this process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Usage {
    /// User + system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size, in bytes.
    pub resident_bytes: f64,
}

impl Usage {
    /// Reads `/proc/self/stat` and `/proc/self/statm`; `None` when either
    /// is unreadable (then the metrics are left out, not made up).
    pub fn read() -> Option<Usage> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        // SAFETY: sysconf only reads configuration values.
        let (tick, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        parse(&stat, &statm, tick as f64, page as f64)
    }
}

/// `stat` and `statm` as the kernel writes them (proc_pid_stat(5)): the
/// command name is in parentheses and may hold spaces, so the fields are
/// counted after its closing `)`; utime and stime are fields 14 and 15.
pub fn parse(stat: &str, statm: &str, tick_hz: f64, page_bytes: f64) -> Option<Usage> {
    if tick_hz <= 0.0 || page_bytes <= 0.0 {
        return None;
    }
    let after = &stat[stat.rfind(')')? + 1..];
    let mut f = after.split_ascii_whitespace().skip(11);
    let utime: f64 = f.next()?.parse().ok()?;
    let stime: f64 = f.next()?.parse().ok()?;
    let resident: f64 = statm.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(Usage {
        cpu_seconds: (utime + stime) / tick_hz,
        resident_bytes: resident * page_bytes,
    })
}

/// The two metrics, for a scrape.
#[derive(Debug)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let Some(u) = Usage::read() else {
            return Ok(());
        };
        counter1(
            &mut enc,
            "ergon_process_cpu_seconds",
            "CPU time (user + system) the ergon process has used, from /proc/self/stat.",
            u.cpu_seconds,
        )?;
        gauge1(
            &mut enc,
            "ergon_process_resident_memory_bytes",
            "Resident memory of the ergon process, from /proc/self/statm.",
            u.resident_bytes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_counted_after_the_command_name() {
        // A command name with a space and a parenthesis, as comm can be.
        let stat = "4242 (tokio (rt) w) S 1 4242 4242 0 -1 4194560 1200 0 0 0 250 75 0 0 20 0 9 0 100 123456789 4800 18446744073709551615";
        let u = parse(stat, "30000 4800 900 300 0 5000 0\n", 100.0, 4096.0).expect("parse");
        assert_eq!(u.cpu_seconds, 3.25);
        assert_eq!(u.resident_bytes, 4800.0 * 4096.0);
        assert_eq!(parse("garbage", "1 2", 100.0, 4096.0), None);
        assert_eq!(parse(stat, "", 100.0, 4096.0), None);
    }

    #[test]
    fn this_process_reads_its_own_usage() {
        let u = Usage::read().expect("/proc/self");
        assert!(u.resident_bytes > 1e6, "{u:?}");
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(Usage::read().expect("again").cpu_seconds > u.cpu_seconds);
    }
}
