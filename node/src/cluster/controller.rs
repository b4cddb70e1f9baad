//! The meta leader's duties, on whichever node leads the meta group:
//!
//! - propose the placement plan ([`placement::plan`]) as `Place` commands;
//! - keep the meta group's voters the (at most [`MAX_META_VOTERS`]) lowest-numbered members,
//!   every other member a learner, so every node applies the meta state;
//! - retire leaving nodes once no shard has a replica on them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::cluster::meta::MetaCommand;
use crate::cluster::placement;
use crate::error::Result;
use crate::ids::NodeId;

/// Voters of the meta group at most (a quorum of three survives two failures).
pub const MAX_META_VOTERS: usize = 5;
const TICK: Duration = Duration::from_millis(500);
/// A meta learner this close to the leader's last entry may become a voter.
const CAUGHT_UP_LAG: u64 = 16;

/// Runs until `shutdown`.
pub async fn run(cluster: Arc<Cluster>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(TICK) => {}
        }
        if !cluster.meta.is_leader() {
            continue;
        }
        if let Err(e) = step(&cluster).await {
            tracing::warn!(error = %e, "cluster controller step failed");
        }
    }
}

async fn step(cluster: &Cluster) -> Result<()> {
    // A new leader applies what its predecessors committed before it plans anything.
    cluster.sync_meta().await?;
    let state = cluster.state();
    if state.settings.is_none() {
        return Ok(());
    }
    for (shard, desired) in placement::plan(&state) {
        tracing::info!(%shard, replicas = ?desired, "placing shard replicas");
        cluster
            .propose_meta(MetaCommand::Place { shard, desired })
            .await?;
    }
    for (id, node) in &state.nodes {
        if node.state == crate::cluster::meta::NodeState::Leaving && state.shards_of(*id).is_empty()
        {
            tracing::info!(node = %id, "retiring a node that holds no replicas");
            cluster
                .propose_meta(MetaCommand::RetireNode { id: *id })
                .await?;
        }
    }
    meta_members(cluster).await
}

/// Moves the meta group's members toward the meta state's nodes.
async fn meta_members(cluster: &Cluster) -> Result<()> {
    let state = cluster.state();
    let members = cluster.meta.members();
    if members.joint {
        return Ok(());
    }
    // Every member a learner at least.
    for (id, node) in &state.nodes {
        if !members.addrs.contains_key(id) {
            cluster.meta.add_learner(*id, &node.addr).await?;
            tracing::info!(node = %id, "node added to the meta group");
        }
    }
    let Some((matched, last)) = cluster.meta.replication() else {
        return Ok(());
    };
    let caught_up = |n: &NodeId| {
        members.voters.contains(n)
            || matched
                .get(n)
                .is_some_and(|m| *m + CAUGHT_UP_LAG >= last && *m > 0)
    };
    let wanted: BTreeSet<NodeId> = state
        .nodes
        .keys()
        .copied()
        .filter(caught_up)
        .take(MAX_META_VOTERS)
        .collect();
    if !wanted.is_empty() && wanted != members.voters {
        tracing::info!(voters = ?wanted, "changing the meta group's voters");
        cluster.meta.change_voters(&wanted, true).await?;
        return Ok(());
    }
    let gone: BTreeSet<NodeId> = members
        .learners
        .iter()
        .filter(|n| !state.nodes.contains_key(n))
        .copied()
        .collect();
    if !gone.is_empty() {
        cluster.meta.remove_learners(&gone).await?;
    }
    Ok(())
}
