//! `ergon run`: wires the tasks together. Drain, HTTP, push, state, names
//! and the kernel logger run as tokio tasks under one cancellation token;
//! the shutdown future (SIGINT/SIGTERM for `ergon run`) or the first task
//! that fails stops the rest, and dropping the sampler detaches the kernel
//! programs.

use aya_log::EbpfLogger;
use tokio::{io::unix::AsyncFd, signal::unix::SignalKind, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use std::{future::Future, path::PathBuf, sync::Arc};

use tokio::net::TcpListener;

use crate::{
    bpf::BpfError,
    config::{PushSettings, RemoteWrite, Settings, State},
    continuity::{self, Continuity},
    ingest::IngestError,
    jobs::{
        fold::{self, FoldError},
        Jobs,
    },
    names::{self, kubelet::KubeletClient, runtime::RuntimeClient, Directory, NamesError, Source},
    pipeline::{self, Extras, Pipeline, PipelineError},
    push::{
        client::{ClientError, Remote},
        flush_loop,
        queue::{Queue, QueueError},
        sender::Sender,
        stats::PushStats,
    },
    server::{self, stats::HttpStats},
    source::{self, SourceError},
    topology::{Topology, TopologyError},
};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Bpf(#[from] BpfError),
    #[error(transparent)]
    Serve(#[from] server::ServeError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Pipeline(#[from] Box<PipelineError>),
    #[error("installing the signal handler failed")]
    Signal {
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Jobs(#[from] FoldError),
    #[error(transparent)]
    Names(#[from] NamesError),
    #[error("stopped without committing the durable state{since}: {lost} samples held in memory are lost, and the counters' totals since the last commit (the next run continues from those); {dropped} samples were dropped from the full queue before (ergon_push_samples_dropped_total); free space under --state-dir before the next start")]
    StateLost {
        lost: usize,
        dropped: u64,
        since: String,
        #[source]
        source: QueueError,
    },
    #[error("a task panicked: {message}")]
    Panic { message: String },
}

/// `ergon run`: SIGTERM or SIGINT stops it; the listener is bound from
/// `--listen`. [`serve`] is the same daemon on a listener and a shutdown
/// future of the caller's (tests bind port 0 and stop it themselves).
pub async fn run(settings: Settings) -> Result<(), DaemonError> {
    // Signal handlers first: a SIGTERM during start-up must stop cleanly too.
    let shutdown = signals()?;
    // Bind before loading anything: a taken port fails at once.
    let listener = server::bind(settings.listen).await?;
    serve(settings, listener, shutdown).await
}

/// A future that resolves on the first SIGTERM or SIGINT, the handlers
/// installed now.
fn signals() -> Result<impl Future<Output = ()> + Send + 'static, DaemonError> {
    let signal =
        |kind| tokio::signal::unix::signal(kind).map_err(|source| DaemonError::Signal { source });
    let (mut term, mut int) = (
        signal(SignalKind::terminate())?,
        signal(SignalKind::interrupt())?,
    );
    Ok(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: stopping"),
            _ = int.recv() => info!("SIGINT: stopping"),
        }
    })
}

/// The durable state opened, with what rides on it: job records and, with
/// remote_write, the push client.
struct Durable {
    queue: Arc<Queue>,
    jobs: Jobs,
    dir: PathBuf,
    push: Option<(Remote, RemoteWrite)>,
}

impl Durable {
    /// Opens the state: a locked, corrupt or foreign one fails here, before
    /// anything is loaded.
    fn open(state: &State, push: &PushSettings) -> Result<Self, DaemonError> {
        let queue = Queue::open(&state.dir, push.push_buffer)?;
        info!(path = %queue.path().display(), queued = queue.len(), totals = queue.totals().len(), "durable state opened");
        // Job records (`ergon measure --record-to`) live in the same state.
        let jobs = Jobs::with_totals(queue.with_db(|db| fold::load(db, queue.path()))?);
        let push = match &state.remote_write {
            Some(rw) => Some((Remote::new(rw)?, rw.clone())),
            None => None,
        };
        Ok(Self {
            queue: Arc::new(queue),
            jobs,
            dir: state.dir.clone(),
            push,
        })
    }

    /// The queue, when the drain feeds it points to push.
    fn push_queue(&self) -> Option<Arc<Queue>> {
        self.push.as_ref().map(|_| self.queue.clone())
    }
}

/// The daemon on `listener` until `shutdown` resolves (or a task fails).
/// Dropping the sampler at the end detaches the kernel programs.
pub async fn serve(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let topo = Topology::read(&settings.root)?;
    let plan = settings.plan(&topo)?;
    info!(
        source = plan.source.name(),
        reason = %plan.reason,
        counters = plan.counters.len(),
        "energy source chosen"
    );
    // Read the TLS files before loading anything: a bad certificate fails
    // at once.
    let serve = &settings.serve;
    let tls = match &serve.tls {
        Some(files) => Some(server::tls::server_config(files).map_err(server::ServeError::from)?),
        None => None,
    };
    let push = &settings.push;
    let mut durable = match &push.state {
        Some(state) => Some(Durable::open(state, push)?),
        None => None,
    };
    let names = &settings.names;
    let kubelet = match &names.kubelet {
        Some(k) => Some(KubeletClient::new(k)?),
        None => None,
    };
    let runtime = (!names.runtime_sockets.is_empty()).then(|| {
        RuntimeClient::new(
            names.runtime_sockets.clone(),
            names.runtime_sockets_explicit,
        )
    });
    let directory = Arc::new(Directory::new(
        &[
            kubelet.as_ref().map(|_| Source::Kubelet),
            runtime.as_ref().map(|_| Source::Runtime),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>(),
    ));
    let Pipeline {
        drainer,
        snapshot: shared,
        demand,
        store,
        export_epoch,
        logger,
        attached_cpus,
    } = pipeline::build(
        &settings,
        &plan,
        &topo,
        Extras {
            push: durable.as_ref().and_then(Durable::push_queue),
            continuity: Continuity::new(
                durable
                    .as_ref()
                    .map(|d| d.queue.totals())
                    .unwrap_or_default(),
            ),
            names: (kubelet.is_some() || runtime.is_some()).then(|| directory.clone()),
        },
    )
    .map_err(Box::new)?;
    info!(
        cpus = ?attached_cpus,
        period = %humantime::format_duration(settings.period),
        listen = %listener.local_addr().unwrap_or(settings.listen),
        "kernel programs attached; serving /metrics"
    );

    let stop = CancellationToken::new();
    let mut tasks: JoinSet<Result<&'static str, DaemonError>> = JoinSet::new();
    {
        let stop = stop.clone();
        let every = settings.drain_interval;
        tasks.spawn(async move {
            drainer.run(every, stop).await?;
            Ok("drain")
        });
    }
    if let Some(client) = kubelet {
        info!(url = %client.url(), "pod, namespace and container names from the kubelet");
        let (dir, stop) = (directory.clone(), stop.clone());
        tasks.spawn(async move {
            names::run(dir, Source::Kubelet, || client.fetch(), stop).await;
            Ok("kubelet")
        });
    }
    if let Some(client) = runtime {
        info!(sockets = ?names.runtime_sockets, "container names from the runtime's API socket(s) where present");
        let (dir, stop) = (directory.clone(), stop.clone());
        tasks.spawn(async move {
            names::run(dir, Source::Runtime, || client.fetch(), stop).await;
            Ok("runtime-names")
        });
    }
    let push_stats = Arc::new(PushStats::default());
    let mut push_view = None;
    if let Some(d) = durable.as_mut() {
        let pushing = d.push.is_some();
        if let Some((remote, rw)) = d.push.take() {
            info!(url = %rw.url, interval = %humantime::format_duration(rw.interval), "pushing with remote_write");
            push_view = Some(server::PushView {
                stats: push_stats.clone(),
                queue: d.queue.clone(),
            });
            let sender = Sender {
                queue: d.queue.clone(),
                remote,
                stats: push_stats.clone(),
                interval: rw.interval,
                max_samples: rw.max_samples,
                external_labels: rw.external_labels,
            };
            let stop = stop.clone();
            tasks.spawn(async move {
                sender.run(stop).await;
                Ok("push")
            });
        }
        let snap = shared.clone();
        let totals: Arc<dyn Fn() -> Vec<(String, f64)> + Send + Sync> =
            Arc::new(move || continuity::totals(&snap.load()));
        let (q, task_stop, every) = (d.queue.clone(), stop.clone(), push.fsync_interval);
        let retention = push.state_retention;
        tasks.spawn(async move {
            flush_loop(q, every, retention, totals, task_stop).await;
            Ok("state")
        });
        let (q, jobs, dir, stop) = (d.queue.clone(), d.jobs.clone(), d.dir.clone(), stop.clone());
        info!(spool = %dir.join(crate::jobs::SPOOL).display(), "folding job records from `ergon measure --record-to`");
        tasks.spawn(async move {
            fold::run(q, jobs, dir, pushing, retention, stop).await;
            Ok("jobs")
        });
    }
    {
        let stop = stop.clone();
        let stats = Arc::new(HttpStats::default());
        let app = server::App::new(
            server::collectors(
                shared.clone(),
                &stats,
                &store,
                push_view.as_ref(),
                durable.as_ref().map(|d| &d.jobs),
                &directory,
            ),
            store.clone(),
            shared.clone(),
            export_epoch,
            stats,
            serve.max_concurrent_scrapes,
            serve.health_stale_after.max(settings.drain_interval * 2),
        )
        .with_push(push_view)
        .with_state(durable.as_ref().map(|d| d.queue.clone()))
        .with_demand(demand);
        let router = server::router(app, serve.auth.clone(), serve.health_no_auth);
        tasks.spawn(async move {
            server::serve(listener, router, tls, stop).await?;
            Ok("http")
        });
    }
    if let Some(logger) = logger {
        let stop = stop.clone();
        tasks.spawn(async move {
            kernel_logs(logger, stop).await;
            Ok("kernel-log")
        });
    }
    {
        let stop = stop.clone();
        tasks.spawn(async move {
            tokio::select! {
                _ = shutdown => {}
                _ = stop.cancelled() => {}
            }
            stop.cancel();
            Ok("shutdown")
        });
    }

    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let result = joined.map_err(|e| DaemonError::Panic {
            message: e.to_string(),
        });
        match result.and_then(|r| r) {
            Ok(_) => {}
            Err(e) => {
                error!(error = %source::chain(&e), "task failed; stopping");
                first_error.get_or_insert(e);
            }
        }
        stop.cancel();
    }
    if let Some(q) = durable.as_ref().map(|d| &d.queue) {
        // After the drain's last pass: commit what it appended at the end
        // (reopening the database first after an I/O error).
        if let Err(e) = q.commit(&continuity::totals(&shared.load())) {
            let lost = q.in_memory();
            error!(error = %e, lost, "final commit of the durable state failed");
            first_error.get_or_insert(DaemonError::StateLost {
                lost,
                dropped: q.dropped(),
                since: q.outage().map_or_else(String::new, |o| {
                    format!(
                        " since {}",
                        crate::units::rfc3339_seconds(o.since_ms / 1000)
                    )
                }),
                source: e,
            });
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => {
            info!("stopped cleanly");
            Ok(())
        }
    }
}

/// Forwards aya-log records from the kernel programs into `log` → tracing.
async fn kernel_logs(logger: EbpfLogger<&'static dyn log::Log>, stop: CancellationToken) {
    // SAFETY: the logger owns its ring-buffer fd and neither closes nor
    // replaces it while registered.
    let mut fd = match unsafe { AsyncFd::register(logger) } {
        Ok(fd) => fd,
        Err(e) => {
            warn!(error = %e, "kernel log forwarding unavailable");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            r = fd.readable_mut() => match r {
                Ok(mut guard) => {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
                Err(e) => {
                    warn!(error = %e, "kernel log forwarding stopped");
                    break;
                }
            }
        }
    }
}
