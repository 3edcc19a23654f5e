//! One series identity. Every counter series Ergon exports in more than one
//! place is a [`Series`], and its name and labels are written here once:
//! `/metrics` ([`crate::metrics`], [`crate::jobs`]), `/metrics/batch` (the
//! batch store's labels, [`crate::export`]), remote_write (the push queue's
//! descriptors) and the totals kept across restarts ([`crate::continuity`])
//! all take them from it.
//!
//! The invariant: for one series, the four encodings name the same metric
//! with the same labels (a test renders each and compares), except that the
//! stored total of a cgroup is keyed by the labels read off its path only, so
//! it continues across a restart whether its names are known yet or not.

use std::sync::Arc;

use crate::{
    batch::encode::render_labels,
    cgroups::{CgroupLabels, PATH_LABELS},
    energy::PackageEnergy,
    push::queue::descriptor,
};

/// The family names, without `_total` (prometheus-client appends it to
/// counters; every other encoding writes [`Series::name`]).
pub const PACKAGE_ENERGY: &str = "ergon_package_energy_joules";
pub const CPU_ENERGY: &str = "ergon_cpu_energy_joules";
pub const IDLE_ENERGY: &str = "ergon_idle_energy_joules";
pub const UNATTRIBUTED_ENERGY: &str = "ergon_unattributed_energy_joules";
pub const CGROUP_ENERGY: &str = "ergon_cgroup_energy_joules";
pub const CGROUP_CPU: &str = "ergon_cgroup_cpu_seconds";
pub const JOB_ENERGY: &str = "ergon_job_energy_joules";
pub const JOB_RUNS: &str = "ergon_job_runs";

