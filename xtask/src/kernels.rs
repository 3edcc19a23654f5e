//! `cargo xtask test-kernels`: the kernel matrix.
//!
//! Each kernel of the matrix boots in qemu (TCG by default: nested KVM fails
//! on these VMs) with an initramfs of Debian's `busybox-static`, the release
//! `ergon` and the libraries `ldd` names. The guest's `/init` ([`GUEST_INIT`])
//! runs `ergon check`, then `ergon run --source synthetic` with a busy
//! process in a cgroup of its own, scrapes `/metrics` twice, prints what it
//! saw between `KT:` markers on the serial console and powers off. The host
//! reads the console log and judges it ([`judge`]): check all `ok`, package
//! power within 2% of the declared watts × CPUs, the cgroup's power within 5%
//! of the declared watts × its `cpu.stat` share.
//!
//! The matrix: Debian 12's current kernel (`linux-image-cloud-amd64`'s
//! dependency, from Debian's archive) and the host's running kernel when its
//! image is readable, else the newest kernel Debian's archive offers; plus
//! any `--kernel FILE`. Kernel packages are fetched with `apt-get download`
//! into `target/kernels/` and only their `boot/vmlinuz-*` is unpacked.

use std::{
    collections::BTreeMap,
    io::Cursor,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{peers, toolchain};

/// vCPUs of each guest; the energy check expects this many CPUs.
const GUEST_CPUS: u32 = 2;
/// The watts the guest's synthetic source declares per CPU.
const GUEST_WATTS: f64 = 10.0;
/// The load-dependent synthetic run: each CPU draws `LOAD_IDLE_WATTS` idle
/// and `GUEST_WATTS` busy, summed per package (`--synthetic-layout package`).
const LOAD_IDLE_WATTS: f64 = 2.0;
/// How long one guest may take, boot to power-off (TCG boots 6.1 in ~5 s).
const GUEST_TIMEOUT: Duration = Duration::from_secs(240);
/// Package power must be this close to `GUEST_WATTS × GUEST_CPUS`.
const PACKAGE_TOLERANCE: f64 = 0.02;
/// A cgroup's power must be this close to `GUEST_WATTS ×` its CPU share.
const CGROUP_TOLERANCE: f64 = 0.05;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Accel {
    /// Software emulation: slow, works everywhere.
    Tcg,
    /// Hardware virtualisation (/dev/kvm); nested KVM hangs on these VMs.
    Kvm,
}

pub struct Options {
    pub accel: Accel,
    /// Extra kernel images to boot besides the matrix.
    pub extra: Vec<PathBuf>,
}

/// One kernel of the matrix.
struct Kernel {
    /// What the result line starts with (the upstream version, e.g. `6.1.192`).
    name: String,
    /// Where it came from, for the result line.
    origin: String,
    image: PathBuf,
}

/// Passed and failed kernels, for the caller's totals.
#[derive(Debug, Default)]
pub struct Outcome {
    pub passed: u64,
    pub failed: u64,
}

pub fn test_kernels(root: &Path, bin: &Path, opts: &Options) -> Result<Outcome> {
    let missing: Vec<&str> = ["qemu-system-x86"]
        .into_iter()
        .filter(|p| !toolchain::deb_installed(p))
        .collect();
    toolchain::apt_install(&missing)?;
    let dir = root.join("target/kernels");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let busybox = peers::ensure_file(root, "busybox-static", "bin/busybox")?;
    let initramfs = dir.join("initramfs.cpio");
    write_initramfs(&initramfs, bin, &busybox)?;

    let mut kernels = vec![debian_current(&dir)?];
    match host_kernel() {
        Some(k) => kernels.push(k),
        None => {
            let newest = debian_newest(&dir)?;
            if newest.image != kernels[0].image {
                kernels.push(newest);
            }
        }
    }
    for image in &opts.extra {
        kernels.push(Kernel {
            name: image
                .file_name()
                .map(|n| {
                    n.to_string_lossy()
                        .trim_start_matches("vmlinuz-")
                        .to_string()
                })
                .unwrap_or_else(|| image.display().to_string()),
            origin: format!("--kernel {}", image.display()),
            image: image.clone(),
        });
    }

    let mut out = Outcome::default();
    let mut lines = Vec::new();
    for k in &kernels {
        eprintln!(
            "xtask: booting {} ({}) in qemu ({:?})",
            k.name, k.origin, opts.accel
        );
        let started = Instant::now();
        let log = dir.join(format!("console-{}.log", k.name));
        let verdict = boot(k, &initramfs, &log, opts.accel).and_then(|text| judge(&text));
        let secs = started.elapsed().as_secs_f64();
        let line = match verdict {
            Ok(v) => {
                out.passed += 1;
                format!("{} ok: {v} [{}, {secs:.0} s]", k.name, k.origin)
            }
            Err(e) => {
                out.failed += 1;
                format!(
                    "{} FAIL: {e:#} [{}, {secs:.0} s; console: {}]",
                    k.name,
                    k.origin,
                    log.display()
                )
            }
        };
        eprintln!("xtask: {line}");
        lines.push(line);
    }
    println!("xtask: kernel matrix");
    for l in &lines {
        println!("{l}");
    }
    Ok(out)
}

/// Debian 12's current cloud kernel: what `linux-image-cloud-amd64` depends on.
fn debian_current(dir: &Path) -> Result<Kernel> {
    let meta = "linux-image-cloud-amd64";
    let text = apt_output(&["depends", "--no-recommends", meta])?;
    let pkg = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .map(str::trim)
        .filter(|p| p.starts_with("linux-image-"))
        .with_context(|| {
            format!("`apt-cache depends {meta}` names no linux-image package:\n{text}")
        })?
        .to_string();
    fetch_kernel(dir, &pkg, "Debian 12's current kernel")
}

/// The newest cloud kernel Debian's archive offers (by version numbers).
fn debian_newest(dir: &Path) -> Result<Kernel> {
    let text = apt_output(&["pkgnames", "linux-image-"])?;
    let pkg = newest_cloud_image(text.lines())
        .context("Debian's archive lists no linux-image-*-cloud-amd64 package")?;
    fetch_kernel(
        dir,
        &pkg,
        "the newest kernel in Debian's archive (the host's image is not readable)",
    )
}

/// Picks the highest-versioned `linux-image-<version>-cloud-amd64` name.
fn newest_cloud_image<'a>(names: impl Iterator<Item = &'a str>) -> Option<String> {
    names
        .filter_map(|n| {
            let v = n
                .strip_prefix("linux-image-")?
                .strip_suffix("-cloud-amd64")?;
            v.starts_with(|c: char| c.is_ascii_digit())
                .then(|| (version_key(v), n.to_string()))
        })
        .max()
        .map(|(_, n)| n)
}

