//! `ergon check`: what this machine offers, what `--source auto` would pick,
//! and whether `ergon run` can work here (exit 0) or not (exit 1, with the
//! reason and the fix).

use std::{fmt::Write as _, process::ExitCode};

use crate::{
    bpf, cgroupfs,
    config::Settings,
    source::{self, chain, msr, rapl, Declared, Probe, SourceKind},
    sysroot::SysRoot,
    topology::Topology,
};

/// What the kernel programs need, each with the release that brought it.
/// The newest of them is the floor ([`MIN_KERNEL`]); an older kernel is told
/// which ones it lacks before anything is loaded. The kernels proven by
/// `cargo xtask test-kernels` are listed in docs/kernels.md.
pub const KERNEL_FEATURES: &[(&str, (u32, u32))] = &[
    ("BPF cpu v3 instructions (jmp32, alu32)", (5, 1)),
    ("bpf_perf_event_read_value", (4, 15)),
    ("tp_btf programs", (5, 5)),
    ("BPF ring buffer", (5, 8)),
    ("CAP_BPF and CAP_PERFMON", (5, 8)),
    ("bpf_ktime_get_boot_ns", (5, 8)),
    ("BPF atomic compare-and-exchange", (5, 12)),
];

/// Minimum kernel: the newest release among [`KERNEL_FEATURES`].
pub const MIN_KERNEL: (u32, u32) = (5, 12);

/// The features of [`KERNEL_FEATURES`] that kernel `v` predates, e.g.
/// `BPF ring buffer (5.8), CAP_BPF and CAP_PERFMON (5.8)`.
pub fn missing_kernel_features(v: (u32, u32)) -> String {
    KERNEL_FEATURES
        .iter()
        .filter(|(_, since)| v < *since)
        .map(|(name, since)| format!("{name} ({}.{})", since.0, since.1))
        .collect::<Vec<_>>()
        .join(", ")
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Informational: a missing optional feature.
    Info,
    /// `ergon run` cannot work.
    Fail,
}

#[derive(Clone, Debug)]
pub struct Finding {
    pub item: &'static str,
    pub status: Status,
    pub detail: String,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    fn push(&mut self, item: &'static str, status: Status, detail: impl Into<String>) {
        self.findings.push(Finding {
            item,
            status,
            detail: detail.into(),
        });
    }

    pub fn can_run(&self) -> bool {
        self.findings.iter().all(|f| f.status != Status::Fail)
    }

    pub fn find(&self, item: &str) -> Option<&Finding> {
        self.findings.iter().find(|f| f.item == item)
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for f in &self.findings {
            let tag = match f.status {
                Status::Ok => "ok  ",
                Status::Info => "info",
                Status::Fail => "FAIL",
            };
            let _ = writeln!(s, "{tag}  {:<12} {}", f.item, f.detail);
        }
        if self.can_run() {
            s.push_str("\nergon run can work on this machine.\n");
        } else {
            s.push_str("\nergon run cannot work here: fix the FAIL lines above.\n");
        }
        s
    }
}

