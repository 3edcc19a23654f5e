//! Test workload: `burn SECONDS DUTY [CGROUP_DIR]` moves itself into the
//! cgroup (if given), then keeps one CPU busy for DUTY (0..=1) of every 10 ms
//! for SECONDS of wall time.

use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(secs), Some(duty)) = (
        args.get(1).and_then(|s| s.parse::<f64>().ok()),
        args.get(2).and_then(|s| s.parse::<f64>().ok()),
    ) else {
        eprintln!("usage: burn SECONDS DUTY [CGROUP_DIR]");
        std::process::exit(2);
    };
    if let Some(cg) = args.get(3) {
        if let Err(e) = std::fs::write(format!("{cg}/cgroup.procs"), "0") {
            eprintln!("burn: cannot join {cg}: {e}");
            std::process::exit(1);
        }
    }
    let period = Duration::from_millis(10);
    let busy = period.mul_f64(duty.clamp(0.0, 1.0));
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut x = 1u64;
    while Instant::now() < end {
        let start = Instant::now();
        while start.elapsed() < busy && Instant::now() < end {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let rest = period.saturating_sub(start.elapsed());
        if !rest.is_zero() && Instant::now() < end {
            std::thread::sleep(rest);
        }
    }
}