/// `6.12.117+deb12` → [6, 12, 117, 12]: the numbers in order.
fn version_key(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The running kernel's image, when this machine has it readable in /boot.
fn host_kernel() -> Option<Kernel> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let release = release.trim();
    let image = PathBuf::from(format!("/boot/vmlinuz-{release}"));
    std::fs::File::open(&image).ok()?;
    Some(Kernel {
        name: release.to_string(),
        origin: format!("the host's kernel, {}", image.display()),
        image,
    })
}

fn apt_output(args: &[&str]) -> Result<String> {
    let run = || -> Result<String> {
        let out = Command::new("apt-cache")
            .args(args)
            .output()
            .context("running apt-cache")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let text = run()?;
    if !text.trim().is_empty() {
        return Ok(text);
    }
    // Empty or stale package lists on a fresh machine.
    peers::apt_update()?;
    run()
}

/// Downloads `pkg` (once) and unpacks its `boot/vmlinuz-*` only.
fn fetch_kernel(dir: &Path, pkg: &str, origin: &str) -> Result<Kernel> {
    let unpacked = dir.join(pkg);
    let deb = peers::download(dir, pkg)?;
    let version = deb_field(&deb, "Version")?;
    // 6.1.192-3 → 6.1.192 (the upstream release the result line names).
    let name = version
        .split(['-', '~'])
        .next()
        .unwrap_or(&version)
        .to_string();
    if find_vmlinuz(&unpacked).is_none() {
        std::fs::create_dir_all(&unpacked)?;
        let mut dpkg = Command::new("dpkg-deb")
            .arg("--fsys-tarfile")
            .arg(&deb)
            .stdout(Stdio::piped())
            .spawn()
            .context("running dpkg-deb")?;
        let tar_in = dpkg.stdout.take().context("dpkg-deb stdout")?;
        let tar = Command::new("tar")
            .args(["-x", "--wildcards", "./boot/vmlinuz-*"])
            .current_dir(&unpacked)
            .stdin(tar_in)
            .status()
            .context("running tar")?;
        let dpkg = dpkg.wait()?;
        if !tar.success() || !dpkg.success() {
            bail!("unpacking boot/vmlinuz-* from {} failed", deb.display());
        }
    }
    let image = find_vmlinuz(&unpacked)
        .with_context(|| format!("{} holds no boot/vmlinuz-*", deb.display()))?;
    Ok(Kernel {
        name,
        origin: format!("{origin}: {pkg} {version}"),
        image,
    })
}

fn find_vmlinuz(unpacked: &Path) -> Option<PathBuf> {
    std::fs::read_dir(unpacked.join("boot"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
}

fn deb_field(deb: &Path, field: &str) -> Result<String> {
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .arg(field)
        .output()
        .context("running dpkg-deb -f")?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if v.is_empty() {
        bail!("{} has no {field} field", deb.display());
    }
    Ok(v)
}

/// The guest's `/init`: everything it does, and the markers the host reads.
const GUEST_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
echo "KT:begin $(uname -r)"
ergon check > /tmp/check.txt 2>&1
rc=$?
echo "KT:check-begin"
cat /tmp/check.txt
echo "KT:check-end $rc"
ergon run --source synthetic --synthetic-watts @WATTS@ --listen 127.0.0.1:9092 > /tmp/run.log 2>&1 &
ERGON=$!
i=0
until wget -q -O /tmp/m0 http://127.0.0.1:9092/metrics; do
  i=$((i+1)); [ $i -gt 120 ] && break; usleep 250000
done
mkdir /sys/fs/cgroup/ergon-kt
sh -c 'echo $$ > /sys/fs/cgroup/ergon-kt/cgroup.procs && while :; do :; done' &
BURN=$!
scrape() {
  wget -q -O /tmp/m-$1 http://127.0.0.1:${2:-9092}/metrics
  cat /sys/fs/cgroup/ergon-kt/cpu.stat > /tmp/s-$1
  read up idle < /proc/uptime
  echo "KT:scrape-begin $1"
  grep -E '^ergon_(package_energy_joules_total|books_timestamp_seconds|cgroup_energy_joules_total)' /tmp/m-$1
  grep usage_usec /tmp/s-$1
  echo "uptime $up"
  echo "KT:scrape-end $1"
}
sleep 1
scrape a
sleep 4
scrape b
kill $BURN
kill -INT $ERGON
wait $ERGON
echo "KT:run-exit $?"
echo "KT:log-begin"
tail -n 30 /tmp/run.log
echo "KT:log-end"
ergon run --source synthetic --synthetic-layout package --synthetic-watts @WATTS@ --synthetic-idle-watts @IDLE@ --listen 127.0.0.1:9093 > /tmp/load.log 2>&1 &
ERGON=$!
i=0
until wget -q -O /tmp/m0 http://127.0.0.1:9093/metrics; do
  i=$((i+1)); [ $i -gt 120 ] && break; usleep 250000
done
sh -c 'echo $$ > /sys/fs/cgroup/ergon-kt/cgroup.procs && while :; do :; done' &
BURN=$!
sleep 1
scrape la 9093
sleep 3
scrape lb 9093
kill $BURN
kill -INT $ERGON
wait $ERGON
echo "KT:load-exit $?"
echo "KT:load-log-begin"
tail -n 30 /tmp/load.log
echo "KT:load-log-end"
echo "KT:end"
poweroff -f
"#;

/// Writes the initramfs (uncompressed newc cpio: the kernel takes it as is).
fn write_initramfs(path: &Path, ergon: &Path, busybox: &Path) -> Result<()> {
    let mut files: BTreeMap<String, (u32, Vec<u8>)> = BTreeMap::new();
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    files.insert(
        "init".into(),
        (
            0o755,
            GUEST_INIT
                .replace("@WATTS@", &GUEST_WATTS.to_string())
                .replace("@IDLE@", &LOAD_IDLE_WATTS.to_string())
                .into_bytes(),
        ),
    );
    files.insert("bin/busybox".into(), (0o755, read(busybox)?));
    files.insert("bin/ergon".into(), (0o755, read(ergon)?));
    for lib in linked_libraries(ergon)? {
        let rel = lib.to_string_lossy().trim_start_matches('/').to_string();
        // `cp -L`: the library's contents under the path the loader asks for.
        files.insert(rel, (0o755, read(&lib)?));
    }
    let mut dirs: Vec<String> = ["proc", "sys", "dev", "tmp", "bin"]
        .iter()
        .map(|d| d.to_string())
        .collect();
    for name in files.keys() {
        let mut p = Path::new(name).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.push(d.to_string_lossy().into_owned());
            p = d.parent();
        }
    }
    dirs.sort();
    dirs.dedup();
    let entries = dirs
        .iter()
        .map(|d| {
            (
                cpio::NewcBuilder::new(d).mode(0o040755),
                Cursor::new(Vec::new()),
            )
        })
        .chain(files.into_iter().map(|(name, (mode, data))| {
            (
                cpio::NewcBuilder::new(&name).mode(0o100000 | mode),
                Cursor::new(data),
            )
        }));
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    cpio::write_cpio(entries, std::io::BufWriter::new(file))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The shared libraries (and the loader) `ldd` names for `bin`.
fn linked_libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .context("running ldd")?;
    if !out.status.success() {
        bail!("ldd {} failed", bin.display());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(PathBuf::from)
        })
        .collect())
}

