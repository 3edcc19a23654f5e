//! Opening system-wide counting perf events (the energy counters) and
//! reading them from userspace. aya only opens sampling events for its own
//! programs, so counters go through `perf-event-open-sys` here.

use std::{
    fs::File,
    io::Read,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

use perf_event_open_sys as sys;

/// Failures opening or reading a counter.
#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    #[error("perf_event_open(type {pmu_type}, config {config:#x}, cpu {cpu}) failed: {source}; run as root or with CAP_PERFMON, and check `ergon check`")]
    Open {
        pmu_type: u32,
        config: u64,
        cpu: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("reading perf counter on cpu {cpu} failed: {source}")]
    Read {
        cpu: u32,
        #[source]
        source: std::io::Error,
    },
}

/// An open, enabled, system-wide counting event on one CPU.
#[derive(Debug)]
pub struct Counter {
    file: File,
    cpu: u32,
}

impl Counter {
    /// Opens a counting (non-sampling) event `pid = -1, cpu = cpu`.
    pub fn open(pmu_type: u32, config: u64, cpu: u32) -> Result<Self, PerfError> {
        // SAFETY: perf_event_attr is plain data; all-zero is its documented default.
        let mut attr: sys::bindings::perf_event_attr = unsafe { std::mem::zeroed() };
        attr.type_ = pmu_type;
        attr.size = std::mem::size_of::<sys::bindings::perf_event_attr>() as u32;
        attr.config = config;
        // SAFETY: `attr` is valid for the call; the fd is checked below.
        let fd = unsafe {
            sys::perf_event_open(
                &mut attr,
                -1,
                cpu as libc::c_int,
                -1,
                libc::c_ulong::from(sys::bindings::PERF_FLAG_FD_CLOEXEC),
            )
        };
        if fd < 0 {
            return Err(PerfError::Open {
                pmu_type,
                config,
                cpu,
                source: std::io::Error::last_os_error(),
            });
        }
        // SAFETY: `fd` is a fresh descriptor we own.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok(Self { file, cpu })
    }

    /// A software `cpu-clock` counter on `cpu`: counts nanoseconds of wall time.
    pub fn cpu_clock(cpu: u32) -> Result<Self, PerfError> {
        Self::open(
            sys::bindings::PERF_TYPE_SOFTWARE,
            u64::from(sys::bindings::PERF_COUNT_SW_CPU_CLOCK),
            cpu,
        )
    }

    /// Reads the accumulated count (from any CPU; the kernel asks the owning CPU).
    pub fn read(&self) -> Result<u64, PerfError> {
        let mut buf = [0u8; 8];
        (&self.file)
            .read_exact(&mut buf)
            .map_err(|source| PerfError::Read {
                cpu: self.cpu,
                source,
            })?;
        Ok(u64::from_ne_bytes(buf))
    }

    pub fn cpu(&self) -> u32 {
        self.cpu
    }

    pub fn raw_fd(&self) -> i32 {
        self.file.as_raw_fd()
    }
}

impl AsFd for Counter {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// `CLOCK_BOOTTIME` in nanoseconds: the clock `bpf_ktime_get_boot_ns` reads.
pub fn boot_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_BOOTTIME always exists on Linux ≥ 2.6.39.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_clock_moves_forward() {
        let a = boot_ns();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = boot_ns();
        assert!(b >= a + 2_000_000, "{a} -> {b}");
    }
}
