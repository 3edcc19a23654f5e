//! The remote_write HTTP(S) client and how its answers are classified.

use std::{sync::Arc, time::Duration};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{header, Method, Request, StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use rustls_pki_types::{pem::PemObject, CertificateDer};
use tokio_rustls::rustls;

use crate::config::{Auth, RemoteWrite};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot read --remote-write-ca-file {path}: {message}; pass a PEM file of CA certificates"
    )]
    Ca { path: String, message: String },
    #[error("cannot load the system's CA certificates for https remote_write: {0}; pass --remote-write-ca-file")]
    NativeRoots(std::io::Error),
    #[error("invalid remote_write header or credentials: {0}")]
    Header(String),
}

/// How the receiver answered one request.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// 2xx: stored.
    Stored,
    /// Network error, time-out, 5xx or 429: try again later.
    Retry {
        cause: &'static str,
        retry_after: Option<Duration>,
        message: String,
    },
    /// 401 or 403.
    Auth { status: u16, message: String },
    /// 400 naming samples it cannot take (out of order, out of bounds,
    /// duplicate, too old): the rest of the request may be fine.
    BadSamples { message: String },
    /// 413: the request is too large for the receiver.
    TooLarge { message: String },
    /// Any other 4xx (wrong URL, wrong method, …): a configuration problem.
    Refused { status: u16, message: String },
}

pub struct Remote {
    uri: Uri,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    headers: Vec<(header::HeaderName, header::HeaderValue)>,
    timeout: Duration,
}

pub(crate) fn roots(
    ca: Option<&std::path::Path>,
) -> Result<Option<rustls::RootCertStore>, ClientError> {
    let Some(path) = ca else { return Ok(None) };
    let err = |message: String| ClientError::Ca {
        path: path.display().to_string(),
        message,
    };
    let bytes = crate::files::read_capped(path, crate::files::CA_MAX, "PEM CA bundle")
        .map_err(|e| err(e.to_string()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate in it".into()));
    }
    let mut store = rustls::RootCertStore::empty();
    for c in certs {
        store.add(c).map_err(|e| err(e.to_string()))?;
    }
    Ok(Some(store))
}

impl Remote {
    pub fn new(cfg: &RemoteWrite) -> Result<Remote, ClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = HttpsConnectorBuilder::new();
        let https = match roots(cfg.ca_file.as_deref())? {
            Some(store) => {
                let tls = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| ClientError::Header(e.to_string()))?
                    .with_root_certificates(store)
                    .with_no_client_auth();
                builder.with_tls_config(tls)
            }
            None => builder
                .with_provider_and_native_roots(provider)
                .map_err(ClientError::NativeRoots)?,
        }
        .https_or_http()
        .enable_http1()
        .build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        let bad = |e: &dyn std::fmt::Display| ClientError::Header(e.to_string());
        let mut headers = vec![
            (
                header::CONTENT_ENCODING,
                header::HeaderValue::from_static("snappy"),
            ),
            (
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/x-protobuf"),
            ),
            (
                header::HeaderName::from_static("x-prometheus-remote-write-version"),
                header::HeaderValue::from_static("0.1.0"),
            ),
            (
                header::USER_AGENT,
                header::HeaderValue::from_static(concat!("ergon/", env!("CARGO_PKG_VERSION"))),
            ),
        ];
        if let Some(auth) = &cfg.auth {
            let v = match auth {
                Auth::Basic { username, password } => format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{password}"))
                ),
                Auth::Bearer { token } => format!("Bearer {token}"),
            };
            let mut v = header::HeaderValue::from_str(&v).map_err(|e| bad(&e))?;
            v.set_sensitive(true);
            headers.push((header::AUTHORIZATION, v));
        }
        for (k, v) in &cfg.headers {
            headers.push((
                header::HeaderName::from_bytes(k.as_bytes()).map_err(|e| bad(&e))?,
                header::HeaderValue::from_str(v).map_err(|e| bad(&e))?,
            ));
        }
        Ok(Remote {
            uri: cfg.url.parse().map_err(|e| bad(&e))?,
            client,
            headers,
            timeout: cfg
                .interval
                .clamp(Duration::from_secs(5), Duration::from_secs(30)),
        })
    }

    pub fn url(&self) -> String {
        self.uri.to_string()
    }

    /// Posts one encoded request.
    pub async fn send(&self, body: Vec<u8>) -> Answer {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone());
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let req = match req.body(Full::new(Bytes::from(body))) {
            Ok(r) => r,
            Err(e) => {
                return Answer::Refused {
                    status: 0,
                    message: e.to_string(),
                }
            }
        };
        let resp = match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => {
                return Answer::Retry {
                    cause: "timeout",
                    retry_after: None,
                    message: format!("no answer within {:?}", self.timeout),
                }
            }
            Ok(Err(e)) => {
                return Answer::Retry {
                    cause: "network",
                    retry_after: None,
                    message: crate::source::chain(&e),
                }
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(300)));
        let location = resp
            .headers()
            .get(header::LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let mut message = match Limited::new(resp.into_body(), 4096).collect().await {
            Ok(b) => String::from_utf8_lossy(&b.to_bytes()).trim().to_owned(),
            Err(_) => String::new(),
        };
        if status.is_redirection() {
            message = format!(
                "HTTP {} redirect to {}: redirects are not followed (a remote_write body is not re-sent blindly); point --remote-write-url at the final URL",
                status.as_u16(),
                location.as_deref().unwrap_or("(no Location header)")
            );
        }
        classify(status, retry_after, message)
    }
}

pub fn classify(status: StatusCode, retry_after: Option<Duration>, message: String) -> Answer {
    match status.as_u16() {
        200..=299 => Answer::Stored,
        429 => Answer::Retry {
            cause: "throttled",
            retry_after,
            message,
        },
        500..=599 => Answer::Retry {
            cause: "server",
            retry_after,
            message,
        },
        401 | 403 => Answer::Auth {
            status: status.as_u16(),
            message,
        },
        400 => {
            let m = message.to_ascii_lowercase();
            if [
                "out of order",
                "out of bounds",
                "duplicate",
                "too old",
                "out-of-order",
            ]
            .iter()
            .any(|k| m.contains(k))
            {
                Answer::BadSamples { message }
            } else {
                Answer::Refused {
                    status: 400,
                    message,
                }
            }
        }
        413 => Answer::TooLarge { message },
        s => Answer::Refused { status: s, message },
    }
}
