//! The `container`, `pod` and `namespace` labels, from real parts:
//!
//! - the kubelet's `/pods`: a test-started HTTPS server
//!   ([`tests::kubelet::FakeKubelet`]) serving PodLists that pass the
//!   Kubernetes 1.33 schema, to a daemon whose cgroups are made the way a
//!   kubelet with containerd makes them (systemd driver), with a pod that
//!   appears after its cgroup, a kubelet that refuses the token and one
//!   that never answers;
//! - podman's Docker-compatible API (`podman system service`, started
//!   here) for two named containers run from the image, one busy, one idle.
//!
//! Every case runs the `synthetic` source, so each cgroup's energy is
//! checked against W × its `cpu.stat` as well.

use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;
use tests::{
    cgroup::Cgroup,
    kubelet::{validate_pod_list, Answer, FakeKubelet},
    podman::{image, Podman},
    require_root, Daemon,
};

const W: f64 = 10.0;
const BURN: &str = env!("CARGO_BIN_EXE_burn");

/// Test-unique ids: pod UIDs and 64-hex container ids from the PID.
fn uid(n: u32) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", std::process::id(), n)
}

fn container_id(n: u32) -> String {
    format!("{:08x}{:056x}", std::process::id(), n)
}

/// A pod's cgroup and its container's, as kubelet + containerd make them.
fn container_cgroup(pod_uid: &str, id: &str) -> String {
    format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{id}.scope",
        pod_uid.replace('-', "_")
    )
}

/// A pod as the kubelet lists it, running one container.
fn pod(name: &str, namespace: &str, pod_uid: &str, container: &str, id: &str) -> serde_json::Value {
    json!({
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": pod_uid,
            "creationTimestamp": "2026-12-02T08:00:00Z",
            "labels": {"app": name}
        },
        "spec": {
            "nodeName": "node-a",
            "containers": [{"name": container, "image": "registry.example/app:1.0", "resources": {}}]
        },
        "status": {
            "phase": "Running",
            "qosClass": "Burstable",
            "hostIP": "127.0.0.1",
            "containerStatuses": [{
                "name": container,
                "ready": true,
                "restartCount": 0,
                "image": "registry.example/app:1.0",
                "imageID": format!("registry.example/app@sha256:{}", "5".repeat(64)),
                "containerID": format!("containerd://{id}"),
                "state": {"running": {"startedAt": "2026-12-02T08:00:01Z"}}
            }]
        }
    })
}

/// A PodList of `items`, checked against the Kubernetes schema first.
fn pod_list(items: Vec<serde_json::Value>) -> String {
    let list = json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items});
    let text = serde_json::to_string_pretty(&list).expect("json");
    validate_pod_list(&text);
    text
}

