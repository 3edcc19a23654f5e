use std::{sync::Arc, time::Instant};

use super::*;
use crate::{cgroups::Registry, testdata::fixture};

const WEB: &str = "0f6a2c3e-8b1d-4e5f-9a7b-1c2d3e4f5a6b";
const NGINX: &str = "cccc000000000000000000000000000000000000000000000000000000000003";

fn pods() -> Vec<u8> {
    std::fs::read(fixture("kubelet/pods.json")).expect("testdata/kubelet/pods.json")
}

#[test]
fn a_pod_list_names_pods_by_uid_and_containers_by_id() {
    let c = kubelet::parse(&pods(), Some("node-a")).expect("parse");
    assert_eq!(
        c.pods.get(WEB),
        Some(&PodNames {
            name: "web-7d4b9c8f6-x2k9q".into(),
            namespace: "shop".into()
        })
    );
    assert_eq!(c.containers.get(NGINX).map(String::as_str), Some("nginx"));
    // Init containers, other runtimes' schemes, static pods' 32-hex UIDs.
    assert_eq!(
        c.containers
            .get("aaaa000000000000000000000000000000000000000000000000000000000001")
            .map(String::as_str),
        Some("migrate")
    );
    assert_eq!(
        c.containers
            .get("dddd000000000000000000000000000000000000000000000000000000000004")
            .map(String::as_str),
        Some("etcd")
    );
    assert_eq!(
        c.pods
            .get("5c9e2f1a7b3d4e6f8a0b1c2d3e4f5a6b")
            .map(|p| p.namespace.as_str()),
        Some("kube-system")
    );
    // A container without an id yet names nothing; the pod is known.
    assert!(c.pods.contains_key("9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"));
    assert_eq!(c.containers.len(), 4, "{:?}", c.containers);
    // Another node's pod is left out.
    assert!(!c.pods.contains_key("1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"));
}

#[test]
fn without_a_node_name_every_listed_pod_is_named() {
    let c = kubelet::parse(&pods(), None).expect("parse");
    assert!(c.pods.contains_key("1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"));
    assert_eq!(c.pods.len(), 4);
}

