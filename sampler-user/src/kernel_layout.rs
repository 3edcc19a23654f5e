//! Where the kernel keeps the time its scheduler leaves out of tasks'
//! runtime: the offsets of the run-queue fields the programs read
//! (`sampler_common::RqLayout`), from the kernel's BTF
//! (`/sys/kernel/btf/vmlinux`), so one object runs on every kernel without
//! CO-RE relocations in its Rust source.
//!
//! A field the kernel lacks (no `CONFIG_PARAVIRT_TIME_ACCOUNTING`: no
//! `rq.prev_steal_time_rq`; no `CONFIG_IRQ_TIME_ACCOUNTING`: no
//! `rq.prev_irq_time`) is 0 and its part left out: where the kernel does
//! not account irq time apart, the scheduler's runtime includes it, as
//! `cpu.stat` does, so there is nothing to tell apart.

use std::{
    fs::File,
    io::{BufReader, Read, Seek, SeekFrom},
    os::unix::fs::FileExt,
    path::Path,
};

use sampler_common::RqLayout;

/// The running kernel's BTF.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The layout, or why it is not known (the programs then book spans in
/// wall-clock time, steal and irq included).
pub fn rq_layout(btf_path: &Path) -> Result<RqLayout, String> {
    let unreadable = |e: String| format!("{} unreadable as BTF ({e})", btf_path.display());
    let found = members(
        btf_path,
        &[
            ("task_struct", "se"),
            ("sched_entity", "cfs_rq"),
            ("cfs_rq", "rq"),
            ("rq", "cpu"),
            ("rq", "prev_steal_time_rq"),
            ("rq", "prev_irq_time"),
        ],
    )
    .map_err(unreadable)?;
    let need = |i: usize, what: &str| {
        found[i].ok_or_else(|| format!("{what} is not in {}", btf_path.display()))
    };
    let layout = RqLayout {
        task_cfs_rq: need(0, "task_struct.se")? + need(1, "sched_entity.cfs_rq")?,
        cfs_rq_rq: need(2, "cfs_rq.rq")?,
        rq_cpu: need(3, "rq.cpu")?,
        rq_steal: found[4].unwrap_or(0),
        rq_irq: found[5].unwrap_or(0),
        _pad: 0,
    };
    if layout.rq_steal == 0 && layout.rq_irq == 0 {
        return Err(
            "this kernel accounts neither steal nor irq time apart from tasks (no rq.prev_steal_time_rq, no rq.prev_irq_time): wall-clock spans are the scheduler's"
                .into(),
        );
    }
    Ok(layout)
}

/// What the programs tell apart with `l`, for `ergon check` and the log.
pub fn describe(l: &RqLayout) -> String {
    let parts: Vec<&str> = [(l.rq_steal, "steal"), (l.rq_irq, "irq")]
        .into_iter()
        .filter(|&(off, _)| off != 0)
        .map(|(_, what)| what)
        .collect();
    format!(
        "{} time booked apart (ergon_unattributed_energy_joules_total), the rest of each span on the scheduler's clock",
        parts.join(" and ")
    )
}

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;

