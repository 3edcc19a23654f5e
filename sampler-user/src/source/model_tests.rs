//! The model on a fixture `/proc/stat` that a writer thread advances in a
//! known pattern: CPU 0 fully busy, CPU 1 busy one tick in four. The
//! joules must be the declared model's: idle watts over the wall time
//! plus (max − idle) over the busy time written.

use std::time::{Duration, Instant};

use super::*;
use crate::{energy::EnergyBooks, source::poll, testdata::scratch};

/// `/proc/stat` with these busy (user) ticks per CPU, written atomically.
fn write_stat(root: &SysRoot, busy: [u64; 2]) {
    let text = format!(
        "cpu  {} 0 0 1000 0 0 0 0 0 0\ncpu0 {} 0 0 500 0 0 0 0 0 0\ncpu1 {} 0 0 500 0 0 0 0 0 0\nctxt 1\n",
        busy[0] + busy[1],
        busy[0],
        busy[1]
    );
    let tmp = root.proc("stat.tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, root.proc("stat")).expect("rename");
}

#[test]
fn joules_match_the_declared_model_on_a_known_busy_pattern() {
    let (_dir, root) = scratch("model-2cpu");
    let topo = Topology::read(&root).expect("topology");
    let model = Model {
        default: CpuModel {
            idle_watts: 2.0,
            max_watts: 12.0,
        },
        cpus: HashMap::new(),
        declared: true,
    };
    write_stat(&root, [0, 0]);
    let p = plan(&root, &topo, &model, String::new());
    let cpus: Vec<(u32, u32)> = topo.cpus.iter().map(|c| (c.cpu, c.package)).collect();
    let mut books = EnergyBooks::new(&p, &cpus);
    let reads: Vec<(usize, UserRead)> = p
        .counters
        .iter()
        .enumerate()
        .filter_map(|(i, c)| Some((i, c.user.clone()?.read)))
        .collect();
    let (rx, _thread) = poll::start(reads, Duration::from_millis(2)).expect("poller");
    // First and last reading time per CPU.
    let mut first: [Option<u64>; 2] = [None; 2];
    let mut last = [0u64; 2];
    let mut apply = |books: &mut EnergyBooks, (idx, ts, raw): poll::Reading| {
        first[idx].get_or_insert(ts);
        last[idx] = ts;
        books.reading(idx, ts, raw);
        first.iter().all(Option::is_some)
    };
    // Both baselines before anything runs.
    loop {
        let r = rx.recv_timeout(Duration::from_secs(5)).expect("a reading");
        if apply(&mut books, r) {
            break;
        }
    }
    // 100 ticks: CPU 0 busy in each, CPU 1 in every fourth.
    let tick = Duration::from_nanos(poll::ns_per_tick());
    let mut busy = [0u64; 2];
    let mut next = Instant::now();
    for t in 0..100u64 {
        busy[0] += 1;
        if t % 4 == 0 {
            busy[1] += 1;
        }
        write_stat(&root, busy);
        next += tick;
        while let Ok(r) = rx.try_recv() {
            apply(&mut books, r);
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    // Past the last write, then the last readings.
    std::thread::sleep(Duration::from_millis(30));
    while let Ok(r) = rx.try_recv() {
        apply(&mut books, r);
    }
    let mut counts = [0u128; 2];
    books.take_applied(|idx, _, c| counts[idx] = c);
    let tick_s = tick.as_secs_f64();
    for (cpu, want_busy) in [(0usize, 100.0), (1, 25.0)] {
        let wall = (last[cpu] - first[cpu].unwrap_or(0)) as f64 * 1e-9;
        let want = 2.0 * wall + 10.0 * want_busy * tick_s;
        let got = counts[cpu] as f64 * 1e-9;
        assert!(
            (got - want).abs() < 1e-6,
            "CPU {cpu}: {got} J, the model says {want} J over {wall} s"
        );
    }
    let pkg = books.packages()[0].joules.0;
    let sum = (counts[0] + counts[1]) as f64 * 1e-9;
    assert!((pkg - sum).abs() < 1e-9, "package {pkg} J = Σ CPUs {sum} J");
}