#[test]
fn what_is_not_a_pod_list_is_refused() {
    assert!(
        kubelet::parse(br#"{"kind":"Status","status":"Failure"}"#, None)
            .unwrap_err()
            .contains("Status")
    );
    assert!(kubelet::parse(b"<html>", None).is_err());
    assert!(kubelet::parse(br#"{"kind":"PodList","items":[]}"#, None)
        .expect("empty list")
        .pods
        .is_empty());
}

#[test]
fn a_docker_list_names_containers_and_prefers_the_cri_labels() {
    let body = format!(
        r#"[
        {{"Id":"{NGINX}","Names":["/k8s_nginx_web_shop_{WEB}_1"],"Labels":{{
            "io.kubernetes.container.name":"nginx","io.kubernetes.pod.name":"web",
            "io.kubernetes.pod.namespace":"shop","io.kubernetes.pod.uid":"{WEB}"}}}},
        {{"Id":"{}","Names":["/ergon-busy"],"Labels":null}},
        {{"Id":"not-an-id","Names":["/x"]}}
    ]"#,
        "f".repeat(64)
    );
    let c = runtime::parse(body.as_bytes()).expect("parse");
    assert_eq!(c.containers.get(NGINX).map(String::as_str), Some("nginx"));
    assert_eq!(
        c.containers.get(&"f".repeat(64)).map(String::as_str),
        Some("ergon-busy")
    );
    assert_eq!(c.containers.len(), 2);
    assert_eq!(c.pods.get(WEB).map(|p| p.name.as_str()), Some("web"));
}

#[test]
fn the_kubelet_is_asked_first_then_the_runtime() {
    let d = Directory::new(&Source::ALL);
    let g0 = d.generation();
    let mut rt = Catalog::default();
    rt.containers
        .insert(NGINX.into(), "k8s_nginx_generated".into());
    d.publish(Source::Runtime, rt);
    assert_eq!(d.lookup("", NGINX).container, "k8s_nginx_generated");
    d.publish(
        Source::Kubelet,
        kubelet::parse(&pods(), Some("node-a")).expect("parse"),
    );
    let n = d.lookup(WEB, NGINX);
    assert_eq!(
        n,
        Names {
            container: "nginx".into(),
            pod: "web-7d4b9c8f6-x2k9q".into(),
            namespace: "shop".into()
        }
    );
    assert!(d.generation() > g0);
    // Publishing the same again changes nothing.
    let g = d.generation();
    d.publish(
        Source::Kubelet,
        kubelet::parse(&pods(), Some("node-a")).expect("parse"),
    );
    assert_eq!(d.generation(), g);
    assert_eq!(d.lookup("unknown", "").pod, "");
}

#[test]
fn errors_are_counted_per_enabled_source_only() {
    let d = Directory::new(&[Source::Kubelet]);
    d.count_error(Source::Kubelet);
    d.count_error(Source::Kubelet);
    assert_eq!(d.errors(), vec![("kubelet", 2)]);
}

#[test]
fn a_failing_source_logs_once_then_on_change_or_every_five_minutes() {
    let mut log = FailureLog::default();
    let t = Instant::now();
    assert!(log.should_log("401", t));
    assert!(!log.should_log("401", t + Duration::from_secs(60)));
    assert!(log.should_log("timeout", t + Duration::from_secs(61)));
    assert!(!log.should_log("timeout", t + Duration::from_secs(300)));
    assert!(log.should_log("timeout", t + Duration::from_secs(361)));
    assert!(log.recovered());
    assert!(!log.recovered());
}

/// A cgroup tree shaped as a kubelet with containerd makes it.
fn pod_tree() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rel = format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{NGINX}.scope",
        WEB.replace('-', "_")
    );
    std::fs::create_dir_all(dir.path().join(&rel)).expect("mkdir");
    std::fs::write(dir.path().join("cgroup.controllers"), "cpu\n").expect("controllers");
    (dir, format!("/{rel}"))
}

fn id_of(dir: &tempfile::TempDir, rel: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir.path().join(rel.trim_start_matches('/')))
        .expect("stat")
        .ino()
}

#[test]
fn a_cgroup_is_named_once_its_pod_is_known_and_keeps_its_names() {
    let (tree, rel) = pod_tree();
    let id = id_of(&tree, &rel);
    let d = Arc::new(Directory::new(&[Source::Kubelet]));
    let mut r = Registry::new(
        Some(tree.path().to_path_buf()),
        Duration::from_secs(600),
        100,
    )
    .with_names(d.clone());
    let now = Instant::now();
    r.prepare([id], now, 0);
    let l = r.known_labels(id);
    assert_eq!(l.cgroup, rel);
    assert_eq!(l.pod_uid, WEB);
    // Unknown yet: empty, never guessed.
    assert_eq!((l.container.as_str(), l.pod.as_str()), ("", ""));

    d.publish(
        Source::Kubelet,
        kubelet::parse(&pods(), Some("node-a")).expect("parse"),
    );
    r.prepare([id], now, 0);
    let named = r.known_labels(id);
    assert_eq!(named.container, "nginx");
    assert_eq!(named.pod, "web-7d4b9c8f6-x2k9q");
    assert_eq!(named.namespace, "shop");
    assert_eq!(named.cgroup, l.cgroup);

    // The pod leaves the kubelet's list: its series keeps its names.
    d.publish(Source::Kubelet, Catalog::default());
    r.prepare([id], now, 0);
    assert!(Arc::ptr_eq(&r.known_labels(id), &named));
}

#[test]
fn without_a_directory_no_names_are_looked_up() {
    let (tree, rel) = pod_tree();
    let id = id_of(&tree, &rel);
    let mut r = Registry::new(
        Some(tree.path().to_path_buf()),
        Duration::from_secs(600),
        100,
    );
    r.prepare([id], Instant::now(), 0);
    let l = r.known_labels(id);
    assert_eq!(l.pod_uid, WEB);
    assert_eq!(l.pod, "");
}
