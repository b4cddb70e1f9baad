//! The state machine: committed entries applied to the store (writes into the buffer,
//! `BlockFlushed` into the manifest). Its state is the block manifest plus the unflushed
//! buffer, so that is what a snapshot holds: the manifest, and the entries after the last
//! flushed write (the buffer, in the form that rebuilds it anywhere).
//!
//! ```text
//!  raft/snapshot.bin = "FIRNSNAP" [meta length u32 LE][meta JSON: log ids, membership, manifest]
//!                      ([index u64 LE][length u32 LE][entry])*   entries after manifest.flushed_seq
//! ```
//!
//! On start the node rebuilds the state itself, faster than entry by entry through Raft: the
//! snapshot's manifest and entries, then the log up to the saved commit point, with writes
//! decoded and normalised on every core and applied in log order.

use std::collections::{HashMap, VecDeque};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use firn_storage::buffer::WriteStats;
use firn_storage::manifest::Manifest;
use firn_storage::normalize::Normalized;
use firn_storage::{SeqNo, Store};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, EntryPayload, ErrorSubject, ErrorVerb, LogId, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::entry::{self, Command, LogIdJson, Prepared, Record, Response};
use super::log_store::LogReader;
use super::{Entry, TypeConfig};
use crate::record;

type StorageResult<T> = Result<T, StorageError<u64>>;

const MAGIC: &[u8; 8] = b"FIRNSNAP";
const SNAPSHOT_FILE: &str = "snapshot.bin";
/// Entries replayed per batch at most, and bytes of entries per batch at most.
const REPLAY_BATCH: usize = 256;
const REPLAY_BATCH_BYTES: usize = 32 << 20;

fn sm_error(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::new(
        ErrorSubject::StateMachine,
        verb,
        openraft::AnyError::error(e.to_string()),
    )
    .into()
}

fn snapshot_error(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::new(
        ErrorSubject::Snapshot(None),
        verb,
        openraft::AnyError::error(e.to_string()),
    )
    .into()
}

#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    snapshot_id: String,
    last_log_id: Option<LogIdJson>,
    membership_log_id: Option<LogIdJson>,
    membership: serde_json::Value,
    manifest: Manifest,
    /// Idempotency keys applied up to the manifest's flushed write, oldest first.
    #[serde(default)]
    recent: Vec<RecentKey>,
}

#[derive(Clone, Serialize, Deserialize)]
struct RecentKey {
    key: String,
    index: u64,
    profiles: usize,
    samples: usize,
    bytes: usize,
}

/// A parsed snapshot.
struct SnapshotFile {
    meta: SnapshotMeta<u64, BasicNode>,
    manifest: Manifest,
    recent: Vec<RecentKey>,
    entries: Vec<(u64, Vec<u8>)>,
}

/// Writes that carried idempotency keys, with what applying them answered: the last
/// [`RECENT_KEYS`] of them. The window is counted in keyed writes, so every replica and every
/// replay forgets the same keys at the same entry.
#[derive(Clone, Default)]
struct Recent {
    answers: HashMap<Arc<str>, (u64, WriteStats)>,
    order: VecDeque<Arc<str>>,
}

/// Idempotency keys remembered at most (keys are at most 128 bytes: about 20 MiB).
const RECENT_KEYS: usize = 100_000;

impl Recent {
    fn get(&self, key: &str) -> Option<WriteStats> {
        self.answers.get(key).map(|a| a.1)
    }

    fn remember(&mut self, key: Arc<str>, index: u64, stats: WriteStats) {
        if self.answers.insert(key.clone(), (index, stats)).is_none() {
            self.order.push_back(key);
            if self.order.len() > RECENT_KEYS
                && let Some(old) = self.order.pop_front()
            {
                self.answers.remove(&old);
            }
        }
    }

