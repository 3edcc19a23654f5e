//! `ergon`: energy attribution at the kernel's cadence.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ergon::{
    check,
    config::RunArgs,
    daemon,
    measure::{self, MeasureArgs},
    source::chain,
};
use tracing_subscriber::EnvFilter;

/// Measures CPU energy with eBPF at sub-millisecond cadence and serves it to Prometheus.
#[derive(Parser)]
#[command(name = "ergon", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon: sample, attribute, serve /metrics.
    Run(RunArgs),
    /// Report what this machine offers and what `--source auto` would pick.
    Check(RunArgs),
    /// Run a command and report its energy: `ergon measure [OPTIONS] -- CMD [ARGS…]`.
    Measure(MeasureArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("ERGON_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run(args) => {
            let settings = match args.settings() {
                Ok(s) => s,
                Err(e) => return fail(&e),
            };
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(e) => return fail(&e),
            };
            match rt.block_on(daemon::run(settings)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        Cmd::Check(args) => match args.settings() {
            Ok(s) => check::run(&s),
            Err(e) => fail(&e),
        },
        Cmd::Measure(args) => {
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(e) => return fail(&e),
            };
            match rt.block_on(measure::run(args)) {
                // The command's own exit code (0..=255).
                Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
                Err(e) => fail(&e),
            }
        }
    }
}

/// One thread: the drain is short synchronous work every 10 ms and a scrape
/// only encodes a snapshot; a second worker only adds cross-thread wake-ups
/// (measured: more daemon CPU, not less). Encoding runs on the blocking pool.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn fail(e: &dyn std::error::Error) -> ExitCode {
    eprintln!("ergon: error: {}", chain(e));
    ExitCode::FAILURE
}