/// Boots `k` and returns its console output.
fn boot(k: &Kernel, initramfs: &Path, log: &Path, accel: Accel) -> Result<String> {
    let _ = std::fs::remove_file(log);
    let accel = match accel {
        Accel::Tcg => ["-accel", "tcg,thread=multi", "-cpu", "max"],
        Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
    };
    let mut child = Command::new("qemu-system-x86_64")
        .args(accel)
        .args(["-smp", &GUEST_CPUS.to_string(), "-m", "1024"])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(&k.image)
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", "console=ttyS0 quiet panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let deadline = Instant::now() + GUEST_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read(log)
        .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
        .unwrap_or_default();
    match status {
        None => bail!(
            "the guest did not power off within {} s{}",
            GUEST_TIMEOUT.as_secs(),
            last_words(&text)
        ),
        Some(s) if !s.success() => bail!("qemu exited with {s}{}", last_words(&text)),
        Some(_) => Ok(text),
    }
}

fn last_words(text: &str) -> String {
    let tail: Vec<&str> = text.lines().rev().take(5).collect();
    if tail.is_empty() {
        String::from(" (no console output)")
    } else {
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("; console ends: {}", tail.join(" | "))
    }
}

/// The lines between `KT:<begin>` and the next `KT:<end>`.
fn section<'a>(text: &'a str, begin: &str, end: &str) -> Option<Vec<&'a str>> {
    let mut lines = text.lines().map(|l| match l.find("KT:") {
        Some(i) => &l[i..],
        None => l,
    });
    lines.by_ref().find(|l| l.starts_with(begin))?;
    let mut out = Vec::new();
    for l in lines {
        if l.starts_with(end) {
            return Some(out);
        }
        out.push(l);
    }
    None
}

