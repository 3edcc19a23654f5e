//! The HTTP server: `GET /metrics`.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}; pick a free address with --listen (ERGON_LISTEN), or stop the process that holds it")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server on {addr} failed")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

#[derive(Clone)]
struct AppState {
    registry: Arc<Registry>,
    /// Counts `/metrics` bodies produced (dead cgroups leave only once exported).
    export_epoch: Arc<AtomicU64>,
}

pub fn router(registry: Registry, export_epoch: Arc<AtomicU64>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .with_state(AppState {
            registry: Arc::new(registry),
            export_epoch,
        })
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    match metrics::encode(&state.registry) {
        Ok(body) => {
            state.export_epoch.fetch_add(1, Ordering::Relaxed);
            ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response()
        }
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding metrics failed\n",
        )
            .into_response(),
    }
}

pub async fn serve(
    listener: TcpListener,
    app: Router,
    stop: CancellationToken,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().map_err(|source| ServeError::Serve {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .map_err(|source| ServeError::Serve { addr, source })
}
