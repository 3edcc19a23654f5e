use super::*;
use proptest::prelude::*;

const ID: &str = "4f9c1b7e2d3a5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";
const ID2: &str = "0b1e3c5d7f9a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c";
const UID: &str = "0f6a2c3e-5b7d-4e9f-8a1b-2c3d4e5f6a7b";
const UID_US: &str = "0f6a2c3e_5b7d_4e9f_8a1b_2c3d4e5f6a7b";

fn id(unit: &str, runtime: &str, container_id: &str, pod_uid: &str, qos: &str) -> Identity {
    Identity {
        unit: unit.into(),
        runtime: runtime.into(),
        container_id: container_id.into(),
        pod_uid: pod_uid.into(),
        qos_class: qos.into(),
    }
}

// ---- fixtures -------------------------------------------------------------

/// Checks every row of a `paths.txt` fixture, reporting all mismatches at once.
fn check_fixture(text: &str, name: &str) {
    let mut rows = 0;
    let mut failures = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        assert!(
            f.len() <= 6,
            "{name}:{}: more than 6 tab-separated fields",
            n + 1
        );
        let field = |i: usize| f.get(i).copied().unwrap_or("");
        let want = id(field(1), field(2), field(3), field(4), field(5));
        let got = identify(field(0));
        if got != want {
            failures.push(format!(
                "{name}:{}: {}\n   want {want:?}\n    got {got:?}",
                n + 1,
                field(0)
            ));
        }
        rows += 1;
    }
    assert!(rows >= 10, "{name}: only {rows} rows");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn fixture_cgroup_v2_systemd() {
    check_fixture(
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/cgroup-v2-systemd/paths.txt"
        )),
        "cgroup-v2-systemd",
    );
}

#[test]
fn fixture_cgroup_v2_cgroupfs() {
    check_fixture(
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/cgroup-v2-cgroupfs/paths.txt"
        )),
        "cgroup-v2-cgroupfs",
    );
}

#[test]
fn fixture_cgroup_hybrid() {
    check_fixture(
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/cgroup-hybrid/paths.txt"
        )),
        "cgroup-hybrid",
    );
}

// ---- plain systemd --------------------------------------------------------

#[test]
fn root_is_empty() {
    assert_eq!(identify("/"), Identity::default());
}

#[test]
fn plain_systemd_units() {
    assert_eq!(identify("/init.scope"), id("init.scope", "", "", "", ""));
    assert_eq!(
        identify("/system.slice/nginx.service"),
        id("nginx.service", "", "", "", "")
    );
    assert_eq!(
        identify("/user.slice/user-1000.slice/session-2.scope"),
        id("session-2.scope", "", "", "", "")
    );
}

#[test]
fn every_unit_suffix_is_a_unit() {
    for suffix in UNIT_SUFFIXES {
        let name = format!("x{suffix}");
        assert_eq!(identify(&format!("/system.slice/{name}")).unit, name);
    }
}

#[test]
fn non_units_are_not_units() {
    // Suffix alone, unknown suffix, characters systemd does not allow.
    assert_eq!(identify("/.service").unit, "");
    assert_eq!(identify("/system.slice/foo.target").unit, "system.slice");
    assert_eq!(
        identify("/system.slice/foo bar.service").unit,
        "system.slice"
    );
    assert_eq!(
        identify("/system.slice/a\u{0}.service").unit,
        "system.slice"
    );
    assert_eq!(identify("/system.slice/container").unit, "system.slice");
}

// ---- docker ---------------------------------------------------------------

#[test]
fn docker_systemd_driver() {
    let unit = format!("docker-{ID}.scope");
    assert_eq!(
        identify(&format!("/system.slice/{unit}")),
        id(&unit, "docker", ID, "", "")
    );
}

#[test]
fn docker_cgroupfs_driver() {
    assert_eq!(
        identify(&format!("/docker/{ID}")),
        id("", "docker", ID, "", "")
    );
    assert_eq!(identify("/docker"), Identity::default());
}

