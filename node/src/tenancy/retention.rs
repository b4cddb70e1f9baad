//! The retention loop: every `--retention-check-secs`, on each shard this node leads, drops the
//! blocks whose every tenant is past its retention. It first catches up with the meta group
//! (a read index from its leader), so a retention just raised elsewhere is never acted on by a
//! node that has not applied it yet; a node cut off from the meta group deletes nothing.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;

pub async fn run(cluster: Arc<Cluster>, shutdown: CancellationToken) {
    let every = cluster.settings.retention_check;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let leading: Vec<_> = cluster
            .replicas()
            .into_iter()
            .filter(|r| r.raft.is_leader())
            .collect();
        if leading.is_empty() {
            continue;
        }
        if let Err(e) = cluster.sync_meta().await {
            tracing::warn!(error = %e, "retention skipped: the meta state could not be brought up to date");
            continue;
        }
        for replica in leading {
            if let Err(e) = replica.expire(&cluster.tenancy).await {
                tracing::warn!(shard = %replica.id, error = %e, "retention failed; retried at the next check");
            }
        }
    }
}
