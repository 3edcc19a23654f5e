//! Pod, namespace and container names from the kubelet's `/pods` (a
//! `v1.PodList` of this node's pods), over HTTPS with the service account's
//! bearer token.
//!
//! Why the kubelet and not the API server: one local request per node and
//! refresh instead of a watch per node on the control plane (Kepler moved
//! the same way in 0.11.4 after its informers overloaded API servers, its
//! issue #2366). The kubelet authorises `/pods` as `get` on `nodes/pods`
//! where fine-grained kubelet authorisation is on (KEP-2862, beta and on by
//! default in 1.33), else as `nodes/proxy`.

use std::{path::PathBuf, sync::Arc};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{header, Request, StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use serde::Deserialize;
use tokio_rustls::rustls;

use super::{Catalog, NamesError, PodNames, TIMEOUT};
use crate::config::Kubelet;

/// Largest `/pods` answer read (a full node of 110 pods is about 2 MB).
const MAX_BODY: usize = 64 << 20;

/// A client of one kubelet's `/pods`.
pub struct KubeletClient {
    url: String,
    uri: Uri,
    node_name: Option<String>,
    token_file: Option<PathBuf>,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl KubeletClient {
    pub fn new(cfg: &Kubelet) -> Result<KubeletClient, NamesError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls_err = |message: String| NamesError::Kubelet {
            url: cfg.url.clone(),
            message,
        };
        let config = |roots: Option<rustls::RootCertStore>| {
            let b = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| tls_err(e.to_string()))?;
            Ok::<_, NamesError>(match roots {
                Some(store) => b.with_root_certificates(store).with_no_client_auth(),
                None => b
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider.clone())))
                    .with_no_client_auth(),
            })
        };
        let builder = HttpsConnectorBuilder::new();
        let builder = match (&cfg.ca_file, cfg.insecure_tls) {
            (_, true) => builder.with_tls_config(config(None)?),
            (Some(path), false) => {
                let store = crate::push::client::roots(Some(path))
                    .map_err(|e| NamesError::Ca {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })?
                    .unwrap_or_else(rustls::RootCertStore::empty);
                builder.with_tls_config(config(Some(store))?)
            }
            (None, false) => builder
                .with_provider_and_native_roots(provider.clone())
                .map_err(|e| tls_err(format!("loading the system's CA certificates: {e}")))?,
        };
        let https = builder.https_only().enable_http1().build();
        let url = format!("{}/pods", cfg.url);
        let uri = url.parse::<Uri>().map_err(|e| tls_err(e.to_string()))?;
        Ok(KubeletClient {
            url,
            uri,
            node_name: cfg.node_name.clone(),
            token_file: cfg.token_file.clone(),
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// The URL asked (`<--kubelet-url>/pods`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// One `GET /pods`, at most [`TIMEOUT`].
    pub async fn fetch(&self) -> Result<Catalog, NamesError> {
        let mut req = Request::get(self.uri.clone()).header(header::ACCEPT, "application/json");
        if let Some(path) = &self.token_file {
            // Read at every refresh: projected tokens rotate.
            let token = std::fs::read_to_string(path).map_err(|source| NamesError::Token {
                path: path.display().to_string(),
                source,
            })?;
            req = req.header(header::AUTHORIZATION, format!("Bearer {}", token.trim()));
        }
        let req = req.body(Empty::new()).map_err(|e| NamesError::Kubelet {
            url: self.url.clone(),
            message: e.to_string(),
        })?;
        let get = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| NamesError::Kubelet {
                    url: self.url.clone(),
                    message: crate::source::chain(&e),
                })?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| NamesError::Kubelet {
                    url: self.url.clone(),
                    message: format!("reading the answer: {e}"),
                })?
                .to_bytes();
            Ok::<_, NamesError>((status, body))
        };
        let (status, body) =
            tokio::time::timeout(TIMEOUT, get)
                .await
                .map_err(|_| NamesError::Timeout {
                    url: self.url.clone(),
                })??;
        match status {
            StatusCode::OK => {
                parse(&body, self.node_name.as_deref()).map_err(|message| NamesError::Parse {
                    url: self.url.clone(),
                    expected: "a v1 PodList",
                    message,
                })
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(NamesError::Refused {
                url: self.url.clone(),
                status: status.as_u16(),
            }),
            s => Err(NamesError::Status {
                url: self.url.clone(),
                status: s.as_u16(),
                body: crate::files::preview(&String::from_utf8_lossy(&body), 200),
            }),
        }
    }
}

/// The fields of a `v1.PodList` that give names; everything else is
/// ignored.
#[derive(Deserialize)]
struct PodList {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    items: Vec<Pod>,
}

#[derive(Deserialize)]
struct Pod {
    metadata: Meta,
    #[serde(default)]
    spec: Option<Spec>,
    #[serde(default)]
    status: Option<Status>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    uid: String,
}

#[derive(Deserialize)]
struct Spec {
    #[serde(rename = "nodeName", default)]
    node_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Status {
    #[serde(rename = "containerStatuses")]
    containers: Vec<ContainerStatus>,
    #[serde(rename = "initContainerStatuses")]
    init: Vec<ContainerStatus>,
    #[serde(rename = "ephemeralContainerStatuses")]
    ephemeral: Vec<ContainerStatus>,
}

#[derive(Deserialize)]
struct ContainerStatus {
    name: String,
    #[serde(rename = "containerID", default)]
    container_id: Option<String>,
}

/// The names in a PodList; pods of another node than `node` are left out
/// (a `--kubelet-url` pointing at the wrong node must not name anything).
pub fn parse(body: &[u8], node: Option<&str>) -> Result<Catalog, String> {
    let list: PodList = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if let Some(kind) = list.kind.as_deref().filter(|k| *k != "PodList") {
        return Err(format!("its kind is {kind}"));
    }
    let mut c = Catalog::default();
    for pod in list.items {
        let spec_node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        if let (Some(want), Some(got)) = (node, spec_node) {
            if want != got {
                continue;
            }
        }
        let m = pod.metadata;
        if m.uid.is_empty() || m.name.is_empty() {
            continue;
        }
        let status = pod.status.unwrap_or_default();
        for cs in status
            .containers
            .iter()
            .chain(&status.init)
            .chain(&status.ephemeral)
        {
            // `containerd://<id>`, `cri-o://<id>`, `docker://<id>`.
            let id = cs
                .container_id
                .as_deref()
                .and_then(|s| s.split_once("://"))
                .map(|(_, id)| id);
            if let Some(id) = id.filter(|id| crate::identity::is_container_id(id)) {
                c.containers.insert(id.to_owned(), cs.name.clone());
            }
        }
        c.pods.insert(
            m.uid,
            PodNames {
                name: m.name,
                namespace: m.namespace,
            },
        );
    }
    Ok(c)
}

/// `--kubelet-insecure-tls`: accepts any certificate, still checking the
/// handshake's signatures. rustls has no switch for this; it is the
/// documented way (`dangerous()`) to opt out of verification.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
