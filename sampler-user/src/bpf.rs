//! Loading and attaching the kernel programs, wiring the energy counters into
//! them, and reading their maps and run statistics.

use std::{
    collections::HashMap,
    os::fd::{AsFd, AsRawFd, OwnedFd, RawFd},
    time::Duration,
};

use aya::{
    maps::{Array, Map, MapData, PerCpuArray, RingBuf},
    programs::{
        perf_event::{self, PerfEventLinkId},
        BtfTracePoint, PerfEvent,
    },
    Btf, Ebpf, EbpfLoader,
};
use sampler_common::{CpuState, COUNTER_MAPS, STAT_COUNT};

use crate::{
    perf::{self, boot_ns},
    source::Plan,
    topology::Topology,
};

/// The object `cargo xtask build` produced, embedded at compile time.
static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sampler.bpf.o"));

/// Names of the kernel programs, as in `sampler-ebpf`.
pub const TIMER_PROGRAM: &str = "on_timer";
pub const SWITCH_PROGRAM: &str = "sched_switch";
/// `sched_switch` of the silent path: it also runs each CPU's BPF timer.
pub const SILENT_SWITCH_PROGRAM: &str = "sched_switch_silent";

/// How each CPU's timer runs, the one that reads its counters and closes
/// its table every `--period` (`--timer`; docs/architecture.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// A BPF timer per CPU (`bpf_timer`, Linux 5.15), run from
    /// `sched_switch`: started when the CPU leaves its idle task, re-armed
    /// from its own callback while the CPU runs a task, cancelled when the
    /// CPU switches to idle. An idle CPU gets no interrupt from Ergon.
    Bpf,
    /// A `cpu-clock` sampling perf event per CPU: an hrtimer that fires
    /// every period whatever the CPU runs, idle included (about 2,000
    /// interrupts a second per idle CPU at the default 500 µs).
    Perf,
}

impl Timer {
    pub fn name(self) -> &'static str {
        match self {
            Timer::Bpf => "bpf",
            Timer::Perf => "perf",
        }
    }

    /// The `sched_switch` program this path loads.
    fn switch_program(self) -> &'static str {
        match self {
            Timer::Bpf => SILENT_SWITCH_PROGRAM,
            Timer::Perf => SWITCH_PROGRAM,
        }
    }
}