/// The value after `KT:<marker> `.
fn marker<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    text.lines()
        .filter_map(|l| l.find(marker).map(|i| l[i + marker.len()..].trim()))
        .next()
}

/// What one scrape in the guest saw.
struct Scrape {
    package_joules: f64,
    books_s: f64,
    cgroup_joules: f64,
    usage_s: f64,
    uptime_s: f64,
}

fn scrape(text: &str, tag: &str) -> Result<Scrape> {
    let lines = section(text, &format!("KT:scrape-begin {tag}"), "KT:scrape-end")
        .with_context(|| format!("no scrape {tag} in the console output{}", last_words(text)))?;
    let body = lines.join("\n");
    let m = tests::parse_metrics(&body);
    let one = |prefix: &str| -> Result<f64> {
        let v: Vec<f64> = body
            .lines()
            .filter_map(|l| {
                l.strip_prefix(prefix)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        v.first()
            .copied()
            .with_context(|| format!("scrape {tag} has no `{prefix}` line"))
    };
    let cgroup_prefix = "ergon_cgroup_energy_joules_total{cgroup=\"/ergon-kt\"";
    let cgroup: Vec<f64> = m
        .iter()
        .filter(|(k, _)| k.starts_with(cgroup_prefix))
        .map(|(_, v)| *v)
        .collect();
    if cgroup.is_empty() {
        bail!("scrape {tag} has no ergon_cgroup_energy_joules_total series for /ergon-kt");
    }
    Ok(Scrape {
        package_joules: tests::sum_of(&m, tests::PACKAGE_ENERGY),
        books_s: one("ergon_books_timestamp_seconds ")?,
        cgroup_joules: cgroup.iter().sum(),
        usage_s: one("usage_usec ")? * 1e-6,
        uptime_s: one("uptime ")?,
    })
}

/// Judges a guest's console output; `Ok` is the summary for the result line.
fn judge(text: &str) -> Result<String> {
    let check = section(text, "KT:check-begin", "KT:check-end")
        .with_context(|| format!("`ergon check` printed nothing{}", last_words(text)))?;
    let rc = marker(text, "KT:check-end").unwrap_or("?");
    let failed: Vec<&str> = check
        .iter()
        .copied()
        .filter(|l| l.starts_with("FAIL"))
        .collect();
    if rc != "0" || !failed.is_empty() {
        bail!("`ergon check` exited {rc}: {}", failed.join(" | "));
    }
    if !check.iter().any(|l| l.starts_with("ok    programs")) {
        bail!(
            "`ergon check` has no `ok programs` line: {}",
            check.join(" | ")
        );
    }
    // Every kernel of the matrix is 5.15 or newer: the silent timer must
    // load there, not fall back to the perf timer.
    let Some(timer) = check.iter().find(|l| l.starts_with("ok    timer")) else {
        bail!(
            "`ergon check` has no `ok timer` line: {}",
            check.join(" | ")
        );
    };
    if !timer.contains(" bpf: ") {
        bail!("the silent timer (--timer bpf) did not load: {timer}");
    }
    let (a, b) = match (scrape(text, "a"), scrape(text, "b")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            let log = section(text, "KT:log-begin", "KT:log-end").unwrap_or_default();
            bail!("{e:#}; ergon run's log ends: {}", log.join(" | "));
        }
    };
    let books = b.books_s - a.books_s;
    let wall = b.uptime_s - a.uptime_s;
    if books <= 1.0 || wall <= 1.0 {
        bail!("the books advanced {books:.3} s over {wall:.3} s of the guest's clock");
    }
    let declared = GUEST_WATTS * f64::from(GUEST_CPUS);
    let package_w = (b.package_joules - a.package_joules) / books;
    let package_err = package_w / declared - 1.0;
    if package_err.abs() > PACKAGE_TOLERANCE {
        bail!(
            "package {package_w:.3} W over {books:.3} s of books, declared {declared} W ({:+.2}%, more than {}%)",
            package_err * 100.0,
            PACKAGE_TOLERANCE * 100.0
        );
    }
    let share = (b.usage_s - a.usage_s) / wall;
    let cgroup_w = (b.cgroup_joules - a.cgroup_joules) / books;
    let truth_w = GUEST_WATTS * share;
    if share < 0.2 {
        bail!(
            "the burner got only {:.0}% of a CPU (cpu.stat)",
            share * 100.0
        );
    }
    let cgroup_err = cgroup_w / truth_w - 1.0;
    if cgroup_err.abs() > CGROUP_TOLERANCE {
        bail!(
            "cgroup /ergon-kt {cgroup_w:.3} W, but {GUEST_WATTS} W × its cpu.stat share {share:.3} = {truth_w:.3} W ({:+.2}%, more than {}%)",
            cgroup_err * 100.0,
            CGROUP_TOLERANCE * 100.0
        );
    }
    let exit = marker(text, "KT:run-exit").unwrap_or("?");
    if exit != "0" {
        let log = section(text, "KT:log-begin", "KT:log-end").unwrap_or_default();
        bail!("ergon run exited {exit} on SIGINT: {}", log.join(" | "));
    }
    let load = load_dependent(text)?;
    // What the scheduler-clock line of `ergon check` found in this
    // kernel's BTF: which times are told apart, or wall clock.
    let clock = match check.iter().find(|l| l.contains("scheduler clock")) {
        Some(l) if l.starts_with("ok") => l
            .split_once("scheduler clock")
            .and_then(|(_, rest)| rest.split_once(" time booked apart"))
            .map_or("?".to_string(), |(parts, _)| {
                format!("{} apart", parts.trim())
            }),
        Some(_) => "wall clock".to_string(),
        None => bail!(
            "`ergon check` has no scheduler clock line: {}",
            check.join(" | ")
        ),
    };
    Ok(format!(
        "check all ok, timer bpf, scheduler clock: {clock}; package {package_w:.3} W vs {declared} W declared ({:+.2}%); cgroup {cgroup_w:.3} W vs {truth_w:.3} W from cpu.stat ({:+.2}%); {load}",
        package_err * 100.0,
        cgroup_err * 100.0
    ))
}

/// The load-dependent run (the programs' busy-time path): its package
/// power is at least idle W × CPUs + (busy − idle) W × the burner's CPU
/// share (the daemon and the kernel add a little more busy time), and at
/// most busy W × CPUs.
fn load_dependent(text: &str) -> Result<String> {
    let (a, b) = match (scrape(text, "la"), scrape(text, "lb")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            let log = section(text, "KT:load-log-begin", "KT:load-log-end").unwrap_or_default();
            bail!(
                "load-dependent run (--synthetic-idle-watts): {e:#}; its log ends: {}",
                log.join(" | ")
            );
        }
    };
    let books = b.books_s - a.books_s;
    let wall = b.uptime_s - a.uptime_s;
    if books <= 1.0 || wall <= 1.0 {
        bail!("load-dependent run: the books advanced {books:.3} s over {wall:.3} s");
    }
    let cpus = f64::from(GUEST_CPUS);
    let share = (b.usage_s - a.usage_s) / wall;
    let package_w = (b.package_joules - a.package_joules) / books;
    let low = LOAD_IDLE_WATTS * cpus + (GUEST_WATTS - LOAD_IDLE_WATTS) * share;
    let high = GUEST_WATTS * cpus;
    if package_w < low * (1.0 - PACKAGE_TOLERANCE) || package_w > high * (1.0 + PACKAGE_TOLERANCE) {
        bail!(
            "load-dependent run: package {package_w:.3} W, outside {low:.3} W ({LOAD_IDLE_WATTS} W × {cpus} CPUs + {} W × the burner's {share:.3} CPU) to {high:.3} W (all busy)",
            GUEST_WATTS - LOAD_IDLE_WATTS
        );
    }
    let exit = marker(text, "KT:load-exit").unwrap_or("?");
    if exit != "0" {
        let log = section(text, "KT:load-log-begin", "KT:load-log-end").unwrap_or_default();
        bail!(
            "the load-dependent ergon run exited {exit} on SIGINT: {}",
            log.join(" | ")
        );
    }
    Ok(format!(
        "load-dependent package {package_w:.3} W (burner {share:.3} CPU: {low:.3}..{high} W)"
    ))
}

