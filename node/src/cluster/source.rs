//! The shards as the coordinator reaches them from this node: each shard's read point is its
//! leader's read index (asked over gRPC when the leader is elsewhere), and a fragment runs on
//! this node's replica when it has one, else on another replica over Flight; a replica that
//! fails (down, partitioned, behind) is replaced by the next.

use std::sync::Arc;
use std::time::Duration;

use firn_query::{Fragment, FragmentOutput, ReadPoint, ShardSource};
use firn_storage::{ShardId, TenantId};
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::cluster::flight::{self, FragmentTicket};
use crate::error::Error;
use crate::ids::NodeId;

/// How long a read index is sought at most (an election takes a second or two).
const READ_INDEX_DEADLINE: Duration = Duration::from_secs(10);
/// Bytes a shard's answer may hold at most (partial aggregates are far smaller; a SQL scan
/// past it should narrow its range or filters).
const MAX_ANSWER_BYTES: usize = 512 << 20;

/// The cluster's shards, for a [`firn_query::Coordinator`] on this node.
#[derive(Debug)]
pub struct ClusterSource {
    cluster: Arc<Cluster>,
}

impl ClusterSource {
    pub fn new(cluster: Arc<Cluster>) -> Self {
        Self { cluster }
    }

    /// The read index of `shard` from its leader, wherever it is.
    async fn read_index(&self, shard: ShardId) -> Result<u64, Error> {
        let cluster = &self.cluster;
        let deadline = Instant::now() + READ_INDEX_DEADLINE;
        let mut attempt = 0usize;
        loop {
            let target = cluster.target(shard, attempt);
            attempt += 1;
            let answer = match target {
                Some(t) if t == cluster.id => match cluster.replica(shard) {
                    Some(r) => r.raft.read_index().await,
                    None => Err(Error::NotReady(format!("no replica of shard {shard} here"))),
                },
                Some(t) => match cluster.addr_of(t) {
                    Some(addr) => cluster.peers.read_index(&addr, shard.0, false).await,
                    None => Err(Error::NotReady(format!("node {t} has no known address"))),
                },
                None => Err(Error::NotReady(format!(
                    "shard {shard} has no known replica"
                ))),
            };
            let e = match answer {
                Ok(index) => {
                    if let Some(t) = target {
                        cluster.note_leader(shard, t);
                    }
                    return Ok(index);
                }
                Err(Error::NotLeader {
                    leader: Some((leader, _)),
                    ..
                }) if Some(leader) != target => {
                    cluster.note_leader(shard, leader);
                    continue;
                }
                Err(e) => e,
            };
            cluster.forget_leader(shard, target);
            if Instant::now() >= deadline {
                return Err(Error::NotReady(format!(
                    "shard {shard} has no leader that confirms itself: {e}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A Flight status from a replica as the query's error, or `None` when another replica
/// should be tried.
fn final_error(status: &tonic::Status, memory_limit: usize) -> Option<firn_query::Error> {
    let message = status.message().to_owned();
    match status.code() {
        tonic::Code::InvalidArgument => Some(firn_query::Error::InvalidQuery(message)),
        tonic::Code::ResourceExhausted => Some(firn_query::Error::MemoryLimit {
            limit: memory_limit,
            message,
        }),
        tonic::Code::DeadlineExceeded => Some(firn_query::Error::Timeout { seconds: 0 }),
        _ => None,
    }
}

#[async_trait::async_trait]
impl ShardSource for ClusterSource {
    async fn read_points(&self) -> firn_query::Result<Vec<ReadPoint>> {
        self.cluster
            .check_member()
            .map_err(|e| firn_query::Error::Unavailable(e.to_string()))?;
        let Some(shards) = self.cluster.state().settings.as_ref().map(|s| s.shards) else {
            return Err(firn_query::Error::Unavailable(
                "the cluster is not formed yet".into(),
            ));
        };
        futures::future::try_join_all((0..shards).map(ShardId).map(|shard| async move {
            self.read_index(shard)
                .await
                .map(|applied| ReadPoint { shard, applied })
                .map_err(|e| firn_query::Error::Unavailable(e.to_string()))
        }))
        .await
    }

    async fn execute(
        &self,
        at: ReadPoint,
        tenant: &TenantId,
        fragment: &Fragment,
    ) -> firn_query::Result<FragmentOutput> {
        let cluster = &self.cluster;
        let memory_limit = cluster.shard_settings.query.memory_limit;
        let mut order: Vec<NodeId> = Vec::new();
        if cluster.replica(at.shard).is_some() {
            order.push(cluster.id);
        }
        for n in cluster.candidates(at.shard) {
            if !order.contains(&n) {
                order.push(n);
            }
        }
        let mut failures = Vec::new();
        for node in order {
            let answer = if node == cluster.id {
                flight::run_local(cluster, at.shard, at.applied, tenant, fragment).await
            } else {
                let Some(addr) = cluster.addr_of(node) else {
                    continue;
                };
                let ticket = FragmentTicket {
                    shard: at.shard,
                    applied: at.applied,
                    tenant: tenant.clone(),
                    fragment: fragment.clone(),
                };
                flight::fetch(cluster, &addr, &ticket, MAX_ANSWER_BYTES).await
            };
            match answer {
                Ok(out) => return Ok(out),
                Err(status) => {
                    if let Some(e) = final_error(&status, memory_limit) {
                        return Err(e);
                    }
                    tracing::debug!(shard = %at.shard, %node, error = %status.message(), "replica failed; trying another");
                    failures.push(format!("node {node}: {}", status.message()));
                }
            }
        }
        Err(firn_query::Error::Unavailable(format!(
            "no replica of shard {} answered ({})",
            at.shard,
            failures.join("; ")
        )))
    }
}