/// Parses `6.18.44-fc` → (6, 18).
pub fn parse_kernel_release(s: &str) -> Option<(u32, u32)> {
    let mut it = s.trim().split(['.', '-']);
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// Effective capability bits from `/proc/self/status`.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// Everything that does not need privileges or the kernel programs.
/// Counter sources are planned only with counters that move under `probe`.
pub fn inspect(root: &SysRoot, declared: &Declared, probe: &dyn Probe) -> Report {
    let mut r = Report::default();
    let osrelease = root.proc("sys/kernel/osrelease");
    match std::fs::read_to_string(&osrelease).ok().as_deref().and_then(parse_kernel_release) {
        Some(v) if v >= MIN_KERNEL => r.push("kernel", Status::Ok, format!("{}.{} ({}.{} or newer needed)", v.0, v.1, MIN_KERNEL.0, MIN_KERNEL.1)),
        Some(v) => r.push(
            "kernel",
            Status::Fail,
            format!(
                "{}.{} is older than {}.{}: it lacks {}; upgrade to {}.{} or newer (docs/kernels.md lists the kernels proven)",
                v.0,
                v.1,
                MIN_KERNEL.0,
                MIN_KERNEL.1,
                missing_kernel_features(v),
                MIN_KERNEL.0,
                MIN_KERNEL.1
            ),
        ),
        None => r.push("kernel", Status::Fail, format!("cannot read the release from {}", osrelease.display())),
    }
    let btf = root.sys("kernel/btf/vmlinux");
    if btf.exists() {
        r.push(
            "btf",
            Status::Ok,
            format!("{} present (tp_btf programs can load)", btf.display()),
        );
        // The words the daemon logs at start-up.
        match crate::kernel_layout::rq_layout(&btf) {
            Ok(l) => r.push(
                "scheduler clock",
                Status::Ok,
                crate::kernel_layout::describe(&l),
            ),
            Err(why) => r.push(
                "scheduler clock",
                Status::Info,
                format!("spans in wall-clock time ({why}): steal, where a host steals, counts as the running task's, as it does in this kernel's own cpu.stat when the kernel lacks CONFIG_PARAVIRT_TIME_ACCOUNTING"),
            ),
        }
    } else {
        r.push("btf", Status::Fail, format!("{} missing: the kernel was built without CONFIG_DEBUG_INFO_BTF; use a kernel with BTF", btf.display()));
    }
    let status = root.proc("self/status");
    let status_text = std::fs::read_to_string(&status).ok();
    match status_text.as_deref().and_then(parse_cap_eff) {
        Some(caps) => {
            let has = |c: u32| caps & (1u64 << c) != 0;
            if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
                r.push(
                    "privileges",
                    Status::Ok,
                    format!(
                        "CAP_BPF={} CAP_PERFMON={} CAP_SYS_ADMIN={}",
                        has(CAP_BPF),
                        has(CAP_PERFMON),
                        has(CAP_SYS_ADMIN)
                    ),
                );
                if !has(CAP_SYS_ADMIN) {
                    r.push("bpf stats", Status::Info, "CAP_SYS_ADMIN absent: --bpf-stats (the kernel's BPF run-time statistics, ergon_bpf_program_*) needs it and is refused without it; sampling and attribution need only CAP_BPF and CAP_PERFMON (on 5.11 and newer, no CAP_SYS_RESOURCE for memlock either)");
                }
            } else {
                r.push("privileges", Status::Fail, "neither CAP_SYS_ADMIN nor CAP_BPF+CAP_PERFMON: run as root or grant both capabilities (e.g. setcap cap_bpf,cap_perfmon+ep ergon)");
            }
        }
        None => r.push(
            "privileges",
            Status::Fail,
            format!("cannot read CapEff from {}", status.display()),
        ),
    }
    match status_text.as_deref().and_then(bpf::seccomp_mode) {
        Some(2) => r.push("seccomp", Status::Info, "a seccomp filter is installed (a container runtime's profile): it must allow bpf(2) and perf_event_open(2); deploy/seccomp/ergon.json does, a runtime's default profile refuses bpf(2)"),
        Some(0) => r.push("seccomp", Status::Ok, "no seccomp filter"),
        Some(m) => r.push("seccomp", Status::Fail, format!("seccomp mode {m} (strict) allows only read, write, exit and sigreturn: run ergon without it")),
        None => {}
    }
    if let Ok(p) = std::fs::read_to_string(root.proc("sys/kernel/perf_event_paranoid")) {
        r.push(
            "perf",
            Status::Ok,
            format!(
                "perf_event_paranoid={} (system-wide events need CAP_PERFMON above 0)",
                p.trim()
            ),
        );
    }
    match Topology::read(root) {
        Ok(t) => r.push(
            "cpus",
            Status::Ok,
            format!(
                "{} online in {} package(s)",
                t.cpus.len(),
                t.packages().len()
            ),
        ),
        Err(e) => r.push("cpus", Status::Fail, chain(&e)),
    }
    match rapl::discover(root) {
        Ok(Some(pmu)) => {
            let events: Vec<&str> = pmu
                .events
                .iter()
                .filter_map(|e| sampler_common::DOMAIN_NAMES.get(e.domain).copied())
                .collect();
            r.push(
                "power PMU",
                Status::Ok,
                format!(
                    "type {}, cpumask {:?}, events energy-{{{}}}",
                    pmu.pmu_type,
                    pmu.cpumask,
                    events.join(",")
                ),
            );
        }
        Ok(None) => r.push(
            "power PMU",
            Status::Info,
            format!(
                "none at {} (no RAPL through perf; VMs usually have none)",
                root.sys(rapl::POWER_PMU_DIR).display()
            ),
        ),
        Err(e) => r.push(
            "power PMU",
            Status::Info,
            format!("present but unusable: {}", chain(&e)),
        ),
    }
    match rapl::discover_core(root) {
        Ok(Some(pmu)) => r.push(
            "power_core",
            Status::Info,
            format!(
                "type {}, energy-core on {} cores (AMD per-core energy, Linux 6.14): the cores domain",
                pmu.pmu_type,
                pmu.cpumask.len()
            ),
        ),
        Ok(None) => {}
        Err(e) => r.push(
            "power_core",
            Status::Info,
            format!("present but unusable: {}", chain(&e)),
        ),
    }
    r.push("powercap", Status::Info, powercap_zones(root));
    match msr::open(root, 0) {
        Ok((path, _)) => r.push("msr", Status::Info, format!("{} present", path.display())),
        Err(e) => r.push("msr", Status::Info, chain(&e)),
    }
    match cgroupfs::detect(root) {
        Ok(cgroupfs::Layout::V2 { mount }) => r.push(
            "cgroup",
            Status::Ok,
            format!("v2 (unified) at {}", mount.display()),
        ),
        Ok(cgroupfs::Layout::Hybrid {
            mount,
            v1_controllers,
        }) => r.push(
            "cgroup",
            Status::Ok,
            format!(
                "hybrid: cgroup2 at {}, {v1_controllers} v1 hierarchies",
                mount.display()
            ),
        ),
        Ok(cgroupfs::Layout::V1 { .. }) => r.push(
            "cgroup",
            Status::Info,
            "v1 only: no cgroup2 mount, per-cgroup attribution needs cgroup2",
        ),
        Ok(cgroupfs::Layout::None) => {
            r.push("cgroup", Status::Info, "no cgroup filesystem mounted")
        }
        Err(e) => r.push("cgroup", Status::Info, chain(&e)),
    }
    match Topology::read(root) {
        Ok(topo) => match source::select(SourceKind::Auto, root, &topo, declared, probe) {
            Ok(plan) => {
                r.push(
                    "auto source",
                    Status::Ok,
                    format!("{}: {}", plan.source.name(), plan.reason),
                );
                r.push("attribution", Status::Ok, attribution(&plan));
            }
            Err(e) => r.push("auto source", Status::Fail, chain(&e)),
        },
        Err(_) => r.push("auto source", Status::Fail, "no CPU topology (see `cpus`)"),
    }
    r
}

