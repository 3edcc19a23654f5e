//! A kubelet's `/pods` endpoint for the tests: HTTPS on 127.0.0.1 with a
//! certificate from a CA made here, a bearer token it checks, and an
//! answer the test sets: a PodList, an HTTP status, or no answer at all.
//! There is no cluster on these machines; this is what Ergon is tested
//! against, with PodLists checked against the Kubernetes schema
//! ([`validate_pod_list`]).

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

/// What `/pods` answers.
#[derive(Clone, Debug)]
pub enum Answer {
    /// 200 with this body.
    Pods(String),
    /// This status and a kubelet-like text body.
    Status(u16),
    /// Reads the request, then answers nothing until stopped.
    Hang,
}

pub struct FakeKubelet {
    pub url: String,
    /// PEM of the CA that signed the serving certificate.
    pub ca_file: PathBuf,
    pub token_file: PathBuf,
    answer: Arc<Mutex<Answer>>,
    requests: Arc<AtomicU64>,
    bad_tokens: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

const TOKEN: &str = "ergon-test-service-account-token";

impl FakeKubelet {
    /// Starts serving `answer`; the CA and the token are written into `dir`.
    pub fn start(dir: &Path, answer: Answer) -> FakeKubelet {
        let (ca_pem, cert_der, key_der) = certificates();
        let ca_file = dir.join("kubelet-ca.pem");
        std::fs::write(&ca_file, ca_pem).expect("write CA");
        let token_file = dir.join("token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).expect("write token");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_no_client_auth()
                .with_single_cert(
                    vec![cert_der.into()],
                    rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.into()),
                )
                .expect("server certificate"),
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("https://{}", listener.local_addr().expect("addr"));
        listener.set_nonblocking(true).expect("nonblocking");
        let k = FakeKubelet {
            url,
            ca_file,
            token_file,
            answer: Arc::new(Mutex::new(answer)),
            requests: Arc::new(AtomicU64::new(0)),
            bad_tokens: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (answer, requests, bad, stop) = (
            k.answer.clone(),
            k.requests.clone(),
            k.bad_tokens.clone(),
            k.stop.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let (config, answer, requests, bad, stop) = (
                            config.clone(),
                            answer.clone(),
                            requests.clone(),
                            bad.clone(),
                            stop.clone(),
                        );
                        std::thread::spawn(move || {
                            serve(s, config, &answer, &requests, &bad, &stop);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        k
    }

    pub fn set(&self, answer: Answer) {
        *self.answer.lock().expect("answer") = answer;
    }

    /// Requests for `/pods` so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests without the right bearer token (answered 401).
    pub fn bad_tokens(&self) -> u64 {
        self.bad_tokens.load(Ordering::Relaxed)
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    s: TcpStream,
    config: Arc<rustls::ServerConfig>,
    answer: &Mutex<Answer>,
    requests: &AtomicU64,
    bad: &AtomicU64,
    stop: &AtomicBool,
) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, s);
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 << 10 {
            return;
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let authorized = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case(&format!("authorization: Bearer {TOKEN}")));
    let path_ok = head.starts_with("GET /pods ");
    requests.fetch_add(1, Ordering::Relaxed);
    let current = answer.lock().expect("answer").clone();
    let (status, body) = if !authorized {
        bad.fetch_add(1, Ordering::Relaxed);
        (401, "Unauthorized".to_owned())
    } else if !path_ok {
        (404, "404 page not found".to_owned())
    } else {
        match current {
            Answer::Pods(b) => (200, b),
            Answer::Status(401) => (401, "Unauthorized".to_owned()),
            Answer::Status(code) => (code, format!("status {code}")),
            Answer::Hang => {
                for _ in 0..600 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                return;
            }
        }
    };
    let ctype = if status == 200 {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let resp = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tls.write_all(resp.as_bytes());
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

/// (CA PEM, serving certificate DER for 127.0.0.1 and localhost, its key DER).
fn certificates() -> (String, Vec<u8>, Vec<u8>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "ergon test kubelet CA");
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    leaf.subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    leaf.distinguished_name.push(DnType::CommonName, "node-a");
    let key = KeyPair::generate().expect("key");
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).expect("sign");
    (ca_cert.pem(), cert.der().to_vec(), key.serialize_der())
}

/// Validates a PodList (JSON) against the Kubernetes 1.33 schema, strictly
/// (an unknown field is an error), with kubernetes-validate
/// (`ERGON_KUBERNETES_VALIDATE`, fetched by `cargo xtask test`); panics with
/// its report when it does not pass. Through its Python API: its command
/// line prints every object's `metadata.name`, which a list has not.
pub fn validate_pod_list(json: &str) {
    const SCRIPT: &str = r#"
import json, sys, kubernetes_validate
data = json.load(open(sys.argv[1]))
assert data.get("kind") == "PodList", "not a PodList"
try:
    v = kubernetes_validate.validate(data, "1.33.0", strict=True)
except kubernetes_validate.ValidationError as e:
    print("ERROR %s: %s" % (".".join(str(p) for p in e.path), e.message))
    sys.exit(1)
print("passed: PodList against %s (strict)" % v)
"#;
    let (passed, report) = crate::kubernetes_validate(&["-c", SCRIPT], "pods.json", json);
    assert!(
        passed && report.contains("passed: PodList against 1.33"),
        "kubernetes-validate: {report}"
    );
}
