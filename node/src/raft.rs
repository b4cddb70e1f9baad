//! Consensus through openraft: the meta group and every shard group a node holds a replica of
//! are [`RaftGroup`]s. A write is acknowledged once committed (in the logs of a quorum of the
//! shard's replicas, fsynced) and applied to the shard's store. openraft's types stay inside
//! this module; the rest of the node sees [`RaftGroup`], [`NodeId`] and [`GroupId`].
//!
//! ```text
//!  Writer ─► RaftGroup::write ─► openraft ─► LogStore (log thread: group fsync) ─► replicate
//!          ─► commit on a quorum ─► StateMachine::apply (every replica) ─► Store buffer
//!  flusher (shard leader) ─► upload block ─► RaftGroup::block_flushed ─► manifest
//!  compactor (every replica) ─► snapshot (manifest + buffer) ─► purge the log through the block
//!  meta group ─► MetaMachine ─► MetaState (nodes, placement) ─► watch channel
//!  peers ◄─► network.rs (Transport) ◄─► wire.rs (protobuf) ◄─► RaftGroup::handle
//! ```

mod entry;
mod log_store;
mod meta_machine;
pub mod network;
mod state_machine;
pub mod wire;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::Bytes;
use firn_storage::Store;
use firn_storage::block::BlockMeta;
use firn_storage::buffer::WriteStats;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, Config, ServerState, SnapshotPolicy};
use tokio::sync::watch;

pub use entry::{Command, Compacted, MAX_KEY_BYTES, Prepared, Record, Response};
use log_store::{LogBytes, LogStore};
use meta_machine::MetaMachine;
pub use network::{Transport, TransportError};
use state_machine::StateMachine;
pub use wire::RpcKind;

use crate::cluster::meta::{MetaCommand, MetaState};
use crate::error::{Error, Result};
use crate::ids::{GroupId, NodeId};

openraft::declare_raft_types!(
    /// Firn's Raft types: commands are writes, flushed blocks and meta changes.
    pub TypeConfig:
        D = Command,
        R = Response,
);

pub type Entry = openraft::Entry<TypeConfig>;

/// A group's members, as its latest membership entry has them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Members {
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    pub addrs: BTreeMap<NodeId, String>,
    /// A change of voters is half done (old and new configurations both count).
    pub joint: bool,
}

/// What `/metrics` reports of a group.
#[derive(Clone, Copy, Debug, Default)]
pub struct RaftStatus {
    pub leader: bool,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
    pub snapshot_index: u64,
    pub purged_index: u64,
}

/// One Raft group member on this node.
pub struct RaftGroup {
    raft: openraft::Raft<TypeConfig>,
    group: GroupId,
    id: NodeId,
    log: LogBytes,
}

impl std::fmt::Debug for RaftGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftGroup")
            .field("group", &self.group)
            .field("id", &self.id)
            .finish()
    }
}

/// Timing shared by every group. A follower stands for election once it has heard nothing
/// for its leader's lease (openraft: the maximum election timeout) plus its election timeout
/// (drawn once per group member): 0.75 to 1 s after a leader's last message, checked every
/// 150 ms (openraft ticks at 1.5 heartbeats). openraft 0.9 also delays a member by twice the
/// maximum once it has seen a longer log in a vote, and keeps that flag until it next stands,
/// so the member with the longest log can start a second late; a shorter maximum shortens
/// that tail. Measured on the cluster bench (3 nodes, RF 3, against one node): 50 ms
/// heartbeats and batches of 64 entries gave 0.26 of one node's ingest; 100 ms heartbeats and
/// batches of at most 16 entries 0.55, so a follower is never long without a message.
/// How long a follower refuses other candidates after hearing from its leader (openraft's
/// leader lease is the longest election timeout).
pub const LEADER_LEASE: Duration = Duration::from_millis(ELECTION_TIMEOUT_MAX_MS);
const ELECTION_TIMEOUT_MAX_MS: u64 = 500;