/// The release that brought `BPF_F_TIMER_CPU_PIN` (a BPF timer that stays
/// on the CPU it was started on). Before it, the silent path's timers are
/// started from the CPU they sample, and the callback checks.
const TIMER_CPU_PIN_SINCE: (u32, u32) = (6, 7);
const BPF_F_TIMER_CPU_PIN: u64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error(
        "this ergon binary was built without its eBPF object; build it with `cargo xtask build`"
    )]
    NotBuilt,
    #[error("loading the eBPF object failed (kernel ≥ 5.12 with BTF and CAP_BPF are needed; `ergon check` says what is missing)")]
    Load {
        #[source]
        source: aya::EbpfError,
    },
    #[error("a seccomp profile refuses bpf(2): the kernel answered EPERM with the capabilities present and this process runs under a seccomp filter (Seccomp: 2 in /proc/self/status); use deploy/seccomp/ergon.json (the runtime's default plus bpf and perf_event_open: `--security-opt seccomp=deploy/seccomp/ergon.json`, or the pod's seccompProfile) instead of the runtime's default")]
    Seccomp {
        #[source]
        source: aya::EbpfError,
    },
    #[error("program `{name}` is missing from the eBPF object")]
    MissingProgram { name: &'static str },
    #[error("map `{name}` is missing from the eBPF object or has the wrong type")]
    MissingMap { name: &'static str },
    #[error("program `{name}`: {action} failed")]
    Program {
        name: &'static str,
        action: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("map `{name}`: {action} failed")]
    Map {
        name: &'static str,
        action: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("reading the kernel BTF (/sys/kernel/btf/vmlinux) failed; ergon needs a kernel built with CONFIG_DEBUG_INFO_BTF")]
    Btf {
        #[source]
        source: aya::BtfError,
    },
    #[error("opening an energy counter failed")]
    Counter {
        #[source]
        source: perf::PerfError,
    },
    #[error("--bpf-stats: switching on the kernel's BPF run-time statistics failed (bpf(BPF_ENABLE_STATS) needs CAP_SYS_ADMIN); grant it, or run without --bpf-stats (sampling and attribution do not need it)")]
    Stats {
        #[source]
        source: aya::sys::SyscallError,
    },
    #[error("--timer bpf: this kernel is PREEMPT_RT (/sys/kernel/realtime is 1), whose softirqs are preemptible, so a BPF timer's callback could be interrupted by a switch on its CPU; use --timer perf or --timer auto")]
    PreemptRt,
    #[error("putting a counter fd into {map}[{cpu}] failed")]
    CounterSlot {
        map: &'static str,
        cpu: u32,
        #[source]
        source: std::io::Error,
    },
}

/// Minimum time between two reads of one package's counters in the kernel
/// (`MIN_READ_NS` in the programs): RAPL updates its counters every 976 µs,
/// so reading more often adds cost and cross-CPU reads, not resolution.
pub const MIN_READ_NS: u64 = 976_000;

/// Bytes a record with `n_cgroups` slots in use takes in the ring buffer:
/// the header and those slots ([`TickRecord::wire_len`]) and the ring's
/// 8-byte header, rounded up to 8 as the kernel does.
///
/// [`TickRecord::wire_len`]: sampler_common::TickRecord::wire_len
pub const fn ring_record_bytes(n_cgroups: usize) -> u64 {
    (sampler_common::TickRecord::wire_len(n_cgroups) as u64 + 8).div_ceil(8) * 8
}

/// The most one record takes in the ring buffer: a full table.
pub const RING_RECORD_BYTES: u64 = ring_record_bytes(sampler_common::CGROUP_SLOTS);

/// How long `ringbuf_bytes` of ring buffer holds the timer's records of
/// `cpus` busy CPUs at `period` when each takes `record_bytes`: each CPU
/// writes one record per period (early flushes come on top, on a CPU that
/// runs more than [`sampler_common::CGROUP_SLOTS`] cgroups between two
/// runs).
///
/// `headroom = ringbuf_bytes / (cpus / period × record_bytes)`.
pub fn ring_headroom(
    ringbuf_bytes: u64,
    cpus: usize,
    period: Duration,
    record_bytes: u64,
) -> Duration {
    let bytes_per_s = cpus.max(1) as f64 / period.as_secs_f64() * record_bytes as f64;
    Duration::from_secs_f64(ringbuf_bytes as f64 / bytes_per_s)
}

/// The smallest ring-buffer size (a power of two, as the kernel requires)
/// that holds `stall` of records from `cpus` CPUs at `period`, full tables
/// all ([`RING_RECORD_BYTES`]), so it holds that long whatever runs.
pub fn ring_size_for(cpus: usize, period: Duration, stall: Duration) -> u64 {
    let need = cpus.max(1) as f64
        * (stall.as_secs_f64() / period.as_secs_f64())
        * RING_RECORD_BYTES as f64;
    (need.ceil() as u64).max(4096).next_power_of_two()
}

/// How to load.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Timer period in nanoseconds (per CPU).
    pub period_ns: u64,
    /// Ring buffer size in bytes (power of two, multiple of the page size).
    pub ringbuf_bytes: u32,
    /// Switch on the kernel's BPF run-time statistics (`--bpf-stats`) for
    /// the sampler's lifetime. The switch is host-wide: every BPF program on
    /// the node then pays two clock reads per run, so it is off by default.
    pub bpf_stats: bool,
    /// The load-dependent synthetic counter's constants (`--source
    /// synthetic` with `--synthetic-idle-watts` below `--synthetic-watts`).
    pub synthetic: Option<crate::source::synthetic::KernelScale>,
    /// Which timer samples each CPU ([`timer_path`] resolves `--timer`).
    pub timer: Timer,
    /// Run-queue offsets ([`crate::kernel_layout`]); all 0 books spans in
    /// wall-clock time.
    pub rq_layout: sampler_common::RqLayout,
}

/// One opened energy counter and where it is read.
#[derive(Debug)]
pub struct OpenCounter {
    pub plan: crate::source::CounterPlan,
    pub counter: perf::Counter,
    /// CPUs whose timer programs currently read it (narrowed at run time when
    /// the kernel refuses reads from other CPUs than `open_cpu`).
    pub readers: Vec<u32>,
    /// CPUs the kernel refused to let read it ([`Sampler::narrow`]): not
    /// offered it again when they come back online.
    pub refused: Vec<u32>,
}

/// What [`Sampler::detach_cpu`] changed.
#[derive(Debug, Default)]
pub struct Detached {
    /// Counters that died with the CPU
    /// ([`crate::source::CounterPlan::dies_with_cpu`]), to park in the books.
    pub died: Vec<usize>,
    /// Package counters the kernel moved to another CPU: (counter, its new
    /// open CPU), which now reads it.
    pub moved: Vec<(usize, u32)>,
}

