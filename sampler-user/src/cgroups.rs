//! Which cgroups exist: cgroup v2 id → path (the id is the inode of the
//! cgroup's directory) → identity, plus the life cycle of each cgroup in the
//! output: alive, dead but retained, then folded into `other`.
//!
//! The tree is walked when an unknown id shows up (at most every
//! [`MIN_RESCAN`]), so a cgroup created after start-up is resolved like any
//! other. Deaths are noticed without walking the whole tree: every
//! [`PERIODIC_RESCAN`] the cgroups that ran nothing since the last look are
//! checked (one `stat` of their own directory each; one that ran is alive),
//! and the tree is walked only when one of them is gone, or every
//! [`FULL_RESCAN`] (a renamed cgroup, an id never found). So a node full of
//! busy containers costs no file-system work at all between changes.
//!
//! A series is its labels: when a cgroup is removed and made again at the
//! same path (a systemd unit restarted), the new id takes over the dead
//! one's series. A walk that resolves a new id to the path of a dead id
//! reports the pair ([`Registry::prepare`]); the drain folds the old id's
//! joules into the new one, so one series per path goes on, never back.
//! Walks happen only in [`Registry::prepare`], which the drain calls before
//! booking, so labels never change between booking and publishing.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use rustc_hash::FxHashMap;

use crate::{
    attribution::{is_pseudo_cgroup, OTHER_CGROUP},
    identity::identify,
    names::{Directory, Names},
    sysroot::SysRoot,
};

/// Unknown ids trigger a walk of the tree at most this often.
pub const MIN_RESCAN: Duration = Duration::from_millis(200);
/// The cgroups that ran nothing since the last look are checked for being
/// gone this often.
pub const PERIODIC_RESCAN: Duration = Duration::from_secs(5);
/// The whole tree is walked at least this often.
pub const FULL_RESCAN: Duration = Duration::from_secs(60);

/// Labels of one cgroup series.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupLabels {
    /// Path relative to the cgroup v2 mount (`/system.slice/nginx.service`),
    /// `other`, or `unresolved:<id>` for a cgroup that died before it could
    /// be looked up.
    pub cgroup: String,
    pub unit: String,
    pub runtime: String,
    pub container_id: String,
    pub pod_uid: String,
    /// The owner's names ([`crate::names`]): empty while unknown, then
    /// filled once and kept.
    pub container: String,
    pub pod: String,
    pub namespace: String,
}

/// How many of [`CgroupLabels::pairs`] come from the path (the rest are
/// names).
pub const PATH_LABELS: usize = 5;

