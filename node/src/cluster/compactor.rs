//! The compaction loop: every `--compaction-interval-secs`, on each shard this node leads,
//! merges small blocks into per-tenant blocks by window ([`firn_storage::compact`]) and
//! deletes the objects of blocks compacted away once `--compaction-delete-delay-secs` have
//! passed (queries that began before the swap may still be reading them).
//!
//! ```text
//!  plan (manifest, now) ─► per job: read inputs ─► one block ─► upload (a fresh key)
//!       ─► commit BlocksCompacted ─► landed? done : delete the output (an input changed)
//!  retired for longer than the delay ─► delete objects ─► commit RetiredPurged
//! ```
//!
//! Only the shard's leader proposes, and the swap lands only if every input still holds the
//! tenant, so two nodes never both commit a job (a deposed leader's swap finds its inputs
//! gone). The output's key carries the proposer's node and clock, so two attempts never write
//! the same object.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use firn_storage::Nanos;
use firn_storage::compact::{CompactionOptions, plan};
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::cluster::replica::ShardReplica;
use crate::error::Result;
use crate::raft::Compacted;

/// Jobs one shard runs per round at most (the rest wait for the next round).
const JOBS_PER_ROUND: usize = 4;

pub async fn run(cluster: Arc<Cluster>, shutdown: CancellationToken) {
    let every = cluster.settings.compaction_interval;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let mut pending = 0u64;
        let mut lag = Nanos(0);
        for replica in cluster.replicas() {
            if !replica.raft.is_leader() {
                continue;
            }
            let now = cluster.tenancy.now();
            let options = CompactionOptions {
                memory_bytes: cluster.settings.compaction_memory_bytes,
                ..CompactionOptions::default()
            };
            let jobs = plan(&replica.store.manifest(), now, &options, usize::MAX);
            pending += jobs.len() as u64;
            if let Some(oldest) = jobs.first() {
                let ended = oldest.window_start.0.saturating_add(oldest.window.0);
                lag = lag.max(Nanos(now.0.saturating_sub(ended)));
            }
            for job in jobs.into_iter().take(JOBS_PER_ROUND) {
                if shutdown.is_cancelled() || !replica.raft.is_leader() {
                    break;
                }
                match compact(&cluster, &replica, &job).await {
                    Ok(true) => {
                        pending = pending.saturating_sub(1);
                    }
                    Ok(false) => {}
                    Err(e) => {
                        cluster
                            .metrics
                            .compaction_failures
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(shard = %replica.id, tenant = %job.tenant, error = %e, "compaction failed; retried at the next round");
                    }
                }
            }
            if let Err(e) = purge(&cluster, &replica).await {
                tracing::warn!(shard = %replica.id, error = %e, "deleting compacted blocks failed; retried at the next round");
            }
        }
        cluster
            .metrics
            .compaction_pending
            .store(pending, Ordering::Relaxed);
        cluster
            .metrics
            .compaction_lag_seconds
            .store((lag.0 / 1_000_000_000) as u64, Ordering::Relaxed);
    }
}

/// One job: true if its swap landed.
async fn compact(
    cluster: &Cluster,
    replica: &ShardReplica,
    job: &firn_storage::compact::CompactionJob,
) -> Result<bool> {
    let started = std::time::Instant::now();
    let now = cluster.tenancy.now();
    let nonce = (cluster.id.0 << 48) ^ (crate::time::now().0 as u64);
    let id = job.output_id(replica.id, nonce)?;
    let store = &replica.store;
    let Some(output) = store.compact(job, id.clone()).await? else {
        return Ok(false);
    };
    let input_bytes: u64 = store
        .manifest()
        .blocks
        .iter()
        .filter(|b| job.inputs.contains(&b.id))
        .map(|b| b.bytes())
        .sum();
    store.upload_block(&output).await?;
    replica
        .raft
        .blocks_compacted(Compacted {
            job: job.clone(),
            output: output.meta.clone(),
            at: now,
        })
        .await?;
    // Applied here before the commit returns.
    let landed = store.manifest().blocks.iter().any(|b| b.id == id);
    if !landed {
        store.delete_block_objects(&id).await?;
        tracing::info!(shard = %replica.id, block = %id, "a compaction's inputs changed; its output was discarded");
        return Ok(false);
    }
    let metrics = &cluster.metrics;
    metrics.compactions.fetch_add(1, Ordering::Relaxed);
    metrics
        .compaction_input_bytes
        .fetch_add(input_bytes, Ordering::Relaxed);
    metrics
        .compaction_output_bytes
        .fetch_add(output.meta.bytes(), Ordering::Relaxed);
    tracing::info!(shard = %replica.id, tenant = %job.tenant, inputs = job.inputs.len(), rows = output.meta.rows, in_bytes = input_bytes, out_bytes = output.meta.bytes(), ms = started.elapsed().as_millis() as u64, "blocks compacted");
    Ok(true)
}

/// Deletes the objects of blocks retired for longer than the delay, then forgets them.
async fn purge(cluster: &Cluster, replica: &ShardReplica) -> Result<()> {
    let delay = cluster.settings.compaction_delete_delay;
    let before = Nanos(
        cluster
            .tenancy
            .now()
            .0
            .saturating_sub(i64::try_from(delay.as_nanos()).unwrap_or(i64::MAX)),
    );
    let ready = replica.store.manifest().retired_before(before);
    if ready.is_empty() {
        return Ok(());
    }
    for id in &ready {
        replica.store.delete_block_objects(id).await?;
    }
    replica.raft.retired_purged(ready.clone()).await?;
    tracing::info!(shard = %replica.id, blocks = ready.len(), "compacted-away blocks deleted");
    Ok(())
}
