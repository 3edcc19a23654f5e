//! Names of cgroups' owners: the `container`, `pod` and `namespace` labels.
//!
//! A cgroup's path gives ids only (a container id, a pod UID:
//! [`crate::identity`]). The names come from two sources, each a tokio task
//! that refreshes a [`Catalog`] and publishes it into the shared
//! [`Directory`]:
//!
//! - [`kubelet`]: the kubelet's `/pods` (pod name, namespace, and each
//!   container's name by its id), on a Kubernetes node (`--kubelet-url`);
//! - [`runtime`]: the Docker Engine API of docker or podman
//!   (`--runtime-socket`): container names, and the CRI labels
//!   (`io.kubernetes.*`) of containers a kubelet made through docker.
//!
//! The drain never waits for them: [`crate::cgroups::Registry`] looks names
//! up in the directory (a lock-free read) when it makes a cgroup's labels
//! and whenever a source published something new, and asks the sources to
//! refresh ([`Directory::want`]) when an id is unknown. Each source
//! refreshes every [`REFRESH`], and on such a request at most every
//! [`MIN_REFRESH`].
//!
//! Invariant: a name is never wrong. A name is only the one its source gave
//! for exactly that id; what cannot be had is empty; a label once filled is
//! kept for the cgroup's life (a pod gone from the kubelet's list keeps the
//! name its series was exported with), so a series changes labels at most
//! once, from unnamed to named, like a cgroup resolved late.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub mod kubelet;
pub mod runtime;

/// Every source refreshes at least this often.
pub const REFRESH: Duration = Duration::from_secs(15);
/// A refresh asked for by an unknown id waits at least this long after
/// the previous one (a burst of new cgroups makes one request).
pub const MIN_REFRESH: Duration = Duration::from_secs(1);
/// One request may take this long; then it counts as an error.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// A source that keeps failing logs again after this long.
pub const LOG_EVERY: Duration = Duration::from_secs(300);

/// The names of one cgroup's owner; each empty when unknown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    pub container: String,
    pub pod: String,
    pub namespace: String,
}

/// A pod's name and namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodNames {
    pub name: String,
    pub namespace: String,
}

/// What one source knows: pods by UID (with dashes, as
/// [`crate::identity::Identity::pod_uid`]), container names by 64-hex id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    pub pods: HashMap<String, PodNames>,
    pub containers: HashMap<String, String>,
}

/// The sources, as the `source` label of `ergon_metadata_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Kubelet,
    Runtime,
}

impl Source {
    pub const ALL: [Source; 2] = [Source::Kubelet, Source::Runtime];