impl CgroupLabels {
    /// The labels of a cgroup series, in the order exported: the
    /// [`PATH_LABELS`] read off the path, then the names.
    pub fn pairs(&self) -> [(&'static str, &str); 8] {
        [
            ("cgroup", &self.cgroup),
            ("unit", &self.unit),
            ("runtime", &self.runtime),
            ("container_id", &self.container_id),
            ("pod_uid", &self.pod_uid),
            ("container", &self.container),
            ("pod", &self.pod),
            ("namespace", &self.namespace),
        ]
    }

    /// Whether an id of these labels still lacks its name.
    fn lacks_names(&self) -> bool {
        (!self.container_id.is_empty() && self.container.is_empty())
            || (!self.pod_uid.is_empty() && self.pod.is_empty())
    }

    /// These labels with the empty names filled from `n` (a filled one
    /// is never replaced); `None` when nothing is new.
    fn named(&self, n: &Names) -> Option<CgroupLabels> {
        let fill = |have: &str, new: &str| have.is_empty() && !new.is_empty();
        let pod_new = fill(&self.pod, &n.pod);
        if !fill(&self.container, &n.container) && !pod_new {
            return None;
        }
        let mut l = self.clone();
        if l.container.is_empty() {
            l.container.clone_from(&n.container);
        }
        if pod_new {
            l.pod.clone_from(&n.pod);
            l.namespace.clone_from(&n.namespace);
        }
        Some(l)
    }
}

#[derive(Debug)]
struct Entry {
    labels: Arc<CgroupLabels>,
    /// When the directory was found gone, and the export epoch then.
    dead: Option<(Instant, u64)>,
    resolved: bool,
    /// A walk has happened since the id was first asked for.
    walked: bool,
    /// Ran something since the last liveness check (so it is alive).
    active: bool,
    /// Its labels went out with a batch point since they were last set
    /// ([`Registry::labels_to_send`]).
    sent: bool,
}

/// Where the cgroup v2 hierarchy is: `--cgroup-root` itself when it is a
/// cgroup2 mount, else its `unified/` child (hybrid hosts).
pub fn v2_root(root: &SysRoot) -> Option<PathBuf> {
    let direct = root.cgroup.clone();
    if direct.join("cgroup.controllers").exists() {
        return Some(direct);
    }
    let unified = direct.join("unified");
    if unified.join("cgroup.procs").exists() {
        return Some(unified);
    }
    None
}

#[derive(Debug)]
pub struct Registry {
    root: Option<PathBuf>,
    entries: FxHashMap<u64, Entry>,
    last_scan: Option<Instant>,
    /// Last liveness check of the cgroups that ran nothing (or walk).
    last_check: Option<Instant>,
    retention: Duration,
    max: usize,
    folds: u64,
    /// Export (scrape) epoch as of the last `prepare` (deaths are stamped
    /// with it).
    epoch: u64,
    scans: u64,
    other: Arc<CgroupLabels>,
    /// (dead id, new id at the same path) found by walks, for the drain.
    recreated: Vec<(u64, u64)>,
    /// Where names come from, and its generation last looked at.
    names: Option<(Arc<Directory>, u64)>,
    /// `other`'s labels went out with a batch point.
    other_sent: bool,
}

/// What [`Registry::maintain`] decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decisions {
    /// Cgroups to fold into `other` (retention over, or over `--max-cgroups`).
    pub fold: Vec<u64>,
    /// How many of those were folded for cardinality.
    pub over_limit: u64,
}

impl Registry {
    pub fn new(root: Option<PathBuf>, retention: Duration, max: usize) -> Self {
        Self {
            root,
            entries: FxHashMap::default(),
            last_scan: None,
            last_check: None,
            retention,
            max,
            folds: 0,
            epoch: 0,
            scans: 0,
            other: Arc::new(CgroupLabels {
                cgroup: "other".into(),
                ..CgroupLabels::default()
            }),
            recreated: Vec::new(),
            names: None,
            other_sent: false,
        }
    }

    /// Names the cgroups' owners from `directory` ([`crate::names`]).
    pub fn with_names(mut self, directory: Arc<Directory>) -> Self {
        self.names = Some((directory, u64::MAX));
        self
    }

    /// Readies the labels of `ids` (the cgroups about to be booked): walks
    /// the tree if one is new (at most every [`MIN_RESCAN`]) or the last walk
    /// is [`PERIODIC_RESCAN`] old. Returns the (dead id, new id) pairs of
    /// cgroups made again at the same path, found by walks since the last
    /// call. `export_epoch` is the `/metrics` epoch now (a death is
    /// stamped with it).
    pub fn prepare(
        &mut self,
        ids: impl IntoIterator<Item = u64>,
        now: Instant,
        export_epoch: u64,
    ) -> Vec<(u64, u64)> {
        self.epoch = export_epoch;
        let full = self
            .last_scan
            .is_none_or(|t| now.duration_since(t) >= FULL_RESCAN);
        let look = self
            .last_check
            .is_none_or(|t| now.duration_since(t) >= PERIODIC_RESCAN);
        if full || (look && self.gone_while_idle(now)) {
            self.scan(now);
        }
        for id in ids {
            self.ensure(id, now);
        }
        self.name_owners();
        std::mem::take(&mut self.recreated)
    }

    /// Fills the names of cgroups that lack them when the directory has
    /// published something since the last look. Only between walks and
    /// booking, like every label change.
    fn name_owners(&mut self) {
        let Some((dir, seen)) = &mut self.names else {
            return;
        };
        let generation = dir.generation();
        if generation == *seen {
            return;
        }
        *seen = generation;
        for e in self.entries.values_mut() {
            if !e.labels.lacks_names() {
                continue;
            }
            let n = dir.lookup(&e.labels.pod_uid, &e.labels.container_id);
            if let Some(l) = e.labels.named(&n) {
                e.labels = Arc::new(l);
                e.sent = false;
            }
        }
    }

