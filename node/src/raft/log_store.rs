//! The Raft log over the write-ahead log ([`crate::wal`]): entries are checksummed records,
//! a torn tail is cut on open, and an append counts as stored only after its fsync. Appends go
//! to one log thread that takes everything queued and writes it under one fsync (group
//! commit), so a burst of writes shares the disk's latency. The vote, the purge point and the
//! commit point live in small files next to the segments.
//!
//! ```text
//!  raft/log/<first index>.log   entries (crate::raft::entry encoding)
//!  raft/vote.json               fsynced before a vote counts
//!  raft/purged.json             fsynced before segments are deleted
//!  raft/committed.json          best effort: a stale value only means more is re-applied
//! ```

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, LogId, StorageError, StorageIOError, Vote};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::entry::{self, Command, LogIdJson};
use super::{Entry, TypeConfig};
use crate::wal::Wal;

/// Log segments are rolled past this size.
const SEGMENT_BYTES: u64 = 64 << 20;
/// Recent entries kept in memory for the state machine and replication, at most.
const CACHE_BYTES: usize = 64 << 20;
const CACHE_ENTRIES: usize = 1 << 16;
/// Jobs queued for the log thread at most (appends wait past it).
const QUEUE: usize = 1024;

type StorageResult<T> = Result<T, StorageError<u64>>;

fn io_error(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
    e: impl std::fmt::Display,
) -> StorageError<u64> {
    StorageIOError::new(subject, verb, openraft::AnyError::error(e.to_string())).into()
}

