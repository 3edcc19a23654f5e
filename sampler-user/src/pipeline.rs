//! The sampling pipeline `ergon run` and `ergon measure` share: load and
//! attach the kernel programs for a plan, and build the drain with its
//! books, snapshot and batch store.

use std::{
    path::Path,
    sync::{atomic::AtomicU64, Arc, Mutex},
};

use aya_log::EbpfLogger;
use tracing::{info, warn};

use crate::{
    attribution::{Attributor, GridConfig, PackageSpec},
    batch::{domains::DomainGrid, SharedStore, Store},
    bpf::{BpfError, LoadOptions, Sampler},
    cgroups::{self, Registry},
    config::Settings,
    continuity::Continuity,
    drain::Drainer,
    energy::EnergyBooks,
    export::Export,
    ingest::{Ingest, IngestError},
    ledger::{Ledger, Parts},
    push::queue::Queue,
    snapshot::{self, SharedSnapshot, Snapshot},
    source::{poll, Plan},
    topology::Topology,
};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Bpf(#[from] BpfError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error("starting the energy counter poller failed: {0}")]
    Poller(std::io::Error),
}

/// What the daemon adds beyond sampling.
#[derive(Default)]
pub struct Extras {
    /// remote_write queue the drain appends batch points to.
    pub push: Option<Arc<Queue>>,
    /// Counter totals of the previous run.
    pub continuity: Continuity,
    /// Where the cgroups' owners' names come from ([`crate::names`]).
    pub names: Option<Arc<crate::names::Directory>>,
}

pub struct Pipeline {
    pub drainer: Drainer,
    pub snapshot: SharedSnapshot,
    /// Where readers ask the drain for the books as of now.
    pub demand: Arc<snapshot::Demand>,
    pub store: SharedStore,
    /// Incremented by every `/metrics` body written.
    pub export_epoch: Arc<AtomicU64>,
    pub logger: Option<EbpfLogger<&'static dyn log::Log>>,
    pub attached_cpus: Vec<u32>,
}

pub fn build(
    settings: &Settings,
    plan: &Plan,
    topo: &Topology,
    extras: Extras,
) -> Result<Pipeline, PipelineError> {
    let serve = &settings.serve;
    if plan.source == crate::source::Resolved::Model && !settings.model.declared {
        warn!(
            "the model source estimates power with generic per-CPU watts ({}); declare this machine's with --model-idle-watts and --model-max-watts",
            settings.model.describe()
        );
    }
    let (timer, why) = crate::bpf::timer_path(settings.timer)?;
    info!(timer = timer.name(), "timer: {why}");
    // The programs run on this kernel whatever --sysfs-root says, so its
    // own BTF gives the layout.
    let rq_layout =
        match crate::kernel_layout::rq_layout(Path::new(crate::kernel_layout::KERNEL_BTF)) {
            Ok(l) => {
                info!("scheduler clock: {}", crate::kernel_layout::describe(&l));
                l
            }
            Err(why) => {
                info!("scheduler clock: spans in wall-clock time ({why})");
                sampler_common::RqLayout::default()
            }
        };
    let mut sampler = Sampler::load(
        plan,
        topo,
        &LoadOptions {
            timer,
            period_ns: settings.period.as_nanos() as u64,
            ringbuf_bytes: settings.ringbuf_bytes,
            bpf_stats: settings.bpf_stats,
            rq_layout,
            synthetic: (plan.source == crate::source::Resolved::Synthetic)
                .then(|| settings.synthetic.kernel_scale())
                .flatten(),
        },
    )?;
    let attached_cpus = sampler.attached_cpus.clone();
    // The same words as `ergon check`'s `ring buffer` line.
    match crate::check::ring_buffer(
        u64::from(settings.ringbuf_bytes),
        topo.cpus.len(),
        settings.period,
    ) {
        (crate::check::Status::Ok, ring) => info!("ring buffer: {ring}"),
        (_, ring) => warn!("ring buffer: {ring}"),
    }
    let logger = sampler.take_logger();
    let ring = sampler.take_ringbuf()?;
    let cpus: Vec<(u32, u32)> = topo.cpus.iter().map(|c| (c.cpu, c.package)).collect();
    let cgroup_root = cgroups::v2_root(&settings.root);
    match &cgroup_root {
        Some(r) => info!(root = %r.display(), "cgroup v2 hierarchy for cgroup identity"),
        None => warn!(
            cgroup_root = %settings.root.cgroup.display(),
            "no cgroup v2 hierarchy at --cgroup-root or its unified/ child: cgroups are labelled by id only"
        ),
    }
    // A userspace source: a thread reads its counters at the timer cadence,
    // but not faster than is useful (RAPL ≈ 1 ms, the model 100 ms).
    let user: Vec<(usize, crate::source::UserRead)> = plan
        .counters
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.user.as_ref().map(|u| (i, u.read.clone())))
        .collect();
    let user_readings = if user.is_empty() {
        None
    } else {
        let every = settings.period.max(plan.source.poll_floor());
        let (rx, _thread) = poll::start(user, every).map_err(PipelineError::Poller)?;
        Some(rx)
    };
    let export_epoch = Arc::new(AtomicU64::new(0));
    let store: SharedStore = Arc::new(Mutex::new(Store::new(
        serve.batch_buffer,
        serve.consumer_ttl,
    )));
    let package_res_ns = serve.batch_resolution.as_nanos() as u64;
    let parts = Parts {
        energy: EnergyBooks::new(plan, &cpus),
        attribution: Attributor::new(PackageSpec::from_plan(plan, topo))
            .with_cause(settings.cause.clone())
            .with_grid(GridConfig {
                package_res_ns,
                cgroup_res_ns: serve.cgroup_batch_resolution.as_nanos() as u64,
            }),
        domains: DomainGrid::new(
            plan.counters
                .iter()
                .enumerate()
                // A per-core `cores` counter (power_core) is one term of its
                // domain's sum: served on /metrics, not as a batch series
                // of its own (docs/sources.md).
                .filter(|(_, c)| {
                    c.domain != plan.base_domain() && !plan.per_cpu && plan.sole_counter(c)
                })
                .filter_map(|(i, c)| {
                    let name = sampler_common::DOMAIN_NAMES.get(c.domain)?;
                    Some((i, c.package, *name, c.joules_per_count))
                }),
            package_res_ns,
        ),
        cgroups: {
            let r = Registry::new(cgroup_root, settings.cgroup_retention, settings.max_cgroups);
            match extras.names {
                Some(dir) => r.with_names(dir),
                None => r,
            }
        },
        continuity: extras.continuity,
    };
    let base = Snapshot {
        source: plan.source.name(),
        base_domain: plan.base_domain_name(),
        period_seconds: settings.period.as_secs_f64(),
        ..Snapshot::default()
    };
    let snapshot = snapshot::shared(base.clone());
    let demand = Arc::new(snapshot::Demand::default());
    let hotplug = crate::hotplug::Watch::new(settings.root.clone(), &attached_cpus);
    let ingest = Ingest::new(sampler, ring, user_readings, Some(hotplug))?;
    let drainer = Drainer::new(
        ingest,
        // Sampling began when the programs were attached, just before.
        Ledger::new(parts, base, crate::perf::boot_ns()),
        Export::new(store.clone(), snapshot.clone(), demand.clone(), extras.push),
        export_epoch.clone(),
        attached_cpus.len() as f64 / settings.period.as_secs_f64(),
    );
    Ok(Pipeline {
        drainer,
        snapshot,
        demand,
        store,
        export_epoch,
        logger,
        attached_cpus,
    })
}
