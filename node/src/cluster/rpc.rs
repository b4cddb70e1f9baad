//! The node-to-node gRPC service (`proto/cluster.proto`), served on the node's one port
//! beside the public APIs: Raft messages for the node's groups, forwarded writes, meta
//! proposals, joins, and read indexes.

use std::sync::Arc;

use firn_storage::ShardId;
use tonic::{Request, Response, Status};

use crate::cluster::Cluster;
use crate::cluster::meta::MetaCommand;
use crate::cluster::peers::{MAX_MESSAGE_BYTES, not_leader_status};
use crate::error::Error;
use crate::ids::{GroupId, NodeId};
use crate::raft::RpcKind;

/// The generated messages, client and server.
#[allow(
    missing_debug_implementations,
    clippy::all,
    clippy::unwrap_used,
    rust_2018_idioms
)]
pub mod pb {
    tonic::include_proto!("firn.cluster.v1");
}

/// The service over this node's cluster state.
#[derive(Clone, Debug)]
pub struct ClusterService {
    cluster: Arc<Cluster>,
}

impl ClusterService {
    pub fn server(cluster: Arc<Cluster>) -> pb::cluster_server::ClusterServer<Self> {
        pb::cluster_server::ClusterServer::new(Self { cluster })
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// This node's replica of `shard`, or `unavailable` naming what it lacks.
    fn held(&self, shard: ShardId) -> Result<Arc<crate::cluster::replica::ShardReplica>, Status> {
        self.cluster.replica(shard).ok_or_else(|| {
            Status::unavailable(format!(
                "node {} holds no replica of shard {shard}",
                self.cluster.id
            ))
        })
    }
}

/// A node error as a gRPC status for a peer.
fn status(e: Error) -> Status {
    if let Some(s) = not_leader_status(&e) {
        return s;
    }
    let message = crate::api::error::error_chain(&e);
    match e {
        Error::Refused(_) => Status::failed_precondition(message),
        Error::BadRequest(_) => Status::invalid_argument(message),
        _ => Status::unavailable(message),
    }
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn raft(
        &self,
        request: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        let r = request.into_inner();
        let group = GroupId::from_wire(r.group)
            .ok_or_else(|| Status::invalid_argument(format!("no group {}", r.group)))?;
        let kind = RpcKind::from_wire(r.kind)
            .ok_or_else(|| Status::invalid_argument(format!("no raft message kind {}", r.kind)))?;
        if r.target != 0 && r.target != self.cluster.id.0 {
            // The sender knew another node at this address: to it, that node is unreachable
            // (gone, or not yet here), never this node's log in its place.
            return Err(Status::unavailable(format!(
                "this address is node {}'s now, not node {}'s",
                self.cluster.id, r.target
            )));
        }
        let body = match group {
            GroupId::Meta => self.cluster.meta.handle(kind, r.body).await,
            GroupId::Shard(shard) => match self.cluster.replica(shard) {
                Some(replica) => replica.raft.handle(kind, r.body).await,
                // Not (yet) a replica here: the leader backs off and tries again.
                None => {
                    return Err(Status::unavailable(format!(
                        "node {} holds no replica of shard {shard}",
                        self.cluster.id
                    )));
                }
            },
        };
        Ok(Response::new(pb::RaftReply { body: body.into() }))
    }

    async fn forward(
        &self,
        request: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardReply>, Status> {
        if self.cluster.draining.is_cancelled() {
            // A stopping node commits nothing new, so its followers' leases can run out for
            // the handover; the sender tries the shard's next leader.
            return Err(status(Error::ShuttingDown));
        }
        let r = request.into_inner();
        let results = self
            .cluster
            .commit_forwarded(ShardId(r.shard), r.parts)
            .await;
        Ok(Response::new(pb::ForwardReply { results }))
    }

    async fn propose_meta(
        &self,
        request: Request<pb::ProposeMetaRequest>,
    ) -> Result<Response<pb::ProposeMetaReply>, Status> {
        let command: MetaCommand = serde_json::from_slice(&request.into_inner().command)
            .map_err(|e| Status::invalid_argument(format!("not a meta command: {e}")))?;
        // Only the leader commits; a follower says who leads.
        self.cluster
            .meta
            .propose_meta(command)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ProposeMetaReply {}))
    }