#[test]
fn systemd_inside_container_keeps_container() {
    assert_eq!(
        identify(&format!("/system.slice/docker-{ID}.scope/init.scope")),
        id("init.scope", "docker", ID, "", "")
    );
}

// ---- containerd -----------------------------------------------------------

#[test]
fn containerd_systemd_driver() {
    let unit = format!("cri-containerd-{ID}.scope");
    let path = format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice/{unit}"
    );
    assert_eq!(
        identify(&path),
        id(&unit, "containerd", ID, UID, "burstable")
    );
}

#[test]
fn containerd_cgroupfs_bare_id_under_pod() {
    assert_eq!(
        identify(&format!("/kubepods/burstable/pod{UID}/{ID}")),
        id("", "containerd", ID, UID, "burstable")
    );
}

#[test]
fn bare_id_outside_a_pod_is_not_a_container() {
    assert_eq!(identify(&format!("/{ID}")), Identity::default());
    assert_eq!(
        identify(&format!("/kubepods/burstable/{ID}")),
        Identity::default()
    );
    assert_eq!(
        identify(&format!("/elsewhere/pod{UID}/{ID}")),
        Identity::default()
    );
}

// ---- cri-o ----------------------------------------------------------------

#[test]
fn crio_both_drivers() {
    let unit = format!("crio-{ID}.scope");
    assert_eq!(
        identify(&format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_US}.slice/{unit}"
        )),
        id(&unit, "cri-o", ID, UID, "besteffort")
    );
    assert_eq!(
        identify(&format!("/kubepods/besteffort/pod{UID}/crio-{ID}")),
        id("", "cri-o", ID, UID, "besteffort")
    );
}

#[test]
fn crio_conmon_is_not_a_container() {
    let unit = format!("crio-conmon-{ID}.scope");
    assert_eq!(
        identify(&format!(
            "/kubepods.slice/kubepods-pod{UID_US}.slice/{unit}"
        )),
        id(&unit, "", "", UID, "guaranteed")
    );
    assert_eq!(
        identify(&format!("/kubepods/pod{UID}/crio-conmon-{ID}")),
        id("", "", "", UID, "guaranteed")
    );
}

// ---- podman ---------------------------------------------------------------

#[test]
fn podman_systemd_machine_and_user_slices() {
    let unit = format!("libpod-{ID}.scope");
    assert_eq!(
        identify(&format!("/machine.slice/{unit}")),
        id(&unit, "podman", ID, "", "")
    );
    assert_eq!(
        identify(&format!(
            "/user.slice/user-1000.slice/user@1000.service/user.slice/{unit}"
        )),
        id(&unit, "podman", ID, "", "")
    );
    assert_eq!(
        identify(&format!("/machine.slice/{unit}/container")),
        id(&unit, "podman", ID, "", "")
    );
}

#[test]
fn podman_cgroupfs() {
    assert_eq!(
        identify(&format!("/libpod_parent/libpod-{ID}")),
        id("", "podman", ID, "", "")
    );
}

#[test]
fn libpod_conmon_is_not_a_container() {
    let unit = format!("libpod-conmon-{ID}.scope");
    assert_eq!(
        identify(&format!("/machine.slice/{unit}")),
        id(&unit, "", "", "", "")
    );
    assert_eq!(
        identify(&format!("/libpod_parent/libpod-conmon-{ID}")),
        Identity::default()
    );
}

// ---- kubernetes -----------------------------------------------------------

#[test]
fn qos_classes_systemd_driver() {
    for (qos, prefix) in [
        ("burstable", "kubepods-burstable.slice/kubepods-burstable-"),
        (
            "besteffort",
            "kubepods-besteffort.slice/kubepods-besteffort-",
        ),
        ("guaranteed", "kubepods-"),
    ] {
        let got = identify(&format!(
            "/kubepods.slice/{prefix}pod{UID_US}.slice/cri-containerd-{ID}.scope"
        ));
        assert_eq!(got.qos_class, qos);
        assert_eq!(got.pod_uid, UID);
        assert_eq!(got.container_id, ID);
    }
}