    pub fn name(self) -> &'static str {
        match self {
            Source::Kubelet => "kubelet",
            Source::Runtime => "runtime",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The names every source published, read by the drain without blocking.
#[derive(Debug, Default)]
pub struct Directory {
    catalogs: [ArcSwap<Catalog>; 2],
    /// Bumped by every publication that changed a catalog.
    generation: AtomicU64,
    wanted: [Notify; 2],
    errors: [AtomicU64; 2],
    enabled: [bool; 2],
}

impl Directory {
    /// A directory the given sources publish into.
    pub fn new(sources: &[Source]) -> Directory {
        let mut d = Directory::default();
        for s in sources {
            d.enabled[s.index()] = true;
        }
        d
    }

    /// Replaces what `source` knows.
    pub fn publish(&self, source: Source, catalog: Catalog) {
        let slot = &self.catalogs[source.index()];
        if **slot.load() != catalog {
            slot.store(Arc::new(catalog));
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    /// Changes with every publication that changed a name.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The names of the owner of a cgroup with these ids (either may be
    /// empty); the kubelet first, then the runtime.
    pub fn lookup(&self, pod_uid: &str, container_id: &str) -> Names {
        let mut n = Names::default();
        for s in Source::ALL {
            let c = self.catalogs[s.index()].load();
            if n.pod.is_empty() && !pod_uid.is_empty() {
                if let Some(p) = c.pods.get(pod_uid) {
                    n.pod.clone_from(&p.name);
                    n.namespace.clone_from(&p.namespace);
                }
            }
            if n.container.is_empty() && !container_id.is_empty() {
                if let Some(name) = c.containers.get(container_id) {
                    n.container.clone_from(name);
                }
            }
        }
        n
    }

    /// Asks every source to refresh soon: an id is unknown.
    pub fn want(&self) {
        for w in &self.wanted {
            w.notify_one();
        }
    }

    fn count_error(&self, source: Source) {
        self.errors[source.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Failed refreshes of each enabled source so far.
    pub fn errors(&self) -> Vec<(&'static str, u64)> {
        Source::ALL
            .into_iter()
            .filter(|s| self.enabled[s.index()])
            .map(|s| (s.name(), self.errors[s.index()].load(Ordering::Relaxed)))
            .collect()
    }
}

/// Why a refresh failed; each message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum NamesError {
    #[error("the kubelet at {url} answered HTTP {status}: it refused this agent's service-account token; grant `get` on `nodes/pods` (Kubernetes 1.33+ with fine-grained kubelet authorisation) or, on older clusters, on `nodes/proxy` (the chart's ClusterRole: --set kubelet.nodesProxy=true)")]
    Refused { url: String, status: u16 },
    #[error("{url} answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} did not answer within {} s; check that it is the kubelet (or runtime socket) of this node", TIMEOUT.as_secs())]
    Timeout { url: String },
    #[error("cannot reach the kubelet at {url}: {message}; check --kubelet-url (this node's IP, port 10250) and, for a certificate error, --kubelet-ca-file or --kubelet-insecure-tls")]
    Kubelet { url: String, message: String },
    #[error("cannot read the kubelet token {path}: {source}; mount the service-account token or pass --kubelet-token-file")]
    Token {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the kubelet CA bundle {path}: {message}; pass the CA that signed the kubelet's serving certificate with --kubelet-ca-file, or --kubelet-insecure-tls")]
    Ca { path: String, message: String },
    #[error("cannot ask the container runtime at {path}: {message}; check --runtime-socket, that this user may open the socket (docker's group, root for podman's; inside a container it must be mounted), or pass --runtime-socket none")]
    Socket { path: String, message: String },
    #[error("the answer of {url} is not {expected}: {message}")]
    Parse {
        url: String,
        expected: &'static str,
        message: String,
    },
}

/// Runs `fetch` as `source` until `stop`: a refresh at once, then every
/// [`REFRESH`] and on [`Directory::want`] (at most every [`MIN_REFRESH`]).
/// A failure keeps what was published, counts in
/// `ergon_metadata_errors_total{source}` and logs once per
/// [`LOG_EVERY`] (or when the error changes).
pub async fn run<F, Fut>(dir: Arc<Directory>, source: Source, fetch: F, stop: CancellationToken)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Catalog, NamesError>>,
{
    let mut log = FailureLog::default();
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = fetch() => r,
        };
        match result {
            Ok(catalog) => {
                if log.recovered() {
                    info!(
                        source = source.name(),
                        pods = catalog.pods.len(),
                        containers = catalog.containers.len(),
                        "names resolved again"
                    );
                }
                dir.publish(source, catalog);
            }
            Err(e) => {
                dir.count_error(source);
                let message = e.to_string();
                if log.should_log(&message, Instant::now()) {
                    warn!(source = source.name(), error = %message, "cannot refresh names; labels stay as they are and new ones empty (ergon_metadata_errors_total)");
                }
            }
        }
        let earliest = started + MIN_REFRESH;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until((started + REFRESH).into()) => {}
            _ = dir.wanted[source.index()].notified() => {
                tokio::time::sleep_until(earliest.into()).await;
            }
        }
    }
}

/// When a failing source logs: at the first failure, when the message
/// changes, and every [`LOG_EVERY`] while it goes on.
#[derive(Debug, Default)]
struct FailureLog {
    last: Option<(String, Instant)>,
}

impl FailureLog {
    fn should_log(&mut self, message: &str, now: Instant) -> bool {
        let due = match &self.last {
            None => true,
            Some((m, at)) => m != message || now.duration_since(*at) >= LOG_EVERY,
        };
        if due {
            self.last = Some((message.to_owned(), now));
        }
        due
    }

    /// Whether a success ends a failure (once).
    fn recovered(&mut self) -> bool {
        self.last.take().is_some()
    }
}

/// `ergon_metadata_errors_total{source}` for a scrape.
#[derive(Debug)]
pub struct NamesCollector {
    pub directory: Arc<Directory>,
}

impl prometheus_client::collector::Collector for NamesCollector {
    fn encode(&self, mut enc: prometheus_client::encoding::DescriptorEncoder) -> std::fmt::Result {
        crate::families::counter(
            &mut enc,
            "ergon_metadata_errors",
            "Failed refreshes of the names of cgroups' owners, per source (kubelet: --kubelet-url; runtime: --runtime-socket). Labels keep their last names meanwhile; unknown ones stay empty.",
            self.directory
                .errors()
                .into_iter()
                .map(|(s, n)| (vec![("source", s.to_owned())], n as f64)),
        )
    }
}

#[cfg(test)]
mod tests;
