//! How a node comes to be in a cluster, once: alone (it creates a cluster of one), with
//! `--peers` (every peer answers; the lowest node id creates the meta group with them all),
//! or with `--join` (a member adds it through the meta leader). A node that restarts in its
//! cluster skips all of this: its meta group member already holds the state.
//!
//! ```text
//!  alone:  initialise meta {self} ─► lead ─► Bootstrap{settings, [self]}
//!  peers:  Hello every peer ─► lowest id initialises meta {peers} ─► its leader: Bootstrap
//!  join:   Join(self) at any member ─► AddNode ─► the controller adds it to the meta group
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cluster::Cluster;
use crate::cluster::controller::MAX_META_VOTERS;
use crate::cluster::meta::{ClusterSettings, MetaCommand};
use crate::config::Membership;
use crate::error::{Error, Result};
use crate::ids::NodeId;

const RETRY: Duration = Duration::from_millis(500);

/// Returns once the cluster exists and this node is a member of it, or fails for good (a
/// refused join).
pub async fn run(cluster: &Cluster) -> Result<()> {
    let settings = ClusterSettings {
        shards: cluster.settings.cluster.shards,
        replication_factor: cluster.settings.cluster.replication_factor,
    };
    if !cluster.meta.is_initialized().await? {
        match &cluster.settings.cluster.membership {
            Membership::Alone => {
                let me = BTreeMap::from([(cluster.id, cluster.addr.clone())]);
                cluster.meta.initialize(&me).await?;
                tracing::info!(node = %cluster.id, "created a cluster of one");
            }
            Membership::Peers(addrs) => form(cluster, addrs).await?,
            Membership::Join(addrs) => join(cluster, addrs).await?,
        }
    }
    // Wait to see the cluster, and be in it. The meta leader bootstraps it if nobody has (the
    // node that created the group may have stopped before it could).
    loop {
        let state = cluster.state();
        if state.settings.is_some() && state.nodes.contains_key(&cluster.id) {
            return Ok(());
        }
        if cluster.shutdown.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        if state.settings.is_none() && cluster.meta.is_leader() {
            let nodes = match &cluster.settings.cluster.membership {
                Membership::Peers(addrs) => match hello_all(cluster, addrs).await {
                    Some(peers) => peers.into_iter().map(|(id, addr, _)| (id, addr)).collect(),
                    None => {
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                },
                _ => cluster.meta.members().addrs.into_iter().collect::<Vec<_>>(),
            };
            match cluster
                .meta
                .propose_meta(MetaCommand::Bootstrap {
                    settings: settings.clone(),
                    nodes,
                })
                .await
            {
                Ok(()) => tracing::info!(?settings, "cluster bootstrapped"),
                Err(e) => tracing::warn!(error = %e, "bootstrapping the cluster failed; retrying"),
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// `--peers`: waits for every peer, then the lowest node id creates the meta group.
async fn form(cluster: &Cluster, addrs: &[String]) -> Result<()> {
    loop {
        if cluster.shutdown.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        if cluster.meta.is_initialized().await? {
            return Ok(());
        }
        if let Some(answered) = hello_all(cluster, addrs).await {
            if answered.iter().any(|(_, _, member)| *member) {
                // The cluster exists already (this node lost its data, or is new): join it.
                return join(cluster, addrs).await;
            }
            let mut ids: Vec<NodeId> = answered.iter().map(|(id, _, _)| *id).collect();
            ids.sort();
            ids.dedup();
            if ids.len() != addrs.len() {
                return Err(Error::Refused(format!(
                    "two peers share a node id ({answered:?}); every node needs its own --node-id"
                )));
            }
            if ids[0] == cluster.id {
                let voters: BTreeMap<NodeId, String> = answered
                    .iter()
                    .map(|(id, addr, _)| (*id, addr.clone()))
                    .filter(|(id, _)| ids.iter().take(MAX_META_VOTERS).any(|v| v == id))
                    .collect();
                cluster.meta.initialize(&voters).await?;
                tracing::info!(peers = ?ids, "formed a cluster with its peers");
                return Ok(());
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Every peer's id, address and whether it is a member already; `None` until all answer.
async fn hello_all(cluster: &Cluster, addrs: &[String]) -> Option<Vec<(NodeId, String, bool)>> {
    let hellos = futures::future::join_all(addrs.iter().map(|a| async move {
        if *a == cluster.addr {
            return Ok((cluster.id, a.clone(), false));
        }
        cluster
            .peers
            .hello(a)
            .await
            .map(|h| (NodeId(h.node), a.clone(), h.member))
    }))
    .await;
    let answered: Vec<(NodeId, String, bool)> = hellos.into_iter().filter_map(|h| h.ok()).collect();
    if answered.len() < addrs.len() {
        tracing::info!(
            answered = answered.len(),
            peers = addrs.len(),
            "waiting for every peer to answer"
        );
        return None;
    }
    Some(answered)
}

/// `--join`: asks members until one adds this node (a refusal, such as a reused node id,
/// is final).
async fn join(cluster: &Cluster, addrs: &[String]) -> Result<()> {
    loop {
        for addr in addrs.iter().filter(|a| **a != cluster.addr) {
            if cluster.shutdown.is_cancelled() {
                return Err(Error::ShuttingDown);
            }
            match cluster.peers.join(addr, cluster.id.0, &cluster.addr).await {
                Ok(()) => {
                    tracing::info!(via = %addr, "joined the cluster");
                    return Ok(());
                }
                Err(Error::Refused(why)) => {
                    return Err(Error::Refused(format!("joining through {addr}: {why}")));
                }
                Err(e) => tracing::info!(via = %addr, error = %e, "join not answered; retrying"),
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}