/// Byte offsets of the `(struct, member)` pairs in the BTF file at `path`
/// (None where the kernel has no such member, or it is a bit field, or at
/// offset 0, which none of ours is).
///
/// Written here rather than taken from a BTF crate: btf-rs parses and
/// caches every type (its cache raised the daemon's VmHWM from 26 to 53
/// MiB, against a 32 MiB target) and aya-obj keeps struct members
/// private. This walks the type section once through a small buffer and
/// reads a struct's name only when its size could match, so it holds a few
/// KiB whatever the kernel's BTF weighs (5 MiB here).
fn members(path: &Path, wanted: &[(&str, &str)]) -> Result<Vec<Option<u32>>, String> {
    let mut f = File::open(path).map_err(|e| e.to_string())?;
    let mut hdr = [0u8; 24];
    f.read_exact(&mut hdr).map_err(|e| e.to_string())?;
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    if u16::from_le_bytes([hdr[0], hdr[1]]) != BTF_MAGIC {
        return Err("no BTF magic (a little-endian BTF file starts 9f eb)".into());
    }
    let hdr_len = u64::from(u32_at(&hdr, 4));
    let (type_off, type_len) = (u64::from(u32_at(&hdr, 8)), u64::from(u32_at(&hdr, 12)));
    let str_off = hdr_len + u64::from(u32_at(&hdr, 16));
    let name = |off: u32, want: &str| -> Result<bool, String> {
        let mut buf = vec![0u8; want.len() + 1];
        f.read_exact_at(&mut buf, str_off + u64::from(off))
            .map_err(|e| format!("string at {off}: {e}"))?;
        Ok(&buf[..want.len()] == want.as_bytes() && buf[want.len()] == 0)
    };
    let mut out = vec![None; wanted.len()];
    let mut left: Vec<usize> = (0..wanted.len()).collect();
    let mut types =
        BufReader::with_capacity(64 << 10, File::open(path).map_err(|e| e.to_string())?);
    types
        .seek(SeekFrom::Start(hdr_len + type_off))
        .map_err(|e| e.to_string())?;
    let mut pos = 0u64;
    let mut word = [0u8; 12];
    let mut matched: Vec<usize> = Vec::new();
    while pos < type_len && !left.is_empty() {
        types
            .read_exact(&mut word)
            .map_err(|e| format!("type at {pos}: {e}"))?;
        pos += 12;
        let (name_off, info) = (u32_at(&word, 0), u32_at(&word, 4));
        let (kind, vlen, kind_flag) = ((info >> 24) & 0x1f, info & 0xffff, info >> 31);
        let extra = u64::from(match kind {
            1 | 14 | 17 => 4,
            3 => 12,
            4 | 5 | 15 | 19 => 12 * vlen,
            6 | 13 => 8 * vlen,
            0 | 2 | 7..=12 | 16 | 18 => 0,
            k => return Err(format!("type at {pos}: unknown kind {k}")),
        });
        matched.clear();
        if kind == KIND_STRUCT {
            for &i in &left {
                if name(name_off, wanted[i].0)? {
                    matched.push(i);
                }
            }
        }
        if matched.is_empty() {
            types
                .seek_relative(extra as i64)
                .map_err(|e| e.to_string())?;
            pos += extra;
            continue;
        }
        for _ in 0..vlen {
            types
                .read_exact(&mut word)
                .map_err(|e| format!("member at {pos}: {e}"))?;
            pos += 12;
            let (m_name, offset) = (u32_at(&word, 0), u32_at(&word, 8));
            let (bits, bitfield) = if kind_flag == 1 {
                (offset & 0xff_ffff, offset >> 24 != 0)
            } else {
                (offset, false)
            };
            for &i in &matched {
                if !bitfield && bits != 0 && bits % 8 == 0 && name(m_name, wanted[i].1)? {
                    out[i] = Some(bits / 8);
                }
            }
        }
        // The kernel has one struct of each name: done with these pairs.
        left.retain(|i| !matched.contains(i));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Probe, then assert: on a kernel with BTF the fields every kernel
    /// since 4.x has are found, in their structs' order (`rq.clock_task`
    /// after `rq.clock`, `task_struct.se` past its start), a member that
    /// does not exist is None, and the layout agrees with the members.
    #[test]
    fn this_kernels_btf_gives_the_run_queue_layout() {
        let path = Path::new(KERNEL_BTF);
        if !path.exists() {
            eprintln!(
                "skipped: {} missing (kernel without CONFIG_DEBUG_INFO_BTF)",
                path.display()
            );
            return;
        }
        let m = members(
            path,
            &[
                ("rq", "clock"),
                ("rq", "clock_task"),
                ("task_struct", "se"),
                ("sched_entity", "cfs_rq"),
                ("rq", "no_such_member"),
            ],
        )
        .expect("the kernel's BTF parses");
        let (clock, clock_task) = (m[0].expect("rq.clock"), m[1].expect("rq.clock_task"));
        assert!(
            clock_task > clock,
            "rq.clock_task {clock_task} follows rq.clock {clock}"
        );
        let se = m[2].expect("task_struct.se");
        assert_eq!(m[4], None);
        match rq_layout(path) {
            Ok(l) => {
                assert_eq!(Some(l.task_cfs_rq - se), m[3]);
                assert!(l.rq_steal != 0 || l.rq_irq != 0);
                let d = describe(&l);
                assert_eq!(d.contains("steal"), l.rq_steal != 0, "{d}");
                assert_eq!(d.contains("irq"), l.rq_irq != 0, "{d}");
            }
            Err(why) => assert!(why.contains("neither") || why.contains("cfs_rq"), "{why}"),
        }
    }

    #[test]
    fn a_file_that_is_not_btf_is_named_in_the_error() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("vmlinux");
        std::fs::write(&p, [0u8; 40]).unwrap();
        let e = rq_layout(&p).unwrap_err();
        assert!(e.contains("unreadable as BTF"), "{e}");
        assert!(e.contains("vmlinux"), "{e}");
        std::fs::write(&p, b"short").unwrap();
        assert!(rq_layout(&p).unwrap_err().contains("unreadable as BTF"));
    }
}