#[cfg(test)]
mod tests_ {
    use super::*;

    fn console(check: &str, a: Scrape, b: Scrape) -> String {
        let scrape = |tag: &str, (pkg, books, cg, usage, up): Scrape| {
            format!(
                "KT:scrape-begin {tag}\n\
                 ergon_package_energy_joules_total{{package=\"0\",domain=\"pkg\"}} {pkg}\n\
                 ergon_books_timestamp_seconds {books}\n\
                 ergon_cgroup_energy_joules_total{{cgroup=\"/ergon-kt\",unit=\"\"}} {cg}\n\
                 usage_usec {usage}\n\
                 uptime {up}\n\
                 KT:scrape-end {tag}\n"
            )
        };
        // The load-dependent run: 2 W × 2 + 8 W × 0.9 CPU = 11.2 W, 12 W here.
        format!(
            "\x1b[2JKT:begin 6.1.0-57-cloud-amd64\nKT:check-begin\n{check}\nKT:check-end 0\n{}[    3.1] some kernel line\n{}KT:run-exit 0\nKT:log-begin\nKT:log-end\n{}{}KT:load-exit 0\nKT:end\n",
            scrape("a", a),
            scrape("b", b),
            scrape("la", (10.0, 200.0, 1.0, 10_000_000, 60.0)),
            scrape("lb", (46.0, 203.0, 2.0, 12_700_000, 63.0)),
        )
    }

