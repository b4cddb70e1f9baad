//! Durability through openraft: every write is an entry of the node's Raft group, acknowledged
//! once committed (on a quorum of fsynced logs; a single node is its own quorum) and applied
//! to the store. openraft's types stay inside this module; the rest of the node sees
//! [`RaftNode`].
//!
//! ```text
//!  Writer ─► RaftNode::write ─► openraft ─► LogStore (log thread: group fsync) ─► commit
//!                                              └─► StateMachine::apply ─► Store buffer
//!  flusher ─► upload block ─► RaftNode::block_flushed ─► manifest ─► snapshot ─► purge log
//! ```

mod entry;
mod log_store;
mod state_machine;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::Bytes;
use firn_storage::Store;
use firn_storage::block::BlockMeta;
use firn_storage::buffer::WriteStats;
use firn_storage::normalize::Normalized;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Config, ServerState, SnapshotPolicy};

pub use entry::{Command, MAX_KEY_BYTES, Response};
use log_store::{LogBytes, LogStore};
use state_machine::StateMachine;

use crate::error::{Error, Result};

openraft::declare_raft_types!(
    /// Firn's Raft types: commands are writes and flushed blocks.
    pub TypeConfig:
        D = Command,
        R = Response,
);

pub type Entry = openraft::Entry<TypeConfig>;

/// How long a starting node waits to become its group's leader.
const LEADER_WAIT: Duration = Duration::from_secs(30);

/// The node's Raft group member.
pub struct RaftNode {
    raft: openraft::Raft<TypeConfig>,
    id: u64,
    log: LogBytes,
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode").field("id", &self.id).finish()
    }
}

/// What `/metrics` reports of Raft.
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

fn raft_config() -> Result<Arc<Config>> {
    let config = Config {
        cluster_name: "firn".into(),
        heartbeat_interval: 250,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        // Snapshots follow flushes (see `RaftNode::compact`), never log counts.
        snapshot_policy: SnapshotPolicy::Never,
        // Logs are purged only on request, after a flush: never by openraft on its own.
        max_in_snapshot_log_to_keep: u64::MAX,
        purge_batch_size: 1,
        ..Default::default()
    };
    Ok(Arc::new(config.validate().map_err(|e| {
        Error::Internal(format!("raft configuration: {e}"))
    })?))
}

impl RaftNode {
    /// Opens the log and rebuilds the state machine over `store` from the snapshot and the
    /// log in `dir`, starts Raft, initialises a one-member group on first start, and waits
    /// to lead it.
    pub async fn start(dir: &Path, store: Arc<Store>, id: u64, addr: &str) -> Result<Self> {
        let applied = Arc::new(AtomicU64::new(u64::MAX));
        let log_store = LogStore::open(&dir.join("log-store"), applied.clone())?;
        let log = log_store.log_bytes_handle();
        let started = std::time::Instant::now();
        let reader = log_store.reader();
        let committed = log_store.committed();
        let dir = dir.to_owned();
        let (state_machine, replayed) = tokio::task::spawn_blocking(move || {
            StateMachine::open(&dir, store, reader, applied, committed)
        })
        .await
        .map_err(|e| Error::Internal(format!("replay task failed: {e}")))??;
        tracing::info!(
            entries = replayed.entries,
            ms = started.elapsed().as_millis() as u64,
            "state rebuilt from snapshot and log"
        );
        let raft = openraft::Raft::new(id, raft_config()?, Unreachable, log_store, state_machine)
            .await
            .map_err(|e| Error::Internal(format!("starting raft failed: {e}")))?;
        let node = Self { raft, id, log };
        let initialized = node
            .raft
            .is_initialized()
            .await
            .map_err(|e| Error::Internal(format!("raft failed: {e}")))?;
        if !initialized {
            let members = BTreeMap::from([(id, BasicNode::new(addr))]);
            node.raft
                .initialize(members)
                .await
                .map_err(|e| Error::Internal(format!("initialising the raft group failed: {e}")))?;
            tracing::info!(id, "initialised a one-member raft group");
        }
        node.raft
            .wait(Some(LEADER_WAIT))
            .state(ServerState::Leader, "leading the group")
            .await
            .map_err(|e| Error::Internal(format!("not leading the raft group: {e}")))?;
        // Entries committed after the saved commit point (a hint, not rewritten on every
        // commit) are applied through Raft once it leads: serve only after they are, so no
        // acknowledged write is missing from a read.
        let last = node.raft.metrics().borrow().last_log_index;
        node.raft
            .wait(Some(LEADER_WAIT))
            .applied_index_at_least(last, "the log applied")
            .await
            .map_err(|e| Error::Internal(format!("applying the log failed: {e}")))?;
        Ok(node)
    }

