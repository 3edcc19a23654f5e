//! The HTTP server: `GET /metrics`, `GET /metrics/batch`, `GET /health`,
//! over plain HTTP or TLS, optionally behind basic or bearer auth.
//!
//! Our own accept loop (hyper + hyper-util) rather than `axum::serve`, so a
//! TLS handshake runs in the connection's task and a slow client cannot
//! hold up the others.

use std::{
    net::SocketAddr,
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use axum::{
    extract::State,
    http::{header, HeaderMap, StatusCode},
    middleware,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    net::TcpListener,
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tokio_rustls::{rustls::ServerConfig, TlsAcceptor};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::{
    batch::{encode::Format, SharedStore},
    config::Auth,
    snapshot::SharedSnapshot,
};

pub mod auth;
pub mod batch;
pub mod health;
pub mod scrape;
pub mod stats;
pub mod tls;

use scrape::{Gathered, NamedCollector};
use stats::HttpStats;

/// Deadline of a scrape that does not send `X-Prometheus-Scrape-Timeout-Seconds`.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// Kept back from the scraper's timeout for writing the response.
pub const MAX_MARGIN: Duration = Duration::from_millis(250);
/// hyper's write buffer per connection (its default is ~400 KiB).
const WRITE_BUFFER: usize = 64 * 1024;
/// A TLS handshake or request head slower than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}; pick a free address with --listen (ERGON_LISTEN), or stop the process that holds it")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// What the handlers share.
#[derive(Clone)]
pub struct App {
    pub collectors: Arc<Vec<NamedCollector>>,
    pub store: SharedStore,
    pub snapshot: SharedSnapshot,
    /// Counts `/metrics` bodies produced (dead cgroups leave only once exported).
    pub export_epoch: Arc<AtomicU64>,
    pub stats: Arc<HttpStats>,
    pub limiter: Arc<Semaphore>,
    pub max_scrapes: usize,
    /// `/health` is unhealthy past this reading age.
    pub health_stale_after: Duration,
    /// The push path, when remote_write is on (for `/health`).
    pub push: Option<PushView>,
    /// The durable state, with `--state-dir` (`/health` is unhealthy while
    /// its commits fail).
    pub state: Option<Arc<crate::push::queue::Queue>>,
    /// Where a handler asks the drain for books up to now before reading
    /// them; `None` serves what is there (tests without a drain).
    pub demand: Option<Arc<crate::snapshot::Demand>>,
}

/// A handler waits at most this long for the drain to publish the books as
/// of its request; then it serves the snapshot there is.
pub const FRESH_WITHIN: Duration = Duration::from_millis(250);

/// What `/health` and `/metrics` read of the push path.
#[derive(Clone, Debug)]
pub struct PushView {
    pub stats: Arc<crate::push::stats::PushStats>,
    pub queue: Arc<crate::push::queue::Queue>,
}

impl App {
    pub fn new(
        collectors: Vec<NamedCollector>,
        store: SharedStore,
        snapshot: SharedSnapshot,
        export_epoch: Arc<AtomicU64>,
        stats: Arc<HttpStats>,
        max_scrapes: usize,
        health_stale_after: Duration,
    ) -> Self {
        Self {
            collectors: Arc::new(collectors),
            store,
            snapshot,
            export_epoch,
            stats,
            limiter: Arc::new(Semaphore::new(max_scrapes)),
            max_scrapes,
            health_stale_after,
            push: None,
            state: None,
            demand: None,
        }
    }

    pub fn with_demand(mut self, demand: Arc<crate::snapshot::Demand>) -> Self {
        self.demand = Some(demand);
        self
    }

    /// Asks the drain for the books as of now ([`crate::snapshot::Demand`]).
    pub async fn fresh(&self) {
        if let Some(d) = &self.demand {
            d.fresh(FRESH_WITHIN).await;
        }
    }

    pub fn with_push(mut self, push: Option<PushView>) -> Self {
        self.push = push;
        self
    }

    pub fn with_state(mut self, state: Option<Arc<crate::push::queue::Queue>>) -> Self {
        self.state = state;
        self
    }
}

/// The collectors of `/metrics`: `energy` (the snapshot) and `self` (the
/// HTTP side and the batch store).
pub fn collectors(
    snapshot: SharedSnapshot,
    stats: &Arc<HttpStats>,
    store: &SharedStore,
    push: Option<&PushView>,
    jobs: Option<&crate::jobs::Jobs>,
    names: &Arc<crate::names::Directory>,
) -> Vec<NamedCollector> {
    let energy = Arc::new(crate::metrics::registry(snapshot));
    let mut own = prometheus_client::registry::Registry::default();
    own.register(
        "ergon_scrape_duration_seconds",
        "Time to produce a response, per endpoint (until the body is ready to send)",
        stats.durations.clone(),
    );
    own.register_collector(Box::new(stats::StatsCollector {
        stats: stats.clone(),
        store: store.clone(),
    }));
    if let Some(p) = push {
        own.register_collector(Box::new(crate::push::stats::PushCollector {
            stats: p.stats.clone(),
            queue: p.queue.clone(),
        }));
    }
    if let Some(jobs) = jobs {
        own.register_collector(Box::new(crate::jobs::JobCollector { jobs: jobs.clone() }));
    }
    own.register_collector(Box::new(crate::process::ProcessCollector));
    if !names.errors().is_empty() {
        own.register_collector(Box::new(crate::names::NamesCollector {
            directory: names.clone(),
        }));
    }
    let own = Arc::new(own);
    vec![
        NamedCollector {
            name: "energy",
            collect: Arc::new(move || scrape::encode_registry(&energy)),
        },
        NamedCollector {
            name: "self",
            collect: Arc::new(move || scrape::encode_registry(&own)),
        },
    ]
}

pub fn router(app: App, auth: Option<Auth>, health_no_auth: bool) -> Router {
    let r = Router::new()
        .route("/metrics", get(metrics_handler))
        .route(batch::ENDPOINT, get(batch::handler))
        .route(health::ENDPOINT, get(health::handler))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: ergon serves /metrics, /metrics/batch?consumer=NAME and /health\n",
            )
        })
        .with_state(app);
    match auth {
        Some(auth) => r.layer(middleware::from_fn_with_state(
            auth::AuthState {
                auth: Arc::new(auth),
                health_open: health_no_auth,
            },
            auth::require,
        )),
        None => r,
    }
}

