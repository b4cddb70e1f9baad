//! Keeps this node's shard replicas where the meta state places them, on every node:
//!
//! - a shard placed here gets a local replica (empty, until its leader sends a snapshot);
//! - a replica whose Raft stopped for good is closed and reopened from its disk;
//! - a shard no longer placed here, whose leader has reported it gone, is closed and deleted;
//! - a shard never created is created by the one node that claimed it;
//! - on a shard's leader: members the placement adds join as learners, become voters once
//!   caught up (one joint change of voters, which also drops the replicas placed elsewhere),
//!   and the new voters are reported to the meta group.
//!
//! Writes go on throughout: openraft changes voters through a joint configuration.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use firn_storage::ShardId;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::cluster::meta::{MetaCommand, MetaState, ShardPlacement};
use crate::cluster::replica::{ShardBudgets, ShardReplica};
use crate::error::Result;
use crate::ids::NodeId;

const TICK: Duration = Duration::from_millis(300);
/// A learner this close to the leader's last entry counts as caught up.
const CAUGHT_UP_LAG: u64 = 1000;
/// A change of voters not committed by then is given up (and retried by a later round, which
/// finds the joint configuration and finishes it): a hung change must not hold its shard.
const CHANGE_DEADLINE: Duration = Duration::from_secs(60);

/// Shards whose voters are being changed by a task of this node.
#[derive(Debug, Default)]
struct Changing(Mutex<BTreeSet<ShardId>>);

/// Runs until `shutdown`.
pub async fn run(cluster: Arc<Cluster>, shutdown: CancellationToken) {
    let mut watch = cluster.watch_state();
    let changing = Arc::new(Changing::default());
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = watch.changed() => {}
            () = tokio::time::sleep(TICK) => {}
        }
        if let Err(e) = reconcile(&cluster, &changing).await {
            tracing::warn!(error = %e, "reconciling shard replicas failed");
        }
    }
}

async fn reconcile(cluster: &Arc<Cluster>, changing: &Arc<Changing>) -> Result<()> {
    let mut state = cluster.state();
    if state.settings.is_none() {
        return Ok(());
    }
    // Closing a replica or changing a shard's voters waits for a view that holds everything
    // committed: one left stale by a restart must not undo newer placement.
    if acts(cluster, &state) {
        cluster.sync_meta().await?;
        state = cluster.state();
    }
    let Some(settings) = &state.settings else {
        return Ok(());
    };
    let budgets = ShardBudgets::new(&cluster.shard_settings, settings.shards);
    for (i, placement) in state.shards.iter().enumerate() {
        let shard = ShardId(i as u32);
        // One shard's trouble (a peer down, a slow meta group) holds up no other shard.
        if let Err(e) = shard_step(cluster, shard, placement, &state, budgets, changing).await {
            tracing::warn!(%shard, error = %e, "reconciling a shard replica failed");
        }
    }
    Ok(())
}

/// Moves one shard's replica here toward its placement.
async fn shard_step(
    cluster: &Arc<Cluster>,
    shard: ShardId,
    placement: &ShardPlacement,
    state: &MetaState,
    budgets: ShardBudgets,
    changing: &Arc<Changing>,
) -> Result<()> {
    let here = placement.involved().contains(&cluster.id);
    if let Some(why) = cluster.replica(shard).and_then(|r| r.raft.failed()) {
        // Its disk holds what it acknowledged: reopened from there, it rejoins its group.
        tracing::error!(%shard, error = %why, "a shard replica's Raft stopped; reopening it");
        if let Some(replica) = cluster.remove_replica(shard) {
            replica.close().await;
        }
    }
    match (here, cluster.replica(shard)) {
        (true, None) => {
            let replica =
                ShardReplica::open(cluster, shard, budgets, cluster.peers.clone()).await?;
            tracing::info!(%shard, "shard replica opened");
            cluster.insert_replica(replica);
        }
        (false, Some(_)) => {
            if let Some(replica) = cluster.remove_replica(shard) {
                replica.close().await;
                let dir = cluster.shard_dir(shard);
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(%shard, dir = %dir.display(), error = %e, "deleting a moved replica failed");
                }
                tracing::info!(%shard, "shard replica moved away: closed and deleted");
            }
            return Ok(());
        }
        _ => {}
    }
    let Some(replica) = cluster.replica(shard) else {
        return Ok(());
    };
    if placement.members.is_empty() {
        create(cluster, shard, placement, state, &replica).await?;
    }
    if replica.raft.is_leader() {
        drive(cluster, shard, placement, state, &replica, changing).await?;
    }
    Ok(())
}

/// Whether this round would close a replica or change (or report) a shard's voters.
fn acts(cluster: &Cluster, state: &MetaState) -> bool {
    cluster.replicas().iter().any(|r| {
        let Some(p) = state.shard(r.id) else {
            return true;
        };
        if !p.involved().contains(&cluster.id) {
            return true;
        }
        if !r.raft.is_leader() {
            return false;
        }
        let members = r.raft.members();
        let desired: BTreeSet<NodeId> = p.desired.iter().copied().collect();
        let reported: BTreeSet<NodeId> = p.members.iter().copied().collect();
        members.joint || members.voters != desired || members.voters != reported
    })
}