/// The `attribution` line: which domain's energy is split, and why.
fn attribution(plan: &source::Plan) -> String {
    let base = plan.base_domain_name();
    let why = match base {
        "pkg" => "the whole package".to_string(),
        "psys" => "no pkg counter here: the platform's energy (psys) is attributed, and no domain=\"pkg\" series is served".to_string(),
        other => format!("no pkg or psys counter here: the {other} energy is attributed"),
    };
    format!("domain {base} ({why}) split over CPUs, cgroups and idle; ergon_source_info{{domain=\"{base}\"}}")
}

fn powercap_zones(root: &SysRoot) -> String {
    let dir = root.sys("class/powercap");
    let mut zones: Vec<String> = std::fs::read_dir(&dir)
        .map(|it| {
            it.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("intel-rapl:") || n.starts_with("amd-rapl:"))
                .collect()
        })
        .unwrap_or_default();
    zones.sort();
    if zones.is_empty() {
        format!("no RAPL zones under {}", dir.display())
    } else {
        format!("zones {}", zones.join(", "))
    }
}

/// The full check, including loading the kernel programs through the verifier.
pub fn report(settings: &Settings) -> Report {
    let probe = source::liveness::Reads::default();
    let mut r = inspect(&settings.root, &settings.declared(), &probe);
    let ready = ["kernel", "btf", "privileges"]
        .iter()
        .all(|i| r.find(i).is_some_and(|f| f.status == Status::Ok));
    if ready {
        match bpf::verify(bpf::Timer::Perf) {
            Ok(()) => r.push(
                "programs",
                Status::Ok,
                "on_timer and sched_switch pass the verifier",
            ),
            Err(e) => r.push("programs", Status::Fail, chain(&e)),
        }
        match bpf::timer_path(settings.timer) {
            Ok((timer, why)) => r.push("timer", Status::Ok, format!("{}: {why}", timer.name())),
            Err(e) => r.push("timer", Status::Fail, format!("--timer bpf: {}", chain(&e))),
        }
    } else {
        r.push(
            "programs",
            Status::Fail,
            "not loaded: fix kernel, btf and privileges first",
        );
    }
    names_lines(&mut r, &settings.names);
    if let Ok(topo) = Topology::read(&settings.root) {
        let (status, detail) = ring_buffer(
            u64::from(settings.ringbuf_bytes),
            topo.cpus.len(),
            settings.period,
        );
        r.push("ring buffer", status, detail);
    }
    if settings.source != SourceKind::Auto {
        if let Ok(topo) = Topology::read(&settings.root) {
            match settings.plan(&topo) {
                Ok(plan) => {
                    r.push(
                        "--source",
                        Status::Ok,
                        format!("{}: {}", plan.source.name(), plan.reason),
                    );
                    // What is attributed is the chosen source's, not auto's.
                    r.findings.retain(|f| f.item != "attribution");
                    r.push("attribution", Status::Ok, attribution(&plan));
                }
                Err(e) => r.push("--source", Status::Fail, chain(&e)),
            }
        }
    }
    if let Ok(topo) = Topology::read(&settings.root) {
        if let Ok(plan) = settings.plan(&topo) {
            r.push(
                "idle power",
                Status::Ok,
                idle_power(&plan, &topo, &settings.cause),
            );
        }
    }
    r
}