/// The labels of the `ergon_cgroup_energy_joules_total` series of `rel`.
fn labels_of(d: &Daemon, rel: &str) -> Option<BTreeMap<String, String>> {
    let prefix = format!("ergon_cgroup_energy_joules_total{{cgroup=\"{rel}\",");
    let m = d.metrics();
    let key = m.keys().find(|k| k.starts_with(&prefix))?;
    let inner = key.split_once('{')?.1.trim_end_matches('}');
    Some(
        tests::prom::label_pairs(inner)
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}

fn names(l: &BTreeMap<String, String>) -> (String, String, String) {
    let get = |k: &str| l.get(k).cloned().unwrap_or_default();
    (get("container"), get("pod"), get("namespace"))
}

/// Waits up to `within` for `ok` on the labels of `rel`.
fn wait_labels(
    d: &Daemon,
    rel: &str,
    within: Duration,
    ok: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, String> {
    let deadline = Instant::now() + within;
    loop {
        let l = labels_of(d, rel);
        if let Some(l) = l.as_ref().filter(|l| ok(l)) {
            return l.clone();
        }
        assert!(Instant::now() < deadline, "{rel}: labels now {l:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn kubelet_args(k: &FakeKubelet) -> Vec<String> {
    [
        "--source",
        "synthetic",
        "--synthetic-watts",
        "10",
        "--kubelet-url",
        &k.url,
        "--kubelet-ca-file",
        &k.ca_file.display().to_string(),
        "--kubelet-token-file",
        &k.token_file.display().to_string(),
        "--node-name",
        "node-a",
        "--runtime-socket",
        "none",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn errors(d: &Daemon, source: &str) -> f64 {
    d.metrics()
        .get(&format!(
            "ergon_metadata_errors_total{{source=\"{source}\"}}"
        ))
        .copied()
        .unwrap_or(f64::NAN)
}

#[test]
fn the_fixture_pod_list_is_a_valid_kubernetes_pod_list() {
    let text = std::fs::read_to_string(tests::repo_root().join("testdata/kubelet/pods.json"))
        .expect("testdata/kubelet/pods.json");
    validate_pod_list(&text);
}

#[test]
fn kubelet_names_label_pod_cgroups_and_a_late_pod_is_named_at_the_next_refresh() {
    require_root();
    let (web_uid, web_id) = (uid(1), container_id(1));
    let (late_uid, late_id) = (uid(2), container_id(2));
    let web = Cgroup::at(&container_cgroup(&web_uid, &web_id));
    let dir = tempfile::tempdir().expect("tempdir");
    let k = FakeKubelet::start(
        dir.path(),
        Answer::Pods(pod_list(vec![pod(
            "web-5f7c9",
            "shop",
            &web_uid,
            "nginx",
            &web_id,
        )])),
    );
    let args = kubelet_args(&k);
    let d = Daemon::start(&args.iter().map(String::as_str).collect::<Vec<_>>());

    web.burns_within_2_percent(&d, BURN, W, "named container");
    let l = wait_labels(&d, &web.rel, Duration::from_secs(5), |l| {
        !names(l).0.is_empty()
    });
    assert_eq!(
        names(&l),
        ("nginx".into(), "web-5f7c9".into(), "shop".into()),
        "{l:?}"
    );
    assert_eq!(l.get("pod_uid"), Some(&web_uid));
    assert_eq!(l.get("container_id"), Some(&web_id));

    // A pod whose cgroup exists before the kubelet lists it: unnamed (not
    // guessed), and the unknown UID makes Ergon ask again at once.
    let asked = k.requests();
    let late = Cgroup::at(&container_cgroup(&late_uid, &late_id));
    let mut burn = late.burn(BURN, 1.0, 0.5);
    assert!(burn.wait().expect("wait").success());
    let unnamed = wait_labels(&d, &late.rel, Duration::from_secs(5), |_| true);
    assert_eq!(names(&unnamed), Default::default(), "{unnamed:?}");
    assert_eq!(unnamed.get("pod_uid"), Some(&late_uid));
    let deadline = Instant::now() + Duration::from_secs(5);
    while k.requests() == asked {
        assert!(
            Instant::now() < deadline,
            "no refresh on an unknown pod UID"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The kubelet lists it now: named by the next refresh (at most 15 s).
    k.set(Answer::Pods(pod_list(vec![
        pod("web-5f7c9", "shop", &web_uid, "nginx", &web_id),
        pod("report-29fd1", "batch", &late_uid, "report", &late_id),
    ])));
    let listed = Instant::now();
    let named = wait_labels(&d, &late.rel, Duration::from_secs(20), |l| {
        !names(l).1.is_empty()
    });
    println!(
        "late pod named {:.1} s after the kubelet listed it",
        listed.elapsed().as_secs_f64()
    );
    assert_eq!(
        names(&named),
        ("report".into(), "report-29fd1".into(), "batch".into())
    );
    // The first container kept its names; nothing failed.
    assert_eq!(
        names(&labels_of(&d, &web.rel).expect("web")),
        ("nginx".into(), "web-5f7c9".into(), "shop".into())
    );
    assert_eq!(errors(&d, "kubelet"), 0.0);
    assert_eq!(k.bad_tokens(), 0, "every request carried the token");
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    // `ergon check` asks the kubelet once, as `run` does.
    let out = Command::new(tests::ergon_bin())
        .arg("check")
        .args(&args)
        .output()
        .expect("ergon check");
    let report = String::from_utf8_lossy(&out.stdout);
    let line = tests::check_line(&report, "kubelet");
    assert!(
        line.starts_with("ok") && line.contains("2 pods, 2 containers named"),
        "{report}"
    );
    assert!(
        tests::check_line(&report, "runtime").contains("--runtime-socket none"),
        "{report}"
    );
}

#[test]
fn a_kubelet_that_refuses_the_token_counts_errors_and_names_nothing() {
    require_root();
    let (pod_uid, id) = (uid(3), container_id(3));
    let cg = Cgroup::at(&container_cgroup(&pod_uid, &id));
    let dir = tempfile::tempdir().expect("tempdir");
    let k = FakeKubelet::start(dir.path(), Answer::Status(401));
    let args = kubelet_args(&k);
    let d = Daemon::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // The drain goes on: energy as ever, labels empty.
    cg.burns_within_2_percent(&d, BURN, W, "refused kubelet");
    let l = labels_of(&d, &cg.rel).expect("series");
    assert_eq!(names(&l), Default::default(), "{l:?}");
    assert_eq!(l.get("pod_uid"), Some(&pod_uid));
    let n = errors(&d, "kubelet");
    assert!(n >= 1.0, "errors counted: {n}");
    let (_, log) = d.stop();
    let warns = log.matches("cannot refresh names").count();
    assert_eq!(warns, 1, "one log line for a failure that goes on:\n{log}");
    assert!(
        log.contains("HTTP 401") && log.contains("nodes/pods") && log.contains("nodes/proxy"),
        "{log}"
    );
}

#[test]
fn a_kubelet_that_hangs_times_out_and_blocks_nothing() {
    require_root();
    let (pod_uid, id) = (uid(4), container_id(4));
    let cg = Cgroup::at(&container_cgroup(&pod_uid, &id));
    let dir = tempfile::tempdir().expect("tempdir");
    let k = FakeKubelet::start(dir.path(), Answer::Hang);
    let args = kubelet_args(&k);
    let started = Instant::now();
    let d = Daemon::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // Scrapes and the drain go on while the request hangs.
    cg.burns_within_2_percent(&d, BURN, W, "hanging kubelet");
    assert_eq!(errors(&d, "kubelet"), 0.0, "not yet timed out");
    assert!(k.requests() >= 1);
    let deadline = started + Duration::from_secs(12);
    while errors(&d, "kubelet") < 1.0 {
        assert!(Instant::now() < deadline, "no timeout counted");
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "timeout counted {:.1} s after start",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        names(&labels_of(&d, &cg.rel).expect("series")),
        Default::default()
    );
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("did not answer within 5 s"), "{log}");
}

/// `podman system service` on a socket of its own, stopped by PID on drop.
struct PodmanService {
    child: Child,
    socket: std::path::PathBuf,
    podman: Podman,
}

impl PodmanService {
    fn start() -> PodmanService {
        let podman = Podman::new();
        let socket = podman.dir().join("podman.sock");
        let child = podman
            .command()
            .args(["system", "service", "--time", "0"])
            .arg(format!("unix://{}", socket.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("podman system service");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "podman's socket did not appear");
            std::thread::sleep(Duration::from_millis(100));
        }
        PodmanService {
            child,
            socket,
            podman,
        }
    }

    fn podman(&self) -> Command {
        self.podman.command()
    }
}

impl Drop for PodmanService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A detached container of the image running `burn` (mounted in), removed
/// on drop.
struct Named<'a> {
    name: String,
    id: String,
    service: &'a PodmanService,
}

impl<'a> Named<'a> {
    fn run(service: &'a PodmanService, name: &str, burn_args: &[&str]) -> Named<'a> {
        let image = image();
        let name = format!("{name}-{}", std::process::id());
        let out = service
            .podman()
            .args(["run", "-d", "--name", &name, "--runtime", "runc"])
            .args(["--network", "none", "--read-only"])
            .arg("-v")
            .arg(format!("{BURN}:/burn:ro"))
            .args(["--entrypoint", "/burn", &image])
            .args(burn_args)
            .output()
            .expect("podman run");
        assert!(
            out.status.success(),
            "podman run {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert_eq!(id.len(), 64, "container id {id}");
        Named { name, id, service }
    }

    /// The container's cgroup as Ergon labels it, from /proc of its process.
    fn cgroup(&self) -> String {
        let out = self
            .service
            .podman()
            .args(["inspect", "--format", "{{.State.Pid}}", &self.id])
            .output()
            .expect("podman inspect");
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup of pid");
        text.lines()
            .find_map(|l| l.strip_prefix("0::"))
            .expect("a cgroup2 line")
            .to_owned()
    }
}

impl Drop for Named<'_> {
    fn drop(&mut self) {
        let _ = self
            .service
            .podman()
            .args(["rm", "-f", "-t", "0", &self.id])
            .output();
    }
}

#[test]
fn two_named_podman_containers_carry_their_names_and_the_busy_one_its_energy() {
    require_root();
    let service = PodmanService::start();
    let socket = service.socket.display().to_string();
    let d = Daemon::start(&[
        "--source",
        "synthetic",
        "--synthetic-watts",
        "10",
        "--runtime-socket",
        &socket,
    ]);
    // Both idle at first (burn at 0% duty), so each one's whole life is
    // seen by the daemon; the busy one then burns through `podman exec`.
    let busy = Named::run(&service, "ergon-busy", &["300", "0"]);
    let idle = Named::run(&service, "ergon-idle", &["300", "0"]);
    let (busy_cg, idle_cg) = (busy.cgroup(), idle.cgroup());
    assert!(busy_cg.contains(&busy.id), "{busy_cg}");
    let steal0 = tests::steal_seconds();
    let out = service
        .podman()
        .args(["exec", &busy.id, "/burn", "2", "1"])
        .output()
        .expect("podman exec");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for (c, rel) in [(&busy, &busy_cg), (&idle, &idle_cg)] {
        let l = wait_labels(&d, rel, Duration::from_secs(20), |l| !names(l).0.is_empty());
        assert_eq!(l.get("container"), Some(&c.name), "{l:?}");
        assert_eq!(l.get("runtime").map(String::as_str), Some("podman"));
        assert_eq!(l.get("container_id"), Some(&c.id));
        assert_eq!((names(&l).1, names(&l).2), (String::new(), String::new()));
    }
    let (m, _) = d.metrics_complete_at(std::time::SystemTime::now());
    let stolen = tests::steal_seconds() - steal0;
    assert!(tests::sum_of(&m, "ergon_package_energy_joules_total") > 0.0);
    let (busy_cgroup, idle_cgroup) = (Cgroup::existing(&busy_cg), Cgroup::existing(&idle_cg));
    let truth = W * busy_cgroup.usage_seconds();
    let got = busy_cgroup.joules(&d);
    let idle_j = idle_cgroup.joules(&d);
    println!(
        "{}: {got:.4} J vs W × cpu.stat {truth:.4} J (steal {stolen:.3} s); {}: {idle_j:.4} J",
        busy.name, idle.name
    );
    assert!(truth > 15.0, "the busy container ran: {truth} J");
    tests::assert_attributed(&busy.name, got, truth, 0.02, W, stolen);
    assert!(idle_j < got / 20.0, "idle {idle_j} J vs busy {got} J");
    assert_eq!(errors(&d, "runtime"), 0.0);
    drop((busy, idle));
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
}