fn base_config() -> Config {
    Config {
        cluster_name: "firn".into(),
        heartbeat_interval: 100,
        election_timeout_min: 250,
        election_timeout_max: ELECTION_TIMEOUT_MAX_MS,
        // Snapshots are written as chunks of this size, each within the timeout.
        snapshot_max_chunk_size: 4 << 20,
        install_snapshot_timeout: 10_000,
        // Entries per replication message; an entry is one write (tens to hundreds of KiB),
        // so a follower hears from its leader at least every few MiB.
        max_payload_entries: 16,
        ..Default::default()
    }
}

fn validated(config: Config) -> Result<Arc<Config>> {
    Ok(Arc::new(config.validate().map_err(|e| {
        Error::Internal(format!("raft configuration: {e}"))
    })?))
}

fn shard_config() -> Result<Arc<Config>> {
    validated(Config {
        // Snapshots follow flushes (see `RaftGroup::compact`), never log counts.
        snapshot_policy: SnapshotPolicy::Never,
        // Logs are purged only on request, after a flush: never by openraft on its own.
        max_in_snapshot_log_to_keep: u64::MAX,
        purge_batch_size: 1,
        ..base_config()
    })
}

fn meta_config() -> Result<Arc<Config>> {
    validated(Config {
        // The meta state is small: snapshot it whole every few hundred changes.
        snapshot_policy: SnapshotPolicy::LogsSinceLast(500),
        max_in_snapshot_log_to_keep: 100,
        ..base_config()
    })
}

fn fatal(e: openraft::error::Fatal<u64>) -> Error {
    Error::Raft(e.to_string())
}

impl RaftGroup {
    /// Opens a shard replica in `dir`: its log, and its state rebuilt over `store` from the
    /// snapshot and the log up to the saved commit point. The group is not initialised here.
    pub async fn open_shard(
        dir: &Path,
        store: Arc<Store>,
        group: GroupId,
        id: NodeId,
        transport: Arc<dyn Transport>,
    ) -> Result<Self> {
        let applied = Arc::new(AtomicU64::new(u64::MAX));
        let log_store = LogStore::open(&dir.join("log-store"), applied.clone())?;
        let log = log_store.log_bytes_handle();
        let started = std::time::Instant::now();
        let reader = log_store.reader();
        let committed = log_store.committed();
        let sm_dir = dir.to_owned();
        let (state_machine, replayed) = tokio::task::spawn_blocking(move || {
            StateMachine::open(&sm_dir, store, reader, applied, committed)
        })
        .await
        .map_err(|e| Error::Internal(format!("replay task failed: {e}")))??;
        if replayed.entries > 0 {
            tracing::info!(
                %group,
                entries = replayed.entries,
                ms = started.elapsed().as_millis() as u64,
                "state rebuilt from snapshot and log"
            );
        }
        let network = network::Network { transport, group };
        let raft = openraft::Raft::new(id.0, shard_config()?, network, log_store, state_machine)
            .await
            .map_err(|e| Error::Internal(format!("starting raft failed: {e}")))?;
        Ok(Self {
            raft,
            group,
            id,
            log,
        })
    }

    /// Opens this node's meta group member in `dir`; the receiver sees every applied change.
    pub async fn open_meta(
        dir: &Path,
        id: NodeId,
        transport: Arc<dyn Transport>,
    ) -> Result<(Self, watch::Receiver<Arc<MetaState>>)> {
        let applied = Arc::new(AtomicU64::new(u64::MAX));
        let log_store = LogStore::open(&dir.join("log-store"), applied)?;
        let log = log_store.log_bytes_handle();
        let (machine, watcher) = MetaMachine::open(dir)?;
        let network = network::Network {
            transport,
            group: GroupId::Meta,
        };
        let raft = openraft::Raft::new(id.0, meta_config()?, network, log_store, machine)
            .await
            .map_err(|e| Error::Internal(format!("starting the meta group failed: {e}")))?;
        Ok((
            Self {
                raft,
                group: GroupId::Meta,
                id,
                log,
            },
            watcher,
        ))
    }

    pub fn group(&self) -> GroupId {
        self.group
    }

