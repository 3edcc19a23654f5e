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