pub(crate) fn bad_request(reason: String) -> Response {
    (StatusCode::BAD_REQUEST, format!("bad request: {reason}\n")).into_response()
}

/// A scrape slot, or None when `--max-concurrent-scrapes` are running.
fn permit(app: &App, endpoint: &str) -> Option<OwnedSemaphorePermit> {
    let p = app.limiter.clone().try_acquire_owned().ok();
    if p.is_none() {
        app.stats.rejected(endpoint);
    }
    p
}

fn busy(app: &App) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        format!(
            "too many concurrent scrapes (limit {}): retry later, or raise --max-concurrent-scrapes\n",
            app.max_scrapes
        ),
    )
        .into_response()
}

/// The scrape deadline: the scraper's `X-Prometheus-Scrape-Timeout-Seconds`
/// minus a margin (a quarter of it, at most 250 ms), else [`DEFAULT_DEADLINE`].
pub(crate) fn deadline(headers: &HeaderMap, start: Instant) -> Result<Instant, String> {
    let Some(v) = headers.get("x-prometheus-scrape-timeout-seconds") else {
        return Ok(start + DEFAULT_DEADLINE);
    };
    let secs = v
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .ok_or_else(|| format!("malformed X-Prometheus-Scrape-Timeout-Seconds {v:?}: expected a positive number of seconds, e.g. 10"))?;
    if secs > MAX_SCRAPE_TIMEOUT_SECS {
        return Err(format!(
            "X-Prometheus-Scrape-Timeout-Seconds {secs} is above its maximum, {MAX_SCRAPE_TIMEOUT_SECS} s (a day)"
        ));
    }
    let t = Duration::from_secs_f64(secs);
    Ok(start + t - (t / 4).min(MAX_MARGIN))
}

