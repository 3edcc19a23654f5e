//! The durable push queue and counter totals, in one redb database under
//! `--state-dir` (`ergon.redb`).
//!
//! Why redb: an embedded, pure-Rust ACID store (copy-on-write B-trees, one
//! file, fsync on commit, crash-safe without a recovery step we would have
//! to write), maintained, with no C toolchain. An append-only log crate
//! would also hold samples, but the queue needs deletion from the front
//! (acknowledged, or dropped when full) and a few keyed tables (series,
//! totals, acknowledged timestamps) updated in the same transaction.
//!
//! Samples arrive in memory (the inbox, filled by the drain task) and are
//! committed every `--fsync-interval`: at most that much is held only in
//! memory. The sender reads committed samples in order and removes them
//! once the receiver acknowledged them.
//!
//! A failed commit loses nothing: its samples go back in front of the
//! inbox for the next one. After an I/O error (a full disk, a failing
//! device) redb refuses every later transaction until the database is
//! closed and opened again, so the next commit does exactly that first;
//! the committer retries with backoff ([`crate::push::flush_loop`]), the
//! inbox is bounded by `--push-buffer` meanwhile (the oldest go first,
//! counted in `ergon_push_samples_dropped_total`), and [`Queue::outage`]
//! says since when commits fail, for `/health` and the stop.
//!
//! Series come and go (a container's cgroup lives minutes): [`Queue::prune`]
//! forgets a series that has no sample waiting and none newer than
//! `--state-retention`, and a counter total not committed for as long, so
//! a node agent's state does not grow with every container it ever saw.

use std::{
    collections::{HashMap, VecDeque},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
};

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};

/// seq → (series id, ms timestamp, value)
const SAMPLES: TableDefinition<u64, (u64, i64, f64)> = TableDefinition::new("samples");
/// series id → descriptor (label pairs, see [`descriptor`])
const SERIES: TableDefinition<u64, &str> = TableDefinition::new("series");
/// series id → newest timestamp the receiver acknowledged
const ACKED: TableDefinition<u64, i64> = TableDefinition::new("acked");
/// counter identity → cumulative value
const TOTALS: TableDefinition<&str, f64> = TableDefinition::new("totals");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const FORMAT: &str = "ergon-state-1";

pub const FILE: &str = "ergon.redb";

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot create the state directory {path}: {source}; create it, or pick another with --state-dir")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the state database {path}: {source}; if it is corrupt or not Ergon's, move it aside (mv {path} {path}.bad) or pick another --state-dir; Ergon never deletes state")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("{path} is not an Ergon state database ({found}); move it aside or pick another --state-dir; Ergon never deletes state")]
    Foreign { path: PathBuf, found: String },
    #[error("the state database {path} is damaged ({detail}): truncated or corrupted, it cannot be opened; move it aside (mv {path} {path}.bad) and start again (the queue and the counters' totals in it are lost; the batch endpoint is unaffected), or pick another --state-dir; Ergon never deletes state")]
    Damaged { path: PathBuf, detail: String },
    #[error("state database {path}: {message}")]
    Db {
        path: PathBuf,
        message: String,
        /// An I/O error: redb refuses every later transaction until the
        /// database is closed and opened again.
        io: bool,
    },
    #[error("the state database {path} was closed after an I/O error and is not open again yet; the next commit reopens it")]
    Closed { path: PathBuf },
}

impl Outage {
    /// An outage as [`Queue::outage`] reports it, for tests of its readers.
    #[cfg(test)]
    pub fn for_test(since_ms: i64, error: &str, attempts: u64) -> Outage {
        Outage {
            since_ms,
            error: error.into(),
            attempts,
            reopen: false,
        }
    }
}

impl QueueError {
    /// Whether the database must be closed and reopened before it works
    /// again (redb: "Previous I/O error occurred. Please close and re-open
    /// the database.").
    pub fn needs_reopen(&self) -> bool {
        matches!(
            self,
            QueueError::Db { io: true, .. } | QueueError::Closed { .. }
        )
    }
}

