//! The cluster as one node sees it: its member of the meta group, the shard replicas it
//! holds, its peers, and the loops that keep them where the meta state says.
//!
//! ```text
//!            ┌──────────── meta group (every node; ≤ 5 voters) ─────────────┐
//!            │ settings · nodes · retired ids · placement of shard replicas │
//!            └───────────────▲──────────────────────────┬───────────────────┘
//!   controller (meta leader) │ Place, RetireNode        │ watch
//!   placement::plan ─────────┘                          ▼
//!                             reconciler (every node): open/close local replicas; on a shard's
//!                             leader: add learners, change voters, ReportMembers
//!   write ─► router: split by shard ─► local leader, or Forward to the leader (retried, keyed)
//!   query ─► Coordinator ─► source: read index per shard ─► a replica (local, or Flight)
//! ```

pub mod bootstrap;
pub mod compactor;
pub mod controller;
pub mod flight;
pub mod handoff;
pub mod meta;
pub mod peers;
pub mod placement;
pub mod reconciler;
pub mod replica;
pub mod router;
pub mod rpc;
pub mod source;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use firn_query::QueryConfig;
use firn_storage::{ShardId, StoreConfig};
use object_store::ObjectStore;
use object_store::path::Path;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::ids::NodeId;
use crate::metrics::Metrics;
use crate::raft::RaftGroup;
use crate::tenancy::Tenancy;
use meta::{MetaCommand, MetaState};
use peers::Peers;
use replica::ShardReplica;

/// How long a meta proposal is retried (leader changes, forwarding) at most.
const META_DEADLINE: Duration = Duration::from_secs(15);

/// What every shard replica on this node is opened with.
#[derive(Clone, Debug)]
pub struct ShardSettings {
    pub object_store: Arc<dyn ObjectStore>,
    /// The object-store prefix of the whole cluster; each shard has its own under it.
    pub prefix: Path,
    pub store: StoreConfig,
    pub query: QueryConfig,
    pub flush_bytes: usize,
    pub flush_interval: Duration,
    pub log_budget_bytes: u64,
}

/// This node in its cluster.
#[derive(Debug)]
pub struct Cluster {
    pub id: NodeId,
    pub addr: String,
    pub meta: RaftGroup,
    meta_state: watch::Receiver<Arc<MetaState>>,
    replicas: RwLock<BTreeMap<ShardId, Arc<ShardReplica>>>,
    pub peers: Arc<Peers>,
    pub shard_settings: ShardSettings,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    /// Bytes of writes being admitted and committed on this node, in KiB permits.
    pub inflight: Arc<tokio::sync::Semaphore>,
    pub inflight_kib: u32,
    /// Leaders last seen per shard, to route writes and reads without asking first.
    leaders: RwLock<BTreeMap<ShardId, NodeId>>,
    pub tasks: TaskTracker,
    pub shutdown: CancellationToken,
    /// Cancelled when the node starts to stop: clients' requests are refused and `/ready`
    /// fails, while node-to-node RPCs go on serving for the handover.
    pub draining: CancellationToken,
    /// Auth, limits, usage.
    pub tenancy: Arc<Tenancy>,
}

/// Stops every Raft member of the node: its shard replicas', then its meta group member's.
pub async fn shutdown_raft(cluster: &Cluster) {
    for replica in cluster.replicas() {
        replica.raft.shutdown().await;
    }
    cluster.meta.shutdown().await;
}