/// Kernel run statistics of one program (cumulative since load, counted only
/// while BPF stats are enabled, which `Sampler` does for its lifetime when
/// loaded with [`LoadOptions::bpf_stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgramStats {
    pub name: &'static str,
    pub run_count: u64,
    pub run_time_ns: u64,
}

/// The loaded and attached kernel side. Dropping it detaches everything.
pub struct Sampler {
    ebpf: Ebpf,
    pub counters: Vec<OpenCounter>,
    pub attached_cpus: Vec<u32>,
    /// The timer program's link on each attached CPU (the perf timer).
    timer_links: HashMap<u32, PerfEventLinkId>,
    period_ns: u64,
    pub timer: Timer,
    _stats: Option<OwnedFd>,
    /// Per counter, how the load-dependent synthetic counter's value is
    /// made from a read of its cpu-clock (as `synth_value` in the programs).
    synthetic: Vec<Option<SynthRead>>,
}

/// The load-dependent synthetic value of one counter read by the daemon:
/// `(clock >> 10) × idle_scale + (busy >> 10) × busy_mw`, busy from the
/// programs' map.
#[derive(Clone, Copy, Debug)]
struct SynthRead {
    idle_scale: u64,
    busy_mw: u64,
    busy: BusyOf,
}

#[derive(Clone, Copy, Debug)]
enum BusyOf {
    /// `CPU_BUSY_NS` of this CPU (per-CPU layout).
    Cpu(u32),
    /// `PKG_BUSY_NS` at this index (package layout).
    Package(u32),
}

impl Sampler {
    pub fn load(plan: &Plan, topo: &Topology, opts: &LoadOptions) -> Result<Self, BpfError> {
        if BPF_OBJECT.is_empty() {
            return Err(BpfError::NotBuilt);
        }
        let min_read_ns = MIN_READ_NS;
        // The record that takes the unread bytes past half the ring wakes
        // the drain: the ring never fills between two of its slow ticks.
        let wake_at_bytes = u64::from(opts.ringbuf_bytes / 2);
        let synth_busy_mw = opts.synthetic.map_or(0, |k| k.busy_mw);
        let (timer_period_ns, timer_flags) = timer_globals(opts.timer, opts.period_ns);
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("EVENTS", opts.ringbuf_bytes)
            .override_global("MIN_READ_NS", &min_read_ns, true)
            .override_global("WAKE_AT_BYTES", &wake_at_bytes, true)
            .override_global("SYNTH_BUSY_MW", &synth_busy_mw, true)
            .override_global("TIMER_PERIOD_NS", &timer_period_ns, true)
            .override_global("TIMER_START_FLAGS", &timer_flags, true)
            .override_global("RQ_LAYOUT", &opts.rq_layout, true)
            .load(BPF_OBJECT)
            .map_err(load_error)?;
        let synthetic = match opts.synthetic {
            Some(k) => set_synthetic_scale(&mut ebpf, plan, topo, k)?,
            None => Vec::new(),
        };

        // Run statistics for the self-metrics, only when asked: held until
        // the sampler drops (the kernel switches them off with the last fd).
        let stats = if opts.bpf_stats {
            let fd = aya::sys::enable_stats(aya::sys::Stats::RunTime)
                .map_err(|source| BpfError::Stats { source })?;
            Some(fd)
        } else {
            None
        };

        // Counters first, so the first timer run already finds them.
        let mut counters = Vec::with_capacity(plan.counters.len());
        let mut slots = HashMap::new();
        let mut masks: HashMap<u32, u32> = HashMap::new();
        // A userspace source's counters are read by the daemon, not here:
        // the programs then only keep every CPU's timeline.
        for cp in plan.counters.iter().filter(|c| c.user.is_none()) {
            let counter = perf::Counter::open(cp.pmu_type, cp.config, cp.open_cpu)
                .map_err(|source| BpfError::Counter { source })?;
            let idx = counters.len();
            for &reader in &cp.readers {
                slots.insert((reader, cp.domain), idx);
                *masks.entry(reader).or_default() |= 1 << cp.domain;
            }
            counters.push(OpenCounter {
                readers: cp.readers.clone(),
                refused: Vec::new(),
                plan: cp.clone(),
                counter,
            });
        }
        for (&(cpu, domain), &idx) in &slots {
            let name = counter_map(domain)?;
            let fd = map_fd(&ebpf, name)?;
            map_update_fd(fd, cpu, counters[idx].counter.raw_fd()).map_err(|source| {
                BpfError::CounterSlot {
                    map: name,
                    cpu,
                    source,
                }
            })?;
        }
        {
            let mut arr = domain_mask(&mut ebpf)?;
            for (&cpu, &mask) in &masks {
                set_mask(&mut arr, cpu, mask)?;
            }
        }
        // One reader per package at a time: every CPU that reads a
        // package-wide counter takes its package's read token first.
        if !plan.per_cpu {
            let packages = topo.packages();
            let name = "CPU_PACKAGE";
            let mut arr = array_mut::<u32>(&mut ebpf, name)?;
            for cp in plan.counters.iter().filter(|c| c.user.is_none()) {
                let Some(index) = packages.iter().position(|&p| p == cp.package) else {
                    continue;
                };
                if index as u32 >= sampler_common::MAX_PACKAGES {
                    tracing::warn!(
                        package = cp.package,
                        "more packages than read tokens: this package's CPUs read without one"
                    );
                    continue;
                }
                for &reader in &cp.readers {
                    arr.set(reader, index as u32 + 1, 0)
                        .map_err(|source| BpfError::Map {
                            name,
                            action: "set",
                            source,
                        })?;
                }
            }
        }

        // Kernel-side diagnostics (aya-log) go to `log`, bridged into tracing.
        // The logger task is started by the daemon; failing here only loses logs.
        load_programs(&mut ebpf, opts.timer)?;
        let name = opts.timer.switch_program();
        let sw: &mut BtfTracePoint = program_mut(&mut ebpf, name)?;
        sw.attach().map_err(|source| BpfError::Program {
            name,
            action: "attach",
            source,
        })?;
        let mut sampler = Self {
            ebpf,
            counters,
            attached_cpus: Vec::new(),
            timer_links: HashMap::new(),
            period_ns: opts.period_ns,
            timer: opts.timer,
            _stats: stats,
            synthetic,
        };
        for c in &topo.cpus {
            sampler.attach_timer(c.cpu)?;
        }
        Ok(sampler)
    }

