//! The poller of the userspace sources: a thread that reads every file
//! counter of the plan once per interval and hands the readings, stamped
//! with boot time, to the drain — which applies them to the same books as
//! the kernel's readings. It stops when the drain goes away.

use std::{
    fs::File,
    os::unix::fs::FileExt,
    path::PathBuf,
    sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tracing::warn;

use crate::perf::boot_ns;

/// (counter index, boot-time ns, raw count).
pub type Reading = (usize, u64, u64);

/// Readings waiting for the drain at most (beyond, the newest are dropped:
/// the next one carries the same energy, so only resolution is lost).
const QUEUE: usize = 1 << 16;

/// Parses a sysfs counter file's content.
fn parse(buf: &[u8]) -> Option<u64> {
    std::str::from_utf8(buf).ok()?.trim().parse().ok()
}

/// Starts polling `counters` (index, file) every `every`. The receiver goes
/// to the drain; dropping it stops the thread.
pub fn start(
    counters: Vec<(usize, PathBuf)>,
    every: Duration,
) -> std::io::Result<(Receiver<Reading>, JoinHandle<()>)> {
    let (tx, rx) = sync_channel(QUEUE);
    let handle = std::thread::Builder::new()
        .name("ergon-poll".into())
        .spawn(move || run(counters, every, tx))?;
    Ok((rx, handle))
}

fn run(counters: Vec<(usize, PathBuf)>, every: Duration, tx: SyncSender<Reading>) {
    let mut files: Vec<(usize, PathBuf, Option<File>, bool)> = counters
        .into_iter()
        .map(|(i, p)| (i, p, None, false))
        .collect();
    let mut next = Instant::now();
    let mut buf = [0u8; 32];
    loop {
        for (idx, path, file, warned) in files.iter_mut() {
            if file.is_none() {
                *file = File::open(&*path).ok();
            }
            // sysfs regenerates the value on every read at offset 0.
            let value = file
                .as_ref()
                .and_then(|f| f.read_at(&mut buf, 0).ok())
                .and_then(|n| parse(&buf[..n]));
            let ts = boot_ns();
            match value {
                Some(v) => {
                    *warned = false;
                    match tx.try_send((*idx, ts, v)) {
                        Ok(()) | Err(TrySendError::Full(_)) => {}
                        Err(TrySendError::Disconnected(_)) => return,
                    }
                }
                None => {
                    if !*warned {
                        warn!(path = %path.display(), "reading an energy counter file failed; retrying every period");
                        *warned = true;
                    }
                    *file = None;
                }
            }
        }
        next += every;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counter_files() {
        assert_eq!(parse(b"123456\n"), Some(123_456));
        assert_eq!(parse(b"  7 "), Some(7));
        assert_eq!(parse(b"lots"), None);
        assert_eq!(parse(b""), None);
    }
}
