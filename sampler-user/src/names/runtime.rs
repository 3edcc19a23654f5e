//! Container names from the Docker Engine API (`GET /containers/json`) on a
//! unix socket: docker's own, or podman's compatible service
//! (`podman system service`, `podman.socket`). Only that read endpoint is
//! used; the socket still gives whoever holds it control of the runtime,
//! which docs/deploy.md says before it tells how to mount it.
//!
//! A container a kubelet made through docker (cri-dockerd) carries the CRI
//! labels `io.kubernetes.container.name`, `io.kubernetes.pod.name`,
//! `io.kubernetes.pod.namespace` and `io.kubernetes.pod.uid`: those name
//! it (and its pod) rather than the runtime's generated `k8s_…` name.

use std::{collections::HashMap, path::PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{header, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use super::{Catalog, NamesError, PodNames, TIMEOUT};

/// Largest answer read (a few hundred bytes per container).
const MAX_BODY: usize = 64 << 20;

/// The runtime sockets to ask.
pub struct RuntimeClient {
    sockets: Vec<PathBuf>,
    /// The user named them: a missing one is an error.
    explicit: bool,
}

impl RuntimeClient {
    pub fn new(sockets: Vec<PathBuf>, explicit: bool) -> RuntimeClient {
        RuntimeClient { sockets, explicit }
    }

    /// Asks every socket (a default one that does not exist is skipped);
    /// the first error fails the refresh, after the others were asked.
    pub async fn fetch(&self) -> Result<Catalog, NamesError> {
        let mut all = Catalog::default();
        let mut first_error = None;
        for path in &self.sockets {
            if !self.explicit && !path.exists() {
                continue;
            }
            match tokio::time::timeout(TIMEOUT, containers(path)).await {
                Ok(Ok(c)) => {
                    all.pods.extend(c.pods);
                    all.containers.extend(c.containers);
                }
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(NamesError::Timeout {
                        url: format!("unix:{}", path.display()),
                    });
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(all),
        }
    }
}

/// One `GET /containers/json?all=true` on the socket at `path`.
async fn containers(path: &PathBuf) -> Result<Catalog, NamesError> {
    let err = |message: String| NamesError::Socket {
        path: path.display().to_string(),
        message,
    };
    let stream = tokio::net::UnixStream::connect(path)
        .await
        .map_err(|e| err(e.to_string()))?;
    // hyper's client connection on a unix stream: hyper-util's pooled
    // client speaks TCP only, and one request per refresh needs no pool.
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| err(e.to_string()))?;
    let conn = tokio::spawn(conn);
    let req = Request::get("/containers/json?all=true")
        .header(header::HOST, "localhost")
        .header(header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| err(e.to_string()))?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| err(e.to_string()))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| err(format!("reading the answer: {e}")))?
        .to_bytes();
    conn.abort();
    let url = format!("unix:{}/containers/json", path.display());
    if status != StatusCode::OK {
        return Err(NamesError::Status {
            url,
            status: status.as_u16(),
            body: crate::files::preview(&String::from_utf8_lossy(&body), 200),
        });
    }
    parse(&body).map_err(|message| NamesError::Parse {
        url,
        expected: "a Docker Engine API container list",
        message,
    })
}

#[derive(Deserialize)]
struct Container {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Names", default)]
    names: Option<Vec<String>>,
    #[serde(rename = "Labels", default)]
    labels: Option<HashMap<String, String>>,
}

/// The names in a `/containers/json` answer.
pub fn parse(body: &[u8]) -> Result<Catalog, String> {
    let list: Vec<Container> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut c = Catalog::default();
    for ctr in list {
        if !crate::identity::is_container_id(&ctr.id) {
            continue;
        }
        let labels = ctr.labels.unwrap_or_default();
        let label = |k: &str| labels.get(k).filter(|v| !v.is_empty()).cloned();
        let name = label("io.kubernetes.container.name").or_else(|| {
            ctr.names
                .unwrap_or_default()
                .into_iter()
                .next()
                .map(|n| n.trim_start_matches('/').to_owned())
                .filter(|n| !n.is_empty())
        });
        if let Some(name) = name {
            c.containers.insert(ctr.id, name);
        }
        if let (Some(uid), Some(pod), Some(namespace)) = (
            label("io.kubernetes.pod.uid"),
            label("io.kubernetes.pod.name"),
            label("io.kubernetes.pod.namespace"),
        ) {
            c.pods.insert(
                uid,
                PodNames {
                    name: pod,
                    namespace,
                },
            );
        }
    }
    Ok(c)
}
