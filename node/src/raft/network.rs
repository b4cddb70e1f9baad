//! openraft's network over a [`Transport`]: each Raft RPC becomes (group, kind, bytes) sent to
//! the target node's address; the transport (gRPC, [`crate::cluster::rpc`]) shares one
//! connection per peer between every group.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode};

use super::TypeConfig;
use super::wire::{self, Reply, RpcKind};
use crate::ids::GroupId;

/// Why a message did not get an answer.
#[derive(Debug)]
pub enum TransportError {
    /// The peer could not be reached (refused, timed out, partitioned).
    Unreachable(String),
    /// The peer answered with an error of the transport itself.
    Failed(String),
}

/// Moves a Raft message to a node and brings its reply back.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + std::fmt::Debug + 'static {
    async fn raft(
        &self,
        addr: &str,
        target: u64,
        group: GroupId,
        kind: RpcKind,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError>;
}

/// Builds a client per target for one group.
#[derive(Debug)]
pub struct Network {
    pub transport: Arc<dyn Transport>,
    pub group: GroupId,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        Peer {
            transport: self.transport.clone(),
            group: self.group,
            target,
            addr: node.addr.clone(),
        }
    }
}

/// One group's client of one peer.
#[derive(Debug)]
pub struct Peer {
    transport: Arc<dyn Transport>,
    group: GroupId,
    /// The node meant: whoever answers at `addr` now refuses messages meant for another.
    target: u64,
    addr: String,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>;

impl Peer {
    async fn call<E: std::error::Error>(
        &self,
        kind: RpcKind,
        body: Vec<u8>,
        option: &RPCOption,
    ) -> RpcResult<Reply, E> {
        let bytes = self
            .transport
            .raft(
                &self.addr,
                self.target,
                self.group,
                kind,
                body,
                option.hard_ttl(),
            )
            .await
            .map_err(|e| match e {
                TransportError::Unreachable(m) => {
                    RPCError::Unreachable(Unreachable::new(&AnyError::error(m)))
                }
                TransportError::Failed(m) => {
                    RPCError::Network(NetworkError::new(&AnyError::error(m)))
                }
            })?;
        wire::decode_reply(&bytes).map_err(network)
    }
}

fn network<E: std::error::Error>(message: String) -> RPCError<u64, BasicNode, RaftError<u64, E>> {
    RPCError::Network(NetworkError::new(&AnyError::error(message)))
}

/// A refusal by the remote group (not running, shutting down): to openraft it is a peer it
/// cannot reach for now, so it backs off and retries.
fn refused<E: std::error::Error>(message: String) -> RPCError<u64, BasicNode, RaftError<u64, E>> {
    RPCError::Unreachable(Unreachable::new(&AnyError::error(message)))
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        match self
            .call(RpcKind::AppendEntries, wire::encode_append(&rpc), &option)
            .await?
        {
            Reply::Ok(b) => wire::decode_append_reply(&b).map_err(network),
            Reply::Refused(m) => Err(refused(m)),
            Reply::Mismatch(_) => Err(network("unexpected snapshot mismatch".into())),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        match self
            .call(
                RpcKind::InstallSnapshot,
                wire::encode_snapshot(&rpc),
                &option,
            )
            .await?
        {
            Reply::Ok(b) => wire::decode_snapshot_reply(&b).map_err(network),
            Reply::Refused(m) => Err(refused(m)),
            Reply::Mismatch(m) => Err(RPCError::RemoteError(openraft::error::RemoteError::new(
                0,
                RaftError::APIError(InstallSnapshotError::SnapshotMismatch(m)),
            ))),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>> {
        match self
            .call(RpcKind::Vote, wire::encode_vote(&rpc), &option)
            .await?
        {
            Reply::Ok(b) => wire::decode_vote_reply(&b).map_err(network),
            Reply::Refused(m) => Err(refused(m)),
            Reply::Mismatch(_) => Err(network("unexpected snapshot mismatch".into())),
        }
    }
}