    async fn join(
        &self,
        request: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinReply>, Status> {
        let r = request.into_inner();
        if r.node == 0 || r.addr.is_empty() {
            return Err(Status::invalid_argument(
                "a joining node needs an id and an address",
            ));
        }
        tracing::info!(node = r.node, addr = %r.addr, "node asks to join");
        self.cluster
            .propose_meta(MetaCommand::AddNode {
                id: NodeId(r.node),
                addr: r.addr,
            })
            .await
            .map_err(status)?;
        Ok(Response::new(pb::JoinReply {}))
    }

    async fn hello(
        &self,
        _request: Request<pb::HelloRequest>,
    ) -> Result<Response<pb::HelloReply>, Status> {
        let state = self.cluster.state();
        Ok(Response::new(pb::HelloReply {
            node: self.cluster.id.0,
            addr: self.cluster.addr.clone(),
            member: state.settings.is_some() && state.nodes.contains_key(&self.cluster.id),
        }))
    }

    async fn reserve_node_id(
        &self,
        request: Request<pb::ReserveNodeIdRequest>,
    ) -> Result<Response<pb::ReserveNodeIdReply>, Status> {
        let r = request.into_inner();
        if r.addr.is_empty() {
            return Err(Status::invalid_argument("a reservation needs an address"));
        }
        self.cluster
            .propose_meta(MetaCommand::ReserveNodeId {
                addr: r.addr.clone(),
                preferred: NodeId(r.preferred),
            })
            .await
            .map_err(status)?;
        // Committed at the meta leader; this member sees it once it has applied that far.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let state = self.cluster.state();
            if let Some(id) = state.reserved.get(&r.addr) {
                return Ok(Response::new(pb::ReserveNodeIdReply { node: id.0 }));
            }
            if state.nodes.values().any(|n| n.addr == r.addr) {
                return Err(Status::failed_precondition(format!(
                    "{} joined while its id was being reserved",
                    r.addr
                )));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Status::unavailable(
                    "the reservation is not applied here yet",
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    async fn campaign(
        &self,
        request: Request<pb::CampaignRequest>,
    ) -> Result<Response<pb::CampaignReply>, Status> {
        let r = request.into_inner();
        if r.meta {
            self.cluster.meta.campaign().await.map_err(status)?;
        } else {
            let replica = self.held(ShardId(r.shard))?;
            replica.raft.campaign().await.map_err(status)?;
        }
        Ok(Response::new(pb::CampaignReply {}))
    }

    async fn read_index(
        &self,
        request: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexReply>, Status> {
        let r = request.into_inner();
        if r.meta {
            let index = self.cluster.meta.read_index().await.map_err(|e| {
                status(match e {
                    Error::NotLeader { group, leader } => Error::NotLeader {
                        group,
                        leader: leader.or_else(|| {
                            let l = self.cluster.meta.leader()?;
                            Some((l, self.cluster.addr_of(l)?))
                        }),
                    },
                    other => other,
                })
            })?;
            return Ok(Response::new(pb::ReadIndexReply { index }));
        }
        let replica = self.held(ShardId(r.shard))?;
        let index = replica.raft.read_index().await.map_err(|e| {
            status(match e {
                Error::NotLeader { group, leader } => Error::NotLeader {
                    group,
                    leader: leader.or_else(|| {
                        let l = replica.raft.leader()?;
                        Some((l, self.cluster.addr_of(l)?))
                    }),
                },
                other => other,
            })
        })?;
        Ok(Response::new(pb::ReadIndexReply { index }))
    }
}