/// What one counter measures, with the labels that tell it apart.
#[derive(Clone, Debug, PartialEq)]
pub enum Series {
    /// A package's energy in one domain (`pkg`, `dram`, `psys`, …).
    Package { package: u32, domain: &'static str },
    /// The attribution base domain's energy attributed to one CPU.
    Cpu { cpu: u32 },
    /// Package energy attributed to idle time.
    Idle { package: u32 },
    /// Package energy of time no task ran on the scheduler's clock.
    Unattributed { package: u32, reason: &'static str },
    /// A cgroup's energy, with the labels it had when booked.
    Cgroup { id: u64, labels: Arc<CgroupLabels> },
    /// A cgroup's on-CPU time.
    CgroupCpu { id: u64, labels: Arc<CgroupLabels> },
    /// Joules of the recorded runs of a job (`ergon measure --job`).
    JobEnergy { job: String },
    /// Recorded runs of a job.
    JobRuns { job: String },
}

impl From<&PackageEnergy> for Series {
    fn from(p: &PackageEnergy) -> Self {
        Series::Package {
            package: p.package,
            domain: p.domain,
        }
    }
}

impl Series {
    /// The family name without `_total` (one of the constants above).
    pub fn family(&self) -> &'static str {
        match self {
            Series::Package { .. } => PACKAGE_ENERGY,
            Series::Cpu { .. } => CPU_ENERGY,
            Series::Idle { .. } => IDLE_ENERGY,
            Series::Unattributed { .. } => UNATTRIBUTED_ENERGY,
            Series::Cgroup { .. } => CGROUP_ENERGY,
            Series::CgroupCpu { .. } => CGROUP_CPU,
            Series::JobEnergy { .. } => JOB_ENERGY,
            Series::JobRuns { .. } => JOB_RUNS,
        }
    }

    /// The exposition name of the counter (`…_total`), as scraped, pushed
    /// and stored.
    pub fn name(&self) -> String {
        format!("{}_total", self.family())
    }

    /// Calls `f` with the label pairs, in exposition order.
    fn with_labels<R>(&self, f: impl FnOnce(&[(&'static str, &str)]) -> R) -> R {
        match self {
            Series::Package { package, domain } => {
                f(&[("package", &package.to_string()), ("domain", domain)])
            }
            Series::Cpu { cpu } => f(&[("cpu", &cpu.to_string())]),
            Series::Idle { package } => f(&[("package", &package.to_string())]),
            Series::Unattributed { package, reason } => {
                f(&[("package", &package.to_string()), ("reason", reason)])
            }
            Series::Cgroup { labels, .. } => f(&labels.pairs()),
            Series::CgroupCpu { labels, .. } => f(&[("cgroup", &labels.cgroup)]),
            Series::JobEnergy { job } | Series::JobRuns { job } => f(&[("job", job)]),
        }
    }

    /// The labels as `/metrics` encodes them.
    pub fn labels(&self) -> Vec<(&'static str, String)> {
        self.with_labels(|l| l.iter().map(|&(k, v)| (k, v.to_owned())).collect())
    }

    /// `{k="v",…}`, as `/metrics/batch` writes it after the name.
    pub fn rendered_labels(&self) -> String {
        self.with_labels(render_labels)
    }

    /// The remote_write descriptor (`__name__` and the labels), under which
    /// the push queue stores the series.
    pub fn descriptor(&self) -> String {
        self.with_labels(|l| descriptor(&self.name(), l))
    }

    /// The identity of the series' total in the durable state: its name
    /// and labels, a cgroup's by the labels of its path only (not its
    /// names), as earlier versions stored them.
    pub fn continuity_key(&self) -> String {
        let name = self.name();
        match self {
            Series::Cgroup { labels, .. } => {
                format!("{name}{}", render_labels(&labels.pairs()[..PATH_LABELS]))
            }
            _ => format!("{name}{}", self.rendered_labels()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::CgroupLabels;

    fn named() -> Arc<CgroupLabels> {
        Arc::new(CgroupLabels {
            cgroup: "/kubepods/pod1/abc".into(),
            runtime: "containerd".into(),
            container_id: "abc".into(),
            pod_uid: "1".into(),
            container: "web".into(),
            pod: "web-0".into(),
            namespace: "shop".into(),
            ..CgroupLabels::default()
        })
    }

    fn every() -> Vec<Series> {
        vec![
            Series::Package {
                package: 1,
                domain: "dram",
            },
            Series::Cpu { cpu: 3 },
            Series::Idle { package: 0 },
            Series::Unattributed {
                package: 0,
                reason: "steal",
            },
            Series::Cgroup {
                id: 7,
                labels: named(),
            },
            Series::CgroupCpu {
                id: 7,
                labels: named(),
            },
            Series::JobEnergy { job: "ci".into() },
            Series::JobRuns { job: "ci".into() },
        ]
    }

    #[test]
    fn the_encodings_of_a_series_name_the_same_metric_and_labels() {
        for s in every() {
            let labels = s.labels();
            // /metrics/batch: the same pairs, in the same order.
            let rendered: String = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect::<Vec<_>>()
                .join(",");
            assert_eq!(s.rendered_labels(), format!("{{{rendered}}}"), "{s:?}");
            // remote_write: the name and the non-empty pairs.
            let pairs = crate::push::queue::pairs(&s.descriptor());
            let mut want: Vec<(String, String)> = labels
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            want.push(("__name__".into(), s.name()));
            let mut got = pairs.clone();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{s:?}");
            assert!(s.name().starts_with(s.family()) && s.name().ends_with("_total"));
            // The stored total: the name and the labels (a cgroup's path
            // labels only).
            let key = s.continuity_key();
            assert!(key.starts_with(&format!("{}{{", s.name())), "{key}");
        }
    }

    #[test]
    fn a_cgroup_total_is_kept_under_its_path_labels_not_its_names() {
        let bare = Arc::new(CgroupLabels {
            cgroup: "/kubepods/pod1/abc".into(),
            runtime: "containerd".into(),
            container_id: "abc".into(),
            pod_uid: "1".into(),
            ..CgroupLabels::default()
        });
        let (a, b) = (
            Series::Cgroup {
                id: 1,
                labels: named(),
            },
            Series::Cgroup {
                id: 2,
                labels: bare,
            },
        );
        assert_ne!(a.rendered_labels(), b.rendered_labels());
        assert_eq!(a.continuity_key(), b.continuity_key());
        assert!(!a.continuity_key().contains("web-0"));
        // Keys of the previous versions, which the state already holds.
        assert_eq!(
            Series::Package {
                package: 0,
                domain: "pkg"
            }
            .continuity_key(),
            "ergon_package_energy_joules_total{package=\"0\",domain=\"pkg\"}"
        );
        assert_eq!(
            Series::CgroupCpu {
                id: 1,
                labels: named()
            }
            .continuity_key(),
            "ergon_cgroup_cpu_seconds_total{cgroup=\"/kubepods/pod1/abc\"}"
        );
    }
}
