//! Discovery and planning on the fixture trees in `testdata/`.
use super::*;
use crate::testdata::fixture;

/// 2^-32 J, the usual RAPL energy unit.
const TWO_POW_M32: f64 = 1.0 / 4_294_967_296.0;
/// 2^-16 J, the DRAM energy unit of some servers.
const TWO_POW_M16: f64 = 1.0 / 65_536.0;

/// A writable copy of a fixture tree and the path of its power PMU.
fn scratch(name: &str) -> (tempfile::TempDir, SysRoot, PathBuf) {
    let (dir, root) = crate::testdata::scratch(name);
    let pmu = root.sys(POWER_PMU_DIR);
    (dir, root, pmu)
}

fn discover_err(root: &SysRoot) -> RaplError {
    match discover(root) {
        Ok(pmu) => panic!("expected an error, discovered {pmu:?}"),
        Err(e) => e,
    }
}

fn assert_names(err: &RaplError, path: &Path) {
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
}

fn intel() -> (PowerPmu, Topology) {
    let root = SysRoot::under(&fixture("rapl-intel-2pkg"));
    (
        discover(&root).unwrap().unwrap(),
        Topology::read(&root).unwrap(),
    )
}

#[test]
fn sysfs_scale_literals_are_exact_powers_of_two() {
    assert_eq!(
        "2.3283064365386962890625e-10".parse::<f64>().unwrap(),
        TWO_POW_M32
    );
    assert_eq!("1.52587890625e-05".parse::<f64>().unwrap(), TWO_POW_M16);
    assert_eq!(TWO_POW_M32, 2f64.powi(-32));
}

#[test]
fn discover_intel_two_packages() {
    let (pmu, _) = intel();
    assert_eq!(pmu.pmu_type, 23);
    assert_eq!(pmu.cpumask, vec![0, 2]);
    assert_eq!(
        pmu.events,
        vec![
            RaplEvent {
                domain: 0,
                config: 0x02,
                joules_per_count: TWO_POW_M32
            },
            RaplEvent {
                domain: 1,
                config: 0x01,
                joules_per_count: TWO_POW_M32
            },
            RaplEvent {
                domain: 2,
                config: 0x03,
                joules_per_count: TWO_POW_M16
            },
            RaplEvent {
                domain: 3,
                config: 0x05,
                joules_per_count: TWO_POW_M32
            },
            RaplEvent {
                domain: 4,
                config: 0x04,
                joules_per_count: TWO_POW_M32
            },
        ]
    );
    let names: Vec<&str> = pmu.events.iter().map(|e| DOMAIN_NAMES[e.domain]).collect();
    assert_eq!(names, ["pkg", "cores", "ram", "psys", "gpu"]);
}

#[test]
fn discover_amd_pkg_only() {
    let root = SysRoot::under(&fixture("rapl-amd"));
    let pmu = discover(&root).unwrap().unwrap();
    assert_eq!(pmu.pmu_type, 11);
    assert_eq!(pmu.cpumask, vec![0]);
    assert_eq!(
        pmu.events,
        vec![RaplEvent {
            domain: 0,
            config: 0x02,
            joules_per_count: TWO_POW_M32
        }]
    );
}

#[test]
fn discover_without_pmu_is_none() {
    let root = SysRoot::under(&fixture("no-pmu"));
    assert_eq!(discover(&root).unwrap(), None);
}

#[test]
fn discover_without_sysfs_is_none() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(discover(&SysRoot::under(dir.path())).unwrap(), None);
}

#[test]
fn plan_intel_two_packages() {
    let (pmu, topo) = intel();
    let plans = plan(&pmu, &topo).unwrap();
    assert_eq!(plans.len(), 10);
    let expected_configs = [0x02, 0x01, 0x03, 0x05, 0x04];
    for (i, p) in plans.iter().enumerate() {
        let (package, domain) = ((i / 5) as u32, i % 5);
        assert_eq!(p.package, package, "plan {i}");
        assert_eq!(p.domain, domain, "plan {i}");
        assert_eq!(p.config, expected_configs[domain], "plan {i}");
        assert_eq!(p.pmu_type, 23);
        let scale = if domain == 2 {
            TWO_POW_M16
        } else {
            TWO_POW_M32
        };
        assert_eq!(p.joules_per_count, scale, "plan {i}");
        if package == 0 {
            assert_eq!(p.open_cpu, 0);
            assert_eq!(p.readers, vec![0, 1]);
        } else {
            assert_eq!(p.open_cpu, 2);
            assert_eq!(p.readers, vec![2, 3]);
        }
    }
}

