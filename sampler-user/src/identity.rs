//! Who a cgroup belongs to, from its path alone: the innermost systemd unit,
//! the container runtime and container id, and the Kubernetes pod UID and
//! QoS class.
//!
//! [`identify`] is a pure function of the cgroup path relative to the cgroup2
//! mount (`/system.slice/docker-<id>.scope`). It runs once per newly seen
//! cgroup, so it is written as a single hand-rolled pass over the `/`-separated
//! components: no regex crate, no allocation beyond the returned strings.
//!
//! Layouts understood (systemd and cgroupfs cgroup drivers):
//!
//! | runtime      | systemd driver                         | cgroupfs driver                    |
//! |--------------|----------------------------------------|------------------------------------|
//! | `docker`     | `docker-<id>.scope`                    | `docker/<id>`                      |
//! | `containerd` | `cri-containerd-<id>.scope`            | bare `<id>` directly under a pod   |
//! | `cri-o`      | `crio-<id>.scope`                      | `crio-<id>`                        |
//! | `podman`     | `libpod-<id>.scope`                    | `libpod-<id>` (`/libpod_parent/…`) |
//!
//! Kubernetes pods are `kubepods[-<qos>]-pod<uid_with_underscores>.slice`
//! (systemd, possibly behind a cgroup-root prefix such as
//! `kubelet-kubepods-…`) or `kubepods/[<qos>/]pod<uid>` (cgroupfs), found
//! anywhere in the path; a pod without a QoS level is `guaranteed`.
//!
//! Rules for nesting (kind, k3d, systemd inside a container): the innermost
//! unit, container and pod win, and a pod found below a container discards
//! that outer container, so `container_id` and `pod_uid` always describe the
//! same nesting level.
//!
//! Malformed input never panics: fields that cannot be identified are empty.

/// What a cgroup path says about its owner. Every field is empty when unknown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// Innermost systemd unit in the path (`nginx.service`, `docker-<id>.scope`,
    /// `session-2.scope`, `kubepods-burstable-pod<uid>.slice` ...): the last path
    /// component ending in .service/.scope/.slice/.socket/.mount/.swap/.timer;
    /// empty when none.
    pub unit: String,
    /// `docker`, `containerd`, `cri-o`, `podman` or empty.
    pub runtime: String,
    /// 64-hex container id, lowercase, or empty.
    pub container_id: String,
    /// Kubernetes pod UID with dashes (`0f6a2c3e-...`), or empty.
    pub pod_uid: String,
    /// `guaranteed`, `burstable`, `besteffort`, or empty when not a pod.
    pub qos_class: String,
}

/// Unit types that systemd places processes (or their helpers) under.
const UNIT_SUFFIXES: [&str; 7] = [
    ".service", ".scope", ".slice", ".socket", ".mount", ".swap", ".timer",
];

/// Runtime names as they appear in [`Identity::runtime`].
const DOCKER: &str = "docker";
const CONTAINERD: &str = "containerd";
const CRIO: &str = "cri-o";
const PODMAN: &str = "podman";

/// QoS classes as they appear in [`Identity::qos_class`].
const GUARANTEED: &str = "guaranteed";
const BURSTABLE: &str = "burstable";
const BESTEFFORT: &str = "besteffort";

/// What the previous (parent) component was, for the cgroupfs layouts whose
/// meaning depends on the parent directory.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Parent {
    /// Nothing special.
    Other,
    /// `docker` (cgroupfs driver: containers are `docker/<id>`).
    Docker,
    /// `kubepods` (cgroupfs driver).
    Kubepods,
    /// `kubepods/burstable` or `kubepods/besteffort` (cgroupfs driver).
    KubeQos(&'static str),
    /// A pod directory or pod slice, either driver.
    Pod,
}

