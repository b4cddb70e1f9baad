//! The write path's front door: a write is admitted (the log and buffer budgets), decoded and
//! normalised on the blocking pool, then committed through the node's Raft group
//! ([`crate::raft`]), which logs it with a shared fsync and applies it to the store before
//! the caller is answered. So a write is acknowledged only once it is committed and visible.
//!
//! ```text
//!  handler ─► budget checks ─► normalise (blocking pool) ─► RaftNode::write ─► commit ─► apply ─► reply
//! ```

use std::sync::Arc;
use std::sync::atomic::Ordering;

use firn_storage::buffer::WriteStats;
use firn_storage::{Store, WriteRequest};

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::raft::RaftNode;
use crate::record;

/// A handle to the write path; cheap to clone.
#[derive(Clone, Debug)]
pub struct Writer {
    raft: Arc<RaftNode>,
    store: Arc<Store>,
    log_budget: u64,
    metrics: Arc<Metrics>,
    /// KiB of writes in flight (decoded, normalised, proposed, not yet answered).
    inflight: Arc<tokio::sync::Semaphore>,
    inflight_kib: u32,
}

/// How long a write waits for room among the writes in flight before it is refused.
const INFLIGHT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Writer {
    pub fn new(
        raft: Arc<RaftNode>,
        store: Arc<Store>,
        log_budget: u64,
        max_inflight_bytes: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        let inflight_kib = u32::try_from(max_inflight_bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, tokio::sync::Semaphore::MAX_PERMITS as u32);
        Self {
            raft,
            store,
            log_budget,
            metrics,
            inflight: Arc::new(tokio::sync::Semaphore::new(inflight_kib as usize)),
            inflight_kib,
        }
    }

    /// Bytes of writes in flight now.
    fn inflight_bytes(&self) -> u64 {
        u64::from(self.inflight_kib - self.inflight.available_permits() as u32) * 1024
    }

    /// Normalises, commits and applies one write; returns once it is durable and visible.
    pub async fn write(&self, request: WriteRequest) -> Result<WriteStats> {
        self.write_once(request, None).await
    }

    /// [`Writer::write`] with an idempotency key (already scoped to the tenant): a retry of a
    /// write applied recently under the same key is answered as the first one was and adds
    /// nothing.
    pub async fn write_once(
        &self,
        request: WriteRequest,
        key: Option<String>,
    ) -> Result<WriteStats> {
        // What the log holds plus what is on its way there.
        let used = self.raft.log_bytes() + self.inflight_bytes();
        if used >= self.log_budget {
            return Err(Error::LogFull {
                used,
                budget: self.log_budget,
            });
        }
        // Room among the writes in flight, for the body as received (a larger one than the
        // whole allowance waits until it is alone).
        let size = match &request.payload {
            firn_storage::Payload::Pprof(b) => b.len(),
            firn_storage::Payload::Folded { text, .. } => text.len(),
        };
        let kib = u32::try_from(size.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.inflight_kib);
        let _room =
            tokio::time::timeout(INFLIGHT_WAIT, self.inflight.clone().acquire_many_owned(kib))
                .await
                .map_err(|_| Error::Overloaded {
                    bytes: self.inflight_bytes() as usize,
                })?
                .map_err(|_| Error::ShuttingDown)?;
        let store = self.store.clone();
        // Decoding and normalising are CPU work: off the I/O runtime.
        let (record, normalized) = tokio::task::spawn_blocking(move || {
            let record = record::encode(&request);
            store.normalize(request).map(|n| (record, n))
        })
        .await
        .map_err(|e| Error::Internal(format!("normalising task failed: {e}")))??;
        // Only a write the buffer can take is proposed: a committed write always applies.
        self.store.check_fits(&normalized)?;
        let bytes = record.len() as u64;
        let stats = self
            .raft
            .write(record.into(), Arc::new(normalized), key.map(Arc::from))
            .await?;
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

    /// Bytes of Raft log on disk.
    pub fn log_bytes(&self) -> u64 {
        self.raft.log_bytes()
    }

    pub fn raft(&self) -> &Arc<RaftNode> {
        &self.raft
    }
}