#[test]
fn plan_puts_open_cpu_first_in_readers() {
    let (mut pmu, topo) = intel();
    pmu.cpumask = vec![1, 3];
    let plans = plan(&pmu, &topo).unwrap();
    assert_eq!(plans.len(), 10);
    assert_eq!(
        (plans[0].open_cpu, plans[0].readers.clone()),
        (1, vec![1, 0])
    );
    assert_eq!(
        (plans[5].open_cpu, plans[5].readers.clone()),
        (3, vec![3, 2])
    );
}

#[test]
fn plan_skips_package_without_cpumask_cpu() {
    let (mut pmu, topo) = intel();
    pmu.cpumask = vec![2];
    let plans = plan(&pmu, &topo).unwrap();
    assert_eq!(plans.len(), 5);
    assert!(plans
        .iter()
        .all(|p| p.package == 1 && p.open_cpu == 2 && p.readers == vec![2, 3]));
}

#[test]
fn plan_amd_one_package() {
    let root = SysRoot::under(&fixture("rapl-amd"));
    let pmu = discover(&root).unwrap().unwrap();
    let topo = Topology::read(&root).unwrap();
    let plans = plan(&pmu, &topo).unwrap();
    assert_eq!(
        plans,
        vec![CounterPlan {
            domain: 0,
            package: 0,
            open_cpu: 0,
            readers: (0..8).collect(),
            pmu_type: 11,
            config: 0x02,
            joules_per_count: TWO_POW_M32,
            user: None,
        }]
    );
}