    type Scrape = (f64, f64, f64, u64, f64);
    /// The first scrape of the run: (package J, books s, cgroup J, cpu.stat
    /// usage µs, uptime s).
    const BEFORE: Scrape = (10.0, 100.0, 1.0, 1_000_000, 50.0);
    /// The second, 4 s later: 20 W over 4 s of books; the burner had 90% of
    /// a CPU and got 9 W.
    const EXACT: Scrape = (90.0, 104.0, 37.0, 4_600_000, 54.0);

    const CHECK_OK: &str = "ok    kernel       6.1 (5.12 or newer needed)\nok    programs     on_timer and sched_switch pass the verifier\nok    timer        bpf: a BPF timer per CPU, run while the CPU runs a task: idle CPUs get no wake-ups from ergon\ninfo  scheduler clock spans in wall-clock time (this kernel accounts neither steal nor irq time apart from tasks (no rq.prev_steal_time_rq, no rq.prev_irq_time): wall-clock spans are the scheduler's)";

    #[test]
    fn a_perf_timer_fallback_fails_the_matrix() {
        let check = CHECK_OK.replace(
            "bpf: a BPF timer per CPU",
            "perf: a cpu-clock perf event per CPU, which wakes idle CPUs every period: the silent path did not load here",
        );
        let text = console(&check, BEFORE, EXACT);
        let e = judge(&text).expect_err("a fallback fails");
        assert!(format!("{e:#}").contains("silent timer"), "{e:#}");
    }

