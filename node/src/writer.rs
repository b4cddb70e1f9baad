//! A shard leader's write path: a write already admitted and normalised (by the node that
//! received it; a forwarded one arrives as its normalised record) is checked against the
//! shard's log and buffer budgets, then committed through the shard's Raft group, which logs it with a
//! shared fsync on a quorum and applies it to every replica's store before answering. So a
//! write is acknowledged only once it is committed and visible.
//!
//! ```text
//!  router ─► Writer::commit ─► budgets ─► RaftGroup::write ─► quorum commit ─► apply ─► reply
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::raft::{Prepared, RaftGroup};
use bytes::Bytes;
use firn_storage::Store;
use firn_storage::buffer::WriteStats;

/// Commits writes to one shard; cheap to clone.
#[derive(Clone, Debug)]
pub struct Writer {
    raft: Arc<RaftGroup>,
    store: Arc<Store>,
    log_budget: u64,
    metrics: Arc<Metrics>,
    /// Bytes proposed and not yet answered: the log budget counts them, so concurrent writes
    /// cannot overshoot it together.
    proposing: Arc<AtomicU64>,
}

impl Writer {
    pub fn new(
        raft: Arc<RaftGroup>,
        store: Arc<Store>,
        log_budget: u64,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            raft,
            store,
            log_budget,
            metrics,
            proposing: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Commits and applies one write; returns once it is durable and visible. A write whose
    /// idempotency key was applied recently is answered as the first one was and adds nothing.
    pub async fn commit(
        &self,
        record: Bytes,
        prepared: Arc<Prepared>,
        key: Option<Arc<str>>,
    ) -> Result<WriteStats> {
        let bytes = record.len() as u64;
        // What the log holds plus what is on its way there.
        let used = self.raft.log_bytes() + self.proposing.load(Ordering::Relaxed);
        if used >= self.log_budget {
            return Err(Error::LogFull {
                used,
                budget: self.log_budget,
            });
        }
        // Only a write the buffer can take is proposed: a committed write always applies.
        match prepared.as_ref() {
            Prepared::Local(n) => self.store.check_fits(n)?,
            Prepared::Packed(n) => self.store.check_fits(n)?,
        }
        self.proposing.fetch_add(bytes, Ordering::Relaxed);
        let stats = self.raft.write(record, prepared, key).await;
        self.proposing.fetch_sub(bytes, Ordering::Relaxed);
        let stats = stats?;
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
}
