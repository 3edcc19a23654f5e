//! Ergon's userspace: loading the kernel programs, draining their records,
//! energy sources, the energy books, and export over HTTP.
//!
//! Data flows one way: kernel records → [`drain`] → [`energy`] books →
//! immutable [`snapshot`] → [`metrics`] encoder → [`server`].

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
pub mod files;
pub mod hotplug;
pub mod identity;
pub mod jobs;
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