fn log_error(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError<u64> {
    io_error(ErrorSubject::Logs, verb, e)
}

#[derive(Default)]
struct Cache {
    /// Contiguous entries ending at the last appended one.
    entries: VecDeque<Entry>,
    bytes: usize,
    /// Entries up to here have had their normalised form dropped (they are applied).
    stripped_through: Option<u64>,
}

impl Cache {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|e| e.log_id.index)
    }

    fn get(&self, index: u64) -> Option<&Entry> {
        let first = self.first_index()?;
        self.entries
            .get(usize::try_from(index.checked_sub(first)?).ok()?)
    }

    fn push(&mut self, entry: Entry) {
        if self
            .entries
            .back()
            .is_some_and(|last| last.log_id.index + 1 != entry.log_id.index)
        {
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += entry::size(&entry);
        self.entries.push_back(entry);
    }

    /// Drops entries from the front past the bounds, never one not yet durable.
    fn evict(&mut self, durable: Option<u64>) {
        while (self.bytes > CACHE_BYTES || self.entries.len() > CACHE_ENTRIES)
            && let Some(front) = self.entries.front()
            && durable.is_some_and(|d| front.log_id.index <= d)
        {
            self.bytes -= entry::size(front);
            self.entries.pop_front();
        }
    }

    /// Drops the normalised form of applied writes: only the state machine needed it.
    fn strip_applied(&mut self, applied: Option<u64>) {
        let Some(applied) = applied else { return };
        let Some(first) = self.first_index() else {
            return;
        };
        let from = self.stripped_through.map_or(first, |s| (s + 1).max(first));
        for index in from..=applied {
            let Some(slot) = index
                .checked_sub(first)
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| self.entries.get_mut(i))
            else {
                break;
            };
            if let EntryPayload::Normal(Command::Write { normalized, .. }) = &mut slot.payload {
                *normalized = None;
            }
            self.stripped_through = Some(index);
        }
    }

    fn truncate_from(&mut self, index: u64) {
        while self.entries.back().is_some_and(|e| e.log_id.index >= index) {
            let e = self.entries.pop_back().expect("non-empty");
            self.bytes -= entry::size(&e);
        }
    }

    fn purge_through(&mut self, index: u64) {
        while self
            .entries
            .front()
            .is_some_and(|e| e.log_id.index <= index)
        {
            let e = self.entries.pop_front().expect("non-empty");
            self.bytes -= entry::size(&e);
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
struct VoteJson {
    term: u64,
    node: u64,
    committed: bool,
}

struct Meta {
    vote: Option<Vote<u64>>,
    purged: Option<LogId<u64>>,
    committed: Option<LogId<u64>>,
    /// The last entry appended (durable or queued).
    last: Option<LogId<u64>>,
    /// The last entry known durable.
    durable: Option<u64>,
}

struct Shared {
    dir: PathBuf,
    wal: Mutex<Wal>,
    cache: Mutex<Cache>,
    meta: Mutex<Meta>,
    /// Bytes of log entries not yet purged, for the write budget.
    log_bytes: AtomicU64,
    /// Index of the last entry the state machine applied (`u64::MAX` = none).
    applied: Arc<AtomicU64>,
}

impl Shared {
    /// Records the bytes of unpurged entries after a change to the log.
    fn update_log_bytes(&self, wal: &Wal) {
        let purged = self
            .meta
            .lock()
            .expect("meta lock poisoned")
            .purged
            .map(|p| p.index);
        self.log_bytes
            .store(wal.bytes_after(purged), Ordering::Relaxed);
    }

    fn applied(&self) -> Option<u64> {
        match self.applied.load(Ordering::Acquire) {
            u64::MAX => None,
            i => Some(i),
        }
    }

    /// Entries `start..end` that the log holds (fewer if it ends sooner). Cached entries are
    /// taken first, under one lock; everything older than the cache's first entry is durable,
    /// so the disk has it, whatever the log thread evicts meanwhile.
    fn read_entries(&self, start: u64, end: u64) -> Result<Vec<Entry>, String> {
        // Purged entries are gone even where their segment still holds them.
        let purged = self.meta.lock().expect("meta lock poisoned").purged;
        let start = start.max(purged.map_or(0, |p| p.index + 1));
        if start >= end {
            return Ok(Vec::new());
        }
        let (cached, cached_from) = {
            let cache = self.cache.lock().expect("cache lock poisoned");
            match cache.first_index() {
                Some(first) => {
                    let cached: Vec<Entry> = (start.max(first)..end)
                        .map_while(|i| cache.get(i).cloned())
                        .collect();
                    (cached, first)
                }
                None => (Vec::new(), u64::MAX),
            }
        };
        let mut out = Vec::new();
        if start < cached_from {
            let disk_end = end.min(cached_from);
            let wal = self.wal.lock().expect("log lock poisoned");
            let mut failed = None;
            wal.read_from(start, |index, bytes| {
                if index >= disk_end {
                    return false;
                }
                match entry::decode(index, bytes) {
                    Ok(e) => out.push(e),
                    Err(e) => {
                        failed = Some(e);
                        return false;
                    }
                }
                true
            })
            .map_err(|e| e.to_string())?;
            if let Some(e) = failed {
                return Err(e);
            }
            // With the cache going on from `cached_from`, the disk must give every entry it
            // holds up to there: a gap would be silently missing entries.
            let disk_first = wal.first_index().map(|f| f.max(start));
            if !cached.is_empty()
                && let Some(first) = disk_first.filter(|&f| f < disk_end)
                && (out.first().map(|e| e.log_id.index) != Some(first)
                    || out.len() as u64 != disk_end - first)
            {
                return Err(format!(
                    "the log gave {} entries for {first}..{disk_end}; it holds them all",
                    out.len()
                ));
            }
        }
        out.extend(cached);
        Ok(out)
    }
}

fn write_json(
    dir: &Path,
    name: &str,
    value: &impl Serialize,
    durable: bool,
) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&serde_json::to_vec(value).map_err(std::io::Error::other)?)?;
    if durable {
        file.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    if durable {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn read_json<T: for<'de> Deserialize<'de>>(dir: &Path, name: &str) -> std::io::Result<Option<T>> {
    match std::fs::read(dir.join(name)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| std::io::Error::other(format!("{name}: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

enum Job {
    Append {
        records: Vec<(u64, Vec<u8>)>,
        callback: LogFlushed<TypeConfig>,
    },
    TruncateFrom(u64, oneshot::Sender<Result<(), String>>),
    PurgeThrough(u64, oneshot::Sender<Result<(), String>>),
}

/// The log storage openraft writes through.
pub struct LogStore {
    shared: Arc<Shared>,
    jobs: mpsc::Sender<Job>,
    /// When `committed.json` was last written (it is rewritten at most every
    /// [`COMMIT_HINT_EVERY`], not on every commit).
    committed_saved: Option<std::time::Instant>,
}

/// How often the commit-point hint is written at most.
const COMMIT_HINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Reads entries; cheap to clone.
#[derive(Clone)]
pub struct LogReader {
    shared: Arc<Shared>,
}

impl LogStore {
    /// Opens the log in `dir` (creating it), cutting a torn tail, and starts its thread.
    pub fn open(dir: &Path, applied: Arc<AtomicU64>) -> Result<Self, crate::Error> {
        std::fs::create_dir_all(dir).map_err(|source| crate::Error::DataDir {
            path: dir.to_owned(),
            source,
        })?;
        let meta_err = |e: std::io::Error| crate::Error::Log(format!("{}: {e}", dir.display()));
        let vote: Option<VoteJson> = read_json(dir, "vote.json").map_err(meta_err)?;
        let purged: Option<LogIdJson> = read_json(dir, "purged.json").map_err(meta_err)?;
        // A committed.json cut short by a crash reads as absent: it is only a hint.
        let committed: Option<LogIdJson> = read_json(dir, "committed.json").unwrap_or(None);
        let mut last = None;
        let mut bad = None;
        let wal = Wal::open(
            &dir.join("log"),
            SEGMENT_BYTES,
            |index, bytes| match entry::log_id(index, bytes) {
                Ok(id) => last = Some(id),
                Err(e) => bad = Some(e),
            },
        )?;
        if let Some(e) = bad {
            return Err(crate::Error::Log(e));
        }
        let purged: Option<LogId<u64>> = purged.map(Into::into);
        // A crash between saving the purge point and deleting segments can leave records
        // older than it: the purge point wins.
        let last = match (last, purged) {
            (Some(l), Some(p)) if l.index < p.index => Some(p),
            (l, p) => l.or(p),
        };
        let log_bytes = AtomicU64::new(wal.bytes_after(purged.map(|p| p.index)));
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            wal: Mutex::new(wal),
            cache: Mutex::new(Cache::default()),
            meta: Mutex::new(Meta {
                vote: vote.map(|v| {
                    let mut vote = Vote::new(v.term, v.node);
                    if v.committed {
                        vote.commit();
                    }
                    vote
                }),
                purged,
                committed: committed.map(Into::into),
                durable: last.map(|l| l.index),
                last,
            }),
            log_bytes,
            applied,
        });
        let (jobs, queue) = mpsc::channel(QUEUE);
        {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("firn-raft-log".into())
                .spawn(move || run(shared, queue))
                .map_err(|source| crate::Error::Spawn { source })?;
        }
        Ok(Self {
            shared,
            jobs,
            committed_saved: None,
        })
    }

    pub fn reader(&self) -> LogReader {
        LogReader {
            shared: self.shared.clone(),
        }
    }

    /// Bytes of log on disk.
    pub fn log_bytes_handle(&self) -> LogBytes {
        LogBytes(self.shared.clone())
    }

    /// The commit point last saved.
    pub fn committed(&self) -> Option<LogId<u64>> {
        self.shared
            .meta
            .lock()
            .expect("meta lock poisoned")
            .committed
    }

    async fn job(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), String>>) -> Job,
    ) -> StorageResult<()> {
        let (tx, rx) = oneshot::channel();
        let stopped = || log_error(ErrorVerb::Write, "the log thread stopped");
        self.jobs.send(make(tx)).await.map_err(|_| stopped())?;
        rx.await
            .map_err(|_| stopped())?
            .map_err(|e| log_error(ErrorVerb::Write, e))
    }
}

/// Reads the log's size on disk.
#[derive(Clone)]
pub struct LogBytes(Arc<Shared>);

impl LogBytes {
    pub fn get(&self) -> u64 {
        self.0.log_bytes.load(Ordering::Relaxed)
    }

    /// The commit index last saved (for metrics).
    pub fn committed_index(&self) -> Option<u64> {
        self.0
            .meta
            .lock()
            .expect("meta lock poisoned")
            .committed
            .map(|c| c.index)
    }
}

impl std::fmt::Debug for LogBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogBytes({})", self.get())
    }
}

/// The log thread: appends everything queued under one fsync, in order with truncations and
/// purges.
fn run(shared: Arc<Shared>, mut queue: mpsc::Receiver<Job>) {
    let mut jobs = Vec::new();
    while let Some(first) = queue.blocking_recv() {
        jobs.push(first);
        while jobs.len() < QUEUE {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let mut records: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut callbacks = Vec::new();
        for job in jobs.drain(..) {
            match job {
                Job::Append {
                    records: r,
                    callback,
                } => {
                    records.extend(r);
                    callbacks.push(callback);
                }
                Job::TruncateFrom(index, reply) => {
                    flush_appends(&shared, &mut records, &mut callbacks);
                    let mut wal = shared.wal.lock().expect("log lock poisoned");
                    let result = wal.truncate_from(index).map_err(|e| e.to_string());
                    shared.update_log_bytes(&wal);
                    let _ = reply.send(result);
                }
                Job::PurgeThrough(index, reply) => {
                    flush_appends(&shared, &mut records, &mut callbacks);
                    let mut wal = shared.wal.lock().expect("log lock poisoned");
                    let result = wal.truncate_through(index).map_err(|e| e.to_string());
                    shared.update_log_bytes(&wal);
                    let _ = reply.send(result);
                }
            }
        }
        flush_appends(&shared, &mut records, &mut callbacks);
    }
    tracing::info!("raft log stopped");
}

fn flush_appends(
    shared: &Shared,
    records: &mut Vec<(u64, Vec<u8>)>,
    callbacks: &mut Vec<LogFlushed<TypeConfig>>,
) {
    if records.is_empty() && callbacks.is_empty() {
        return;
    }
    let result = {
        let mut wal = shared.wal.lock().expect("log lock poisoned");
        let result = wal.append(records);
        shared.update_log_bytes(&wal);
        result
    };
    match result {
        Ok(()) => {
            if let Some((last, _)) = records.last() {
                shared.meta.lock().expect("meta lock poisoned").durable = Some(*last);
                let mut cache = shared.cache.lock().expect("cache lock poisoned");
                cache.strip_applied(shared.applied());
                cache.evict(Some(*last));
            }
            for callback in callbacks.drain(..) {
                callback.log_io_completed(Ok(()));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "raft log append failed");
            for callback in callbacks.drain(..) {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
            }
        }
    }
    records.clear();
}

fn range_of(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl LogReader {
    /// The index the log is purged through (its entries are gone), if any.
    pub fn purged(&self) -> Option<u64> {
        self.shared
            .meta
            .lock()
            .expect("meta lock poisoned")
            .purged
            .map(|p| p.index)
    }

    /// Hands entries `from..=through` to `f`, oldest first, until it returns `false`.
    pub fn scan(
        &self,
        from: u64,
        through: u64,
        mut f: impl FnMut(Entry) -> bool,
    ) -> Result<(), String> {
        let wal = self.shared.wal.lock().expect("log lock poisoned");
        let mut failed = None;
        wal.read_from(from, |index, bytes| {
            if index > through {
                return false;
            }
            match entry::decode(index, bytes) {
                Ok(e) => f(e),
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        })
        .map_err(|e| e.to_string())?;
        failed.map_or(Ok(()), Err)
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry>> {
        let (start, end) = range_of(&range);
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.read_entries(start, end))
            .await
            .map_err(|e| log_error(ErrorVerb::Read, e))?
            .map_err(|e| log_error(ErrorVerb::Read, e))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry>> {
        self.reader().try_get_log_entries(range).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let meta = self.shared.meta.lock().expect("meta lock poisoned");
        Ok(LogState {
            last_purged_log_id: meta.purged,
            last_log_id: meta.last.or(meta.purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.reader()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> StorageResult<()> {
        let json = VoteJson {
            term: vote.leader_id.term,
            node: vote.leader_id.node_id,
            committed: vote.is_committed(),
        };
        let dir = self.shared.dir.clone();
        tokio::task::spawn_blocking(move || write_json(&dir, "vote.json", &json, true))
            .await
            .map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Write, e))?
            .map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        self.shared.meta.lock().expect("meta lock poisoned").vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<u64>>> {
        Ok(self.shared.meta.lock().expect("meta lock poisoned").vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> StorageResult<()> {
        self.shared
            .meta
            .lock()
            .expect("meta lock poisoned")
            .committed = committed;
        let due = self
            .committed_saved
            .is_none_or(|at| at.elapsed() >= COMMIT_HINT_EVERY);
        if let Some(c) = committed.filter(|_| due) {
            self.committed_saved = Some(std::time::Instant::now());
            // Neither fsynced nor written on every commit: an older value after a restart
            // only means the last few entries are applied again through Raft instead of by
            // the startup replay.
            let saved = write_json(
                &self.shared.dir,
                "committed.json",
                &LogIdJson::from(&c),
                false,
            );
            if let Err(e) = saved {
                // Only a hint for the next start: Raft goes on without it.
                tracing::warn!(error = %e, "saving the commit point failed");
            }
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<u64>>> {
        Ok(self.committed())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id) else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        let records: Vec<(u64, Vec<u8>)> = entries
            .iter()
            .map(|e| (e.log_id.index, entry::encode(e)))
            .collect();
        {
            let mut cache = self.shared.cache.lock().expect("cache lock poisoned");
            for e in entries {
                cache.push(e);
            }
        }
        self.shared.meta.lock().expect("meta lock poisoned").last = Some(last);
        self.jobs
            .send(Job::Append { records, callback })
            .await
            .map_err(|_| log_error(ErrorVerb::Write, "the log thread stopped"))
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        let index = log_id.index;
        self.job(|reply| Job::TruncateFrom(index, reply)).await?;
        self.shared
            .cache
            .lock()
            .expect("cache lock poisoned")
            .truncate_from(index);
        let previous = match index.checked_sub(1) {
            Some(p) => self
                .shared
                .read_entries(p, index)
                .map_err(|e| log_error(ErrorVerb::Read, e))?
                .first()
                .map(|e| e.log_id),
            None => None,
        };
        let mut meta = self.shared.meta.lock().expect("meta lock poisoned");
        meta.last = previous.or(meta.purged);
        meta.durable = meta.last.map(|l| l.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        let dir = self.shared.dir.clone();
        let json = LogIdJson::from(&log_id);
        tokio::task::spawn_blocking(move || write_json(&dir, "purged.json", &json, true))
            .await
            .map_err(|e| log_error(ErrorVerb::Delete, e))?
            .map_err(|e| log_error(ErrorVerb::Delete, e))?;
        {
            let mut meta = self.shared.meta.lock().expect("meta lock poisoned");
            meta.purged = Some(log_id);
            if meta.last.is_none_or(|l| l.index < log_id.index) {
                meta.last = Some(log_id);
            }
        }
        self.shared
            .cache
            .lock()
            .expect("cache lock poisoned")
            .purge_through(log_id.index);
        self.job(|reply| Job::PurgeThrough(log_id.index, reply))
            .await
    }
}