    /// The keys applied at or before `index`, oldest first, for a snapshot taken there.
    fn through(&self, index: Option<u64>) -> Vec<RecentKey> {
        self.order
            .iter()
            .filter_map(|k| {
                let (i, stats) = self.answers.get(k)?;
                index.is_some_and(|index| *i <= index).then(|| RecentKey {
                    key: k.to_string(),
                    index: *i,
                    profiles: stats.profiles,
                    samples: stats.samples,
                    bytes: stats.bytes,
                })
            })
            .collect()
    }

    fn from_keys(keys: Vec<RecentKey>) -> Self {
        let mut recent = Self::default();
        for k in keys {
            let stats = WriteStats {
                profiles: k.profiles,
                samples: k.samples,
                bytes: k.bytes,
                repeated: false,
            };
            recent.remember(Arc::from(k.key), k.index, stats);
        }
        recent
    }
}

fn encode_snapshot(
    meta: &SnapshotMeta<u64, BasicNode>,
    manifest: &Manifest,
    recent: Vec<RecentKey>,
    entries: &[(u64, Vec<u8>)],
) -> Vec<u8> {
    let header = SnapshotHeader {
        snapshot_id: meta.snapshot_id.clone(),
        last_log_id: meta.last_log_id.as_ref().map(LogIdJson::from),
        membership_log_id: meta.last_membership.log_id().as_ref().map(LogIdJson::from),
        membership: serde_json::from_slice(&entry::encode_membership(
            meta.last_membership.membership(),
        ))
        .expect("membership is JSON"),
        manifest: manifest.clone(),
        recent,
    };
    let header = serde_json::to_vec(&header).expect("snapshot header serialises");
    let mut out = Vec::with_capacity(
        12 + header.len() + entries.iter().map(|e| 12 + e.1.len()).sum::<usize>(),
    );
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    for (index, bytes) in entries {
        out.extend_from_slice(&index.to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

fn decode_snapshot(bytes: &[u8]) -> Result<SnapshotFile, String> {
    let rest = bytes
        .strip_prefix(MAGIC)
        .ok_or("not a Firn snapshot (bad magic)")?;
    let take = |rest: &mut &[u8], n: usize, what: &str| -> Result<Vec<u8>, String> {
        if rest.len() < n {
            return Err(format!("snapshot cut short in {what}"));
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head.to_vec())
    };
    let mut rest = rest;
    let len = u32::from_le_bytes(take(&mut rest, 4, "header length")?.try_into().expect("4"));
    let header: SnapshotHeader = serde_json::from_slice(&take(&mut rest, len as usize, "header")?)
        .map_err(|e| format!("snapshot header: {e}"))?;
    let membership = entry::decode_membership(header.membership.to_string().as_bytes())?;
    let mut entries = Vec::new();
    while !rest.is_empty() {
        let index = u64::from_le_bytes(take(&mut rest, 8, "entry index")?.try_into().expect("8"));
        let len = u32::from_le_bytes(take(&mut rest, 4, "entry length")?.try_into().expect("4"));
        entries.push((index, take(&mut rest, len as usize, "entry")?));
    }
    Ok(SnapshotFile {
        meta: SnapshotMeta {
            last_log_id: header.last_log_id.map(Into::into),
            last_membership: StoredMembership::new(
                header.membership_log_id.map(Into::into),
                membership,
            ),
            snapshot_id: header.snapshot_id,
        },
        manifest: header.manifest,
        recent: header.recent,
        entries,
    })
}

/// The metadata of a snapshot's bytes.
#[cfg(test)]
pub(super) fn snapshot_meta(bytes: &[u8]) -> Result<SnapshotMeta<u64, BasicNode>, String> {
    decode_snapshot(bytes).map(|f| f.meta)
}

struct State {
    applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    recent: Recent,
}

struct Shared {
    store: Arc<Store>,
    dir: PathBuf,
    log: LogReader,
    state: Mutex<State>,
    /// The last applied index for the log store (`u64::MAX` = none).
    applied_index: Arc<AtomicU64>,
    /// The last entry the snapshot file holds. A snapshot being built and one being installed
    /// can finish in either order; the file only moves forward, one writer at a time.
    snapshot_last: Mutex<Option<LogId<u64>>>,
}

impl Shared {
    fn set_applied(&self, state: &mut State, id: LogId<u64>) {
        state.applied = Some(id);
        self.applied_index.store(id.index, Ordering::Release);
    }

    /// Makes `bytes` (a snapshot through `last`) the snapshot file, unless the file already
    /// holds a later one; true when written.
    fn write_snapshot(&self, last: Option<LogId<u64>>, bytes: &[u8]) -> std::io::Result<bool> {
        use std::io::Write;
        let mut current = self.snapshot_last.lock().expect("snapshot lock poisoned");
        if *current > last {
            return Ok(false);
        }
        let tmp = self.dir.join("snapshot.tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(SNAPSHOT_FILE))?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        *current = last;
        Ok(true)
    }

    fn read_snapshot_file(&self) -> Result<Option<Vec<u8>>, String> {
        match std::fs::read(self.dir.join(SNAPSHOT_FILE)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("reading the snapshot failed: {e}")),
        }
    }
}

/// The state machine openraft applies committed entries to.
pub struct StateMachine {
    shared: Arc<Shared>,
}

/// What replay did.
#[derive(Clone, Debug, Default)]
pub struct Replayed {
    pub entries: u64,
    /// Why replay stopped, if an entry did not apply.
    pub failed: Option<String>,
}

impl StateMachine {
    /// Rebuilds the state from the snapshot in `dir` (if any) and the log up to `committed`,
    /// over `store` (empty, with the snapshot's manifest installed here).
    pub fn open(
        dir: &Path,
        store: Arc<Store>,
        log: LogReader,
        applied_index: Arc<AtomicU64>,
        committed: Option<LogId<u64>>,
    ) -> Result<(Self, Replayed), crate::Error> {
        let shared = Arc::new(Shared {
            store,
            dir: dir.to_owned(),
            log,
            state: Mutex::new(State {
                applied: None,
                membership: StoredMembership::default(),
                recent: Recent::default(),
            }),
            applied_index,
            snapshot_last: Mutex::new(None),
        });
        let sm = Self { shared };
        let mut replayed = Replayed::default();
        if let Some(bytes) = sm.shared.read_snapshot_file().map_err(crate::Error::Log)? {
            let file = decode_snapshot(&bytes).map_err(crate::Error::Log)?;
            *sm.shared
                .snapshot_last
                .lock()
                .expect("snapshot lock poisoned") = file.meta.last_log_id;
            replayed = sm.install(file)?;
        }
        let Some(committed) = committed else {
            return Ok((sm, replayed));
        };
        let from = sm
            .shared
            .state
            .lock()
            .expect("state lock poisoned")
            .applied
            .map_or(0, |a| a.index + 1);
        if from <= committed.index {
            let mut replay = Replay::new(&sm.shared)?;
            sm.shared
                .log
                .scan(from, committed.index, |e| replay.push(e))
                .map_err(crate::Error::Log)?;
            let more = replay.finish()?;
            replayed.entries += more.entries;
        }
        Ok((sm, replayed))
    }

    /// Resets the store to a snapshot's manifest and applies its entries.
    fn install(&self, file: SnapshotFile) -> Result<Replayed, crate::Error> {
        let from = first_unflushed(&file.manifest);
        // The entries after the flushed write, up to the snapshot's last: all of them, or
        // none (see the builder).
        if let Some(last) = file
            .meta
            .last_log_id
            .filter(|l| l.index >= from && !file.entries.is_empty())
        {
            let held = file
                .entries
                .iter()
                .filter(|(i, _)| (from..=last.index).contains(i))
                .count() as u64;
            if held != last.index - from + 1 {
                return Err(crate::Error::Log(format!(
                    "snapshot {} holds {held} of the entries {from}..={}; refusing it",
                    file.meta.snapshot_id, last.index
                )));
            }
        }
        self.shared.store.reset(file.manifest);
        {
            let mut state = self.shared.state.lock().expect("state lock poisoned");
            state.applied = None;
            self.shared.applied_index.store(u64::MAX, Ordering::Release);
            state.membership = file.meta.last_membership.clone();
            // The keys as they were at the flushed write: replaying the entries after it
            // decides each keyed write the way it was decided the first time.
            state.recent = Recent::from_keys(file.recent);
        }
        let mut replay = Replay::new(&self.shared)?;
        for (index, bytes) in file.entries {
            if index < from {
                continue;
            }
            let e = entry::decode(index, bytes).map_err(crate::Error::Log)?;
            if !replay.push(e) {
                break;
            }
        }
        let replayed = replay.finish()?;
        tracing::info!(
            dir = %self.shared.dir.display(),
            snapshot = %file.meta.snapshot_id,
            blocks = self.shared.store.manifest().blocks.len(),
            entries = replayed.entries,
            "installed a snapshot"
        );
        let mut state = self.shared.state.lock().expect("state lock poisoned");
        state.membership = file.meta.last_membership;
        match file.meta.last_log_id {
            Some(id) => self.shared.set_applied(&mut state, id),
            None => state.applied = None,
        }
        Ok(replayed)
    }
}

/// The first log index a manifest's blocks do not hold.
fn first_unflushed(manifest: &Manifest) -> u64 {
    if manifest.blocks.is_empty() && manifest.flushed_seq.0 == 0 {
        0
    } else {
        manifest.flushed_seq.0 + 1
    }
}

/// Applies one entry; the caller holds the state.
fn apply_one(
    shared: &Shared,
    state: &mut State,
    e: Entry,
    normalized: Option<Result<Arc<Prepared>, String>>,
) -> Response {
    let id = e.log_id;
    let response = match e.payload {
        EntryPayload::Blank => Ok(Default::default()),
        EntryPayload::Membership(m) => {
            state.membership = StoredMembership::new(Some(id), m);
            Ok(Default::default())
        }
        EntryPayload::Normal(Command::Write {
            record,
            form,
            normalized: cached,
            key,
        }) => match key.as_deref().and_then(|k| state.recent.get(k)) {
            // A retry of a write already applied: the first answer, nothing added.
            Some(first) => {
                tracing::debug!(dir = %shared.dir.display(), index = id.index, key = key.as_deref().unwrap_or(""), "a retried write adds nothing");
                Ok(WriteStats {
                    repeated: true,
                    ..first
                })
            }
            None => {
                let normalized = match (cached, normalized) {
                    (Some(n), _) => Ok(n),
                    (None, Some(n)) => n,
                    (None, None) => prepare_write(&shared.store, &record, form),
                };
                let seq = SeqNo(id.index);
                let applied = normalized.and_then(|n| {
                    match n.as_ref() {
                        Prepared::Local(n) => shared.store.apply_committed(seq, n),
                        Prepared::Packed(n) => shared.store.apply_committed(seq, n),
                    }
                    .map_err(|e| e.to_string())
                });
                tracing::debug!(dir = %shared.dir.display(), index = id.index, key = key.as_deref().unwrap_or(""), samples = applied.as_ref().map_or(0, |s| s.samples), "applied a write");
                if let (Some(key), Ok(stats)) = (key, &applied) {
                    state.recent.remember(key, id.index, *stats);
                }
                applied
            }
        },
        EntryPayload::Normal(Command::FlushedThrough(seq)) => {
            shared.store.mark_flushed_through(SeqNo(seq));
            Ok(Default::default())
        }
        EntryPayload::Normal(Command::Meta(_)) => {
            Err("a meta command is not a command of a shard group".into())
        }
        EntryPayload::Normal(Command::BlocksDropped(ids)) => {
            shared.store.drop_blocks(&ids);
            Ok(Default::default())
        }
        EntryPayload::Normal(Command::BlocksCompacted(c)) => {
            // Refused alike on every replica when an input changed since the job was planned;
            // the proposer then finds its output absent and deletes it.
            if !shared.store.apply_compaction(&c.job, c.output, c.at) {
                tracing::info!(index = id.index, tenant = %c.job.tenant, "a compaction's inputs changed; not applied");
            }
            Ok(Default::default())
        }
        EntryPayload::Normal(Command::RetiredPurged(ids)) => {
            shared.store.forget_retired(&ids);
            Ok(Default::default())
        }
        EntryPayload::Normal(Command::BlockFlushed(meta)) => shared
            .store
            .add_flushed_block(*meta)
            .map(|_| Default::default())
            .map_err(|e| e.to_string()),
    };
    if let Err(e) = &response {
        tracing::error!(index = id.index, error = %e, "a committed entry did not apply");
    }
    shared.set_applied(state, id);
    response
}

/// A committed write in memory, from its record: a normalised write is decoded (its symbol
/// columns only when applying needs them); a raw one, from a log of an earlier version, is
/// normalised again.
fn prepare_write(
    store: &Store,
    record: &bytes::Bytes,
    form: Record,
) -> Result<Arc<Prepared>, String> {
    match form {
        Record::Normalized => firn_storage::normalize::decode_normalized(record.clone())
            .map(|n| Arc::new(Prepared::Packed(n))),
        Record::Raw => normalize(store, record).map(|n| Arc::new(Prepared::Local(n))),
    }
}

/// Normalises a raw committed write again. The write passed the limits in force when it was
/// admitted; limits lowered since must not drop it, so this uses limits no admitted write
/// exceeds.
fn normalize(store: &Store, record: &bytes::Bytes) -> Result<Normalized, String> {
    let mut limits = store.config().limits;
    limits.decode.max_decompressed_bytes = limits.decode.max_decompressed_bytes.max(4 << 30);
    limits.decode.max_entries = limits.decode.max_entries.max(1 << 31);
    limits.labels.max_name_len = limits.labels.max_name_len.max(1 << 20);
    limits.labels.max_value_len = limits.labels.max_value_len.max(1 << 20);
    limits.labels.max_labels_per_series = limits.labels.max_labels_per_series.max(1 << 16);
    limits.max_stack_depth = limits.max_stack_depth.max(1 << 20);
    record::decode(record.clone())
        .map_err(|e| e.to_string())
        .and_then(|r| firn_storage::normalize::normalize(r, &limits).map_err(|e| e.to_string()))
}

/// Entries and, for writes, their form in memory (or why it failed).
type PreparedBatch = Vec<(Entry, Option<Result<Arc<Prepared>, String>>)>;

/// Applies entries in batches through a three-stage pipeline: the caller reads the log, a
/// preparer thread decodes and normalises a batch's writes on every core, an applier thread
/// applies the previous batch in log order. Reading, normalising and applying overlap; at most
/// a few batches are in memory.
struct Replay {
    batch: Vec<Entry>,
    batch_bytes: usize,
    stages: Option<Stages>,
}

struct Stages {
    to_preparer: std::sync::mpsc::SyncSender<Vec<Entry>>,
    preparer: std::thread::JoinHandle<()>,
    applier: std::thread::JoinHandle<Replayed>,
}

impl Replay {
    fn new(shared: &Arc<Shared>) -> Result<Self, crate::Error> {
        let spawn_error = |source| crate::Error::Spawn { source };
        let (to_applier, applier_queue) = std::sync::mpsc::sync_channel::<PreparedBatch>(1);
        let applier_shared = shared.clone();
        let applier = std::thread::Builder::new()
            .name("firn-replay-apply".into())
            .spawn(move || {
                let mut done = Replayed::default();
                while let Ok(batch) = applier_queue.recv() {
                    let mut state = applier_shared.state.lock().expect("state lock poisoned");
                    for (e, n) in batch {
                        let index = e.log_id.index;
                        if let Err(e) = apply_one(&applier_shared, &mut state, e, n) {
                            // A committed entry that does not apply stops the start: going on
                            // would drop an acknowledged write.
                            done.failed.get_or_insert(format!("entry {index}: {e}"));
                            return done;
                        }
                        done.entries += 1;
                    }
                }
                done
            })
            .map_err(spawn_error)?;
        let (to_preparer, preparer_queue) = std::sync::mpsc::sync_channel::<Vec<Entry>>(1);
        let store = shared.store.clone();
        let preparer = std::thread::Builder::new()
            .name("firn-replay-prepare".into())
            .spawn(move || {
                while let Ok(batch) = preparer_queue.recv() {
                    if to_applier.send(prepare(&store, batch)).is_err() {
                        return;
                    }
                }
            })
            .map_err(spawn_error)?;
        Ok(Self {
            batch: Vec::new(),
            batch_bytes: 0,
            stages: Some(Stages {
                to_preparer,
                preparer,
                applier,
            }),
        })
    }

    /// Queues an entry; `false` once the pipeline is gone (replay cannot go on).
    fn push(&mut self, e: Entry) -> bool {
        self.batch_bytes += entry::size(&e);
        self.batch.push(e);
        if self.batch.len() >= REPLAY_BATCH || self.batch_bytes >= REPLAY_BATCH_BYTES {
            return self.send_batch();
        }
        true
    }

    fn finish(mut self) -> Result<Replayed, crate::Error> {
        self.send_batch();
        let stages = self.stages.take().expect("finished once");
        drop(stages.to_preparer);
        let panicked = |what: &str| crate::Error::Internal(format!("the replay {what} panicked"));
        stages.preparer.join().map_err(|_| panicked("preparer"))?;
        let done = stages.applier.join().map_err(|_| panicked("applier"))?;
        match &done.failed {
            Some(why) => Err(crate::Error::Log(format!(
                "replay stopped at a committed entry that does not apply ({why}); the node \
                 does not start rather than drop it"
            ))),
            None => Ok(done),
        }
    }

    fn send_batch(&mut self) -> bool {
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        if batch.is_empty() {
            return true;
        }
        self.stages
            .as_ref()
            .is_some_and(|s| s.to_preparer.send(batch).is_ok())
    }
}

/// Normalises a batch's writes on every core: workers take the next entry as they finish
/// one, so a few large writes do not leave a core idle.
fn prepare(store: &Store, batch: Vec<Entry>) -> PreparedBatch {
    use std::sync::atomic::AtomicUsize;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = AtomicUsize::new(0);
    let batch_ref = &batch;
    let mut results: Vec<(usize, Result<Arc<Prepared>, String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let next = &next;
                scope.spawn(move || {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(e) = batch_ref.get(i) else {
                            return out;
                        };
                        if let EntryPayload::Normal(Command::Write { record, form, .. }) =
                            &e.payload
                        {
                            out.push((i, prepare_write(store, record, *form)));
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    results.sort_unstable_by_key(|r| r.0);
    let mut results = results.into_iter().peekable();
    batch
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let normalized = match &e.payload {
                EntryPayload::Normal(Command::Write { .. }) => {
                    Some(match results.next_if(|r| r.0 == i) {
                        Some((_, n)) => n,
                        // Its worker panicked: the entry fails to apply, and says so.
                        None => Err("normalising this write panicked".into()),
                    })
                }
                _ => None,
            };
            (e, normalized)
        })
        .collect()
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>)> {
        let state = self.shared.state.lock().expect("state lock poisoned");
        Ok((state.applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let shared = self.shared.clone();
        let entries: Vec<Entry> = entries.into_iter().collect();
        // Applying a write builds its buffer chunk: CPU work, off the I/O threads.
        tokio::task::spawn_blocking(move || {
            let mut state = shared.state.lock().expect("state lock poisoned");
            entries
                .into_iter()
                .map(|e| apply_one(&shared, &mut state, e, None))
                .collect()
        })
        .await
        .map_err(|e| sm_error(ErrorVerb::Write, e))
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        let state = self.shared.state.lock().expect("state lock poisoned");
        let manifest = self.shared.store.manifest();
        let flushed = first_unflushed(&manifest).checked_sub(1);
        SnapshotBuilder {
            shared: self.shared.clone(),
            applied: state.applied,
            membership: state.membership.clone(),
            recent: state.recent.through(flushed),
            manifest,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let bytes = snapshot.into_inner();
        let mut file = decode_snapshot(&bytes).map_err(|e| snapshot_error(ErrorVerb::Read, e))?;
        file.meta = meta.clone();
        let this = Self {
            shared: self.shared.clone(),
        };
        let last = meta.last_log_id;
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            this.shared
                .write_snapshot(last, &bytes)
                .map_err(|e| e.to_string())?;
            this.install(file).map(|_| ()).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| snapshot_error(ErrorVerb::Write, e))?
        .map_err(|e| snapshot_error(ErrorVerb::Write, e))
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let Some(bytes) = self
            .shared
            .read_snapshot_file()
            .map_err(|e| snapshot_error(ErrorVerb::Read, e))?
        else {
            return Ok(None);
        };
        let file = decode_snapshot(&bytes).map_err(|e| snapshot_error(ErrorVerb::Read, e))?;
        Ok(Some(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

/// Builds a snapshot of the state as it was when the builder was made.
pub struct SnapshotBuilder {
    shared: Arc<Shared>,
    applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    recent: Vec<RecentKey>,
    manifest: Arc<Manifest>,
}

impl SnapshotBuilder {
    /// The entries `from..=applied`, which rebuild the buffer. The log has those after its
    /// purge point; those at or before it (purged when this replica installed a snapshot,
    /// which carried them) come from the current snapshot file. Every write whose rows the
    /// buffer holds must be among them, or there is no snapshot.
    async fn unflushed_entries(
        &self,
        from: u64,
        applied: u64,
    ) -> StorageResult<Vec<(u64, Vec<u8>)>> {
        let purged = self.shared.log.purged();
        let mut out = Vec::new();
        let log_from = match purged {
            Some(p) if p >= from => {
                let through = p.min(applied);
                if let Some(bytes) = self
                    .shared
                    .read_snapshot_file()
                    .map_err(|e| snapshot_error(ErrorVerb::Read, e))?
                {
                    let file =
                        decode_snapshot(&bytes).map_err(|e| snapshot_error(ErrorVerb::Read, e))?;
                    out.extend(
                        file.entries
                            .into_iter()
                            .filter(|(i, _)| (from..=through).contains(i)),
                    );
                }
                p + 1
            }
            _ => from,
        };
        if log_from <= applied {
            let mut reader = self.shared.log.clone();
            let entries = openraft::storage::RaftLogReader::try_get_log_entries(
                &mut reader,
                log_from..=applied,
            )
            .await?;
            out.extend(entries.iter().map(|e| (e.log_id.index, entry::encode(e))));
        }
        let held: std::collections::HashSet<u64> = out.iter().map(|(i, _)| *i).collect();
        let snapshot = self.shared.store.snapshot();
        if let Some(missing) = snapshot
            .buffer
            .chunks
            .iter()
            .map(|c| c.seq.0)
            .find(|seq| (from..=applied).contains(seq) && !held.contains(seq))
        {
            return Err(snapshot_error(
                ErrorVerb::Read,
                format!(
                    "the buffer holds the rows of entry {missing}, which neither the log nor \
                     the current snapshot has"
                ),
            ));
        }
        Ok(out)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let from = first_unflushed(&self.manifest);
        // Every entry after the flushed write, up to the applied one: a snapshot holds all of
        // them or refuses to be built.
        let entries: Vec<(u64, Vec<u8>)> = match self.applied {
            Some(applied) if applied.index >= from => {
                self.unflushed_entries(from, applied.index).await?
            }
            _ => Vec::new(),
        };
        let meta = SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
            snapshot_id: format!(
                "{}-{}-{}",
                self.applied.map_or(0, |a| a.leader_id.term),
                self.applied.map_or(0, |a| a.index),
                self.manifest.version
            ),
        };
        let bytes = encode_snapshot(&meta, &self.manifest, self.recent.clone(), &entries);
        let shared = self.shared.clone();
        let written = bytes.clone();
        let last = meta.last_log_id;
        tokio::task::spawn_blocking(move || shared.write_snapshot(last, &written))
            .await
            .map_err(|e| snapshot_error(ErrorVerb::Write, e))?
            .map_err(|e| snapshot_error(ErrorVerb::Write, e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}
