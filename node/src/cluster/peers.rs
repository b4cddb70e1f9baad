//! Clients of the other nodes: one lazily connected HTTP/2 channel per peer address, shared
//! by every Raft group, write forwarding and Flight, with a deadline on every call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::cluster::meta::MetaCommand;
use crate::cluster::rpc::pb;
use crate::cluster::rpc::pb::cluster_client::ClusterClient;
use crate::error::{Error, Result};
use crate::ids::GroupId;
use crate::raft::{RpcKind, Transport, TransportError};

/// Channels kept at most (one per peer address; a cluster has far fewer).
const MAX_CHANNELS: usize = 256;
/// Largest message between nodes: a forwarded write batch or a Raft batch of entries.
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a short control call (hello, join, meta proposal) may take.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a read index may take: a heartbeat round, unless the leader stopped answering.
const READ_INDEX_TIMEOUT: Duration = Duration::from_secs(2);

/// The channels to other nodes.
#[derive(Debug, Default)]
pub struct Peers {
    channels: Mutex<HashMap<String, Channel>>,
    /// `authorization` sent with every call (`--auth=token`: the nodes' credential).
    credential: Option<tonic::metadata::AsciiMetadataValue>,
}

impl Peers {
    /// Peers that present `credential` (an `authorization` value) with every call.
    pub fn new(credential: Option<&str>) -> Self {
        Self {
            channels: Mutex::default(),
            credential: credential.and_then(|c| c.parse().ok()),
        }
    }