#[test]
fn plan_rejects_offline_cpumask_cpu() {
    let (mut pmu, topo) = intel();
    pmu.cpumask = vec![0, 6];
    let err = plan(&pmu, &topo).unwrap_err();
    assert!(
        matches!(err, RaplError::CpumaskCpuOffline { cpu: 6 }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("cpu 6") && msg.contains("cpumask"), "{msg}");
}

#[test]
fn plan_rejects_two_cpumask_cpus_in_one_package() {
    let (mut pmu, topo) = intel();
    pmu.cpumask = vec![0, 1, 2];
    let err = plan(&pmu, &topo).unwrap_err();
    assert!(
        matches!(
            err,
            RaplError::SharedPackage {
                package: 0,
                first: 0,
                second: 1
            }
        ),
        "{err:?}"
    );
}

#[test]
fn garbage_scale_is_bad_scale() {
    let (_dir, root, pmu) = scratch("rapl-intel-2pkg");
    let path = pmu.join("events/energy-ram.scale");
    for garbage in ["joules\n", "0\n", "-2.3e-10\n", "inf\n", "NaN\n", "\n"] {
        fs::write(&path, garbage).unwrap();
        let err = discover_err(&root);
        match &err {
            RaplError::BadScale { path: p, found } => {
                assert_eq!(p, &path);
                assert_eq!(found, garbage.trim());
            }
            other => panic!("expected BadScale for {garbage:?}, got {other:?}"),
        }
        assert_names(&err, &path);
    }
}

#[test]
fn missing_scale_is_missing_scale() {
    let (_dir, root, pmu) = scratch("rapl-intel-2pkg");
    let path = pmu.join("events/energy-cores.scale");
    fs::remove_file(&path).unwrap();
    let err = discover_err(&root);
    assert!(
        matches!(&err, RaplError::MissingScale { path: p } if p == &path),
        "{err:?}"
    );
    assert_names(&err, &path);
}

#[test]
fn unreadable_scale_is_read_error() {
    let (_dir, root, pmu) = scratch("rapl-intel-2pkg");
    let path = pmu.join("events/energy-pkg.scale");
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    let err = discover_err(&root);
    assert!(
        matches!(&err, RaplError::Read { path: p, .. } if p == &path),
        "{err:?}"
    );
    assert_names(&err, &path);
}

#[test]
fn wrong_unit_is_bad_unit() {
    let (_dir, root, pmu) = scratch("rapl-amd");
    let path = pmu.join("events/energy-pkg.unit");
    fs::write(&path, "Watts\n").unwrap();
    let err = discover_err(&root);
    assert!(
        matches!(&err, RaplError::BadUnit { path: p, found } if p == &path && found == "Watts"),
        "{err:?}"
    );
    assert_names(&err, &path);
}

#[test]
fn missing_unit_is_missing_unit() {
    let (_dir, root, pmu) = scratch("rapl-amd");
    let path = pmu.join("events/energy-pkg.unit");
    fs::remove_file(&path).unwrap();
    let err = discover_err(&root);
    assert!(
        matches!(&err, RaplError::MissingUnit { path: p } if p == &path),
        "{err:?}"
    );
    assert_names(&err, &path);
}

#[test]
fn garbage_type_is_bad_type() {
    let (_dir, root, pmu) = scratch("rapl-intel-2pkg");
    let path = pmu.join("type");
    for garbage in ["power\n", "-1\n", "0x17\n", "\n"] {
        fs::write(&path, garbage).unwrap();
        let err = discover_err(&root);
        assert!(
            matches!(&err, RaplError::BadType { path: p, found } if p == &path && found == garbage.trim()),
            "{err:?}"
        );
        assert_names(&err, &path);
    }
}

#[test]
fn unreadable_type_is_read_error() {
    let (_dir, root, pmu) = scratch("rapl-intel-2pkg");
    let path = pmu.join("type");
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    let err = discover_err(&root);
    assert!(
        matches!(&err, RaplError::Read { path: p, .. } if p == &path),
        "{err:?}"
    );
    assert_names(&err, &path);
}

#[test]
fn missing_type_is_read_error() {
    let (_dir, root, pmu) = scratch("rapl-intel-2pkg");
    let path = pmu.join("type");
    fs::remove_file(&path).unwrap();
    let err = discover_err(&root);
    assert!(
        matches!(&err, RaplError::Read { path: p, source } if p == &path && source.kind() == io::ErrorKind::NotFound),
        "{err:?}"
    );
}

#[test]
fn garbage_cpumask_is_bad_cpumask() {
    let (_dir, root, pmu) = scratch("rapl-intel-2pkg");
    let path = pmu.join("cpumask");
    fs::write(&path, "ff\n").unwrap();
    let err = discover_err(&root);
    assert!(
        matches!(&err, RaplError::BadCpumask { path: p, found, .. } if p == &path && found == "ff"),
        "{err:?}"
    );
    assert_names(&err, &path);
}

#[test]
fn empty_cpumask_is_an_error() {
    let (_dir, root, pmu) = scratch("rapl-intel-2pkg");
    let path = pmu.join("cpumask");
    fs::write(&path, "\n").unwrap();
    let err = discover_err(&root);
    assert!(
        matches!(&err, RaplError::EmptyCpumask { path: p } if p == &path),
        "{err:?}"
    );
    assert_names(&err, &path);
}

#[test]
fn garbage_event_is_bad_event() {
    let (_dir, root, pmu) = scratch("rapl-intel-2pkg");
    let path = pmu.join("events/energy-psys");
    for garbage in [
        "0x05\n",
        "event=\n",
        "event=0xzz\n",
        "event=0x\n",
        "umask=0x01\n",
        "event=0x05,event=0x06\n",
        "event=0x05,,umask=1\n",
        "event=-5\n",
        "event=0x1ffffffffffffffff\n",
    ] {
        fs::write(&path, garbage).unwrap();
        let err = discover_err(&root);
        assert!(
            matches!(&err, RaplError::BadEvent { path: p, found } if p == &path && found == garbage.trim()),
            "{garbage:?}: {err:?}"
        );
        assert_names(&err, &path);
    }
}

#[test]
fn event_terms_are_parsed_tolerantly() {
    assert_eq!(parse_event_config("event=0x02"), Some(2));
    assert_eq!(parse_event_config("event=0x02\n"), Some(2));
    assert_eq!(parse_event_config("event=0X1f"), Some(0x1f));
    assert_eq!(parse_event_config("event=7"), Some(7));
    assert_eq!(parse_event_config("event=0x03,umask=0x00"), Some(3));
    assert_eq!(parse_event_config("umask=0x00, event=0x04 \n"), Some(4));
    assert_eq!(parse_event_config(""), None);
}

#[test]
fn unreadable_event_is_read_error() {
    let (_dir, root, pmu) = scratch("rapl-intel-2pkg");
    let path = pmu.join("events/energy-gpu");
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    let err = discover_err(&root);
    assert!(
        matches!(&err, RaplError::Read { path: p, .. } if p == &path),
        "{err:?}"
    );
    assert_names(&err, &path);
}

#[test]
fn missing_events_leave_holes_in_domain_order() {
    let (_dir, root, pmu) = scratch("rapl-intel-2pkg");
    for name in ["cores", "psys"] {
        for suffix in ["", ".scale", ".unit"] {
            fs::remove_file(pmu.join(format!("events/energy-{name}{suffix}"))).unwrap();
        }
    }
    let found = discover(&root).unwrap().unwrap();
    let domains: Vec<usize> = found.events.iter().map(|e| e.domain).collect();
    assert_eq!(domains, vec![0, 2, 4]);
}

#[test]
fn no_energy_events_is_an_error() {
    let (_dir, root, pmu) = scratch("rapl-amd");
    for suffix in ["", ".scale", ".unit"] {
        fs::remove_file(pmu.join(format!("events/energy-pkg{suffix}"))).unwrap();
    }
    let err = discover_err(&root);
    assert!(matches!(&err, RaplError::NoEvents { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("power PMU has no energy-* events"), "{msg}");
    assert_names(&err, &pmu.join("events"));
}

#[test]
fn pmu_path_that_is_a_file_is_read_error() {
    let (_dir, root, pmu) = scratch("no-pmu");
    fs::write(&pmu, "not a directory\n").unwrap();
    let err = discover_err(&root);
    assert!(
        matches!(&err, RaplError::Read { path, .. } if path == &pmu.join("type")),
        "{err:?}"
    );
}

/// AMD with Linux 6.14's `power_core` PMU: 4 cores of 2 SMT threads
/// (siblings `N,N+4`), its cpumask one CPU per core.
#[test]
fn power_core_gives_one_cores_counter_per_core_read_by_its_siblings() {
    let root = SysRoot::under(&fixture("rapl-amd"));
    let pmu = discover_core(&root).unwrap().expect("power_core PMU");
    assert_eq!(pmu.pmu_type, 12);
    assert_eq!(pmu.cpumask, vec![0, 1, 2, 3]);
    assert_eq!(
        pmu.events,
        vec![RaplEvent {
            domain: 1,
            config: 0x01,
            joules_per_count: TWO_POW_M32,
        }]
    );
    let topo = Topology::read(&root).unwrap();
    let got: Vec<(usize, u32, u32, Vec<u32>, u32, u64)> = plan_cores(&pmu, &topo, &root)
        .into_iter()
        .map(|c| {
            (
                c.domain, c.package, c.open_cpu, c.readers, c.pmu_type, c.config,
            )
        })
        .collect();
    assert_eq!(
        got,
        (0..4)
            .map(|core| (1, 0, core, vec![core, core + 4], 12, 0x01))
            .collect::<Vec<_>>()
    );
}

#[test]
fn power_core_is_the_cores_domain_of_auto_and_a_broken_one_is_explained() {
    use crate::source::{liveness::Assume, select, Declared, Resolved, SourceKind};
    let declared = Declared {
        synthetic: crate::source::synthetic::Synthetic::constant(
            10.0,
            crate::source::synthetic::Layout::PerCpu,
        ),
        model: crate::source::model::Model::default(),
    };
    let (_dir, root, _pmu) = scratch("rapl-amd");
    let topo = Topology::read(&root).unwrap();
    let p = select(SourceKind::Auto, &root, &topo, &declared, &Assume).expect("plan");
    assert_eq!(p.source, Resolved::Rapl);
    let domains: Vec<(usize, u32)> = p.counters.iter().map(|c| (c.domain, c.open_cpu)).collect();
    assert_eq!(domains, vec![(0, 0), (1, 0), (1, 1), (1, 2), (1, 3)]);
    assert!(
        p.reason
            .contains("power_core PMU with energy-core on 4 cores"),
        "{}",
        p.reason
    );
    assert!(p.sole_counter(&p.counters[0]) && !p.sole_counter(&p.counters[1]));
    // A power_core PMU whose event has no scale: rapl still works, without
    // a cores domain, and says why.
    fs::remove_file(
        root.sys(POWER_CORE_PMU_DIR)
            .join("events/energy-core.scale"),
    )
    .unwrap();
    let p = select(SourceKind::Auto, &root, &topo, &declared, &Assume).expect("plan");
    assert_eq!(p.source, Resolved::Rapl);
    assert_eq!(p.counters.len(), 1);
    assert!(
        p.reason
            .contains("power_core PMU present but unusable, no cores domain")
            && p.reason.contains("energy-core.scale is missing"),
        "{}",
        p.reason
    );
}