    /// Commits a write and returns what applying it added; a write whose idempotency `key`
    /// was applied recently returns the first answer instead.
    pub async fn write(
        &self,
        record: Bytes,
        normalized: Arc<Normalized>,
        key: Option<Arc<str>>,
    ) -> Result<WriteStats> {
        let response = self
            .propose(Command::Write {
                record,
                normalized: Some(normalized),
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

    /// Commits that writes up to `seq` need no block (they added no rows); returns the
    /// entry's index.
    pub async fn flushed_through(&self, seq: u64) -> Result<u64> {
        let (index, response) = self.propose(Command::FlushedThrough(seq)).await?;
        response.map_err(|e| Error::Internal(format!("recording a flush point failed: {e}")))?;
        Ok(index)
    }

    async fn propose(&self, command: Command) -> Result<(u64, Response)> {
        match self.raft.client_write(command).await {
            Ok(r) => Ok((r.log_id.index, r.data)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(Error::NotLeader(f.leader_id))
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(Error::Internal(e.to_string()))
            }
            Err(RaftError::Fatal(e)) => Err(Error::Raft(e.to_string())),
        }
    }

    /// After a flush: snapshots the state (manifest + what is still buffered) once it has
    /// applied `applied_at_least`, then drops the log through `flushed`.
    pub async fn compact(&self, applied_at_least: u64, flushed: u64) -> Result<()> {
        let fatal = |e: openraft::error::Fatal<u64>| Error::Raft(e.to_string());
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

    /// Bytes of log on disk.
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
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

/// The network of a one-member group: there is nobody to reach. (The cluster issue puts
/// gRPC here.)
struct Unreachable;

impl openraft::network::RaftNetworkFactory<TypeConfig> for Unreachable {
    type Network = Unreachable;

    async fn new_client(&mut self, _target: u64, _node: &BasicNode) -> Self::Network {
        Unreachable
    }
}

fn unreachable<E: std::error::Error>() -> openraft::error::RPCError<u64, BasicNode, E> {
    openraft::error::RPCError::Unreachable(openraft::error::Unreachable::new(
        &openraft::AnyError::error("a single-node group has no peers"),
    ))
}

impl openraft::network::RaftNetwork<TypeConfig> for Unreachable {
    async fn append_entries(
        &mut self,
        _rpc: openraft::raft::AppendEntriesRequest<TypeConfig>,
        _option: openraft::network::RPCOption,
    ) -> std::result::Result<
        openraft::raft::AppendEntriesResponse<u64>,
        openraft::error::RPCError<u64, BasicNode, RaftError<u64>>,
    > {
        Err(unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: openraft::raft::InstallSnapshotRequest<TypeConfig>,
        _option: openraft::network::RPCOption,
    ) -> std::result::Result<
        openraft::raft::InstallSnapshotResponse<u64>,
        openraft::error::RPCError<
            u64,
            BasicNode,
            RaftError<u64, openraft::error::InstallSnapshotError>,
        >,
    > {
        Err(unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: openraft::raft::VoteRequest<u64>,
        _option: openraft::network::RPCOption,
    ) -> std::result::Result<
        openraft::raft::VoteResponse<u64>,
        openraft::error::RPCError<u64, BasicNode, RaftError<u64>>,
    > {
        Err(unreachable())
    }
}
