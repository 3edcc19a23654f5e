//! Developer tasks: `cargo xtask build | run | test | test-kernels | bench-overhead | bench-peers | bench-scale | bench-wakeups | image`.
//!
//! Each task first makes sure the toolchain is present (installing Debian
//! packages and bpf-linker when missing, and saying so), so the README's two
//! commands work on a fresh Debian 12 machine.

mod bench;
mod bench_peers;
mod bench_scale;
mod bench_wakeups;
mod build;
mod disk;
mod image;
mod kernels;
mod peers;
mod test;
mod toolchain;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Ergon developer tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the toolchain if missing, build the eBPF object and `target/release/ergon`.
    Build,
    /// Build if needed, then run the daemon as root (`ergon run --source auto`);
    /// arguments after `--` go to `ergon run`.
    Run {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Every test: fmt, clippy, unit tests, privileged integration and end-to-end tests.
    Test,
    /// Boot each kernel of the matrix in qemu (Debian 12's current kernel, and
    /// the host's or else the newest Debian offers) and run `ergon check`, a
    /// synthetic run checked against the declared watts and a cgroup
    /// attribution check inside it; one line per kernel (docs/kernels.md).
    TestKernels {
        /// qemu accelerator: `tcg` (software, works everywhere) or `kvm`.
        #[arg(long, value_enum, default_value = "tcg")]
        accel: kernels::Accel,
        /// Also boot this kernel image (bzImage/vmlinuz); repeatable.
        #[arg(long = "kernel", value_name = "FILE")]
        kernels: Vec<PathBuf>,
    },
    /// Build the container image `localhost/ergon:<version>` (FROM scratch:
    /// the release binary and the libraries it links) with podman, from
    /// `Containerfile` and the context it prepares in `target/image/`.
    Image,
    /// Measure the cost of sampling at 1, 2 and 10 kHz per CPU with every CPU busy.
    BenchOverhead {
        /// Seconds per rate.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Write the markdown table here as well as to stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The daemon's `--source` (e.g. `model` or `powercap` to include the
        /// userspace poller; `powercap` polls a fixture tree on a machine without
        /// powercap zones).
        #[arg(long, default_value = "synthetic")]
        source: String,
        /// The daemon's `--timer`: `perf` to measure `on_timer`'s run time
        /// (the kernel does not count `--timer bpf`'s callback).
        #[arg(long, default_value = "auto")]
        timer: String,
    },
    /// Ergon beside node_exporter's rapl collector on one fixture powercap
    /// counter advancing every 1 ms: energy samples per second, CPU and
    /// VmHWM of each, and the ratios (docs/benchmarks.md).
    BenchPeers {
        /// Seconds each tool is scraped.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Scrape interval, seconds.
        #[arg(long, default_value_t = 2)]
        every: u64,
    },
    /// The daemon's cost as live cgroups grow: for each count, that many
    /// cgroups each holding a process waking every 50 ms; daemon CPU,
    /// VmHWM, `/metrics` size and scrape time, `/metrics/batch` per 2 s
    /// (docs/benchmarks.md).
    /// Local timer interrupts per idle CPU without ergon, with `--timer
    /// bpf` and with `--timer perf`, and the daemon's CPU (docs/benchmarks.md).
    BenchWakeups {
        /// Seconds per case.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    BenchScale {
        /// Live cgroup counts, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "10,300,1000")]
        cgroups: Vec<usize>,
        /// Seconds measured per count.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Sleeping processes per row, spread evenly over its cgroups
        /// (default: one per cgroup). A fixed count holds the load on the
        /// CPUs, so a row differs from the next by its cgroups only.
        #[arg(long)]
        processes: Option<usize>,
    },
}

/// The binary a benchmark runs: `ERGON_BIN` to bench another build (e.g.
/// the previous commit's) against the same eBPF object, else a fresh build.
fn bench_bin(root: &std::path::Path) -> Result<PathBuf> {
    match std::env::var_os("ERGON_BIN") {
        Some(b) => Ok(PathBuf::from(b)),
        None => build::build(root),
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.cmd {
        Cmd::Build => build::build(&root).map(|_| ()),
        Cmd::Run { args } => {
            let bin = build::build(&root)?;
            build::run_daemon(&bin, &args)
        }
        Cmd::Test => test::test(&root),
        Cmd::Image => image::image(&root).map(|tag| println!("{tag}")),
        Cmd::TestKernels { accel, kernels } => {
            let bin = build::build(&root)?;
            let opts = kernels::Options {
                accel,
                extra: kernels,
            };
            let out = kernels::test_kernels(&root, &bin, &opts)?;
            println!("xtask: {} passed, {} failed", out.passed, out.failed);
            if out.failed > 0 {
                anyhow::bail!("{} kernel(s) of the matrix failed", out.failed);
            }
            Ok(())
        }
        Cmd::BenchOverhead {
            seconds,
            out,
            source,
            timer,
        } => {
            let bin = bench_bin(&root)?;
            bench::overhead(&bin, &source, &timer, seconds, out.as_deref())
        }
        Cmd::BenchWakeups { seconds } => {
            let bin = bench_bin(&root)?;
            bench_wakeups::bench_wakeups(&bin, seconds)
        }
        Cmd::BenchScale {
            cgroups,
            seconds,
            processes,
        } => {
            let bin = bench_bin(&root)?;
            bench_scale::bench_scale(&bin, &cgroups, seconds, processes)
        }
        Cmd::BenchPeers { seconds, every } => {
            let bin = bench_bin(&root)?;
            bench_peers::bench_peers(&root, &bin, seconds, std::time::Duration::from_secs(every))
        }
    }
}

fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.clone())
}