    pub async fn is_initialized(&self) -> Result<bool> {
        self.raft.is_initialized().await.map_err(fatal)
    }

    /// Creates the group with `members` as its voters (once, on one node).
    pub async fn initialize(&self, members: &BTreeMap<NodeId, String>) -> Result<()> {
        let members: BTreeMap<u64, BasicNode> = members
            .iter()
            .map(|(id, addr)| (id.0, BasicNode::new(addr)))
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(Error::Raft(format!(
                "initialising {} failed: {e}",
                self.group
            ))),
        }
    }

    /// Waits until this member leads its group and has applied its whole log: how a group of
    /// one starts, so that a read after a restart sees every acknowledged write.
    pub async fn wait_leading(&self, timeout: Duration) -> Result<()> {
        self.raft
            .wait(Some(timeout))
            .state(ServerState::Leader, "leading the group")
            .await
            .map_err(|e| Error::Raft(format!("not leading {}: {e}", self.group)))?;
        let last = self.raft.metrics().borrow().last_log_index;
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(last, "the log applied")
            .await
            .map_err(|e| Error::Raft(format!("applying the log of {} failed: {e}", self.group)))?;
        Ok(())
    }

    /// Commits a normalised write (`record`, its encoding; `prepared`, the same in memory)
    /// and returns what applying it added; a write whose idempotency `key` was applied
    /// recently returns the first answer instead.
    pub async fn write(
        &self,
        record: Bytes,
        prepared: Arc<Prepared>,
        key: Option<Arc<str>>,
    ) -> Result<WriteStats> {
        let response = self
            .propose(Command::Write {
                record,
                form: Record::Normalized,
                normalized: Some(prepared),
                key,
            })
            .await?;
        response
            .1
            .map_err(|e| Error::Internal(format!("applying a committed write failed: {e}")))
    }

    /// Commits a flushed block; returns the entry's index.
    pub async fn block_flushed(&self, block: BlockMeta) -> Result<u64> {
        let (index, response) = self.propose(Command::BlockFlushed(Box::new(block))).await?;
        response.map_err(|e| Error::Internal(format!("recording a flushed block failed: {e}")))?;
        Ok(index)
    }

    /// Commits that blocks leave the manifest (retention); returns the entry's index.
    pub async fn blocks_dropped(&self, ids: Vec<firn_storage::BlockId>) -> Result<u64> {
        let (index, response) = self.propose(Command::BlocksDropped(ids)).await?;
        response.map_err(|e| Error::Internal(format!("dropping blocks failed: {e}")))?;
        Ok(index)
    }

    /// Commits a compaction's swap; returns the entry's index. Whether it landed is in the
    /// manifest afterwards (its output is there or not).
    pub async fn blocks_compacted(&self, compacted: entry::Compacted) -> Result<u64> {
        let (index, response) = self
            .propose(Command::BlocksCompacted(Box::new(compacted)))
            .await?;
        response.map_err(|e| Error::Internal(format!("recording a compaction failed: {e}")))?;
        Ok(index)
    }

    /// Commits that retired blocks' objects are deleted; returns the entry's index.
    pub async fn retired_purged(&self, ids: Vec<firn_storage::BlockId>) -> Result<u64> {
        let (index, response) = self.propose(Command::RetiredPurged(ids)).await?;
        response.map_err(|e| Error::Internal(format!("purging retired blocks failed: {e}")))?;
        Ok(index)
    }

    /// Commits that writes up to `seq` need no block (they added no rows); returns the
    /// entry's index.
    pub async fn flushed_through(&self, seq: u64) -> Result<u64> {
        let (index, response) = self.propose(Command::FlushedThrough(seq)).await?;
        response.map_err(|e| Error::Internal(format!("recording a flush point failed: {e}")))?;
        Ok(index)
    }

    /// Commits a change to the meta state; an `Err` says why the state refused it.
    pub async fn propose_meta(&self, command: MetaCommand) -> Result<()> {
        let (_, response) = self.propose(Command::Meta(command)).await?;
        response.map(|_| ()).map_err(Error::Refused)
    }

    async fn propose(&self, command: Command) -> Result<(u64, Response)> {
        match self.raft.client_write(command).await {
            Ok(r) => Ok((r.log_id.index, r.data)),
            Err(RaftError::APIError(e)) => Err(self.client_error(e)),
            Err(RaftError::Fatal(e)) => Err(fatal(e)),
        }
    }

    fn client_error(&self, e: ClientWriteError<u64, BasicNode>) -> Error {
        match e {
            ClientWriteError::ForwardToLeader(f) => Error::NotLeader {
                group: self.group,
                leader: f
                    .leader_id
                    .zip(f.leader_node)
                    .map(|(id, node)| (NodeId(id), node.addr)),
            },
            ClientWriteError::ChangeMembershipError(e) => {
                Error::Raft(format!("changing the members of {}: {e}", self.group))
            }
        }
    }

    /// Confirms this member leads (a heartbeat round with a quorum) and returns the index a
    /// replica must have applied to see every write committed before now.
    pub async fn read_index(&self) -> Result<u64> {
        match self.raft.get_read_log_id().await {
            Ok((read, _)) => Ok(read.map_or(0, |l| l.index)),
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(Error::NotLeader {
                    group: self.group,
                    leader: f
                        .leader_id
                        .zip(f.leader_node)
                        .map(|(id, node)| (NodeId(id), node.addr)),
                })
            }
            Err(RaftError::APIError(e)) => Err(Error::Raft(format!(
                "confirming the leader of {}: {e}",
                self.group
            ))),
            Err(RaftError::Fatal(e)) => Err(fatal(e)),
        }
    }

    /// Waits until this member has applied `index`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<()> {
        if self.applied_index() >= index {
            return Ok(());
        }
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "read index applied")
            .await
            .map(|_| ())
            .map_err(|e| Error::Raft(format!("{} has not applied {index}: {e}", self.group)))
    }

    pub fn applied_index(&self) -> u64 {
        self.raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index)
    }

    /// The leader this member knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader.map(NodeId)
    }

    /// Why the group stopped for good (its core panicked or its storage failed), if it did:
    /// it answers nothing more until reopened.
    pub fn failed(&self) -> Option<String> {
        self.raft
            .metrics()
            .borrow()
            .running_state
            .as_ref()
            .err()
            .map(|e| e.to_string())
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    pub fn members(&self) -> Members {
        let m = self.raft.metrics().borrow().membership_config.clone();
        let membership = m.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().map(NodeId).collect();
        let addrs: BTreeMap<NodeId, String> = membership
            .nodes()
            .map(|(id, n)| (NodeId(*id), n.addr.clone()))
            .collect();
        let learners = addrs
            .keys()
            .filter(|n| !voters.contains(n))
            .copied()
            .collect();
        Members {
            voters,
            learners,
            addrs,
            joint: membership.get_joint_config().len() > 1,
        }
    }

    /// On the leader: how far each member's log matches the leader's (index), and the
    /// leader's last index.
    pub fn replication(&self) -> Option<(BTreeMap<NodeId, u64>, u64)> {
        let m = self.raft.metrics().borrow().clone();
        let progress = m.replication?;
        let matched = progress
            .into_iter()
            .map(|(id, log)| (NodeId(id), log.map_or(0, |l| l.index)))
            .collect();
        Some((matched, m.last_log_index.unwrap_or(0)))
    }

    /// Adds `node` as a learner: the leader starts sending it the log (or a snapshot).
    pub async fn add_learner(&self, node: NodeId, addr: &str) -> Result<()> {
        self.raft
            .add_learner(node.0, BasicNode::new(addr), false)
            .await
            .map(|_| ())
            .map_err(|e| match e {
                RaftError::APIError(e) => self.client_error(e),
                RaftError::Fatal(e) => fatal(e),
            })
    }

    /// Makes `voters` the group's voters (through a joint configuration); members left out
    /// stay as learners when `retain`, else leave the group.
    pub async fn change_voters(&self, voters: &BTreeSet<NodeId>, retain: bool) -> Result<()> {
        let ids: BTreeSet<u64> = voters.iter().map(|n| n.0).collect();
        self.raft
            .change_membership(ChangeMembers::ReplaceAllVoters(ids), retain)
            .await
            .map(|_| ())
            .map_err(|e| match e {
                RaftError::APIError(e) => self.client_error(e),
                RaftError::Fatal(e) => fatal(e),
            })
    }

    /// Removes learners from the group.
    pub async fn remove_learners(&self, nodes: &BTreeSet<NodeId>) -> Result<()> {
        let ids: BTreeSet<u64> = nodes.iter().map(|n| n.0).collect();
        self.raft
            .change_membership(ChangeMembers::RemoveNodes(ids), false)
            .await
            .map(|_| ())
            .map_err(|e| match e {
                RaftError::APIError(e) => self.client_error(e),
                RaftError::Fatal(e) => fatal(e),
            })
    }

    /// On a leader that is handing over: stops its idle heartbeats, so that its followers'
    /// leases run out and they grant a candidate their votes.
    pub fn stop_heartbeats(&self) {
        self.raft.runtime_config().heartbeat(false);
    }

    /// Starts an election on this member (to move leadership to a preferred node).
    pub async fn campaign(&self) -> Result<()> {
        self.raft.trigger().elect().await.map_err(fatal)
    }

    /// After a flush: snapshots the state (manifest + what is still buffered) once it has
    /// applied `applied_at_least`, then drops the log through `flushed`.
    pub async fn compact(&self, applied_at_least: u64, flushed: u64) -> Result<()> {
        self.raft.trigger().snapshot().await.map_err(fatal)?;
        self.raft
            .wait(Some(Duration::from_secs(60)))
            .metrics(
                |m| m.snapshot.is_some_and(|s| s.index >= applied_at_least),
                "snapshot after the flush",
            )
            .await
            .map_err(|e| Error::Raft(format!("waiting for the snapshot: {e}")))?;
        self.raft.trigger().purge_log(flushed).await.map_err(fatal)
    }

    /// Serves a Raft message from a peer; the reply is [`wire`]'s encoding.
    pub async fn handle(&self, kind: RpcKind, body: Bytes) -> Vec<u8> {
        let malformed = |e: String| {
            tracing::warn!(group = %self.group, error = %e, "a malformed raft message");
            wire::malformed(&e)
        };
        match kind {
            RpcKind::AppendEntries => match wire::decode_append(body) {
                Ok(rpc) => match self.raft.append_entries(rpc).await {
                    Ok(r) => wire::ok(wire::encode_append_reply(&r)),
                    Err(e) => wire::refused(&e),
                },
                Err(e) => malformed(e),
            },
            RpcKind::Vote => match wire::decode_vote(&body) {
                Ok(rpc) => match self.raft.vote(rpc).await {
                    Ok(r) => wire::ok(wire::encode_vote_reply(&r)),
                    Err(e) => wire::refused(&e),
                },
                Err(e) => malformed(e),
            },
            RpcKind::InstallSnapshot => match wire::decode_snapshot(&body) {
                Ok(rpc) => match self.raft.install_snapshot(rpc).await {
                    Ok(r) => wire::ok(wire::encode_snapshot_reply(&r)),
                    Err(e) => wire::snapshot_refused(&e),
                },
                Err(e) => malformed(e),
            },
        }
    }

    /// Bytes of log not yet purged.
    pub fn log_bytes(&self) -> u64 {
        self.log.get()
    }

    pub fn status(&self) -> RaftStatus {
        let m = self.raft.metrics().borrow().clone();
        RaftStatus {
            leader: m.state == ServerState::Leader,
            term: m.current_term,
            commit_index: self.log.committed_index().unwrap_or(0),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            last_log_index: m.last_log_index.unwrap_or(0),
            snapshot_index: m.snapshot.map_or(0, |l| l.index),
            purged_index: m.purged.map_or(0, |l| l.index),
        }
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(group = %self.group, error = %e, "raft shutdown");
        }
    }
}