    /// Labels of `id` as known now, without walking the tree (see
    /// [`Self::prepare`]).
    pub fn known_labels(&self, id: u64) -> Arc<CgroupLabels> {
        if id == OTHER_CGROUP {
            return self.other.clone();
        }
        match self.entries.get(&id) {
            Some(e) => e.labels.clone(),
            None => unresolved(id),
        }
    }

    /// Labels of `id` for its batch points, and whether they must go with
    /// them: the first time, and after they changed. A cgroup the registry
    /// does not hold (gone before it was booked) is kept as unresolved.
    pub fn labels_to_send(&mut self, id: u64) -> (&Arc<CgroupLabels>, bool) {
        if id == OTHER_CGROUP {
            return (&self.other, !std::mem::replace(&mut self.other_sent, true));
        }
        let e = self.entries.entry(id).or_insert_with(|| Entry {
            labels: unresolved(id),
            dead: None,
            resolved: false,
            walked: true,
            active: false,
            sent: false,
        });
        (&e.labels, !std::mem::replace(&mut e.sent, true))
    }

    /// Labels of `id`, resolving it first ([`Self::ensure`]).
    #[cfg(test)]
    fn labels(&mut self, id: u64, now: Instant) -> Arc<CgroupLabels> {
        self.ensure(id, now);
        self.known_labels(id)
    }

    /// Resolves `id` (walking the tree, at most every [`MIN_RESCAN`]) if it
    /// is new. An id that a walk after its first sight did not find stays
    /// `unresolved:<id>` without further walks (it died; the periodic walk
    /// still looks).
    fn ensure(&mut self, id: u64, now: Instant) {
        if is_pseudo_cgroup(id) {
            return;
        }
        if let Some(e) = self.entries.get_mut(&id) {
            e.active = true;
            if e.resolved || e.walked {
                return;
            }
        }
        let walked = self
            .last_scan
            .is_none_or(|t| now.duration_since(t) >= MIN_RESCAN);
        if walked {
            self.scan(now);
        }
        self.entries.entry(id).or_insert_with(|| Entry {
            labels: unresolved(id),
            dead: None,
            resolved: false,
            walked,
            active: true,
            sent: false,
        });
    }

    /// Whether a cgroup that ran nothing since the last look has left its
    /// directory (one `stat` each; a cgroup's id is its directory's inode
    /// number); clears every cgroup's `active` for the next look.
    fn gone_while_idle(&mut self, now: Instant) -> bool {
        self.last_check = Some(now);
        let Some(root) = &self.root else {
            return false;
        };
        let mut gone = false;
        for (&id, e) in self.entries.iter_mut() {
            let idle = !std::mem::replace(&mut e.active, false);
            if gone || !idle || !e.resolved || e.dead.is_some() {
                continue;
            }
            let dir = root.join(e.labels.cgroup.trim_start_matches('/'));
            gone = std::fs::symlink_metadata(dir).map_or(true, |m| m.ino() != id);
        }
        gone
    }

    /// Walks made so far.
    #[cfg(test)]
    fn scans(&self) -> u64 {
        self.scans
    }