    fn attach_timer(&mut self, cpu: u32) -> Result<(), BpfError> {
        if self.timer == Timer::Bpf {
            // Its BPF timer starts at its first switch away from idle.
            self.attached_cpus.push(cpu);
            return Ok(());
        }
        let timer: &mut PerfEvent = program_mut(&mut self.ebpf, TIMER_PROGRAM)?;
        let link = timer
            .attach(
                perf_event::PerfEventConfig::Software(perf_event::SoftwareEvent::CpuClock),
                perf_event::PerfEventScope::AllProcessesOneCpu { cpu },
                perf_event::SamplePolicy::Period(self.period_ns),
                false,
            )
            .map_err(|source| BpfError::Program {
                name: TIMER_PROGRAM,
                action: "attach (perf_event_open cpu-clock)",
                source,
            })?;
        self.timer_links.insert(cpu, link);
        self.attached_cpus.push(cpu);
        Ok(())
    }

    /// CPU `cpu` went offline ([`crate::hotplug`]): its timer is detached
    /// (the kernel removed its event for good) and it stops being a reader
    /// of any counter.
    ///
    /// A package counter opened on it lives on: the kernel moves the event
    /// to the lowest-numbered other online CPU of the package
    /// (`cpumask_any_but` in `rapl_cpu_offline`, arch/x86/events/rapl.c).
    /// On a kernel without PMU read scope only that CPU may read it now,
    /// so it becomes the counter's open CPU and a reader again if it had
    /// been refused.
    pub fn detach_cpu(&mut self, cpu: u32) -> Result<Detached, BpfError> {
        if let Some(link) = self.timer_links.remove(&cpu) {
            let timer: &mut PerfEvent = program_mut(&mut self.ebpf, TIMER_PROGRAM)?;
            timer.detach(link).map_err(|source| BpfError::Program {
                name: TIMER_PROGRAM,
                action: "detach",
                source,
            })?;
        }
        self.attached_cpus.retain(|&c| c != cpu);
        let mut out = Detached::default();
        for idx in 0..self.counters.len() {
            let c = &mut self.counters[idx];
            let moved = if c.plan.open_cpu != cpu {
                None
            } else if c.plan.dies_with_cpu() {
                out.died.push(idx);
                None
            } else {
                crate::hotplug::successor(&c.plan.readers, &self.attached_cpus, cpu)
            };
            if c.readers.contains(&cpu) {
                c.readers.retain(|&r| r != cpu);
                self.unset_reader(cpu, idx)?;
            }
            if let Some(to) = moved {
                let c = &mut self.counters[idx];
                c.plan.open_cpu = to;
                c.refused.retain(|&r| r != to);
                if !c.readers.contains(&to) {
                    c.readers.push(to);
                    self.set_reader(to, idx)?;
                }
                out.moved.push((idx, to));
            }
        }
        Ok(out)
    }

