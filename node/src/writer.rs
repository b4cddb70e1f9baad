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
        let mut replayed = 0u64;
        let mut skipped = 0u64;
        wal.replay(flushed, |index, bytes| {
            let applied = record::decode(&bytes)
                .map_err(Error::from)
                .and_then(|request| Ok(store.normalize(request)?))
                .and_then(|normalized| Ok(store.apply(SeqNo(index), &normalized)?));
            match applied {
                Ok(_) => replayed += 1,
                Err(e) => {
                    // A logged write the store no longer takes (a limit lowered since): keep
                    // serving, say so.
                    skipped += 1;
                    tracing::error!(index, error = %e, "skipping a logged write on replay");
                }
            }
        })?;
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