    /// Walks the cgroup2 tree: resolves new ids, marks vanished ones dead.
    pub fn scan(&mut self, now: Instant) {
        let export_epoch = self.epoch;
        self.last_scan = Some(now);
        self.last_check = Some(now);
        self.scans += 1;
        let Some(root) = self.root.clone() else {
            return;
        };
        let mut seen: HashMap<u64, String> = HashMap::new();
        walk(&root, &root, &mut seen, 0);
        // Paths of the ids that are gone: a new id there is the same series.
        let gone: HashMap<String, u64> = self
            .entries
            .iter()
            .filter(|(id, e)| e.resolved && !seen.contains_key(id))
            .map(|(&id, e)| (e.labels.cgroup.clone(), id))
            .collect();
        for (id, path) in &seen {
            let fresh = match self.entries.get(id) {
                Some(e) => !e.resolved || e.labels.cgroup != *path,
                None => true,
            };
            if fresh {
                if let Some(&old) = gone.get(path) {
                    self.entries.remove(&old);
                    self.recreated.push((old, *id));
                }
                let ident = identify(path);
                let mut labels = CgroupLabels {
                    cgroup: path.clone(),
                    unit: ident.unit,
                    runtime: ident.runtime,
                    container_id: ident.container_id,
                    pod_uid: ident.pod_uid,
                    ..CgroupLabels::default()
                };
                if let Some((dir, _)) = &self.names {
                    if labels.lacks_names() {
                        let n = dir.lookup(&labels.pod_uid, &labels.container_id);
                        if let Some(l) = labels.named(&n) {
                            labels = l;
                        }
                        if labels.lacks_names() {
                            // Unknown here yet: the sources refresh soon.
                            dir.want();
                        }
                    }
                }
                self.entries.insert(
                    *id,
                    Entry {
                        labels: Arc::new(labels),
                        dead: None,
                        resolved: true,
                        walked: true,
                        active: true,
                        sent: false,
                    },
                );
            }
        }
        for (id, e) in self.entries.iter_mut() {
            e.walked = true;
            e.active = false;
            if !seen.contains_key(id) && e.dead.is_none() {
                e.dead = Some((now, export_epoch));
            }
        }
    }

    /// Life-cycle decisions for the cgroups the books hold (`live`, with
    /// their joules): dead ones exported since their death and older than
    /// the retention, and the smallest ones beyond `--max-cgroups`.
    pub fn maintain(&mut self, live: &[(u64, f64)], now: Instant, export_epoch: u64) -> Decisions {
        let mut d = Decisions::default();
        let mut keep: Vec<(u64, f64)> = Vec::with_capacity(live.len());
        for &(id, j) in live {
            if is_pseudo_cgroup(id) {
                continue;
            }
            let expired = self
                .entries
                .get(&id)
                .and_then(|e| e.dead)
                .is_some_and(|(t, epoch)| {
                    export_epoch > epoch && now.duration_since(t) >= self.retention
                });
            if expired {
                d.fold.push(id);
            } else {
                keep.push((id, j));
            }
        }
        if keep.len() > self.max {
            keep.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            let n = keep.len() - self.max;
            d.fold.extend(keep.iter().take(n).map(|&(id, _)| id));
            d.over_limit = n as u64;
        }
        for id in &d.fold {
            self.entries.remove(id);
        }
        self.folds += d.over_limit;
        d
    }

    /// Cgroups folded into `other` because of `--max-cgroups` so far.
    pub fn folds(&self) -> u64 {
        self.folds
    }

    /// Number of dead cgroups still shown.
    pub fn dead(&self) -> usize {
        self.entries.values().filter(|e| e.dead.is_some()).count()
    }
}

/// The labels of an id no walk has found (yet).
fn unresolved(id: u64) -> Arc<CgroupLabels> {
    Arc::new(CgroupLabels {
        cgroup: format!("unresolved:{id}"),
        ..CgroupLabels::default()
    })
}

/// Depth guard: cgroup trees are shallow; a loop or a pathological tree
/// must not recurse without bound.
const MAX_DEPTH: usize = 32;