/// One queued sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Queued {
    pub seq: u64,
    pub series: u64,
    pub ts: i64,
    pub value: f64,
}

/// Label pairs of a series as stored: `name=value` lines, sorted by name,
/// `__name__` first, empty values left out (Prometheus drops them anyway).
pub fn descriptor(name: &str, labels: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(&str, &str)> = labels
        .iter()
        .copied()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    pairs.sort();
    let mut s = format!("__name__={name}");
    for (k, v) in pairs {
        s.push('\n');
        s.push_str(k);
        s.push('=');
        // Values are cgroup paths and ids: no newlines; escape to be safe.
        s.push_str(&v.replace('\n', "\\n"));
    }
    s
}

/// The pairs of a descriptor.
pub fn pairs(desc: &str) -> Vec<(String, String)> {
    desc.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace("\\n", "\n")))
        .collect()
}

/// Computes the counter totals that go with the samples handed over.
pub type TotalsFn = Box<dyn Fn() -> Vec<(String, f64)> + Send>;

/// Samples waiting for the next commit, and the totals to commit with them.
#[derive(Default)]
struct Inbox {
    samples: VecDeque<(Arc<str>, i64, f64)>,
    totals: Option<TotalsFn>,
}

/// Commits failing: since when, why, how often tried.
#[derive(Clone, Debug, PartialEq)]
pub struct Outage {
    /// Unix ms of the first failed commit.
    pub since_ms: i64,
    /// The last error.
    pub error: String,
    /// Failed commits (and reopens) so far.
    pub attempts: u64,
    /// The last error closed the database: reopen before the next commit.
    reopen: bool,
}

struct State {
    series_ids: HashMap<Arc<str>, u64>,
    series_desc: HashMap<u64, Arc<str>>,
    acked: HashMap<u64, i64>,
    /// series id → (seq, ms timestamp) of its newest committed sample (at
    /// start-up: the next seq and the time of opening, to be safe).
    last_use: HashMap<u64, (u64, i64)>,
    next_seq: u64,
    next_series: u64,
    len: u64,
    dropped: u64,
}

/// counter identity → (total, Unix ms it was last committed; at start-up,
/// the time of opening).
type Totals = HashMap<String, (f64, i64)>;

/// Shared by the drain (inbox), the flusher and the sender.
///
/// Locks are taken in one order, `state` → `db` → `totals`, and `inbox`
/// alone or last.
pub struct Queue {
    path: PathBuf,
    /// `None` only inside [`Self::reopen`], or after a reopen failed.
    db: RwLock<Option<Database>>,
    capacity: u64,
    inbox: Mutex<Inbox>,
    /// Samples dropped from the inbox beyond capacity (while commits fail).
    dropped_in_memory: AtomicU64,
    state: Mutex<State>,
    outage: Mutex<Option<Outage>>,
    totals: Mutex<Totals>,
}

/// What [`Queue::prune`] forgot.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub series: usize,
    pub totals: usize,
}

fn db_err(path: &Path, e: impl Into<redb::Error>) -> QueueError {
    let e: redb::Error = e.into();
    QueueError::Db {
        path: path.to_owned(),
        io: matches!(e, redb::Error::Io(_) | redb::Error::PreviousIo),
        message: e.to_string(),
    }
}

/// Makes `path` a file only its owner can read and write (0600): created
/// so when missing (redb then initialises the empty file), tightened when
/// an older Ergon left it 0644. The state holds the series' names and
/// values, which are the host's business.
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        }
        Err(e) => Err(e),
    }
}