impl Cluster {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: Settings,
        meta: RaftGroup,
        meta_state: watch::Receiver<Arc<MetaState>>,
        peers: Arc<Peers>,
        shard_settings: ShardSettings,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        tenancy: Arc<Tenancy>,
    ) -> Self {
        let inflight_kib = u32::try_from(settings.max_inflight_write_bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, tokio::sync::Semaphore::MAX_PERMITS as u32);
        Self {
            id: settings.cluster.node_id,
            addr: settings.cluster.advertise.clone(),
            meta,
            meta_state,
            replicas: RwLock::new(BTreeMap::new()),
            peers,
            shard_settings,
            settings,
            metrics,
            inflight: Arc::new(tokio::sync::Semaphore::new(inflight_kib as usize)),
            inflight_kib,
            leaders: RwLock::new(BTreeMap::new()),
            tasks: TaskTracker::new(),
            shutdown,
            draining: CancellationToken::new(),
            tenancy,
        }
    }

    /// The meta state as this node last applied it.
    pub fn state(&self) -> Arc<MetaState> {
        self.meta_state.borrow().clone()
    }

    /// A receiver that wakes on every meta change.
    pub fn watch_state(&self) -> watch::Receiver<Arc<MetaState>> {
        self.meta_state.clone()
    }

    /// The data directory of a shard replica.
    pub fn shard_dir(&self, shard: ShardId) -> PathBuf {
        shard_dir(&self.settings.data_dir, shard)
    }

    pub fn replica(&self, shard: ShardId) -> Option<Arc<ShardReplica>> {
        self.replicas
            .read()
            .expect("replica lock poisoned")
            .get(&shard)
            .cloned()
    }

    pub fn replicas(&self) -> Vec<Arc<ShardReplica>> {
        self.replicas
            .read()
            .expect("replica lock poisoned")
            .values()
            .cloned()
            .collect()
    }

    pub(crate) fn insert_replica(&self, replica: Arc<ShardReplica>) {
        self.replicas
            .write()
            .expect("replica lock poisoned")
            .insert(replica.id, replica);
    }

    pub(crate) fn remove_replica(&self, shard: ShardId) -> Option<Arc<ShardReplica>> {
        self.replicas
            .write()
            .expect("replica lock poisoned")
            .remove(&shard)
    }

    /// The leader of `shard` as last seen (by a local replica, or a hint from a peer).
    pub fn leader_hint(&self, shard: ShardId) -> Option<NodeId> {
        self.replica(shard)
            .and_then(|r| r.raft.leader())
            .or_else(|| {
                self.leaders
                    .read()
                    .expect("leader lock poisoned")
                    .get(&shard)
                    .copied()
            })
    }

    pub fn note_leader(&self, shard: ShardId, leader: NodeId) {
        self.leaders
            .write()
            .expect("leader lock poisoned")
            .insert(shard, leader);
    }

    /// Drops a peer's hint that `leader` leads `shard` (it did not answer as the leader).
    pub fn forget_leader(&self, shard: ShardId, leader: Option<NodeId>) {
        if let Some(l) = leader {
            let mut leaders = self.leaders.write().expect("leader lock poisoned");
            if leaders.get(&shard) == Some(&l) {
                leaders.remove(&shard);
            }
        }
    }

    /// The node to try for `shard` on the `attempt`th try: the known leader, else the shard's
    /// replicas in turn.
    pub fn target(&self, shard: ShardId, attempt: usize) -> Option<NodeId> {
        self.leader_hint(shard).or_else(|| {
            let candidates = self.candidates(shard);
            candidates.get(attempt % candidates.len().max(1)).copied()
        })
    }

    /// The address of a node, from the meta state.
    pub fn addr_of(&self, node: NodeId) -> Option<String> {
        if node == self.id {
            return Some(self.addr.clone());
        }
        self.state().addr(node).map(str::to_owned)
    }

    /// Nodes to try for `shard`, best first: the known leader, then its members and desired
    /// replicas.
    pub fn candidates(&self, shard: ShardId) -> Vec<NodeId> {
        let state = self.state();
        let mut out: Vec<NodeId> = self.leader_hint(shard).into_iter().collect();
        if let Some(p) = state.shard(shard) {
            for n in p.members.iter().chain(&p.desired) {
                if !out.contains(n) {
                    out.push(*n);
                }
            }
        }
        out
    }

    /// True once the cluster exists, this node is in it, and every shard placed here has a
    /// leader.
    pub fn ready(&self) -> bool {
        let state = self.state();
        if state.settings.is_none() || self.retired() || self.draining.is_cancelled() {
            return false;
        }
        state
            .shards_of(self.id)
            .iter()
            .all(|s| self.replica(*s).is_some_and(|r| r.raft.leader().is_some()))
    }

    /// True once this node has been removed from the cluster: it holds nothing and serves
    /// nothing any more.
    pub fn retired(&self) -> bool {
        self.state().retired.contains(&self.id)
    }

    /// Refuses work on a node removed from the cluster.
    pub fn check_member(&self) -> Result<()> {
        if self.retired() {
            return Err(Error::NotReady(format!(
                "node {} was removed from the cluster; send requests to another node",
                self.id
            )));
        }
        Ok(())
    }

    /// Waits until this node's meta state holds everything the meta group committed before
    /// now (the meta leader's read index, applied here). A node acts on placement only after
    /// this: a view left stale by a restart must never close a replica or change a shard's
    /// voters.
    pub async fn sync_meta(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + META_DEADLINE;
        loop {
            let index = if self.meta.is_leader() {
                self.meta.read_index().await
            } else {
                match self.meta.leader().and_then(|l| self.addr_of(l)) {
                    Some(addr) => self.peers.read_index(&addr, 0, true).await,
                    None => Err(Error::NotReady("the meta group has no leader".into())),
                }
            };
            match index {
                Ok(index) => {
                    return self.meta.wait_applied(index, META_DEADLINE).await;
                }
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "meta read index retried");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Commits a meta change through whichever node leads the meta group.
    pub async fn propose_meta(&self, command: MetaCommand) -> Result<()> {
        let deadline = tokio::time::Instant::now() + META_DEADLINE;
        loop {
            let attempt = match self.meta.propose_meta(command.clone()).await {
                Err(Error::NotLeader {
                    leader: Some((id, addr)),
                    ..
                }) if id != self.id => self.peers.propose_meta(&addr, &command).await,
                other => other,
            };
            match attempt {
                Err(e @ (Error::NotLeader { .. } | Error::Unreachable(_) | Error::Raft(_)))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!(error = %e, "meta proposal retried");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }
}

/// `<data>/raft/shard-<n>`.
pub fn shard_dir(data_dir: &std::path::Path, shard: ShardId) -> PathBuf {
    data_dir.join("raft").join(format!("shard-{:05}", shard.0))
}

/// The shards this node has replicas of on disk, from their directories.
pub fn shards_on_disk(data_dir: &std::path::Path) -> Vec<ShardId> {
    let Ok(entries) = std::fs::read_dir(data_dir.join("raft")) else {
        return Vec::new();
    };
    let mut shards: Vec<ShardId> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("shard-")?
                .parse()
                .ok()
                .map(ShardId)
        })
        .collect();
    shards.sort();
    shards
}