fn walk(root: &Path, dir: &Path, out: &mut HashMap<u64, String>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    let rel = dir
        .strip_prefix(root)
        .map(|r| format!("/{}", r.display()))
        .unwrap_or_else(|_| "/".into());
    out.insert(meta.ino(), rel);
    // cgroupfs (kernfs) counts a directory's links as 2 + its child
    // directories, like most Unix filesystems: a leaf cgroup's ~40 control
    // files need not be listed to know it has no children. (A filesystem
    // that does not count, like btrfs, gives 1: it is listed.)
    if meta.nlink() == 2 {
        return;
    }
    let Ok(it) = std::fs::read_dir(dir) else {
        return;
    };
    for e in it.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(root, &e.path(), out, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ino(p: &Path) -> u64 {
        std::fs::metadata(p).expect("stat").ino()
    }

    #[test]
    fn resolves_ids_by_inode_and_identifies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let scope = dir
            .path()
            .join("system.slice/docker-4f9c1b2a3d4e5f60718293a4b5c6d7e8f9012345678901234567890abcdef123.scope");
        std::fs::create_dir_all(&scope).expect("mkdir");
        let mut r = Registry::new(Some(dir.path().to_path_buf()), Duration::from_secs(600), 10);
        let l = r.labels(ino(&scope), Instant::now());
        assert_eq!(
            l.cgroup,
            "/system.slice/docker-4f9c1b2a3d4e5f60718293a4b5c6d7e8f9012345678901234567890abcdef123.scope"
        );
        assert_eq!(l.runtime, "docker");
        assert_eq!(l.container_id.len(), 64);
        assert_eq!(r.labels(ino(dir.path()), Instant::now()).cgroup, "/");
    }

    #[test]
    fn new_cgroups_are_found_and_unknown_ids_are_labelled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = Registry::new(Some(dir.path().to_path_buf()), Duration::from_secs(600), 10);
        let t0 = Instant::now();
        assert_eq!(r.labels(123_456_789, t0).cgroup, "unresolved:123456789");
        let late = dir.path().join("late.service");
        std::fs::create_dir(&late).expect("mkdir");
        // Found on the next walk (rate-limited).
        let l = r.labels(ino(&late), t0 + MIN_RESCAN);
        assert_eq!(l.cgroup, "/late.service");
        assert_eq!(l.unit, "late.service");
    }

    #[test]
    fn an_id_that_is_never_found_does_not_walk_the_tree_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = Registry::new(Some(dir.path().to_path_buf()), Duration::from_secs(600), 10);
        let t0 = Instant::now();
        assert_eq!(r.labels(42, t0).cgroup, "unresolved:42");
        assert_eq!(r.scans(), 1);
        for i in 1..50 {
            r.labels(42, t0 + MIN_RESCAN * i);
        }
        assert_eq!(r.scans(), 1, "a dead id must not cost a walk per drain");
        // A new id seen while walks are rate-limited gets its own walk later.
        let t1 = t0 + MIN_RESCAN * 60;
        r.scan(t1);
        let newer = dir.path().join("newer.scope");
        std::fs::create_dir(&newer).expect("mkdir");
        let nid = ino(&newer);
        assert_eq!(
            r.labels(nid, t1).cgroup,
            format!("unresolved:{nid}"),
            "rate-limited"
        );
        assert_eq!(r.labels(nid, t1 + MIN_RESCAN).cgroup, "/newer.scope");
        assert_eq!(r.scans(), 3);
    }

    #[test]
    fn the_tree_is_walked_only_when_an_idle_cgroup_is_gone_or_a_minute_passed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (busy, idle) = (dir.path().join("busy.scope"), dir.path().join("idle.scope"));
        std::fs::create_dir(&busy).expect("mkdir");
        std::fs::create_dir(&idle).expect("mkdir");
        let (b, i) = (ino(&busy), ino(&idle));
        let mut r = Registry::new(Some(dir.path().to_path_buf()), Duration::from_secs(600), 10);
        let t0 = Instant::now();
        r.prepare([b, i], t0, 0);
        assert_eq!(r.scans(), 1);
        // Both alive, one running: looks, but no walk, for 55 s.
        for k in 1..12 {
            r.prepare([b], t0 + PERIODIC_RESCAN * k, 0);
        }
        assert_eq!(r.scans(), 1, "no walk while nothing changed");
        assert_eq!(r.dead(), 0);
        // A minute: walked anyway.
        r.prepare([b], t0 + FULL_RESCAN, 0);
        assert_eq!(r.scans(), 2);
        // The idle one is removed: the next look walks and marks it dead.
        std::fs::remove_dir(&idle).expect("rmdir");
        let t1 = t0 + FULL_RESCAN + PERIODIC_RESCAN;
        r.prepare([b], t1, 0);
        assert_eq!(r.scans(), 3, "a gone cgroup is walked for");
        assert_eq!(r.dead(), 1);
        assert_eq!(r.known_labels(b).cgroup, "/busy.scope");
    }

    #[test]
    fn dead_cgroups_stay_until_exported_and_retained_then_fold() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cg = dir.path().join("job.scope");
        std::fs::create_dir(&cg).expect("mkdir");
        let id = ino(&cg);
        let retention = Duration::from_secs(60);
        let mut r = Registry::new(Some(dir.path().to_path_buf()), retention, 10);
        let t0 = Instant::now();
        r.labels(id, t0);
        std::fs::remove_dir(&cg).expect("rmdir");
        // Death noticed on a periodic walk at epoch 3.
        r.prepare([], t0 + PERIODIC_RESCAN, 3);
        assert_eq!(
            r.maintain(&[(id, 5.0)], t0 + PERIODIC_RESCAN, 3).fold,
            Vec::<u64>::new()
        );
        assert_eq!(r.dead(), 1);
        let later = t0 + PERIODIC_RESCAN + retention;
        // Retention over but not exported since death: stays.
        assert_eq!(r.maintain(&[(id, 5.0)], later, 3).fold, Vec::<u64>::new());
        // Exported since (epoch 4) and retention over: folds.
        let d = r.maintain(&[(id, 5.0)], later, 4);
        assert_eq!(d.fold, vec![id]);
        assert_eq!(d.over_limit, 0);
        assert_eq!(r.dead(), 0);
    }

    #[test]
    fn a_cgroup_made_again_at_the_same_path_takes_over_the_dead_ones_series() {
        let top = tempfile::tempdir().expect("tempdir");
        let dir = top.path().join("tree");
        let cg = dir.join("app.service");
        let other = dir.join("other.service");
        std::fs::create_dir_all(&cg).expect("mkdir");
        std::fs::create_dir(&other).expect("mkdir");
        let (old, keep) = (ino(&cg), ino(&other));
        let mut r = Registry::new(Some(dir.clone()), Duration::from_secs(600), 10);
        let t0 = Instant::now();
        assert!(r.prepare([old, keep], t0, 0).is_empty());
        assert_eq!(r.known_labels(old).cgroup, "/app.service");
        // Restarted: gone and made again with a new id. Cgroup ids are never
        // reused, but a disk file system reuses a freed inode at once: the
        // old directory moves out of the tree instead of being removed.
        std::fs::rename(&cg, top.path().join("gone")).expect("move out");
        std::fs::create_dir(&cg).expect("mkdir again");
        let new = ino(&cg);
        assert_ne!(new, old);
        let t1 = t0 + MIN_RESCAN;
        assert_eq!(r.prepare([new], t1, 0), vec![(old, new)]);
        assert_eq!(r.known_labels(new).cgroup, "/app.service");
        assert_eq!(r.known_labels(new).unit, "app.service");
        assert_eq!(r.dead(), 0, "the old id left with its series");
        assert!(
            r.prepare([new], t1 + PERIODIC_RESCAN, 0).is_empty(),
            "reported once"
        );
        // A rename is not a recreation: both ids live.
        std::fs::rename(&other, dir.join("renamed.service")).expect("rename");
        std::fs::create_dir(&other).expect("mkdir");
        let t2 = t1 + PERIODIC_RESCAN * 2;
        assert!(r.prepare([ino(&other)], t2, 0).is_empty());
        assert_eq!(r.known_labels(keep).cgroup, "/renamed.service");
        assert_eq!(r.known_labels(ino(&other)).cgroup, "/other.service");
    }

    #[test]
    fn beyond_max_the_smallest_fold_and_are_counted() {
        let mut r = Registry::new(None, Duration::from_secs(600), 2);
        let live = [
            (1, 5.0),
            (2, 0.5),
            (3, 9.0),
            (4, 0.1),
            (OTHER_CGROUP, 100.0),
        ];
        let d = r.maintain(&live, Instant::now(), 0);
        assert_eq!(d.fold, vec![4, 2]);
        assert_eq!(d.over_limit, 2);
        assert_eq!(r.folds(), 2);
    }

    #[test]
    fn hybrid_and_unified_roots() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut root = SysRoot::under(dir.path());
        assert_eq!(v2_root(&root), None);
        std::fs::create_dir_all(root.cgroup.join("unified")).expect("mkdir");
        std::fs::write(root.cgroup.join("unified/cgroup.procs"), "").expect("write");
        assert_eq!(v2_root(&root), Some(root.cgroup.join("unified")));
        root.cgroup = dir.path().join("v2");
        std::fs::create_dir_all(&root.cgroup).expect("mkdir");
        std::fs::write(root.cgroup.join("cgroup.controllers"), "cpu io\n").expect("write");
        assert_eq!(v2_root(&root), Some(root.cgroup.clone()));
    }
}
