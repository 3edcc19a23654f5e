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
//! [`snapshot`]). [`daemon`] wires the tasks; [`names`] fills cgroup names
//! from the kubelet and the runtime; [`measure`] profiles one command.

pub mod attribution;
pub mod batch;
pub mod bpf;
pub mod cgroupfs;
pub mod cgroups;
pub mod check;
pub mod complaint;
pub mod config;
pub mod continuity;
pub mod daemon;
pub mod decode;
pub mod drain;
pub mod energy;
pub mod export;
pub mod files;
pub mod hotplug;
pub mod identity;
pub mod ingest;
pub mod jobs;
pub mod ledger;
pub mod measure;
pub mod measure_plot;
pub mod metrics;
pub mod names;
pub mod perf;
pub mod pipeline;
pub mod process;
pub mod push;
pub mod server;
pub mod snapshot;
pub mod source;
pub mod sysroot;
#[cfg(test)]
mod testdata;
pub mod topology;
pub mod units;
