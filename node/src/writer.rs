//! The write path's single owner: one thread holds the write-ahead log and applies writes to
//! the store in log order. Requests queue on a bounded channel; the thread takes what has
//! queued (up to a batch), logs it with one fsync, applies each write, then answers each
//! caller. So a write is acknowledged only once it is on disk, and many concurrent writes share
//! one fsync (group commit).
//!
//! ```text
//!  handlers ──(normalised write, raw record)──► [bounded queue] ──► writer thread
//!                                                  check budget ─► log + fsync ─► apply ─► reply
//!  flusher ──(Truncate(seq))──────────────────────►                 delete flushed segments
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use firn_storage::buffer::WriteStats;
use firn_storage::normalize::Normalized;
use firn_storage::{SeqNo, Store, WriteRequest};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::record;
use crate::wal::Wal;

/// Writes queued at most; past it callers wait (backpressure), bounded by their deadline.
const QUEUE: usize = 1024;
/// Writes logged under one fsync at most.
const BATCH: usize = 256;

enum Command {
    Write {
        record: Vec<u8>,
        normalized: Normalized,
        reply: oneshot::Sender<Result<WriteStats>>,
    },
    /// Blocks hold every write up to this sequence number: drop them from the log.
    Truncate(SeqNo),
}

/// A handle to the writer thread.
#[derive(Clone, Debug)]
pub struct Writer {
    queue: mpsc::Sender<Command>,
    store: Arc<Store>,
    log_bytes: Arc<AtomicU64>,
    log_budget: u64,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Write { record, .. } => write!(f, "Write({} bytes)", record.len()),
            Command::Truncate(seq) => write!(f, "Truncate({seq})"),
        }
    }
}

impl Writer {
    /// Replays the log into `store` (writes after its manifest's flushed sequence) and starts
    /// the writer thread. Returns the handle and the thread, which ends when every handle is
    /// dropped.
    pub fn start(
        mut wal: Wal,
        store: Arc<Store>,
        log_budget: u64,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, std::thread::JoinHandle<()>)> {
        let flushed = store.last_seq().0;
        let mut replay = Replay::new(&store);
        wal.replay(flushed, |index, bytes| replay.push(index, bytes))?;
        let (replayed, skipped) = replay.finish()?;
        wal.skip_to(flushed);
        tracing::info!(
            replayed,
            skipped,
            last = wal.last_index(),
            "write-ahead log replayed"
        );
        let log_bytes = Arc::new(AtomicU64::new(wal.bytes()));
        let (queue, commands) = mpsc::channel(QUEUE);
        let thread = {
            let (store, log_bytes) = (store.clone(), log_bytes.clone());
            std::thread::Builder::new()
                .name("firn-writer".into())
                .spawn(move || run(wal, store, commands, log_bytes))
                .map_err(|source| Error::Spawn { source })?
        };
        Ok((
            Self {
                queue,
                store,
                log_bytes,
                log_budget,
                metrics,
            },
            thread,
        ))
    }

    /// Normalises, logs and applies one write; returns once it is durable and visible.
    pub async fn write(&self, request: WriteRequest) -> Result<WriteStats> {
        let used = self.log_bytes.load(Ordering::Relaxed);
        if used >= self.log_budget {
            return Err(Error::LogFull {
                used,
                budget: self.log_budget,
            });
        }
        let store = self.store.clone();
        // Decoding and normalising are CPU work: off the I/O runtime.
        let (record, normalized) = tokio::task::spawn_blocking(move || {
            let record = record::encode(&request);
            store.normalize(request).map(|n| (record, n))
        })
        .await
        .map_err(|e| Error::Internal(format!("normalising task failed: {e}")))??;
        let bytes = record.len() as u64;
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Command::Write {
                record,
                normalized,
                reply,
            })
            .await
            .map_err(|_| Error::ShuttingDown)?;
        let stats = answer.await.map_err(|_| Error::ShuttingDown)??;
        self.metrics
            .ingest_bytes
            .fetch_add(bytes, Ordering::Relaxed);
        self.metrics
            .ingest_profiles
            .fetch_add(stats.profiles as u64, Ordering::Relaxed);
        self.metrics
            .ingest_samples
            .fetch_add(stats.samples as u64, Ordering::Relaxed);
        Ok(stats)
    }

    /// Drops log segments whose writes are all in blocks up to `seq`.
    pub async fn truncate(&self, seq: SeqNo) -> Result<()> {
        self.queue
            .send(Command::Truncate(seq))
            .await
            .map_err(|_| Error::ShuttingDown)
    }

    pub fn log_bytes(&self) -> u64 {
        self.log_bytes.load(Ordering::Relaxed)
    }
}

/// Records replayed per batch at most, and bytes of records per batch at most.
const REPLAY_BATCH: usize = 512;
const REPLAY_BATCH_BYTES: usize = 256 << 20;