    /// A call's request: its deadline and this node's credential.
    pub fn request<T>(&self, message: T, timeout: Duration) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        r.set_timeout(timeout);
        if let Some(c) = &self.credential {
            r.metadata_mut().insert("authorization", c.clone());
        }
        r
    }

    /// The channel to `addr` (`HOST:PORT`), connected on first use.
    pub fn channel(&self, addr: &str) -> Result<Channel> {
        let mut channels = self.channels.lock().expect("peer lock poisoned");
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        if channels.len() >= MAX_CHANNELS {
            channels.clear();
        }
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Error::Unreachable(format!("{addr} is not a valid address: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .connect_lazy();
        channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }

    pub fn client(&self, addr: &str) -> Result<ClusterClient<Channel>> {
        Ok(ClusterClient::new(self.channel(addr)?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    pub async fn hello(&self, addr: &str) -> Result<pb::HelloReply> {
        let mut client = self.client(addr)?;
        let reply = client
            .hello(self.request(pb::HelloRequest {}, CONTROL_TIMEOUT))
            .await
            .map_err(|s| status_error(addr, s))?;
        Ok(reply.into_inner())
    }

    pub async fn join(&self, addr: &str, node: u64, advertise: &str) -> Result<()> {
        let mut client = self.client(addr)?;
        client
            .join(self.request(
                pb::JoinRequest {
                    node,
                    addr: advertise.to_owned(),
                },
                CONTROL_TIMEOUT * 4,
            ))
            .await
            .map_err(|s| status_error(addr, s))?;
        Ok(())
    }

    pub async fn propose_meta(&self, addr: &str, command: &MetaCommand) -> Result<()> {
        let mut client = self.client(addr)?;
        let command = serde_json::to_vec(command).expect("meta commands serialise");
        client
            .propose_meta(self.request(
                pb::ProposeMetaRequest {
                    command: command.into(),
                },
                CONTROL_TIMEOUT,
            ))
            .await
            .map_err(|s| status_error(addr, s))?;
        Ok(())
    }

    /// The read index of `shard`'s group, or of the meta group when `meta`.
    pub async fn read_index(&self, addr: &str, shard: u32, meta: bool) -> Result<u64> {
        let mut client = self.client(addr)?;
        let reply = client
            .read_index(self.request(pb::ReadIndexRequest { shard, meta }, READ_INDEX_TIMEOUT))
            .await
            .map_err(|s| status_error(addr, s))?;
        Ok(reply.into_inner().index)
    }

    /// Asks the cluster member at `addr` for an id for a node joining at `advertise`.
    pub async fn reserve_node_id(
        &self,
        addr: &str,
        advertise: &str,
        preferred: u64,
    ) -> Result<u64> {
        let mut client = self.client(addr)?;
        let reply = client
            .reserve_node_id(self.request(
                pb::ReserveNodeIdRequest {
                    addr: advertise.to_owned(),
                    preferred,
                },
                CONTROL_TIMEOUT * 4,
            ))
            .await
            .map_err(|s| status_error(addr, s))?;
        Ok(reply.into_inner().node)
    }

    /// Asks the node at `addr` to campaign for a shard's group (or the meta group's).
    pub async fn campaign(&self, addr: &str, shard: u32, meta: bool) -> Result<()> {
        let mut client = self.client(addr)?;
        client
            .campaign(self.request(pb::CampaignRequest { shard, meta }, CONTROL_TIMEOUT))
            .await
            .map_err(|s| status_error(addr, s))?;
        Ok(())
    }

    pub async fn forward(
        &self,
        addr: &str,
        forward: pb::ForwardRequest,
        timeout: Duration,
    ) -> Result<pb::ForwardReply> {
        let mut client = self.client(addr)?;
        let reply = client
            .forward(self.request(forward, timeout))
            .await
            .map_err(|s| status_error(addr, s))?;
        Ok(reply.into_inner())
    }
}

/// A failed call as the node's error: refusals the peer decided keep their meaning, the rest
/// say the peer could not be reached.
pub fn status_error(addr: &str, status: tonic::Status) -> Error {
    use tonic::Code;
    match status.code() {
        Code::FailedPrecondition => Error::Refused(status.message().to_owned()),
        Code::InvalidArgument => Error::BadRequest(status.message().to_owned()),
        Code::NotFound | Code::Unavailable => {
            if let Some(rest) = status.message().strip_prefix(NOT_LEADER_PREFIX) {
                return not_leader_from(rest);
            }
            Error::Unreachable(format!("node {addr}: {}", status.message()))
        }
        _ => Error::Unreachable(format!("node {addr}: {}", status.message())),
    }
}

/// How a "not the leader" answer starts, followed by `<group> <leader id> <leader addr>`.
pub const NOT_LEADER_PREFIX: &str = "not leader: ";

/// The status a node answers when it does not lead the group asked for.
pub fn not_leader_status(e: &Error) -> Option<tonic::Status> {
    let Error::NotLeader { group, leader } = e else {
        return None;
    };
    let (id, addr) = leader
        .as_ref()
        .map_or((0, String::new()), |(id, addr)| (id.0, addr.clone()));
    Some(tonic::Status::unavailable(format!(
        "{NOT_LEADER_PREFIX}{} {id} {addr}",
        group.to_wire()
    )))
}

fn not_leader_from(rest: &str) -> Error {
    let mut parts = rest.split(' ');
    let group = parts
        .next()
        .and_then(|g| g.parse().ok())
        .and_then(GroupId::from_wire)
        .unwrap_or(GroupId::Meta);
    let id: u64 = parts.next().and_then(|i| i.parse().ok()).unwrap_or(0);
    let addr = parts.next().unwrap_or("").to_owned();
    Error::NotLeader {
        group,
        leader: (id != 0 && !addr.is_empty()).then_some((crate::ids::NodeId(id), addr)),
    }
}

#[async_trait::async_trait]
impl Transport for Peers {
    async fn raft(
        &self,
        addr: &str,
        target: u64,
        group: GroupId,
        kind: RpcKind,
        body: Vec<u8>,
        timeout: Duration,
    ) -> std::result::Result<Vec<u8>, TransportError> {
        let mut client = self
            .client(addr)
            .map_err(|e| TransportError::Unreachable(e.to_string()))?;
        let reply = client
            .raft(self.request(
                pb::RaftRequest {
                    group: group.to_wire(),
                    kind: kind as u32,
                    body: body.into(),
                    target,
                },
                timeout,
            ))
            .await
            .map_err(|s| match s.code() {
                tonic::Code::Internal | tonic::Code::InvalidArgument => {
                    TransportError::Failed(format!("{addr}: {}", s.message()))
                }
                _ => TransportError::Unreachable(format!("{addr}: {}", s.message())),
            })?;
        Ok(reply.into_inner().body.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_leader_round_trips() {
        let e = Error::NotLeader {
            group: GroupId::Shard(firn_storage::ShardId(3)),
            leader: Some((crate::ids::NodeId(2), "10.0.0.2:4040".into())),
        };
        let status = not_leader_status(&e).expect("a status");
        match status_error("x:1", status) {
            Error::NotLeader { group, leader } => {
                assert_eq!(group, GroupId::Shard(firn_storage::ShardId(3)));
                assert_eq!(
                    leader,
                    Some((crate::ids::NodeId(2), "10.0.0.2:4040".into()))
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