    #[test]
    fn exact_energy_passes_and_is_summarised() {
        // 20 W over 4 s of books; the burner had 90% of a CPU and got 9 W.
        let text = console(CHECK_OK, BEFORE, EXACT);
        let v = judge(&text).expect("passes");
        assert!(v.contains("package 20.000 W"), "{v}");
        assert!(v.contains("load-dependent package 12.000 W"), "{v}");
        assert!(v.contains("cgroup 9.000 W vs 9.000 W"), "{v}");
    }

    #[test]
    fn the_summary_names_the_scheduler_clock_check_found() {
        let wall = judge(&console(CHECK_OK, BEFORE, EXACT)).expect("passes");
        assert!(wall.contains("scheduler clock: wall clock"), "{wall}");
        let without: Vec<&str> = CHECK_OK
            .lines()
            .filter(|l| !l.contains("scheduler clock"))
            .collect();
        let steal = format!(
            "{}\nok    scheduler clock steal time booked apart (ergon_unattributed_energy_joules_total), the rest of each span on the scheduler's clock",
            without.join("\n")
        );
        let v = judge(&console(&steal, BEFORE, EXACT)).expect("passes");
        assert!(v.contains("scheduler clock: steal apart"), "{v}");
        let e = format!(
            "{:#}",
            judge(&console(&without.join("\n"), BEFORE, EXACT)).unwrap_err()
        );
        assert!(e.contains("no scheduler clock line"), "{e}");
    }