/// Identifies the owner of the cgroup at `path` (relative to the cgroup2
/// mount, e.g. `/system.slice/docker-<64hex>.scope`).
///
/// Empty components (`//`, a trailing `/`) are skipped and a missing leading
/// `/` is tolerated. A path containing a `.` or `..` component no longer names
/// a cgroup directly, so it yields [`Identity::default`].
pub fn identify(path: &str) -> Identity {
    let components = || path.split('/').filter(|c| !c.is_empty());
    if components().any(|c| c == "." || c == "..") {
        return Identity::default();
    }

    let mut unit = "";
    let mut container: Option<(&'static str, &str)> = None;
    let mut pod: Option<(String, &'static str)> = None;
    let mut parent = Parent::Other;

    for c in components() {
        let mut this = Parent::Other;
        if is_unit(c) {
            unit = c;
        }
        if let Some(found) = pod_slice(c).or_else(|| pod_dir(c, parent)) {
            // A pod below a container (k3d, kind) starts a new nesting level.
            container = None;
            pod = Some(found);
            this = Parent::Pod;
        } else if let Some(found) = container_of(c, parent) {
            container = Some(found);
        } else {
            this = match c {
                "docker" => Parent::Docker,
                "kubepods" => Parent::Kubepods,
                BURSTABLE if parent == Parent::Kubepods => Parent::KubeQos(BURSTABLE),
                BESTEFFORT if parent == Parent::Kubepods => Parent::KubeQos(BESTEFFORT),
                _ => Parent::Other,
            };
        }
        parent = this;
    }

    let (runtime, container_id) = container.unwrap_or(("", ""));
    let (pod_uid, qos_class) = pod.unwrap_or_default();
    Identity {
        unit: unit.to_owned(),
        runtime: runtime.to_owned(),
        container_id: container_id.to_owned(),
        pod_uid,
        qos_class: qos_class.to_owned(),
    }
}

/// Whether `c` is a systemd unit name: a known unit suffix after a non-empty
/// stem, and only characters systemd allows in unit names
/// (`[A-Za-z0-9:_.\\@-]`), which also rules out control characters.
fn is_unit(c: &str) -> bool {
    UNIT_SUFFIXES
        .iter()
        .any(|s| c.len() > s.len() && c.ends_with(s))
        && c.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'.' | b'\\' | b'@' | b'-')
        })
}

/// A container component: `(runtime, id)` when `c` names a container with a
/// valid id. `parent` disambiguates the bare-id cgroupfs layouts.
///
/// A bare `<64hex>` directly under a pod directory is reported as
/// `containerd`: with the cgroupfs driver the CRI runtimes that use bare ids
/// (containerd, dockershim/cri-dockerd) cannot be told apart from the path, and
/// containerd is by far the most common.
fn container_of(c: &str, parent: Parent) -> Option<(&'static str, &str)> {
    let scope = |prefix: &str| c.strip_prefix(prefix)?.strip_suffix(".scope");
    let scope_or_bare = |prefix: &str| {
        let rest = c.strip_prefix(prefix)?;
        Some(rest.strip_suffix(".scope").unwrap_or(rest))
    };
    // `crio-conmon-<id>` and `libpod-conmon-<id>` are the conmon monitors, not
    // containers; they fail the hex check below because of the `conmon-`.
    let (runtime, id) = if let Some(id) = scope("cri-containerd-") {
        (CONTAINERD, id)
    } else if let Some(id) = scope("docker-") {
        (DOCKER, id)
    } else if let Some(id) = scope_or_bare("crio-") {
        (CRIO, id)
    } else if let Some(id) = scope_or_bare("libpod-") {
        (PODMAN, id)
    } else if parent == Parent::Docker {
        (DOCKER, c)
    } else if parent == Parent::Pod {
        (CONTAINERD, c)
    } else {
        return None;
    };
    is_container_id(id).then_some((runtime, id))
}

/// Exactly 64 lowercase hex digits.
pub(crate) fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A systemd-driver pod slice: `[<prefix>-]kubepods[-<qos>]-pod<uid>.slice`,
/// where the uid's dashes are escaped as underscores. Returns the uid with
/// dashes and the QoS class.
fn pod_slice(c: &str) -> Option<(String, &'static str)> {
    let stem = c.strip_suffix(".slice")?;
    let mut segments = stem.rsplit('-');
    let uid = segments.next()?.strip_prefix("pod")?;
    let qos = match segments.next()? {
        "kubepods" => GUARANTEED,
        BURSTABLE if segments.next()? == "kubepods" => BURSTABLE,
        BESTEFFORT if segments.next()? == "kubepods" => BESTEFFORT,
        _ => return None,
    };
    let uid = uid.replace('_', "-");
    is_pod_uid(&uid).then_some((uid, qos))
}

/// A cgroupfs-driver pod directory `pod<uid>` directly under `kubepods` or
/// `kubepods/<qos>`.
fn pod_dir(c: &str, parent: Parent) -> Option<(String, &'static str)> {
    let qos = match parent {
        Parent::Kubepods => GUARANTEED,
        Parent::KubeQos(qos) => qos,
        _ => return None,
    };
    let uid = c.strip_prefix("pod")?;
    is_pod_uid(uid).then(|| (uid.to_owned(), qos))
}

/// A Kubernetes pod UID: a lowercase UUID (`8-4-4-4-12` hex), or the 32 hex
/// digits kubelet derives for static pods from their manifest hash.
fn is_pod_uid(s: &str) -> bool {
    let hex = |b: u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
    match s.len() {
        32 => s.bytes().all(hex),
        36 => s.bytes().enumerate().all(|(i, b)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                b == b'-'
            } else {
                hex(b)
            }
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