/// Creates a shard's group, once: the node first in its placement claims it in the meta
/// group, then initialises it with the placement as its voters.
async fn create(
    cluster: &Arc<Cluster>,
    shard: ShardId,
    placement: &ShardPlacement,
    state: &MetaState,
    replica: &ShardReplica,
) -> Result<()> {
    if replica.raft.is_initialized().await? {
        return Ok(());
    }
    match placement.initializer {
        Some(n) if n == cluster.id => {
            let members: BTreeMap<NodeId, String> = placement
                .desired
                .iter()
                .filter_map(|n| Some((*n, addr(cluster, state, *n)?)))
                .collect();
            replica.raft.initialize(&members).await?;
            tracing::info!(%shard, voters = ?placement.desired, "shard group created");
        }
        None if placement.desired.first() == Some(&cluster.id) => {
            cluster
                .propose_meta(MetaCommand::ClaimInit {
                    shard,
                    node: cluster.id,
                })
                .await?;
        }
        _ => {}
    }
    Ok(())
}

fn addr(cluster: &Cluster, state: &MetaState, node: NodeId) -> Option<String> {
    if node == cluster.id {
        return Some(cluster.addr.clone());
    }
    state.addr(node).map(str::to_owned)
}

/// On the shard's leader: moves the group's voters toward the placement.
async fn drive(
    cluster: &Arc<Cluster>,
    shard: ShardId,
    placement: &ShardPlacement,
    state: &MetaState,
    replica: &Arc<ShardReplica>,
    changing: &Arc<Changing>,
) -> Result<()> {
    if changing.0.lock().expect("lock poisoned").contains(&shard) {
        return Ok(());
    }
    let members = replica.raft.members();
    let desired: BTreeSet<NodeId> = placement.desired.iter().copied().collect();
    if members.joint {
        // A change a previous leader left half done: finish it toward the placement.
        change_voters(cluster, shard, replica, changing, desired);
        return Ok(());
    }
    // The meta group learns the voters the group has now.
    let mut reported = placement.members.clone();
    reported.sort();
    let voters: Vec<NodeId> = members.voters.iter().copied().collect();
    if reported != voters {
        cluster
            .propose_meta(MetaCommand::ReportMembers {
                shard,
                members: voters.clone(),
            })
            .await?;
    }
    if members.voters == desired {
        let strays: BTreeSet<NodeId> = members
            .learners
            .iter()
            .filter(|n| !desired.contains(n))
            .copied()
            .collect();
        if !strays.is_empty() {
            replica.raft.remove_learners(&strays).await?;
        }
        return Ok(());
    }
    let joining: Vec<NodeId> = desired.difference(&members.voters).copied().collect();
    for n in &joining {
        if !members.learners.contains(n) {
            let Some(a) = addr(cluster, state, *n) else {
                continue;
            };
            replica.raft.add_learner(*n, &a).await?;
            tracing::info!(%shard, node = %n, "replica added as a learner");
        }
    }
    let Some((matched, last)) = replica.raft.replication() else {
        return Ok(());
    };
    let caught_up = joining.iter().all(|n| {
        matched
            .get(n)
            .is_some_and(|m| *m + CAUGHT_UP_LAG >= last && *m > 0)
    });
    if !caught_up {
        return Ok(());
    }
    // One joint change: the new replicas vote, the ones placed elsewhere leave.
    change_voters(cluster, shard, replica, changing, desired);
    Ok(())
}

/// Changes the shard's voters to `desired` in a task of the cluster's, then reports them.
fn change_voters(
    cluster: &Arc<Cluster>,
    shard: ShardId,
    replica: &Arc<ShardReplica>,
    changing: &Arc<Changing>,
    desired: BTreeSet<NodeId>,
) {
    changing.0.lock().expect("lock poisoned").insert(shard);
    let (cluster, replica, changing) = (cluster.clone(), replica.clone(), changing.clone());
    let task_cluster = cluster.clone();
    task_cluster.tasks.spawn(async move {
        let changed =
            tokio::time::timeout(CHANGE_DEADLINE, replica.raft.change_voters(&desired, false))
                .await
                .unwrap_or_else(|_| {
                    Err(crate::error::Error::NotReady(format!(
                        "not committed within {} s",
                        CHANGE_DEADLINE.as_secs()
                    )))
                });
        match changed {
            Ok(()) => {
                tracing::info!(%shard, voters = ?desired, "shard voters changed");
                let voters: Vec<NodeId> = desired.iter().copied().collect();
                if let Err(e) = cluster
                    .propose_meta(MetaCommand::ReportMembers {
                        shard,
                        members: voters,
                    })
                    .await
                {
                    tracing::warn!(%shard, error = %e, "reporting shard voters failed");
                }
            }
            Err(e) => tracing::warn!(%shard, error = %e, "changing shard voters failed"),
        }
        changing.0.lock().expect("lock poisoned").remove(&shard);
    });
}
