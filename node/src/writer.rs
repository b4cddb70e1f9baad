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
}

impl Writer {
    pub fn new(
        raft: Arc<RaftNode>,
        store: Arc<Store>,
        log_budget: u64,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            raft,
            store,
            log_budget,
            metrics,
        }
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
        let used = self.raft.log_bytes();
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
