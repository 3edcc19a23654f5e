//! Ergon's userspace: loading the kernel programs, draining their records,
//! energy sources, the energy books, and export over HTTP.
//!
//! Data flows one way:
//!
//! ```text
//! kernel programs (bpf) ─┐                 ┌→ batch store ─→ server /metrics/batch
//! userspace source poll ─┼→ ingest → ledger → export ─┼→ push queue ──→ push (remote_write)
//! hotplug watch ─────────┘   (events)  (energy books,   └→ snapshot ────→ metrics → server /metrics, /health
//!                                      attribution, cgroups, continuity)
//! ```
//!
//! [`drain`] is the task that moves data through [`ingest`] (the kernel
//! side), the pure [`ledger`] (the books: [`energy`], [`attribution`],
//! [`cgroups`], [`continuity`]) and [`export`] ([`batch`], [`push`], the
//! [`snapshot`]); every exported counter is named and labelled once, by
//! [`series`]. [`daemon`] wires the tasks (`daemon::serve` takes the
//! listener and the shutdown future); [`names`] fills cgroup names
//! from the kubelet and the runtime; [`measure`] profiles one command.

// What the binary, the benches, the privileged tests and xtask use.
pub mod attribution;
pub mod batch;
pub mod bpf;
pub mod check;
pub mod config;
pub mod daemon;
pub mod decode;
pub mod energy;
pub mod measure;
pub mod push;
pub mod source;
pub mod sysroot;
pub mod topology;

// The rest is the daemon's inside.
mod cgroupfs;
mod cgroups;
mod complaint;
mod continuity;
mod drain;
mod export;
mod families;
mod files;
mod hotplug;
mod identity;
mod ingest;
mod jobs;
pub mod kernel_layout;
mod ledger;
mod measure_plot;
mod metrics;
mod names;
mod perf;
mod pipeline;
mod process;
mod series;
mod server;
mod snapshot;
#[cfg(test)]
mod testdata;
mod units;
