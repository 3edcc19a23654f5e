//! Hypervisor steal time per CPU, from `/proc/stat` (the `steal` column, in
//! clock ticks). In a VM the kernel programs' wall-clock spans include time
//! the host took from a running vCPU; the kernel's own CPU accounting
//! (`cpu.stat`, with `CONFIG_PARAVIRT_TIME_ACCOUNTING`) leaves it out. The
//! drain hands the deltas to the attribution engine, which moves that time
//! from the tasks to idle. On bare metal the column stays 0.

use std::{collections::HashMap, path::PathBuf};

use crate::sysroot::SysRoot;

#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}; steal time is not corrected (check --procfs-root)")]
pub struct StealError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Per-CPU steal ticks from `/proc/stat` text: `cpuN user nice system idle
/// iowait irq softirq steal ...`. Lines without a steal column are skipped.
pub fn parse_proc_stat(text: &str) -> Vec<(u32, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let cpu = f.next()?.strip_prefix("cpu")?.parse::<u32>().ok()?;
            let steal = f.nth(7)?.parse::<u64>().ok()?;
            Some((cpu, steal))
        })
        .collect()
}

#[derive(Debug)]
pub struct StealReader {
    path: PathBuf,
    ns_per_tick: u64,
    last: HashMap<u32, u64>,
}

impl StealReader {
    pub fn new(root: &SysRoot) -> Self {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let hz = if hz > 0 { hz as u64 } else { 100 };
        Self {
            path: root.proc("stat"),
            ns_per_tick: 1_000_000_000 / hz,
            last: HashMap::new(),
        }
    }

    /// Steal (ns) per CPU since the previous call; the first call only sets
    /// the baseline.
    pub fn read(&mut self) -> Result<Vec<(u32, u64)>, StealError> {
        let text = std::fs::read_to_string(&self.path).map_err(|source| StealError {
            path: self.path.clone(),
            source,
        })?;
        Ok(self.deltas(&text))
    }

    fn deltas(&mut self, text: &str) -> Vec<(u32, u64)> {
        let mut out = Vec::new();
        for (cpu, ticks) in parse_proc_stat(text) {
            if let Some(prev) = self.last.insert(cpu, ticks) {
                let d = ticks.saturating_sub(prev);
                if d > 0 {
                    out.push((cpu, d * self.ns_per_tick));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "cpu  387750 0 39013 329225 1720 0 297 1840 0 0\n\
cpu0 193875 0 19506 164612 860 0 148 920 0 0\n\
cpu1 193875 0 19507 164613 860 0 149 920 0 0\n\
intr 12345\n";
    const B: &str = "cpu  387750 0 39013 329225 1720 0 297 1845 0 0\n\
cpu0 193875 0 19506 164612 860 0 148 921 0 0\n\
cpu1 193875 0 19507 164613 860 0 149 924 0 0\n";

    #[test]
    fn parses_per_cpu_steal_only() {
        assert_eq!(parse_proc_stat(A), vec![(0, 920), (1, 920)]);
        assert_eq!(parse_proc_stat("cpu0 1 2 3\nbogus\n"), vec![]);
    }

    #[test]
    fn deltas_after_a_baseline() {
        let mut r = StealReader {
            path: PathBuf::new(),
            ns_per_tick: 10_000_000,
            last: HashMap::new(),
        };
        assert_eq!(r.deltas(A), vec![]);
        assert_eq!(r.deltas(B), vec![(0, 10_000_000), (1, 40_000_000)]);
        assert_eq!(r.deltas(B), vec![]);
    }

    #[test]
    fn missing_file_names_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = StealReader::new(&SysRoot::under(dir.path()));
        let e = r.read().expect_err("no proc/stat").to_string();
        assert!(
            e.contains("proc/stat") && e.contains("--procfs-root"),
            "{e}"
        );
    }
}
