//! Energy domains a record can carry, in slot order.

/// Number of energy domains a CPU's timer program reads per run.
pub const MAX_DOMAINS: usize = 5;

/// Domain names in slot order: these are also the perf `power` PMU event
/// names without the `energy-` prefix and the `domain` label values.
pub const DOMAIN_NAMES: [&str; MAX_DOMAINS] = ["pkg", "cores", "ram", "psys", "gpu"];