    /// CPU `cpu` came back online: the counters that died with it are
    /// opened again, it reads again what it read before, and its timer is
    /// attached again. Each reopened counter goes into `reopened` with its
    /// first count and when it was read (boot ns), to rebase the books on
    /// — also those reopened before a later step failed.
    pub fn attach_cpu(
        &mut self,
        cpu: u32,
        reopened: &mut Vec<(usize, u64, u64)>,
    ) -> Result<(), BpfError> {
        for idx in 0..self.counters.len() {
            let c = &mut self.counters[idx];
            if c.plan.open_cpu == cpu && c.plan.dies_with_cpu() {
                let counter = perf::Counter::open(c.plan.pmu_type, c.plan.config, cpu)
                    .map_err(|source| BpfError::Counter { source })?;
                let raw = counter
                    .read()
                    .map_err(|source| BpfError::Counter { source })?;
                reopened.push((idx, boot_ns(), raw));
                c.counter = counter;
            }
            if c.plan.readers.contains(&cpu)
                && !c.readers.contains(&cpu)
                && !c.refused.contains(&cpu)
            {
                c.readers.push(cpu);
            }
        }
        for idx in 0..self.counters.len() {
            let readers = self.counters[idx].readers.clone();
            let fresh = reopened.iter().any(|&(i, ..)| i == idx);
            for reader in readers {
                if reader == cpu || fresh {
                    self.set_reader(reader, idx)?;
                }
            }
        }
        if !self.attached_cpus.contains(&cpu) {
            self.attach_timer(cpu)?;
        }
        Ok(())
    }

    /// Puts counter `idx` into its domain's array at `cpu` and sets the
    /// CPU's mask bit.
    fn set_reader(&mut self, cpu: u32, idx: usize) -> Result<(), BpfError> {
        let Some(c) = self.counters.get(idx) else {
            return Ok(());
        };
        let (domain, fd) = (c.plan.domain, c.counter.raw_fd());
        let name = counter_map(domain)?;
        let map = map_fd(&self.ebpf, name)?;
        map_update_fd(map, cpu, fd).map_err(|source| BpfError::CounterSlot {
            map: name,
            cpu,
            source,
        })?;
        let mut arr = domain_mask(&mut self.ebpf)?;
        let mask = arr.get(&cpu, 0).unwrap_or(0) | (1u32 << domain);
        set_mask(&mut arr, cpu, mask)
    }

    /// Takes counter `idx` out of its domain's array at `cpu` and clears
    /// the CPU's mask bit.
    fn unset_reader(&mut self, cpu: u32, idx: usize) -> Result<(), BpfError> {
        let Some(c) = self.counters.get(idx) else {
            return Ok(());
        };
        let domain = c.plan.domain;
        let name = counter_map(domain)?;
        let fd = map_fd(&self.ebpf, name)?;
        map_delete(fd, cpu).map_err(|source| BpfError::CounterSlot {
            map: name,
            cpu,
            source,
        })?;
        let mut arr = domain_mask(&mut self.ebpf)?;
        let mask = arr.get(&cpu, 0).unwrap_or(0) & !(1u32 << domain);
        set_mask(&mut arr, cpu, mask)
    }