/// The `idle power` line: per package, whether its energy is split by
/// cause ([`crate::attribution::cause`]) and where the idle power comes from.
pub fn idle_power(
    plan: &source::Plan,
    topo: &Topology,
    cause: &crate::attribution::Cause,
) -> String {
    use crate::attribution::{IdleEnergy, PackageSpec};
    let policy = match cause.idle_energy {
        IdleEnergy::Separate => "the static part to idle (--idle-energy separate)",
        IdleEnergy::Share => "the static part to the cgroups by on-CPU time (--idle-energy share)",
    };
    PackageSpec::from_plan(plan, topo)
        .iter()
        .map(|spec| {
            let p = spec.package;
            if spec.counters.iter().any(|c| c.1.is_some()) || !spec.core_counters.is_empty() {
                return format!("package {p}: per-CPU or per-core counters measure each CPU's own energy, split by time on each CPU");
            }
            match cause.idle_watts.of(p) {
                Some(w) => format!("package {p}: declared {w} W (--package-idle-watts): split by cause, {policy}"),
                None => format!("package {p}: learned as ergon runs from its near-idle intervals (2 s of them at most 2% busy; ergon_package_idle_power_watts), split by time until then and by cause after, {policy}"),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The drain is woken when the ring buffer is half full; below this much
/// time to that point, a stalled drain can lose records.
pub const RING_WAKE_HEADROOM_MIN: std::time::Duration = std::time::Duration::from_millis(250);

/// The `ring buffer` line: how long `bytes` of ring buffer holds the
/// records of `cpus` busy CPUs at `period` ([`bpf::ring_headroom`]) with
/// one cgroup per record and with full tables, and, judged on full tables,
/// the size that holds a second when the wake-up comes too soon.
pub fn ring_buffer(bytes: u64, cpus: usize, period: std::time::Duration) -> (Status, String) {
    let one = bpf::ring_headroom(bytes, cpus, period, bpf::ring_record_bytes(1));
    let full = bpf::ring_headroom(bytes, cpus, period, bpf::RING_RECORD_BYTES);
    let half = full / 2;
    let ms = |d: std::time::Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
    let held = format!(
        "{} KiB holds {} of records from {cpus} CPUs at {} with one cgroup each ({} B, a CPU that ran one cgroup between two timer runs) and {} with full tables ({} B, {} cgroups; one record per CPU per period); at full tables the drain is woken at half full, {} in",
        bytes / 1024,
        ms(one),
        humantime::format_duration(period),
        bpf::ring_record_bytes(1),
        ms(full),
        bpf::RING_RECORD_BYTES,
        sampler_common::CGROUP_SLOTS,
        ms(half)
    );
    if half >= RING_WAKE_HEADROOM_MIN {
        (Status::Ok, held)
    } else {
        // A second of records: the drain is woken after half of it.
        let size = bpf::ring_size_for(cpus, period, std::time::Duration::from_secs(1));
        (
            Status::Info,
            format!(
                "{held}: a drain that stalls longer drops records (ergon_ringbuf_dropped_total; the joules stay exact, their time resolution is lost); --ringbuf-size {size} holds 1 s and wakes it after 500 ms"
            ),
        )
    }
}

/// The `kubelet` and `runtime names` lines: one refresh of each name
/// source configured, as `ergon run` makes it. Informational: a source that
/// fails leaves names empty, it does not stop `run`.
fn names_lines(r: &mut Report, names: &crate::config::NamesSettings) {
    use crate::names::{kubelet::KubeletClient, runtime::RuntimeClient, Catalog};
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            r.push(
                "names",
                Status::Info,
                format!("cannot ask the name sources: {e}"),
            );
            return;
        }
    };
    let found = |c: &Catalog| {
        format!(
            "{} pods, {} containers named",
            c.pods.len(),
            c.containers.len()
        )
    };
    if let Some(k) = &names.kubelet {
        let got = KubeletClient::new(k).map(|c| (rt.block_on(c.fetch()), c.url().to_owned()));
        match got {
            Ok((Ok(c), url)) => r.push("kubelet", Status::Ok, format!("{url}: {}", found(&c))),
            Ok((Err(e), _)) | Err(e) => r.push("kubelet", Status::Info, chain(&e)),
        }
    }
    let present: Vec<_> = names
        .runtime_sockets
        .iter()
        .filter(|p| names.runtime_sockets_explicit || p.exists())
        .cloned()
        .collect();
    if present.is_empty() {
        let why = if names.runtime_sockets_explicit {
            "off (--runtime-socket none)".to_owned()
        } else {
            format!(
                "no runtime socket at {}: no container names from a runtime (--runtime-socket)",
                names
                    .runtime_sockets
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        r.push("runtime", Status::Info, why);
        return;
    }
    let list = present
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    match rt.block_on(RuntimeClient::new(present, true).fetch()) {
        Ok(c) => r.push("runtime", Status::Ok, format!("{list}: {}", found(&c))),
        Err(e) => r.push("runtime", Status::Info, chain(&e)),
    }
}

pub fn run(settings: &Settings) -> ExitCode {
    let r = report(settings);
    print!("{}", r.render());
    if r.can_run() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_idle_power_line_says_declared_learned_or_per_cpu() {
        use crate::{
            attribution::{Cause, IdleEnergy, IdleWatts},
            source::synthetic::{plan, Layout, Synthetic},
            topology::{CpuInfo, Topology},
        };
        let topo = Topology {
            cpus: vec![
                CpuInfo { cpu: 0, package: 0 },
                CpuInfo { cpu: 1, package: 1 },
            ],
        };
        let package = plan(
            &topo,
            Synthetic::constant(5.0, Layout::Package),
            String::new(),
        );
        let cause = Cause {
            idle_energy: IdleEnergy::Share,
            idle_watts: IdleWatts {
                all: None,
                packages: [(1, 20.0)].into(),
            },
        };
        let line = super::idle_power(&package, &topo, &cause);
        assert!(line.contains("package 0: learned as ergon runs"), "{line}");
        assert!(line.contains("package 1: declared 20 W"), "{line}");
        assert!(line.contains("--idle-energy share"), "{line}");
        let per_cpu = plan(
            &topo,
            Synthetic::constant(5.0, Layout::PerCpu),
            String::new(),
        );
        let line = super::idle_power(&per_cpu, &topo, &cause);
        assert!(
            line.contains("package 1: per-CPU or per-core counters"),
            "{line}"
        );
    }

    #[test]
    fn the_ring_buffer_line_gives_the_headroom_and_a_size_that_holds_a_second() {
        // A second of records, the smallest power of two that holds it.
        use std::time::Duration;
        let us500 = Duration::from_micros(500);
        // 2 CPUs at 2 kHz: 4,000 records a second, of 120 B with one
        // cgroup (4 MiB holds 8.7 s) and 360 B with full tables (2.9 s).
        assert_eq!(super::bpf::ring_record_bytes(1), 120);
        assert_eq!(super::bpf::RING_RECORD_BYTES, 360);
        let (status, line) = super::ring_buffer(4 << 20, 2, us500);
        assert_eq!(status, super::Status::Ok, "{line}");
        assert!(
            line.contains("holds 8738 ms")
                && line.contains("and 2913 ms with full tables")
                && line.contains("1456 ms in"),
            "{line}"
        );
        // 256 CPUs at 2 kHz: 184 MB/s, 23 ms in 4 MiB (the figure).
        let (status, line) = super::ring_buffer(4 << 20, 256, us500);
        assert_eq!(status, super::Status::Info, "{line}");
        assert!(line.contains("and 23 ms with full tables"), "{line}");
        let size: u64 = line
            .rsplit("--ringbuf-size ")
            .next()
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .expect("a size in the fix");
        assert!(size.is_power_of_two(), "{size}");
        let full = super::bpf::RING_RECORD_BYTES;
        let held = super::bpf::ring_headroom(size, 256, us500, full);
        assert!(held >= Duration::from_secs(1), "{size} B holds {held:?}");
        assert!(super::bpf::ring_headroom(size / 2, 256, us500, full) < Duration::from_secs(1));
        assert_eq!(size, 256 << 20, "184 MB a second");
    }

    use super::*;
    use crate::source::{
        liveness::Assume,
        model::Model,
        synthetic::{Layout, Synthetic},
    };
    use std::path::Path;

    fn declared() -> Declared {
        Declared {
            synthetic: Synthetic::constant(10.0, Layout::PerCpu),
            model: Model::default(),
        }
    }

    #[test]
    fn kernel_release() {
        assert_eq!(parse_kernel_release("6.18.44-fc-v445\n"), Some((6, 18)));
        assert_eq!(parse_kernel_release("5.8.0"), Some((5, 8)));
        assert_eq!(parse_kernel_release("4.19-rc1"), Some((4, 19)));
        assert_eq!(parse_kernel_release("garbage"), None);
        assert!(parse_kernel_release("5.4.0").is_some_and(|v| v < MIN_KERNEL));
        // The floor is the newest feature's release, and nothing is missing there.
        assert_eq!(
            KERNEL_FEATURES.iter().map(|(_, v)| *v).max(),
            Some(MIN_KERNEL)
        );
        assert_eq!(missing_kernel_features(MIN_KERNEL), "");
        assert_eq!(
            missing_kernel_features((5, 4)),
            "tp_btf programs (5.5), BPF ring buffer (5.8), CAP_BPF and CAP_PERFMON (5.8), bpf_ktime_get_boot_ns (5.8), BPF atomic compare-and-exchange (5.12)"
        );
    }

    #[test]
    fn capabilities() {
        let s = "Name:\tx\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(s), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_cap_eff("Name: x\n"), None);
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    fn tree(kernel: &str, cap_eff: &str, btf: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        write(d, "proc/sys/kernel/osrelease", kernel);
        write(
            d,
            "proc/self/status",
            &format!("Name:\tergon\nCapEff:\t{cap_eff}\n"),
        );
        write(d, "proc/self/mountinfo", "34 33 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n35 33 0:30 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n");
        write(d, "sys/devices/system/cpu/online", "0-1\n");
        if btf {
            write(d, "sys/kernel/btf/vmlinux", "");
        }
        dir
    }

    #[test]
    fn a_capable_machine_without_counters_picks_the_model_and_says_why() {
        let dir = tree("6.1.0\n", "000001ffffffffff", true);
        let r = inspect(&SysRoot::under(dir.path()), &declared(), &Assume);
        assert!(r.can_run(), "{}", r.render());
        let auto = r.find("auto source").expect("auto line");
        for part in [
            "model: no perf power PMU",
            "no powercap RAPL package zone",
            "msr module is not loaded",
            "ESTIMATES",
        ] {
            assert!(auto.detail.contains(part), "{part}: {}", auto.detail);
        }
        let msr = r.find("msr").expect("msr line");
        assert!(msr.detail.contains("modprobe msr"), "{}", msr.detail);
        let cg = r.find("cgroup").expect("cgroup line");
        assert!(
            cg.detail.contains("hybrid") && cg.detail.contains("/sys/fs/cgroup/unified"),
            "{}",
            cg.detail
        );
        assert_eq!(r.find("power PMU").map(|f| f.status), Some(Status::Info));
    }

    #[test]
    fn old_kernel_no_btf_no_caps_fail_with_reasons() {
        let dir = tree("4.19.0\n", "0000000000000000", false);
        let r = inspect(&SysRoot::under(dir.path()), &declared(), &Assume);
        assert!(!r.can_run());
        for item in ["kernel", "btf", "privileges"] {
            let f = r.find(item).expect("line");
            assert_eq!(f.status, Status::Fail, "{item}: {}", f.detail);
        }
        assert!(r.find("kernel").is_some_and(|f| f.detail.contains(
            "older than 5.12: it lacks BPF cpu v3 instructions (jmp32, alu32) (5.1), tp_btf programs (5.5), BPF ring buffer (5.8), CAP_BPF and CAP_PERFMON (5.8), bpf_ktime_get_boot_ns (5.8), BPF atomic compare-and-exchange (5.12)"
        )), "{:?}", r.find("kernel"));
        assert!(r
            .find("btf")
            .is_some_and(|f| f.detail.contains("CONFIG_DEBUG_INFO_BTF")));
        assert!(r
            .find("privileges")
            .is_some_and(|f| f.detail.contains("CAP_BPF")));
        assert!(r.render().contains("cannot work here"));
    }

    #[test]
    fn rapl_fixture_is_reported_and_chosen() {
        let fixture = crate::testdata::fixture("rapl-intel-2pkg");
        let r = inspect(&SysRoot::under(&fixture), &declared(), &Assume);
        let pmu = r.find("power PMU").expect("pmu line");
        assert_eq!(pmu.status, Status::Ok, "{}", pmu.detail);
        assert!(
            pmu.detail.contains("energy-{pkg,cores,ram,psys,gpu}"),
            "{}",
            pmu.detail
        );
        let auto = r.find("auto source").expect("auto line");
        assert!(
            auto.detail.starts_with("rapl: perf power PMU found"),
            "{}",
            auto.detail
        );
    }
}
