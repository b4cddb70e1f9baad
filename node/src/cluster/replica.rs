//! A shard replica on this node: the shard's store (buffer + manifest), its Raft group member,
//! its query engine, and two loops: the flusher (on the shard's leader only) and the
//! compactor (on every replica).
//!
//! ```text
//!  flusher (leader): buffer past the flush size or age ─► encode ─► upload (create-only,
//!                    retried with backoff) ─► commit BlockFlushed (every replica drops the rows)
//!  retention (leader): blocks wholly past their tenants' retention ─► commit BlocksDropped ─►
//!                    delete their objects
//!  compactor (all):  manifest's flushed point moved ─► snapshot (manifest + buffer) ─► purge the
//!                    log through it, so no replica keeps history that is in blocks
//! ```

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use firn_query::QueryEngine;
use firn_storage::paths::Paths;
use firn_storage::{BlockId, Nanos, ShardId, Store, StoreConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::{Cluster, ShardSettings};
use crate::error::Result;
use crate::ids::GroupId;
use crate::metrics::Metrics;
use crate::raft::{RaftGroup, Transport};
use crate::tenancy::Tenancy;

/// How far past a tenant's retention a block must be before it is deleted: queries stop
/// returning its rows at the retention itself; the margin absorbs a leader's clock skew.
pub const RETENTION_MARGIN: Nanos = Nanos(10 * 60 * 1_000_000_000);
use crate::tenancy::series::ActiveSeries;
use crate::writer::Writer;

const TICK: Duration = Duration::from_millis(200);

/// One shard's replica.
#[derive(Debug)]
pub struct ShardReplica {
    pub id: ShardId,
    pub raft: Arc<RaftGroup>,
    pub store: Arc<Store>,
    pub engine: Arc<QueryEngine>,
    pub writer: Writer,
    /// Active series per tenant, as this replica admitted writes while leading.
    pub series: ActiveSeries,
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// Per-shard sizes: the node's budgets shared evenly by the cluster's shards (a node may hold
/// a replica of each).
#[derive(Clone, Copy, Debug)]
pub struct ShardBudgets {
    pub buffer_bytes: usize,
    pub flush_bytes: usize,
    pub log_budget_bytes: u64,
}

impl ShardBudgets {
    pub fn new(settings: &ShardSettings, shards: u32) -> Self {
        let n = shards.max(1);
        Self {
            buffer_bytes: (settings.store.buffer_budget / n as usize).max(1),
            flush_bytes: (settings.flush_bytes / n as usize).max(1),
            log_budget_bytes: (settings.log_budget_bytes / u64::from(n)).max(1),
        }
    }
}

impl ShardReplica {
    /// Opens the replica in `dir` (rebuilding its state from snapshot and log) and starts its
    /// loops.
    pub async fn open(
        cluster: &Cluster,
        shard: ShardId,
        budgets: ShardBudgets,
        transport: Arc<dyn Transport>,
    ) -> Result<Arc<Self>> {
        let settings = &cluster.shard_settings;
        let config = StoreConfig {
            shard,
            buffer_budget: budgets.buffer_bytes,
            ..settings.store
        };
        let paths = Paths::for_shard(&settings.prefix, shard);
        // The manifest lives in the Raft state (snapshot + log), not in the object store.
        let store = Arc::new(Store::with_manifest(
            settings.object_store.clone(),
            paths.prefix().clone(),
            config,
            Default::default(),
        ));
        let raft = Arc::new(
            RaftGroup::open_shard(
                &cluster.shard_dir(shard),
                store.clone(),
                GroupId::Shard(shard),
                cluster.id,
                transport,
            )
            .await?,
        );
        let engine = Arc::new(QueryEngine::new(store.clone(), settings.query)?);
        let writer = Writer::new(
            raft.clone(),
            store.clone(),
            budgets.log_budget_bytes,
            cluster.metrics.clone(),
        );
        let replica = Arc::new(Self {
            id: shard,
            raft,
            store,
            engine,
            writer,
            series: ActiveSeries::default(),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        replica.tasks.spawn(flush_loop(
            replica.clone(),
            cluster.metrics.clone(),
            budgets.flush_bytes,
            settings.flush_interval,
        ));
        replica.tasks.spawn(compact_loop(replica.clone()));
        Ok(replica)
    }

    /// Stops the loops (the flusher flushes once more if this replica leads and `flush`),
    /// then the Raft member.
    pub async fn close(&self) {
        self.stop_loops().await;
        self.raft.shutdown().await;
    }

    /// Stops the loops (the flusher flushes once more if this replica leads); the Raft member
    /// keeps running.
    pub async fn stop_loops(&self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// On the shard's leader: flushes the buffer when it passes `flush_bytes` or its oldest write
/// passes `interval`: uploads the block and commits `BlockFlushed`. Failed uploads are retried
/// with backoff (writes keep landing in the log meanwhile, up to its budget). A final flush is
/// attempted when the replica stops.
async fn flush_loop(
    replica: Arc<ShardReplica>,
    metrics: Arc<Metrics>,
    flush_bytes: usize,
    interval: Duration,
) {
    let (store, raft) = (&replica.store, &replica.raft);
    let mut dirty_since: Option<Instant> = None;
    let mut backoff = Duration::ZERO;
    let mut next_try = Instant::now();
    loop {
        let stopping = tokio::select! {
            () = replica.stop.cancelled() => true,
            () = tokio::time::sleep(TICK) => false,
        };
        // Unflushed: rows in the buffer, or logged writes (of empty profiles) that no flush
        // point covers yet, which would keep the log from being purged.
        let unflushed =
            store.buffer_samples() > 0 || store.last_seq() > store.manifest().flushed_seq;
        if !unflushed || !raft.is_leader() {
            dirty_since = None;
            if stopping {
                return;
            }
            continue;
        }
        let since = *dirty_since.get_or_insert_with(Instant::now);
        let due = store.buffer_bytes() >= flush_bytes
            || raft.log_bytes() >= flush_bytes as u64
            || since.elapsed() >= interval
            || stopping;
        if !due || Instant::now() < next_try {
            continue;
        }
        let started = Instant::now();
        match flush(store, raft).await {
            Ok(block) => {
                metrics.flush_time.observe(started.elapsed());
                backoff = Duration::ZERO;
                dirty_since = None;
                if let Some(block) = block {
                    metrics.flushes.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(shard = %replica.id, block = %block.id, rows = block.rows, bytes = block.bytes(), ms = started.elapsed().as_millis() as u64, "block flushed");
                }
            }
            Err(e) => {
                metrics.flush_failures.fetch_add(1, Ordering::Relaxed);
                backoff = (backoff * 2).clamp(Duration::from_millis(500), Duration::from_secs(30));
                next_try = Instant::now() + backoff;
                tracing::warn!(shard = %replica.id, error = %e, retry_in_ms = backoff.as_millis() as u64, log_bytes = raft.log_bytes(), "flush failed");
            }
        }
        if stopping {
            return;
        }
    }
}

/// One flush: the buffer as a block in the object store, then committed through Raft (which
/// adds it to the manifest and drops its rows from the buffer on every replica).
async fn flush(store: &Store, raft: &RaftGroup) -> Result<Option<firn_storage::block::BlockMeta>> {
    let Some(encoded) = store.encode_buffer().await? else {
        // No rows, yet logged writes past the flush point: record the point so the log can
        // be purged.
        let last = store.last_seq();
        if last > store.manifest().flushed_seq {
            raft.flushed_through(last.0).await?;
        }
        return Ok(None);
    };
    store.upload_block(&encoded).await?;
    let meta = encoded.meta;
    raft.block_flushed(meta.clone()).await?;
    // Applied here before the commit returns: a block the manifest did not take (another
    // leader flushed some of its rows first) is garbage.
    if store.delete_unused_block(&meta.id).await? {
        tracing::info!(block = %meta.id, "a block overlapping flushed rows was discarded");
        return Ok(None);
    }
    Ok(Some(meta))
}

impl ShardReplica {
    /// Drops the blocks every tenant of which is past its retention (and [`RETENTION_MARGIN`]
    /// more, against clock skew): out of the manifest through Raft, so no replica reads them,
    /// then their objects deleted. Returns them.
    pub async fn expire(&self, tenancy: &Tenancy) -> Result<Vec<BlockId>> {
        let now = Nanos(tenancy.now().0.saturating_sub(RETENTION_MARGIN.0));
        let expired = self.store.expired_blocks(&tenancy.retentions(), now);
        if expired.is_empty() {
            return Ok(expired);
        }
        self.raft.blocks_dropped(expired.clone()).await?;
        for id in &expired {
            // One failed delete does not keep the others; an object left is garbage a later
            // collection finds (it is in no manifest).
            match self.store.delete_unused_block(id).await {
                Ok(_) => {
                    tracing::info!(shard = %self.id, block = %id, "block deleted by retention")
                }
                Err(e) => {
                    tracing::warn!(shard = %self.id, block = %id, error = %e, "deleting an expired block's objects failed")
                }
            }
        }
        Ok(expired)
    }
}

/// On every replica: once the manifest's flushed point moves (a `BlockFlushed` or
/// `FlushedThrough` applied), snapshots the state and purges the log through that point.
async fn compact_loop(replica: Arc<ShardReplica>) {
    let mut compacted = 0u64;
    let mut backoff = TICK;
    loop {
        tokio::select! {
            () = replica.stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        let flushed = replica.store.manifest().flushed_seq.0;
        if flushed <= compacted {
            backoff = TICK;
            continue;
        }
        let applied = replica.raft.applied_index();
        match replica.raft.compact(applied, flushed).await {
            Ok(()) => {
                compacted = flushed;
                backoff = TICK;
            }
            Err(e) => {
                backoff = (backoff * 2).min(Duration::from_secs(10));
                tracing::warn!(shard = %replica.id, error = %e, "compacting the log failed");
            }
        }
    }
}