    /// Takes the aya-log ring buffer for the logger task (None when the object has no logs).
    pub fn take_logger(&mut self) -> Option<aya_log::EbpfLogger<&'static dyn log::Log>> {
        aya_log::EbpfLogger::init(&mut self.ebpf).ok()
    }

    /// Takes the record ring buffer for the drain task.
    pub fn take_ringbuf(&mut self) -> Result<RingBuf<MapData>, BpfError> {
        let map = self
            .ebpf
            .take_map("EVENTS")
            .ok_or(BpfError::MissingMap { name: "EVENTS" })?;
        RingBuf::try_from(map).map_err(|source| BpfError::Map {
            name: "EVENTS",
            action: "open",
            source,
        })
    }

    /// Reads entry `index` of the per-CPU array `name`: one value per CPU.
    fn per_cpu<T: aya::Pod>(&self, name: &'static str, index: u32) -> Result<Vec<T>, BpfError> {
        let map = self.ebpf.map(name).ok_or(BpfError::MissingMap { name })?;
        let arr: PerCpuArray<&MapData, T> =
            PerCpuArray::try_from(map).map_err(|source| BpfError::Map {
                name,
                action: "open",
                source,
            })?;
        let values = arr.get(&index, 0).map_err(|source| BpfError::Map {
            name,
            action: "read",
            source,
        })?;
        Ok(values.iter().copied().collect())
    }

    /// The `STATS` counters summed over CPUs, indexed by `STAT_*`.
    pub fn kernel_stats(&self) -> Result<[u64; STAT_COUNT as usize], BpfError> {
        let mut out = [0u64; STAT_COUNT as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = self.per_cpu::<u64>("STATS", i as u32)?.iter().sum();
        }
        Ok(out)
    }

    /// Reads counter `idx` from the daemon (its CPUs sleep), as the
    /// programs would report it.
    pub fn read_counter(&self, idx: usize) -> std::io::Result<u64> {
        let c = self
            .counters
            .get(idx)
            .ok_or_else(|| std::io::Error::other(format!("no counter {idx}")))?;
        let raw = c.counter.read().map_err(std::io::Error::other)?;
        let Some(Some(k)) = self.synthetic.get(idx) else {
            return Ok(raw);
        };
        let busy = match k.busy {
            BusyOf::Cpu(cpu) => self
                .per_cpu::<u64>("CPU_BUSY_NS", 0)
                .map(|v| v.get(cpu as usize).copied().unwrap_or(0)),
            BusyOf::Package(i) => self.array_u64("PKG_BUSY_NS", i),
        }
        .map_err(std::io::Error::other)?;
        Ok((raw >> 10)
            .wrapping_mul(k.idle_scale)
            .wrapping_add((busy >> 10).wrapping_mul(k.busy_mw)))
    }

    fn array_u64(&self, name: &'static str, index: u32) -> Result<u64, BpfError> {
        let map = self.ebpf.map(name).ok_or(BpfError::MissingMap { name })?;
        let arr: Array<&MapData, u64> = Array::try_from(map).map_err(|source| BpfError::Map {
            name,
            action: "open",
            source,
        })?;
        arr.get(&index, 0).map_err(|source| BpfError::Map {
            name,
            action: "read",
            source,
        })
    }

    /// Every CPU's accounting state (index = CPU id).
    pub fn cpu_states(&self) -> Result<Vec<CpuState>, BpfError> {
        self.per_cpu("CPU_STATE", 0)
    }

    /// Run count and run time of both programs; none unless loaded with
    /// [`LoadOptions::bpf_stats`] (without it the kernel counts nothing).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        if self._stats.is_none() {
            return Vec::new();
        }
        // The silent path's timer callback runs outside the kernel's run
        // accounting: only its switch program is counted, under the name
        // of the concept (`sched_switch`).
        let programs: &[(&'static str, &str)] = match self.timer {
            Timer::Perf => &[
                (TIMER_PROGRAM, TIMER_PROGRAM),
                (SWITCH_PROGRAM, SWITCH_PROGRAM),
            ],
            Timer::Bpf => &[(SWITCH_PROGRAM, SILENT_SWITCH_PROGRAM)],
        };
        programs
            .iter()
            .map(|&(name, loaded)| {
                let info = self.ebpf.program(loaded).and_then(|p| p.info().ok());
                ProgramStats {
                    name,
                    run_count: info.as_ref().map_or(0, |i| i.run_count()),
                    run_time_ns: info.map_or(0, |i| i.run_time().as_nanos() as u64),
                }
            })
            .collect()
    }

    /// Stops CPU `cpu` from reading counter `idx` (the kernel refused the read:
    /// the PMU does not allow reads from other CPUs of the package).
    pub fn narrow(&mut self, cpu: u32, idx: usize) -> Result<(), BpfError> {
        let Some(c) = self.counters.get_mut(idx) else {
            return Ok(());
        };
        if cpu == c.plan.open_cpu || !c.readers.contains(&cpu) {
            return Ok(());
        }
        c.readers.retain(|&r| r != cpu);
        c.refused.push(cpu);
        self.unset_reader(cpu, idx)
    }
}

/// The array map `name`, to write.
fn array_mut<'a, T: aya::Pod>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<Array<&'a mut MapData, T>, BpfError> {
    let map = ebpf.map_mut(name).ok_or(BpfError::MissingMap { name })?;
    Array::try_from(map).map_err(|source| BpfError::Map {
        name,
        action: "open",
        source,
    })
}

