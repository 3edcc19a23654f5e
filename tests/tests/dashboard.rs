//! The Grafana dashboard (`deploy/grafana/ergon.json`) against a real
//! Prometheus 2.42 that has scraped Ergon's `/metrics` (job `ergon`) and
//! `/metrics/batch` (job `ergon-batch`) and received its remote_write for
//! 30 s: every panel's query, with the dashboard's variables substituted,
//! parses and returns data. Cgroups shaped as a systemd unit, a docker
//! container and a Kubernetes pod's container burn CPU meanwhile, the pod
//! named by a test kubelet ([`tests::kubelet::FakeKubelet`]), so the
//! per-unit, per-container, per-pod and per-namespace panels have
//! something to show.

use std::time::Duration;

use tests::{
    cgroup::Cgroup,
    kubelet::{Answer, FakeKubelet},
    prom::{Job, Options, Prometheus},
    require_root, Daemon,
};

/// Every `expr` of every panel, with its panel's title.
fn queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        let title = p["title"].as_str().unwrap_or("?").to_owned();
        for t in p["targets"].as_array().expect("targets") {
            out.push((title.clone(), t["expr"].as_str().expect("expr").to_owned()));
        }
    }
    out
}

/// Grafana's substitutions for one instant query: the dashboard's own
/// variables (their defaults) and `$__rate_interval` (4 × the 2 s scrape).
fn substitute(expr: &str) -> String {
    expr.replace("$batch_job", "ergon-batch")
        .replace("$job", "ergon")
        .replace("$instance", ".*")
        .replace("$__rate_interval", "8s")
}

#[test]
fn every_dashboard_query_parses_and_returns_data_from_a_real_prometheus() {
    require_root();
    let path = tests::repo_root().join("deploy/grafana/ergon.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("JSON");
    let qs = queries(&dashboard);
    assert!(qs.len() >= 10, "{qs:?}");
    // Start the receiver first (for remote_write), then the daemon, then a
    // Prometheus that scrapes it; one Prometheus can do both but needs the
    // daemon's address in its config.
    let pid = std::process::id();
    let id = format!("{:064x}", pid);
    let unit = Cgroup::at(&format!("/ergon-dash-{pid}.slice/ergon-dash-{pid}.service"));
    let container = Cgroup::at(&format!("/ergon-dash-{pid}.slice/docker-{id}.scope"));
    let pod_uid = format!("{pid:08x}-0000-4000-8000-000000000000");
    let pod_container = format!("{pid:063x}f");
    let pod = Cgroup::at(&format!(
        "/kubepods.slice/kubepods-pod{}.slice/cri-containerd-{pod_container}.scope",
        pod_uid.replace('-', "_")
    ));
    let pods = serde_json::json!({
        "kind": "PodList", "apiVersion": "v1", "metadata": {},
        "items": [{
            "metadata": {"name": "dash-0", "namespace": "energy", "uid": pod_uid},
            "spec": {"containers": [{"name": "app", "image": "registry.example/app:1.0"}]},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "app", "ready": true, "restartCount": 0,
                "image": "registry.example/app:1.0", "imageID": "",
                "containerID": format!("containerd://{pod_container}")
            }]}
        }]
    })
    .to_string();
    tests::kubelet::validate_pod_list(&pods);
    let names = tempfile::tempdir().expect("tempdir");
    let kubelet = FakeKubelet::start(names.path(), Answer::Pods(pods));
    let receiver = Prometheus::start_with(
        &[],
        &Options {
            remote_write_receiver: true,
            basic_auth: None,
        },
    );
    let state = tempfile::tempdir().expect("tempdir");
    let url = format!("http://{}/api/v1/write", receiver.addr);
    let d = Daemon::start(&[
        "--source",
        "synthetic",
        // The BPF panel reads the kernel's run-time statistics, served only with this flag.
        "--bpf-stats",
        "--remote-write-url",
        &url,
        "--push-interval",
        "2s",
        "--state-dir",
        &state.path().display().to_string(),
        "--kubelet-url",
        &kubelet.url,
        "--kubelet-ca-file",
        &kubelet.ca_file.display().to_string(),
        "--kubelet-token-file",
        &kubelet.token_file.display().to_string(),
    ]);
    let p = Prometheus::start(&[
        Job {
            name: "ergon",
            target: &d.addr,
            path: "/metrics",
            consumer: None,
            interval: "2s",
        },
        Job {
            name: "ergon-batch",
            target: &d.addr,
            path: "/metrics/batch",
            consumer: Some("dashboard"),
            interval: "2s",
        },
    ]);
    let burn = env!("CARGO_BIN_EXE_burn");
    let mut burners: Vec<_> = [&unit, &container, &pod]
        .iter()
        .map(|cg| cg.burn(burn, 30.0, 0.3))
        .collect();
    std::thread::sleep(Duration::from_secs(30));
    let mut empty = Vec::new();
    for (title, expr) in &qs {
        let q = substitute(expr);
        assert!(!q.contains('$'), "a variable left in {title}: {q}");
        let body = p.raw_query(&q);
        let v: serde_json::Value = serde_json::from_str(&body).expect("query JSON");
        assert_eq!(v["status"], "success", "{title}: {q}: {body}");
        let n = v["data"]["result"].as_array().map_or(0, Vec::len);
        println!("{n:>3} series  {title}: {q}");
        if n == 0 {
            empty.push(format!("{title}: {q}"));
        }
    }
    for b in &mut burners {
        let _ = b.wait();
    }
    assert!(empty.is_empty(), "queries without data: {empty:#?}");
    drop(p);
    drop(receiver);
}