#[test]
fn qos_classes_cgroupfs_driver() {
    for (qos, dir) in [
        ("burstable", "/kubepods/burstable"),
        ("besteffort", "/kubepods/besteffort"),
        ("guaranteed", "/kubepods"),
    ] {
        assert_eq!(
            identify(&format!("{dir}/pod{UID}/{ID}")),
            id("", "containerd", ID, UID, qos)
        );
    }
}

#[test]
fn pod_cgroup_without_container() {
    let unit = format!("kubepods-burstable-pod{UID_US}.slice");
    assert_eq!(
        identify(&format!("/kubepods.slice/kubepods-burstable.slice/{unit}")),
        id(&unit, "", "", UID, "burstable")
    );
    assert_eq!(
        identify(&format!("/kubepods/pod{UID}")),
        id("", "", "", UID, "guaranteed")
    );
}

#[test]
fn qos_and_root_cgroups_are_not_pods() {
    assert_eq!(
        identify("/kubepods.slice/kubepods-burstable.slice"),
        id("kubepods-burstable.slice", "", "", "", "")
    );
    assert_eq!(identify("/kubepods/besteffort"), Identity::default());
}

#[test]
fn kubepods_under_a_prefix() {
    let unit = format!("cri-containerd-{ID}.scope");
    assert_eq!(
        identify(&format!(
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod{UID_US}.slice/{unit}"
        )),
        id(&unit, "containerd", ID, UID, "burstable")
    );
    assert_eq!(
        identify(&format!("/kubelet/kubepods/besteffort/pod{UID}/{ID}")),
        id("", "containerd", ID, UID, "besteffort")
    );
}

#[test]
fn static_pod_uid_is_32_hex() {
    let uid = "5d41402abc4b2a76b9719d911017c592";
    assert_eq!(
        identify(&format!("/kubepods/burstable/pod{uid}/{ID}")),
        id("", "containerd", ID, uid, "burstable")
    );
}

#[test]
fn nested_pod_discards_outer_container() {
    // kind / k3d: a Kubernetes node running inside a docker container.
    assert_eq!(
        identify(&format!(
            "/system.slice/docker-{ID2}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod{UID_US}.slice/cri-containerd-{ID}.scope"
        )),
        id(
            &format!("cri-containerd-{ID}.scope"),
            "containerd",
            ID,
            UID,
            "guaranteed"
        )
    );
    assert_eq!(
        identify(&format!("/docker/{ID2}/kubepods/pod{UID}")),
        id("", "", "", UID, "guaranteed")
    );
    assert_eq!(
        identify(&format!("/docker/{ID2}/kubepods")),
        id("", "docker", ID2, "", "")
    );
}

#[test]
fn invalid_pod_uids_are_ignored() {
    for bad in [
        "notauid",
        "0F6A2C3E_5B7D_4E9F_8A1B_2C3D4E5F6A7B",
        "0f6a2c3e_5b7d_4e9f_8a1b_2c3d4e5f6a7",
        "0f6a2c3e5b7d_4e9f_8a1b__2c3d4e5f6a7b",
        "",
    ] {
        let unit = format!("kubepods-burstable-pod{bad}.slice");
        assert_eq!(
            identify(&format!(
                "/kubepods.slice/kubepods-burstable.slice/{unit}/cri-containerd-{ID}.scope"
            )),
            id(
                &format!("cri-containerd-{ID}.scope"),
                "containerd",
                ID,
                "",
                ""
            ),
            "{bad}"
        );
    }
}

// ---- container id validation ----------------------------------------------