/// The `DOMAIN_MASK` array: bit `d` of entry `cpu` says that CPU reads domain `d`.
fn domain_mask(ebpf: &mut Ebpf) -> Result<Array<&mut MapData, u32>, BpfError> {
    array_mut(ebpf, "DOMAIN_MASK")
}

fn set_mask(arr: &mut Array<&mut MapData, u32>, cpu: u32, mask: u32) -> Result<(), BpfError> {
    arr.set(cpu, mask, 0).map_err(|source| BpfError::Map {
        name: "DOMAIN_MASK",
        action: "set",
        source,
    })
}

fn program_mut<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, BpfError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf
        .program_mut(name)
        .ok_or(BpfError::MissingProgram { name })?;
    prog.try_into().map_err(|source| BpfError::Program {
        name,
        action: "type check",
        source,
    })
}

fn map_fd(ebpf: &Ebpf, name: &'static str) -> Result<RawFd, BpfError> {
    match ebpf.map(name) {
        Some(Map::PerfEventArray(data)) => Ok(data.fd().as_fd().as_raw_fd()),
        _ => Err(BpfError::MissingMap { name }),
    }
}

// aya exposes PERF_EVENT_ARRAY maps only as output buffers it opens itself;
// putting our own counter fds in needs the raw map-update command.
#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;

fn bpf_map_cmd(
    cmd: libc::c_long,
    map: RawFd,
    key: &u32,
    value: Option<&u32>,
) -> std::io::Result<()> {
    let attr = MapElemAttr {
        map_fd: map as u32,
        _pad: 0,
        key: key as *const u32 as u64,
        value: value.map_or(0, |v| v as *const u32 as u64),
        flags: 0,
    };
    // SAFETY: `attr` and the key/value it points to outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            &attr as *const MapElemAttr,
            std::mem::size_of::<MapElemAttr>(),
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn map_update_fd(map: RawFd, index: u32, fd: RawFd) -> std::io::Result<()> {
    bpf_map_cmd(BPF_MAP_UPDATE_ELEM, map, &index, Some(&(fd as u32)))
}

fn map_delete(map: RawFd, index: u32) -> std::io::Result<()> {
    bpf_map_cmd(BPF_MAP_DELETE_ELEM, map, &index, None)
}

fn counter_map(domain: usize) -> Result<&'static str, BpfError> {
    COUNTER_MAPS
        .get(domain)
        .copied()
        .ok_or(BpfError::MissingMap {
            name: "CTR_<domain>",
        })
}

