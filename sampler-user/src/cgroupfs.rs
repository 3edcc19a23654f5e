//! Which cgroup hierarchy the machine runs (v1, v2 or hybrid) and where
//! cgroup2 is mounted, from `/proc/self/mountinfo`.

use std::path::PathBuf;

use crate::sysroot::SysRoot;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Only cgroup2 (the unified hierarchy).
    V2 { mount: PathBuf },
    /// cgroup v1 controllers plus cgroup2 (usually at `/sys/fs/cgroup/unified`).
    Hybrid {
        mount: PathBuf,
        v1_controllers: usize,
    },
    /// Only cgroup v1: cgroup ids from BPF are then unusable for attribution.
    V1 { v1_controllers: usize },
    /// No cgroup filesystem mounted.
    None,
}

impl Layout {
    /// The cgroup2 mount point, when there is one.
    #[cfg(test)]
    fn v2_mount(&self) -> Option<&PathBuf> {
        match self {
            Layout::V2 { mount } | Layout::Hybrid { mount, .. } => Some(mount),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}; is procfs mounted (see --procfs-root)?")]
pub struct MountinfoError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

pub fn detect(root: &SysRoot) -> Result<Layout, MountinfoError> {
    let path = root.proc("self/mountinfo");
    let text = std::fs::read_to_string(&path).map_err(|source| MountinfoError { path, source })?;
    Ok(parse_mountinfo(&text))
}

/// Parses mountinfo lines: `id parent maj:min root mountpoint opts... - fstype source superopts`.
pub fn parse_mountinfo(text: &str) -> Layout {
    let mut v2 = None;
    let mut v1 = 0usize;
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount) = left.split_whitespace().nth(4) else {
            continue;
        };
        match right.split_whitespace().next() {
            Some("cgroup2") => {
                v2.get_or_insert_with(|| PathBuf::from(unescape(mount)));
            }
            Some("cgroup") => v1 += 1,
            _ => {}
        }
    }
    match (v2, v1) {
        (Some(mount), 0) => Layout::V2 { mount },
        (Some(mount), n) => Layout::Hybrid {
            mount,
            v1_controllers: n,
        },
        (None, 0) => Layout::None,
        (None, n) => Layout::V1 { v1_controllers: n },
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let d = |k: usize| u32::from(b[i + k] - b'0');
            out.push((d(1) * 64 + d(2) * 8 + d(3)) as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
33 25 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
34 33 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
35 33 0:30 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
38 33 0:33 / /sys/fs/cgroup/cpu rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu
";

    #[test]
    fn hybrid() {
        assert_eq!(
            parse_mountinfo(HYBRID),
            Layout::Hybrid {
                mount: PathBuf::from("/sys/fs/cgroup/unified"),
                v1_controllers: 2
            }
        );
    }

    #[test]
    fn unified() {
        let t = "30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        assert_eq!(
            parse_mountinfo(t),
            Layout::V2 {
                mount: PathBuf::from("/sys/fs/cgroup")
            }
        );
    }

    #[test]
    fn legacy_none_and_garbage() {
        let t = "35 33 0:30 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        assert_eq!(parse_mountinfo(t), Layout::V1 { v1_controllers: 1 });
        assert_eq!(parse_mountinfo(""), Layout::None);
        assert_eq!(parse_mountinfo("garbage\n- - -\n1 2\n"), Layout::None);
    }

    #[test]
    fn escaped_mount_point() {
        let t = "30 25 0:26 / /mnt/my\\040cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_mountinfo(t).v2_mount(),
            Some(&PathBuf::from("/mnt/my cgroup"))
        );
    }
}
