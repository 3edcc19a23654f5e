//! HTTPS: a rustls server configuration from PEM files (ring provider).

use std::{path::PathBuf, sync::Arc};

use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

use crate::config::TlsFiles;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS certificate {path}: {source}; pass a PEM certificate chain with --tls-cert-file")]
    Cert {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("TLS certificate file {path} holds no certificate; pass a PEM file with a `BEGIN CERTIFICATE` block to --tls-cert-file")]
    NoCert { path: PathBuf },
    #[error("cannot read TLS private key {path}: {source}; pass a PEM (PKCS#8, PKCS#1 or SEC1) key with --tls-key-file")]
    Key {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("TLS private key {path} is encrypted: ergon cannot ask for its passphrase; decrypt it (openssl pkey -in {path} -out {path}.plain), keep that file 0600 and pass it to --tls-key-file")]
    EncryptedKey { path: PathBuf },
    #[error("TLS certificate {cert} cannot be used: {source} (an X.509 v1 certificate, or one that is not DER X.509 v3); issue an X.509 v3 certificate and pass it to --tls-cert-file")]
    BadCert {
        cert: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("TLS certificate {cert} and key {key} do not work together: {source}; check that the key belongs to the certificate")]
    Config {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// A PEM key rustls cannot read because it is encrypted: PKCS#8
/// `ENCRYPTED PRIVATE KEY`, or the legacy OpenSSL `Proc-Type: 4,ENCRYPTED`
/// header (rustls only says "no items found" of both).
fn is_encrypted_key(pem: &[u8]) -> bool {
    let has = |needle: &[u8]| pem.windows(needle.len()).any(|w| w == needle);
    has(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") || has(b"Proc-Type: 4,ENCRYPTED")
}

/// What rustls refused about the pair, blamed on the right file: a
/// certificate it cannot parse (an X.509 v1 one) is the certificate's
/// fault, not the key's.
fn config_error(files: &TlsFiles, source: rustls::Error) -> TlsError {
    match source {
        rustls::Error::InvalidCertificate(_) => TlsError::BadCert {
            cert: files.cert.clone(),
            source,
        },
        source => TlsError::Config {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        },
    }
}

/// Why a server certificate that rustls accepts will still fail every
/// handshake at `now_unix`: expired, or not valid yet (a clock that is
/// wrong, or a certificate issued for later). rustls checks neither on the
/// server side, and clients only say "certificate expired" in their own
/// logs, so Ergon warns at start-up with the dates. `None` when it is
/// valid now, or when x509-parser cannot read it (rustls then decides).
pub fn validity_warning(path: &std::path::Path, cert: &[u8], now_unix: i64) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let v = parsed.validity();
    let (from, until) = (v.not_before.timestamp(), v.not_after.timestamp());
    let date = crate::units::rfc3339_seconds;
    let p = path.display();
    if now_unix > until {
        Some(format!(
            "TLS certificate {p} expired on {} (valid from {}): clients refuse the handshake; renew it and restart with the new one in --tls-cert-file",
            date(until),
            date(from)
        ))
    } else if now_unix < from {
        Some(format!(
            "TLS certificate {p} is not valid before {} (until {}): clients refuse the handshake until then; check this host's clock, or the certificate's dates",
            date(from),
            date(until)
        ))
    } else {
        None
    }
}

pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let pem = |path: &std::path::Path, max, what| {
        crate::files::read_capped(path, max, what).map_err(rustls_pki_types::pem::Error::Io)
    };
    let certs: Vec<CertificateDer<'static>> =
        pem(&files.cert, crate::files::CERT_MAX, "PEM certificate chain")
            .and_then(|b| CertificateDer::pem_slice_iter(&b).collect::<Result<_, _>>())
            .map_err(|source| TlsError::Cert {
                path: files.cert.clone(),
                source,
            })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert {
            path: files.cert.clone(),
        });
    }
    let now = crate::units::now_unix_ms() / 1000;
    if let Some(w) = validity_warning(&files.cert, &certs[0], now) {
        tracing::warn!("{w}");
    }
    let key_pem = pem(&files.key, crate::files::KEY_MAX, "PEM private key").map_err(|source| {
        TlsError::Key {
            path: files.key.clone(),
            source,
        }
    })?;
    if is_encrypted_key(&key_pem) {
        return Err(TlsError::EncryptedKey {
            path: files.key.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|source| TlsError::Key {
        path: files.key.clone(),
        source,
    })?;
    let config_err = |source| config_error(files, source);
    let mut cfg =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(config_err)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(config_err)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