#[test]
fn container_id_must_be_64_lowercase_hex() {
    let upper = ID.to_uppercase();
    let bad_ids = [
        &ID[..63],
        &format!("{ID}0"),
        &upper,
        &format!("{}g", &ID[..63]),
        "",
    ];
    for bad in bad_ids {
        for (path, unit) in [
            (
                format!("/system.slice/docker-{bad}.scope"),
                format!("docker-{bad}.scope"),
            ),
            (
                format!("/machine.slice/libpod-{bad}.scope"),
                format!("libpod-{bad}.scope"),
            ),
            (
                format!("/x.slice/crio-{bad}.scope"),
                format!("crio-{bad}.scope"),
            ),
            (
                format!("/x.slice/cri-containerd-{bad}.scope"),
                format!("cri-containerd-{bad}.scope"),
            ),
            (format!("/docker/{bad}"), String::new()),
            (format!("/kubepods/pod{UID}/{bad}"), String::new()),
        ] {
            let got = identify(&path);
            assert_eq!(got.unit, unit, "{path}");
            assert_eq!(got.runtime, "", "{path}");
            assert_eq!(got.container_id, "", "{path}");
        }
    }
}

// ---- malformed paths ------------------------------------------------------

#[test]
fn malformed_paths() {
    assert_eq!(identify(""), Identity::default());
    assert_eq!(identify("//"), Identity::default());
    // Missing leading slash, doubled and trailing slashes are tolerated.
    assert_eq!(
        identify(&format!("system.slice/docker-{ID}.scope")),
        id(&format!("docker-{ID}.scope"), "docker", ID, "", "")
    );
    assert_eq!(
        identify(&format!("//docker//{ID}/")),
        id("", "docker", ID, "", "")
    );
    // `.`/`..` components do not name a cgroup directly.
    assert_eq!(
        identify(&format!("/system.slice/../docker-{ID}.scope")),
        Identity::default()
    );
    assert_eq!(
        identify("/system.slice/./nginx.service"),
        Identity::default()
    );
    // Junk characters.
    assert_eq!(identify("\u{0}"), Identity::default());
    assert_eq!(identify("/\u{0}/\u{fffd}.scope"), Identity::default());
    assert_eq!(identify(&format!("/docker/{ID}\u{0}")), Identity::default());
}

#[test]
fn very_long_path() {
    let mut path = "/a.slice".repeat(10_000);
    path.push_str(&format!("/docker-{ID}.scope"));
    assert_eq!(
        identify(&path),
        id(&format!("docker-{ID}.scope"), "docker", ID, "", "")
    );
    assert_eq!(identify(&"/".repeat(100_000)), Identity::default());
}

// ---- properties -----------------------------------------------------------

/// Path components likely to exercise the parser's branches.
fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("kubepods".to_owned()),
        Just("kubepods.slice".to_owned()),
        Just("burstable".to_owned()),
        Just("besteffort".to_owned()),
        Just("docker".to_owned()),
        Just("libpod_parent".to_owned()),
        Just("..".to_owned()),
        Just(String::new()),
        Just(format!("pod{UID}")),
        Just(format!("kubepods-burstable-pod{UID_US}.slice")),
        Just(format!("kubepods-pod{UID_US}.slice")),
        Just(ID.to_owned()),
        "[0-9a-fA-F]{60,68}",
        "(docker-|crio-|libpod-|cri-containerd-|crio-conmon-|pod)[0-9a-f_-]{0,70}(\\.scope|\\.slice)?",
        "\\PC{0,12}",
        ".{0,8}",
    ]
}

fn check_invariants(got: &Identity) {
    assert!(
        got.container_id.is_empty() || is_container_id(&got.container_id),
        "{got:?}"
    );
    assert_eq!(
        got.runtime.is_empty(),
        got.container_id.is_empty(),
        "{got:?}"
    );
    assert_eq!(got.pod_uid.is_empty(), got.qos_class.is_empty(), "{got:?}");
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_strings(s in any::<String>()) {
        check_invariants(&identify(&s));
    }

    #[test]
    fn container_id_is_64_lowercase_hex(parts in prop::collection::vec(component(), 0..8)) {
        let path = format!("/{}", parts.join("/"));
        let got = identify(&path);
        check_invariants(&got);
        if !got.unit.is_empty() {
            prop_assert!(path.split('/').any(|c| c == got.unit));
        }
    }
}