    #[test]
    fn package_power_off_by_more_than_two_percent_fails() {
        let text = console(CHECK_OK, BEFORE, (92.0, 104.0, 37.0, 4_600_000, 54.0));
        let e = format!("{:#}", judge(&text).unwrap_err());
        assert!(
            e.contains("package 20.500 W") && e.contains("+2.50%"),
            "{e}"
        );
    }

    #[test]
    fn cgroup_power_off_by_more_than_five_percent_fails() {
        let text = console(CHECK_OK, BEFORE, (90.0, 104.0, 40.0, 4_600_000, 54.0));
        let e = format!("{:#}", judge(&text).unwrap_err());
        assert!(e.contains("cgroup /ergon-kt 9.750 W"), "{e}");
    }

    #[test]
    fn a_load_dependent_run_without_its_busy_part_fails() {
        // Only the idle watts counted: 4 W where the burner alone adds 7.2 W.
        let text = console(CHECK_OK, BEFORE, EXACT).replace(
            "ergon_package_energy_joules_total{package=\"0\",domain=\"pkg\"} 46",
            "ergon_package_energy_joules_total{package=\"0\",domain=\"pkg\"} 22",
        );
        let e = format!("{:#}", judge(&text).unwrap_err());
        assert!(e.contains("load-dependent run: package 4.000 W"), "{e}");
    }

    #[test]
    fn a_fail_line_in_check_fails_with_it() {
        let check =
            "ok    kernel       6.1\nFAIL  programs     program `sched_switch`: load failed";
        let text = console(check, BEFORE, EXACT);
        let e = format!("{:#}", judge(&text).unwrap_err());
        assert!(e.contains("program `sched_switch`: load failed"), "{e}");
    }

    #[test]
    fn a_guest_that_died_early_says_where_its_console_ended() {
        let e = format!(
            "{:#}",
            judge("KT:begin 6.1\nKernel panic - not syncing\n").unwrap_err()
        );
        assert!(
            e.contains("printed nothing") && e.contains("Kernel panic"),
            "{e}"
        );
    }

    #[test]
    fn the_newest_cloud_image_is_picked_by_version_numbers() {
        let names = [
            "linux-image-6.1.0-57-cloud-amd64",
            "linux-image-6.12.117+deb12-cloud-amd64",
            "linux-image-6.12.9+deb12-cloud-amd64",
            "linux-image-6.12.117+deb12-cloud-amd64-dbg",
            "linux-image-cloud-amd64",
            "linux-image-6.12.117+deb12-amd64",
        ];
        assert_eq!(
            newest_cloud_image(names.into_iter()).as_deref(),
            Some("linux-image-6.12.117+deb12-cloud-amd64")
        );
    }
}