/// The text of a caught panic.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Runs `f` with redb's assertions caught: some damage makes redb panic
/// instead of returning an error (a file truncated to half panics in its
/// page manager, flipped bytes in its region allocator). Such a panic is
/// the file's damage, not a bug to crash on: it is answered as
/// [`QueueError::Damaged`], with the panic hook silenced meanwhile so no
/// backtrace is printed (a panic on another thread in those milliseconds
/// would go unprinted too: opening takes milliseconds, at start-up and
/// after an I/O error).
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T, QueueError>) -> Result<T, QueueError> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    match r {
        Ok(r) => r.map_err(|e| match e {
            QueueError::Open {
                path,
                source: redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail)),
            } => QueueError::Damaged { path, detail },
            e => e,
        }),
        Err(p) => Err(QueueError::Damaged {
            path: path.to_owned(),
            detail: format!("redb: {}", panic_text(p.as_ref())),
        }),
    }
}

/// Opens (or creates) the database at `path` and checks it is Ergon's.
fn open_db(path: &Path) -> Result<Database, QueueError> {
    private_file(path).map_err(|source| QueueError::Open {
        path: path.to_owned(),
        source: redb::DatabaseError::Storage(redb::StorageError::Io(source)),
    })?;
    let db = Database::create(path).map_err(|source| QueueError::Open {
        path: path.to_owned(),
        source,
    })?;
    let tx = db.begin_write().map_err(|x| db_err(path, x))?;
    {
        let mut meta = tx.open_table(META).map_err(|x| db_err(path, x))?;
        let found = meta
            .get("format")
            .map_err(|x| db_err(path, x))?
            .map(|v| v.value().to_owned());
        match found {
            Some(f) if f == FORMAT => {}
            Some(f) => {
                return Err(QueueError::Foreign {
                    path: path.to_owned(),
                    found: format!("format {f:?}, expected {FORMAT:?}"),
                })
            }
            None => {
                let others: Vec<String> = tx
                    .list_tables()
                    .map_err(|x| db_err(path, x))?
                    .map(|h| h.name().to_owned())
                    .filter(|n| n != "meta")
                    .collect();
                if !others.is_empty() {
                    return Err(QueueError::Foreign {
                        path: path.to_owned(),
                        found: format!("tables {others:?} and no format marker"),
                    });
                }
                meta.insert("format", FORMAT).map_err(|x| db_err(path, x))?;
            }
        }
        tx.open_table(SAMPLES).map_err(|x| db_err(path, x))?;
        tx.open_table(SERIES).map_err(|x| db_err(path, x))?;
        tx.open_table(ACKED).map_err(|x| db_err(path, x))?;
        tx.open_table(TOTALS).map_err(|x| db_err(path, x))?;
    }
    tx.commit().map_err(|x| db_err(path, x))?;
    Ok(db)
}

/// The queue's bookkeeping and the counter totals as `db` holds them.
fn load(db: &Database, path: &Path) -> Result<(State, Totals), QueueError> {
    let rx = db.begin_read().map_err(|x| db_err(path, x))?;
    let mut state = State {
        series_ids: HashMap::new(),
        series_desc: HashMap::new(),
        acked: HashMap::new(),
        last_use: HashMap::new(),
        next_seq: 0,
        next_series: 0,
        len: 0,
        dropped: 0,
    };
    let mut totals = HashMap::new();
    let opened_ms = crate::units::now_unix_ms();
    {
        let series = rx.open_table(SERIES).map_err(|x| db_err(path, x))?;
        for row in series.iter().map_err(|x| db_err(path, x))? {
            let (k, v) = row.map_err(|x| db_err(path, x))?;
            let desc: Arc<str> = v.value().into();
            state.series_ids.insert(desc.clone(), k.value());
            state.series_desc.insert(k.value(), desc);
            state.next_series = state.next_series.max(k.value() + 1);
        }
        let acked = rx.open_table(ACKED).map_err(|x| db_err(path, x))?;
        for row in acked.iter().map_err(|x| db_err(path, x))? {
            let (k, v) = row.map_err(|x| db_err(path, x))?;
            state.acked.insert(k.value(), v.value());
        }
        let samples = rx.open_table(SAMPLES).map_err(|x| db_err(path, x))?;
        state.len = samples.len().map_err(|x| db_err(path, x))?;
        if let Some((k, _)) = samples.last().map_err(|x| db_err(path, x))? {
            state.next_seq = k.value() + 1;
        }
        let t = rx.open_table(TOTALS).map_err(|x| db_err(path, x))?;
        for row in t.iter().map_err(|x| db_err(path, x))? {
            let (k, v) = row.map_err(|x| db_err(path, x))?;
            totals.insert(k.value().to_owned(), (v.value(), opened_ms));
        }
    }
    let next_seq = state.next_seq;
    state.last_use = state
        .series_desc
        .keys()
        .map(|&id| (id, (next_seq, opened_ms)))
        .collect();
    Ok((state, totals))
}