/// The seccomp mode of this process (`Seccomp:` in `/proc/self/status`):
/// 0 none, 1 strict, 2 a filter (a container runtime's profile).
pub fn seccomp_mode(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether an error's chain holds an `EPERM` from the kernel.
fn is_eperm(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(libc::EPERM))
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A load failure, named as seccomp's when the kernel said EPERM under a
/// seccomp filter: the capabilities are checked before (`ergon check`), so
/// EPERM there is a runtime's default profile refusing bpf(2) (measured
/// in the image under podman's default profile: `failed to create map
/// CPU_PACKAGE: Operation not permitted`).
fn load_error(source: aya::EbpfError) -> BpfError {
    let filtered = std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(seccomp_mode)
        == Some(2);
    if filtered && is_eperm(&source) {
        BpfError::Seccomp { source }
    } else {
        BpfError::Load { source }
    }
}

/// Loads the object and the programs of timer path `timer` through the
/// verifier without attaching anything: the strongest "will `ergon run`
/// work here" check short of running.
pub fn verify(timer: Timer) -> Result<(), BpfError> {
    if BPF_OBJECT.is_empty() {
        return Err(BpfError::NotBuilt);
    }
    let (period, flags) = timer_globals(timer, 500_000);
    let mut ebpf = EbpfLoader::new()
        .override_global("TIMER_PERIOD_NS", &period, true)
        .override_global("TIMER_START_FLAGS", &flags, true)
        .load(BPF_OBJECT)
        .map_err(load_error)?;
    load_programs(&mut ebpf, timer)
}

/// The timer path for `--timer`: `bpf` and `perf` as asked (`bpf` fails
/// where its program does not load), `auto` the silent one where it
/// passes the verifier here, else the perf timer with the reason.
pub fn timer_path(choice: crate::config::TimerChoice) -> Result<(Timer, String), BpfError> {
    use crate::config::TimerChoice;
    let rt = std::fs::read_to_string("/sys/kernel/realtime").is_ok_and(|s| s.trim() == "1");
    match choice {
        TimerChoice::Perf => Ok((Timer::Perf, "--timer perf: a cpu-clock perf event per CPU, which wakes idle CPUs every period".into())),
        TimerChoice::Bpf if rt => Err(BpfError::PreemptRt),
        TimerChoice::Auto if rt => Ok((Timer::Perf, "a cpu-clock perf event per CPU, which wakes idle CPUs every period: this kernel is PREEMPT_RT, where the silent timer's callback is preemptible".into())),
        TimerChoice::Bpf => verify(Timer::Bpf).map(|()| (Timer::Bpf, SILENT_REASON.into())),
        TimerChoice::Auto => match verify(Timer::Bpf) {
            Ok(()) => Ok((Timer::Bpf, SILENT_REASON.into())),
            Err(e) => Ok((
                Timer::Perf,
                format!(
                    "a cpu-clock perf event per CPU, which wakes idle CPUs every period: the silent path did not load here ({}); it needs bpf_timer in tp_btf programs (Linux 5.15)",
                    crate::source::chain(&e)
                ),
            )),
        },
    }
}

const SILENT_REASON: &str =
    "a BPF timer per CPU, run while the CPU runs a task: idle CPUs get no wake-ups from ergon";

/// `TIMER_PERIOD_NS` and `TIMER_START_FLAGS` for the programs.
fn timer_globals(timer: Timer, period_ns: u64) -> (u64, u64) {
    match timer {
        Timer::Perf => (0, 0),
        Timer::Bpf => {
            let pin = aya::util::KernelVersion::current().is_ok_and(|v| {
                v >= aya::util::KernelVersion::new(
                    TIMER_CPU_PIN_SINCE.0 as u8,
                    TIMER_CPU_PIN_SINCE.1 as u8,
                    0,
                )
            });
            (period_ns, if pin { BPF_F_TIMER_CPU_PIN } else { 0 })
        }
    }
}

/// Loads the programs of timer path `timer` into the kernel (verifier),
/// attaching nothing.
fn load_programs(ebpf: &mut Ebpf, timer: Timer) -> Result<(), BpfError> {
    let btf = Btf::from_sys_fs().map_err(|source| BpfError::Btf { source })?;
    let name = timer.switch_program();
    let sw: &mut BtfTracePoint = program_mut(ebpf, name)?;
    sw.load("sched_switch", &btf)
        .map_err(|source| BpfError::Program {
            name,
            action: "load",
            source,
        })?;
    if timer == Timer::Bpf {
        return Ok(());
    }
    let on_timer: &mut PerfEvent = program_mut(ebpf, TIMER_PROGRAM)?;
    on_timer.load().map_err(|source| BpfError::Program {
        name: TIMER_PROGRAM,
        action: "load",
        source,
    })
}

/// `SYNTH_IDLE_SCALE[cpu]`: the idle mW of the counter each CPU reads, per
/// CPU for the per-CPU layout, × the package's CPUs for the package layout
/// (set on every CPU of the package: a counter moved by hotplug is read by
/// another of them). Returns how the daemon makes the same value from its
/// own reads of each counter of the plan.
fn set_synthetic_scale(
    ebpf: &mut Ebpf,
    plan: &Plan,
    topo: &Topology,
    k: crate::source::synthetic::KernelScale,
) -> Result<Vec<Option<SynthRead>>, BpfError> {
    let name = "SYNTH_IDLE_SCALE";
    let mut arr = array_mut::<u64>(ebpf, name)?;
    for c in &topo.cpus {
        let scale = if plan.per_cpu {
            k.idle_mw
        } else {
            k.idle_mw * topo.cpus_of(c.package).len() as u64
        };
        arr.set(c.cpu, scale, 0).map_err(|source| BpfError::Map {
            name,
            action: "set",
            source,
        })?;
    }
    let packages = topo.packages();
    Ok(plan
        .counters
        .iter()
        .filter(|c| c.user.is_none())
        .map(|c| {
            let busy = if plan.per_cpu {
                BusyOf::Cpu(c.open_cpu)
            } else {
                BusyOf::Package(packages.iter().position(|&p| p == c.package)? as u32)
            };
            let cpus = if plan.per_cpu {
                1
            } else {
                topo.cpus_of(c.package).len() as u64
            };
            Some(SynthRead {
                idle_scale: k.idle_mw * cpus,
                busy_mw: k.busy_mw,
                busy,
            })
        })
        .collect())
}