/// Replays logged writes in batches: records are decoded and normalised on every core, then
/// applied in log order. A write the buffer cannot hold makes the buffer flush into a block
/// first (a budget lowered since the crash); a write that no longer normalises (a limit lowered
/// since) is skipped with an error in the log, so the node still starts.
struct Replay<'a> {
    store: &'a Arc<Store>,
    batch: Vec<(u64, Vec<u8>)>,
    batch_bytes: usize,
    replayed: u64,
    skipped: u64,
    failed: Option<Error>,
}

impl<'a> Replay<'a> {
    fn new(store: &'a Arc<Store>) -> Self {
        Self {
            store,
            batch: Vec::new(),
            batch_bytes: 0,
            replayed: 0,
            skipped: 0,
            failed: None,
        }
    }

    fn push(&mut self, index: u64, bytes: Vec<u8>) {
        if self.failed.is_some() {
            return;
        }
        self.batch_bytes += bytes.len();
        self.batch.push((index, bytes));
        if (self.batch.len() >= REPLAY_BATCH || self.batch_bytes >= REPLAY_BATCH_BYTES)
            && let Err(e) = self.apply_batch()
        {
            self.failed = Some(e);
        }
    }

    fn finish(mut self) -> Result<(u64, u64)> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.apply_batch()?;
        Ok((self.replayed, self.skipped))
    }

    fn apply_batch(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per_worker = batch.len().div_ceil(workers).max(1);
        let store = self.store;
        let normalized: Vec<(u64, Result<Normalized>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = batch
                .chunks(per_worker)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|(index, bytes)| {
                                let n = record::decode(bytes)
                                    .map_err(Error::from)
                                    .and_then(|r| Ok(store.normalize(r)?));
                                (*index, n)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("replay worker panicked"))
                .collect()
        });
        for (index, n) in normalized {
            let normalized = match n {
                Ok(n) => n,
                Err(e) => {
                    self.skipped += 1;
                    tracing::error!(index, error = %e, "skipping a logged write that no longer normalises");
                    continue;
                }
            };
            let mut applied = store.apply(SeqNo(index), &normalized);
            if matches!(applied, Err(firn_storage::Error::BufferFull { .. })) {
                // Make room: the writes so far go into a block, then this one fits.
                let handle = tokio::runtime::Handle::current();
                tokio::task::block_in_place(|| handle.block_on(store.flush()))?;
                applied = store.apply(SeqNo(index), &normalized);
            }
            applied?;
            self.replayed += 1;
        }
        Ok(())
    }
}

fn run(
    mut wal: Wal,
    store: Arc<Store>,
    mut commands: mpsc::Receiver<Command>,
    log_bytes: Arc<AtomicU64>,
) {
    let mut batch: Vec<Command> = Vec::with_capacity(BATCH);
    while let Some(first) = commands.blocking_recv() {
        batch.push(first);
        while batch.len() < BATCH {
            match commands.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let mut writes = Vec::new();
        for command in batch.drain(..) {
            match command {
                Command::Truncate(seq) => {
                    if let Err(e) = wal.truncate_through(seq.0) {
                        tracing::error!(error = %e, "dropping flushed log segments failed");
                    }
                }
                Command::Write {
                    record,
                    normalized,
                    reply,
                } => {
                    // Only a write the buffer will take is logged.
                    match store.check_fits(&normalized) {
                        Ok(()) => writes.push((record, normalized, reply)),
                        Err(e) => {
                            let _ = reply.send(Err(e.into()));
                        }
                    }
                }
            }
        }
        commit(&mut wal, &store, writes);
        log_bytes.store(wal.bytes(), Ordering::Relaxed);
    }
    tracing::info!("writer stopped");
}

/// Logs a batch under one fsync, then applies and answers each write.
fn commit(
    wal: &mut Wal,
    store: &Store,
    writes: Vec<(Vec<u8>, Normalized, oneshot::Sender<Result<WriteStats>>)>,
) {
    if writes.is_empty() {
        return;
    }
    let first = wal.last_index() + 1;
    let records: Vec<(u64, &[u8])> = writes
        .iter()
        .enumerate()
        .map(|(i, w)| (first + i as u64, w.0.as_slice()))
        .collect();
    if let Err(e) = wal.append(&records) {
        tracing::error!(error = %e, "write-ahead log append failed");
        let message = e.to_string();
        for (_, _, reply) in writes {
            let _ = reply.send(Err(Error::Log(message.clone())));
        }
        return;
    }
    for (i, (_, normalized, reply)) in writes.into_iter().enumerate() {
        let result = store
            .apply(SeqNo(first + i as u64), &normalized)
            .map_err(Error::from);
        let _ = reply.send(result);
    }
}