/// [`open_db`] and [`load`], redb's assertions caught ([`guarded`]): at
/// start-up and after an I/O error.
fn open_and_load(path: &Path) -> Result<(Database, (State, Totals)), QueueError> {
    guarded(path, || {
        let db = open_db(path)?;
        let loaded = load(&db, path)?;
        Ok((db, loaded))
    })
}

/// Drops the oldest samples of `samples` beyond `capacity`; returns how many.
fn bound(samples: &mut VecDeque<(Arc<str>, i64, f64)>, capacity: u64) -> u64 {
    let excess = (samples.len() as u64).saturating_sub(capacity);
    samples.drain(..excess as usize);
    excess
}

impl Queue {
    /// Opens (or creates) the state under `dir`.
    pub fn open(dir: &Path, capacity: u64) -> Result<Queue, QueueError> {
        std::fs::create_dir_all(dir).map_err(|source| QueueError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(FILE);
        let (db, (state, totals)) = open_and_load(&path)?;
        Ok(Queue {
            path,
            db: RwLock::new(Some(db)),
            capacity: capacity.max(1),
            inbox: Mutex::new(Inbox::default()),
            dropped_in_memory: AtomicU64::new(0),
            state: Mutex::new(state),
            outage: Mutex::new(None),
            totals: Mutex::new(totals),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the database, for the other tables that live in the
    /// state (job totals, [`crate::jobs::fold`]); [`QueueError::Closed`]
    /// while it is closed after an I/O error.
    pub fn with_db<R, E: From<QueueError>>(
        &self,
        f: impl FnOnce(&Database) -> Result<R, E>,
    ) -> Result<R, E> {
        let db = self.db.read().unwrap_or_else(|p| p.into_inner());
        match db.as_ref() {
            Some(db) => f(db),
            None => Err(QueueError::Closed {
                path: self.path.clone(),
            }
            .into()),
        }
    }

    /// Closes the database and opens it again, reading its bookkeeping
    /// anew: what redb asks for after an I/O error. Dropping the old handle
    /// first releases the file lock the new one takes.
    fn reopen(&self) -> Result<(), QueueError> {
        let mut st = lock(&self.state);
        let mut db = self.db.write().unwrap_or_else(|p| p.into_inner());
        *db = None;
        let (fresh, (loaded, _)) = open_and_load(&self.path)?;
        let dropped = st.dropped;
        *st = State { dropped, ..loaded };
        *db = Some(fresh);
        Ok(())
    }

    /// A sample for the next commit (memory only until then).
    pub fn append(&self, desc: &Arc<str>, ts: i64, value: f64) {
        let mut inbox = lock(&self.inbox);
        inbox.samples.push_back((desc.clone(), ts, value));
        self.bound_inbox(&mut inbox);
    }

    /// Samples of the counters whose totals `totals` computes, handed over
    /// together: a commit that stores these samples stores totals at least
    /// as new, so after a crash the next run's counters (total + its own)
    /// never fall below a sample already pushed.
    pub fn append_with_totals(&self, samples: Vec<(Arc<str>, i64, f64)>, totals: TotalsFn) {
        let mut inbox = lock(&self.inbox);
        inbox.samples.extend(samples);
        inbox.totals = Some(totals);
        self.bound_inbox(&mut inbox);
    }

    /// Memory is bounded by the capacity too: while commits fail the inbox
    /// keeps the newest `capacity` samples, the oldest are dropped and
    /// counted (a commit would have dropped them from the disk anyway).
    fn bound_inbox(&self, inbox: &mut Inbox) {
        let n = bound(&mut inbox.samples, self.capacity);
        if n > 0 {
            self.dropped_in_memory.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Samples not yet committed.
    pub fn in_memory(&self) -> usize {
        lock(&self.inbox).samples.len()
    }

    /// Counter totals as last committed (read at start-up).
    pub fn totals(&self) -> HashMap<String, f64> {
        lock(&self.totals)
            .iter()
            .map(|(k, &(v, _))| (k.clone(), v))
            .collect()
    }

    /// Since when and why commits fail; `None` while they succeed.
    pub fn outage(&self) -> Option<Outage> {
        lock(&self.outage).clone()
    }

    fn note_failure(&self, e: &QueueError, now_ms: i64) {
        let mut o = lock(&self.outage);
        let o = o.get_or_insert_with(|| Outage {
            since_ms: now_ms,
            error: String::new(),
            attempts: 0,
            reopen: false,
        });
        o.error = e.to_string();
        o.attempts += 1;
        o.reopen = e.needs_reopen();
    }

    /// Commits the inbox and the counter totals in one transaction (fsync),
    /// dropping the oldest samples beyond capacity. The totals are those
    /// handed over with the samples ([`Self::append_with_totals`]), else
    /// `totals`. Returns (committed, dropped).
    pub fn commit(&self, totals: &[(String, f64)]) -> Result<(u64, u64), QueueError> {
        self.commit_at(totals, crate::units::now_unix_ms())
    }

    /// [`Self::commit`], noting the totals as committed at `now_ms`. After
    /// an I/O error the database is reopened first. On failure nothing is
    /// lost that fits the capacity: the samples go back in front of the
    /// inbox and [`Self::outage`] says why.
    pub fn commit_at(
        &self,
        totals: &[(String, f64)],
        now_ms: i64,
    ) -> Result<(u64, u64), QueueError> {
        if self.outage().is_some_and(|o| o.reopen) {
            if let Err(e) = self.reopen() {
                self.note_failure(&e, now_ms);
                return Err(e);
            }
        }
        let (batch, with) = {
            let mut inbox = lock(&self.inbox);
            (std::mem::take(&mut inbox.samples), inbox.totals.take())
        };
        let computed;
        let totals = match &with {
            Some(f) => {
                computed = f();
                computed.as_slice()
            }
            None => totals,
        };
        let mut st = lock(&self.state);
        let before = (st.next_seq, st.next_series, st.len);
        let mut new_series = Vec::new();
        let written = self.with_db(|db| self.write(db, &mut st, &batch, totals, &mut new_series));
        match written {
            Ok(dropped) => {
                st.dropped += dropped;
                let mut mem = lock(&self.totals);
                for (k, v) in totals {
                    mem.insert(k.clone(), (*v, now_ms));
                }
                *lock(&self.outage) = None;
                Ok((batch.len() as u64, dropped))
            }
            Err(e) => {
                // Nothing was written: undo the ids handed out and put the
                // samples back in front of the inbox for the next commit.
                (st.next_seq, st.next_series, st.len) = before;
                for (desc, id) in new_series {
                    st.series_ids.remove(&desc);
                    st.series_desc.remove(&id);
                    st.last_use.remove(&id);
                }
                drop(st);
                {
                    let mut inbox = lock(&self.inbox);
                    let newer = std::mem::replace(&mut inbox.samples, batch);
                    inbox.samples.extend(newer);
                    if inbox.totals.is_none() {
                        inbox.totals = with;
                    }
                    self.bound_inbox(&mut inbox);
                }
                self.note_failure(&e, now_ms);
                Err(e)
            }
        }
    }

    /// One write transaction of [`Self::commit`]; returns the samples dropped.
    fn write(
        &self,
        db: &Database,
        st: &mut State,
        batch: &VecDeque<(Arc<str>, i64, f64)>,
        totals: &[(String, f64)],
        new_series: &mut Vec<(Arc<str>, u64)>,
    ) -> Result<u64, QueueError> {
        let path = &self.path;
        let tx = db.begin_write().map_err(|x| db_err(path, x))?;
        let mut dropped = 0;
        {
            let mut series = tx.open_table(SERIES).map_err(|x| db_err(path, x))?;
            let mut samples = tx.open_table(SAMPLES).map_err(|x| db_err(path, x))?;
            for (desc, ts, v) in batch {
                let id = match st.series_ids.get(desc) {
                    Some(&id) => id,
                    None => {
                        let id = st.next_series;
                        st.next_series += 1;
                        series.insert(id, &**desc).map_err(|x| db_err(path, x))?;
                        st.series_ids.insert(desc.clone(), id);
                        st.series_desc.insert(id, desc.clone());
                        new_series.push((desc.clone(), id));
                        id
                    }
                };
                let seq = st.next_seq;
                st.next_seq += 1;
                samples
                    .insert(seq, (id, *ts, *v))
                    .map_err(|x| db_err(path, x))?;
                st.last_use.insert(id, (seq, *ts));
            }
            st.len += batch.len() as u64;
            while st.len > self.capacity {
                if samples.pop_first().map_err(|x| db_err(path, x))?.is_none() {
                    break;
                }
                st.len -= 1;
                dropped += 1;
            }
            let mut t = tx.open_table(TOTALS).map_err(|x| db_err(path, x))?;
            for (k, v) in totals {
                t.insert(k.as_str(), *v).map_err(|x| db_err(path, x))?;
            }
        }
        tx.commit().map_err(|x| db_err(path, x))?;
        Ok(dropped)
    }

    /// Up to `max` committed samples, oldest first.
    pub fn peek(&self, max: usize) -> Result<Vec<Queued>, QueueError> {
        self.with_db(|db| self.peek_in(db, max))
    }

    fn peek_in(&self, db: &Database, max: usize) -> Result<Vec<Queued>, QueueError> {
        let path = &self.path;
        let rx = db.begin_read().map_err(|x| db_err(path, x))?;
        let samples = rx.open_table(SAMPLES).map_err(|x| db_err(path, x))?;
        let mut out = Vec::with_capacity(max.min(100_000));
        for row in samples.iter().map_err(|x| db_err(path, x))?.take(max) {
            let (k, v) = row.map_err(|x| db_err(path, x))?;
            let (series, ts, value) = v.value();
            out.push(Queued {
                seq: k.value(),
                series,
                ts,
                value,
            });
        }
        Ok(out)
    }

    /// Descriptor of series `id`.
    pub fn descriptor_of(&self, id: u64) -> Option<Arc<str>> {
        lock(&self.state).series_desc.get(&id).cloned()
    }

    /// Newest acknowledged timestamp of series `id`.
    pub fn acked(&self, id: u64) -> Option<i64> {
        lock(&self.state).acked.get(&id).copied()
    }

    /// Removes every sample up to `seq` (acknowledged or rejected) and
    /// records the newest acknowledged timestamp per series.
    pub fn remove_through(&self, seq: u64, acked: &[(u64, i64)]) -> Result<u64, QueueError> {
        let mut st = lock(&self.state);
        self.with_db(|db| self.remove_in(db, &mut st, seq, acked))
    }

    fn remove_in(
        &self,
        db: &Database,
        st: &mut State,
        seq: u64,
        acked: &[(u64, i64)],
    ) -> Result<u64, QueueError> {
        let path = &self.path;
        let tx = db.begin_write().map_err(|x| db_err(path, x))?;
        let mut removed = 0;
        {
            let mut samples = tx.open_table(SAMPLES).map_err(|x| db_err(path, x))?;
            loop {
                let first = samples
                    .first()
                    .map_err(|x| db_err(path, x))?
                    .map(|(k, _)| k.value());
                match first {
                    Some(k) if k <= seq => {
                        samples.remove(k).map_err(|x| db_err(path, x))?;
                        removed += 1;
                    }
                    _ => break,
                }
            }
            let mut t = tx.open_table(ACKED).map_err(|x| db_err(path, x))?;
            for &(id, ts) in acked {
                if st.acked.get(&id).is_none_or(|&old| ts > old) {
                    t.insert(id, ts).map_err(|x| db_err(path, x))?;
                    st.acked.insert(id, ts);
                }
            }
        }
        tx.commit().map_err(|x| db_err(path, x))?;
        st.len = st.len.saturating_sub(removed);
        Ok(removed)
    }

    /// Forgets what has not been used for `retention_ms` before `now_ms`:
    /// a series with no sample waiting and none newer than that (its
    /// descriptor and acknowledged timestamp), and a counter total not
    /// committed since (a series that comes back after that starts at 0,
    /// which Prometheus reads as a counter reset). One transaction.
    pub fn prune(&self, now_ms: i64, retention_ms: i64) -> Result<Pruned, QueueError> {
        let mut st = lock(&self.state);
        self.with_db(|db| self.prune_in(db, &mut st, now_ms, retention_ms))
    }

    fn prune_in(
        &self,
        db: &Database,
        st: &mut State,
        now_ms: i64,
        retention_ms: i64,
    ) -> Result<Pruned, QueueError> {
        let path = &self.path;
        let cutoff = now_ms.saturating_sub(retention_ms);
        let tx = db.begin_write().map_err(|x| db_err(path, x))?;
        let first_waiting = {
            let samples = tx.open_table(SAMPLES).map_err(|x| db_err(path, x))?;
            let first = samples.first().map_err(|x| db_err(path, x))?;
            first.map_or(st.next_seq, |(k, _)| k.value())
        };
        let series: Vec<u64> = st
            .last_use
            .iter()
            .filter(|(_, &(seq, ts))| seq < first_waiting && ts < cutoff)
            .map(|(&id, _)| id)
            .collect();
        let keys: Vec<String> = lock(&self.totals)
            .iter()
            .filter(|(_, &(_, seen))| seen < cutoff)
            .map(|(k, _)| k.clone())
            .collect();
        if series.is_empty() && keys.is_empty() {
            tx.abort().map_err(|x| db_err(path, x))?;
            return Ok(Pruned::default());
        }
        {
            let mut descs = tx.open_table(SERIES).map_err(|x| db_err(path, x))?;
            let mut acked = tx.open_table(ACKED).map_err(|x| db_err(path, x))?;
            for &id in &series {
                descs.remove(id).map_err(|x| db_err(path, x))?;
                acked.remove(id).map_err(|x| db_err(path, x))?;
            }
            let mut t = tx.open_table(TOTALS).map_err(|x| db_err(path, x))?;
            for k in &keys {
                t.remove(k.as_str()).map_err(|x| db_err(path, x))?;
            }
        }
        tx.commit().map_err(|x| db_err(path, x))?;
        for id in &series {
            st.last_use.remove(id);
            st.acked.remove(id);
            if let Some(desc) = st.series_desc.remove(id) {
                st.series_ids.remove(&desc);
            }
        }
        let mut totals = lock(&self.totals);
        for k in &keys {
            totals.remove(k);
        }
        Ok(Pruned {
            series: series.len(),
            totals: keys.len(),
        })
    }

    /// Committed samples waiting.
    pub fn len(&self) -> u64 {
        lock(&self.state).len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Samples dropped because the queue was full (on disk, or in memory
    /// while commits failed).
    pub fn dropped(&self) -> u64 {
        lock(&self.state).dropped + self.dropped_in_memory.load(Ordering::Relaxed)
    }

    /// Timestamp of the oldest committed sample.
    pub fn oldest_ts(&self) -> Option<i64> {
        self.peek(1).ok()?.first().map(|q| q.ts)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
