//! Settings of the name sources ([`crate::names`]): the kubelet's `/pods`
//! (pod, namespace and container names on a Kubernetes node) and the
//! container runtimes' API sockets (container names elsewhere).

use std::path::PathBuf;

use clap::Args;

use super::{invalid, ConfigError, FileConfig};

/// Where a pod's service-account token is mounted.
pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// The cluster CA mounted beside it.
pub const DEFAULT_CA_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
/// Runtime sockets tried when `--runtime-socket` is not given; a missing one
/// is skipped, not an error.
pub const DEFAULT_RUNTIME_SOCKETS: [&str; 2] = ["/run/podman/podman.sock", "/run/docker.sock"];

#[derive(Args, Clone, Debug, Default)]
pub struct NamesArgs {
    /// The kubelet's HTTPS endpoint, e.g. `https://10.0.0.5:10250`: cgroup
    /// series get `pod`, `namespace` and `container` from its `/pods`. Unset:
    /// no kubelet is asked.
    #[arg(long, env = "ERGON_KUBELET_URL")]
    pub kubelet_url: Option<String>,

    /// This node's name: pods the kubelet lists for another node are
    /// ignored [default: $NODE_NAME, from the downward API].
    #[arg(long, env = "ERGON_NODE_NAME")]
    pub node_name: Option<String>,

    /// Bearer token for the kubelet, read again at every refresh (projected
    /// tokens rotate) [default: the pod's service-account token].
    #[arg(long, env = "ERGON_KUBELET_TOKEN_FILE")]
    pub kubelet_token_file: Option<PathBuf>,

    /// PEM CA bundle that signed the kubelet's serving certificate
    /// [default: the service account's ca.crt].
    #[arg(long, env = "ERGON_KUBELET_CA_FILE")]
    pub kubelet_ca_file: Option<PathBuf>,

    /// Do not verify the kubelet's certificate (self-signed serving
    /// certificates, as kubeadm makes by default).
    #[arg(long, env = "ERGON_KUBELET_INSECURE_TLS")]
    pub kubelet_insecure_tls: bool,

    /// Docker Engine API socket(s) to read container names from (docker,
    /// or podman's compatible service); `none` for no runtime names
    /// [default: /run/podman/podman.sock and /run/docker.sock, where they exist].
    #[arg(long, env = "ERGON_RUNTIME_SOCKET", value_delimiter = ',')]
    pub runtime_socket: Vec<PathBuf>,
}

/// A validated kubelet source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kubelet {
    /// Base URL, without a trailing `/`.
    pub url: String,
    pub node_name: Option<String>,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub insecure_tls: bool,
}

/// Where names come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamesSettings {
    pub kubelet: Option<Kubelet>,
    /// Sockets to ask; `explicit` when the user named them (a missing one
    /// is then an error, counted and logged).
    pub runtime_sockets: Vec<PathBuf>,
    pub runtime_sockets_explicit: bool,
}

impl NamesArgs {
    pub fn settings(
        &self,
        file: &FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<NamesSettings, ConfigError> {
        let url = self.kubelet_url.clone().or(file.kubelet_url.clone());
        let kubelet = match url {
            None => None,
            Some(url) => {
                let trimmed = url.trim_end_matches('/').to_owned();
                let fix =
                    "pass the kubelet's HTTPS address, e.g. --kubelet-url https://$(NODE_IP):10250";
                match trimmed.split_once("://") {
                    Some(("https", rest)) if !rest.is_empty() => {}
                    Some(("http", _)) => {
                        return Err(invalid(
                            "kubelet_url",
                            url,
                            "is plain HTTP; the kubelet serves /pods over HTTPS only (port 10250) and a token must not travel in clear",
                            fix,
                        ))
                    }
                    _ => return Err(invalid("kubelet_url", url, "is not an https:// URL", fix)),
                }
                if trimmed.parse::<hyper::Uri>().is_err() {
                    return Err(invalid("kubelet_url", url, "is not a valid URL", fix));
                }
                let token = self
                    .kubelet_token_file
                    .clone()
                    .or(file.kubelet_token_file.clone());
                let ca = self
                    .kubelet_ca_file
                    .clone()
                    .or(file.kubelet_ca_file.clone());
                Some(Kubelet {
                    url: trimmed,
                    node_name: self
                        .node_name
                        .clone()
                        .or(file.node_name.clone())
                        .or_else(|| env("NODE_NAME"))
                        .filter(|n| !n.is_empty()),
                    // The defaults apply where they exist (in a pod).
                    token_file: token.or_else(|| existing(DEFAULT_TOKEN_FILE)),
                    ca_file: ca.or_else(|| existing(DEFAULT_CA_FILE)),
                    insecure_tls: self.kubelet_insecure_tls
                        || file.kubelet_insecure_tls.unwrap_or(false),
                })
            }
        };
        let given = if self.runtime_socket.is_empty() {
            file.runtime_socket.clone().unwrap_or_default()
        } else {
            self.runtime_socket.clone()
        };
        let none = given.len() == 1 && given[0].as_os_str() == "none";
        let (runtime_sockets, runtime_sockets_explicit) = if none {
            (Vec::new(), true)
        } else if given.is_empty() {
            (
                DEFAULT_RUNTIME_SOCKETS.iter().map(PathBuf::from).collect(),
                false,
            )
        } else {
            if let Some(p) = given.iter().find(|p| p.is_relative()) {
                return Err(invalid(
                    "runtime_socket",
                    p.display().to_string(),
                    "is not an absolute path",
                    "pass the socket's absolute path, e.g. --runtime-socket /run/podman/podman.sock, or none",
                ));
            }
            (given, true)
        };
        Ok(NamesSettings {
            kubelet,
            runtime_sockets,
            runtime_sockets_explicit,
        })
    }
}

fn existing(path: &str) -> Option<PathBuf> {
    let p = PathBuf::from(path);
    p.exists().then_some(p)
}
