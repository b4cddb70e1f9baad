//! Handing leadership over when a node stops (SIGTERM: a rolling upgrade, a drained Kubernetes
//! node). The node refuses clients' requests and forwarded writes, and its shard leaders have
//! flushed; its server still answers peers. For every group it leads, it waits for a voter
//! whose log matches its own, stops its heartbeats, and once the followers' leases have run
//! out asks that voter to campaign; it then waits to see that voter lead. The voter, being
//! caught up, wins at once (before any follower's own election timer), instead of the group
//! electing whoever times out first after the old leader is gone; a group with no caught-up
//! voter (or a refused campaign) falls back to that.
//!
//! ```text
//!  leader of G, stopping ─► a voter V of G with matched == last index (≤ CATCH_UP)
//!        ─► no more heartbeats ─► LEADER_LEASE ─► Campaign(G) at V ─► V elected
//!        ─► this node follows V (≤ STEP_DOWN)
//! ```

use std::time::{Duration, Instant};

use firn_storage::ShardId;

use crate::cluster::Cluster;
use crate::ids::NodeId;
use crate::raft::{LEADER_LEASE, RaftGroup};

/// How long a group waits for a voter to match the leader's log.
const CATCH_UP: Duration = Duration::from_secs(3);
/// How long the old leader waits to see a new one.
const STEP_DOWN: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(20);

/// Hands over every group this node leads, the shards' and the meta group's, concurrently.
pub async fn run(cluster: &Cluster) {
    let replicas = cluster.replicas();
    let mut handoffs: Vec<_> = replicas
        .iter()
        .filter(|r| r.raft.is_leader())
        .map(|r| hand_over(cluster, &r.raft, Some(r.id)))
        .collect();
    if cluster.meta.is_leader() {
        handoffs.push(hand_over(cluster, &cluster.meta, None));
    }
    futures::future::join_all(handoffs).await;
}

/// Hands over one group (`shard`, or the meta group when `None`), logging whether it moved.
async fn hand_over(cluster: &Cluster, group: &RaftGroup, shard: Option<ShardId>) {
    let name = shard.map_or_else(|| "meta".to_owned(), |s| s.to_string());
    let Some(target) = caught_up_voter(cluster.id, group).await else {
        tracing::info!(group = %name, "no voter caught up; the group elects a leader after its timeout");
        return;
    };
    let Some(addr) = group.members().addrs.get(&target).cloned() else {
        return;
    };
    group.stop_heartbeats();
    tokio::time::sleep(LEADER_LEASE).await;
    let asked = cluster
        .peers
        .campaign(&addr, shard.map_or(0, |s| s.0), shard.is_none())
        .await;
    if let Err(e) = asked {
        tracing::info!(group = %name, to = %target, error = %e, "the handover was refused; the group elects a leader after its timeout");
        return;
    }
    let started = Instant::now();
    while group.leader() != Some(target) && started.elapsed() < STEP_DOWN {
        tokio::time::sleep(POLL).await;
    }
    let moved = group.leader() == Some(target);
    tracing::info!(group = %name, to = %target, moved, "leadership handed over");
}

/// A voter other than `me` whose log matches the leader's last index, waiting up to
/// [`CATCH_UP`] for one.
async fn caught_up_voter(me: NodeId, group: &RaftGroup) -> Option<NodeId> {
    let started = Instant::now();
    loop {
        let voters = group.members().voters;
        if let Some((matched, last)) = group.replication() {
            let best = matched
                .iter()
                .filter(|(id, index)| **id != me && voters.contains(id) && **index >= last)
                .map(|(id, _)| *id)
                .next();
            if best.is_some() {
                return best;
            }
        } else {
            return None;
        }
        if started.elapsed() >= CATCH_UP || voters.len() < 2 {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}