/// The largest scrape timeout a scraper may send.
const MAX_SCRAPE_TIMEOUT_SECS: f64 = 86_400.0;

/// What every scrape starts with.
pub(crate) struct Scrape {
    /// The format the scraper asked for in `Accept`.
    pub format: Format,
    pub deadline: Instant,
    /// A `--max-concurrent-scrapes` slot, held while the body is produced.
    pub permit: OwnedSemaphorePermit,
}

/// Reads `Accept` and `X-Prometheus-Scrape-Timeout-Seconds` (400 with the
/// reason when malformed) and takes a scrape slot (503 when none is free).
pub(crate) fn begin_scrape(
    app: &App,
    headers: &HeaderMap,
    started: Instant,
    endpoint: &str,
) -> Result<Scrape, Box<Response>> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept).map_err(|e| Box::new(bad_request(e.to_string())))?;
    let deadline = deadline(headers, started).map_err(|e| Box::new(bad_request(e)))?;
    let permit = permit(app, endpoint).ok_or_else(|| Box::new(busy(app)))?;
    Ok(Scrape {
        format,
        deadline,
        permit,
    })
}

async fn metrics_handler(State(app): State<App>, headers: HeaderMap) -> Response {
    let started = Instant::now();
    let Scrape {
        format,
        deadline,
        permit: _permit,
    } = match begin_scrape(&app, &headers, started, "/metrics") {
        Ok(s) => s,
        Err(r) => return *r,
    };
    app.fresh().await;
    let resp = match scrape::gather(&app.collectors, deadline, &app.stats).await {
        Gathered::Text { body, timed_out } => {
            if !timed_out.contains(&"energy") {
                app.export_epoch.fetch_add(1, Ordering::Relaxed);
            }
            let body = match format {
                Format::Text => scrape::to_text(&body),
                Format::OpenMetrics => body + "# EOF\n",
            };
            let mut r = ([(header::CONTENT_TYPE, format.content_type())], body).into_response();
            if !timed_out.is_empty() {
                if let Ok(v) = header::HeaderValue::from_str(&timed_out.join(",")) {
                    r.headers_mut().insert("x-ergon-collectors-timed-out", v);
                }
            }
            r
        }
        Gathered::Failed { collector } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("collector {collector} failed (counted in ergon_collector_panics_total); the server goes on\n"),
        )
            .into_response(),
    };
    app.stats
        .observe("/metrics", started.elapsed().as_secs_f64());
    resp
}

/// Serves `app` on `listener` until `stop`; connections get a graceful
/// shutdown. With `tls`, every connection is TLS.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<ServerConfig>>,
    stop: CancellationToken,
) -> Result<(), ServeError> {
    let acceptor = tls.map(TlsAcceptor::from);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while conns.try_join_next().is_some() {}
        let app = app
            .clone()
            .layer(axum::Extension(batch::SocketFd(tcp.as_raw_fd())));
        let acceptor = acceptor.clone();
        let stop = stop.clone();
        conns.spawn(async move {
            let _ = tcp.set_nodelay(true);
            match acceptor {
                Some(a) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, a.accept(tcp)).await {
                    Ok(Ok(s)) => connection(TokioIo::new(s), app, stop).await,
                    Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => debug!(%peer, "TLS handshake timed out"),
                },
                None => connection(TokioIo::new(tcp), app, stop).await,
            }
        });
    }
    // Let answers in flight finish, briefly.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

async fn connection<I>(io: TokioIo<I>, app: Router, stop: CancellationToken)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // Little user-space buffering: a batch body counts as written (and
        // its consumer's cursor moves) only once the socket took it.
        .max_buf_size(WRITE_BUFFER)
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => if let Err(e) = r { debug!(error = %e, "connection ended with an error") },
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

#[cfg(test)]
#[path = "server/tests.rs"]
mod tests;
