//! The node's error: one variant per failing operation. [`crate::api::error`] turns it into an
//! HTTP status and a Connect error body in one place.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn leader_text(leader: &Option<(crate::ids::NodeId, String)>) -> String {
    match leader {
        Some((id, addr)) => format!(" (node {id} at {addr} does)"),
        None => " (no leader is known)".into(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Storage(#[from] firn_storage::Error),

    #[error(transparent)]
    Query(#[from] firn_query::Error),

    #[error(transparent)]
    Wal(#[from] crate::wal::WalError),

    #[error(transparent)]
    Record(#[from] crate::record::RecordError),

    #[error("the Raft log failed: {0}")]
    Log(String),

    #[error(
        "write refused: {used} bytes of the Raft log wait for a flush (log-budget-bytes), the limit is {budget} bytes; retry later"
    )]
    LogFull { used: u64, budget: u64 },

    #[error(
        "write refused: {bytes} bytes of writes are already being committed (max-inflight-write-bytes); retry later"
    )]
    Overloaded { bytes: usize },

    #[error("{0}")]
    BadRequest(String),

    /// No credentials, or ones this cluster does not accept.
    #[error("{0}")]
    Unauthenticated(String),

    /// Valid credentials that do not reach this (a role, another tenant).
    #[error("{0}")]
    PermissionDenied(String),

    /// Past one of the tenant's limits; the message names it and its value.
    #[error("{0}")]
    Limit(String),

    #[error("{0}")]
    NotFound(String),

    #[error("{what} is {bytes} bytes, the limit is {limit} bytes")]
    TooLarge {
        what: &'static str,
        bytes: usize,
        limit: usize,
    },

    #[error("{0}")]
    UnsupportedMediaType(String),

    #[error("this node does not lead {group}{}; retry", leader_text(leader))]
    NotLeader {
        group: crate::ids::GroupId,
        leader: Option<(crate::ids::NodeId, String)>,
    },

    /// A peer could not be reached, or answered with an error of its own.
    #[error("{0}")]
    Unreachable(String),

    /// A write another node refused: its status as that node answered it.
    #[error("{message}")]
    Remote {
        code: crate::api::error::Code,
        status: u16,
        message: String,
    },

    /// The meta state refused a change (a reused node id, an unknown node...).
    #[error("{0}")]
    Refused(String),

    /// The cluster cannot serve this yet (not bootstrapped, a shard without a leader).
    #[error("{0}")]
    NotReady(String),

    #[error("raft failed: {0}")]
    Raft(String),

    /// A request asks for something this server does not do (a compression, a format, a
    /// selector kind); the message names it.
    #[error("{0}")]
    Unimplemented(String),

    #[error("the request's deadline of {millis} ms passed")]
    DeadlineExceeded { millis: u64 },

    #[error("the node is shutting down")]
    ShuttingDown,

    #[error("starting a thread failed")]
    Spawn { source: std::io::Error },

    #[error("opening the object store failed: {0}")]
    ObjectStore(String),

    #[error("listening on {addr} failed")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },

    #[error("data directory {path} cannot be used")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("internal error: {0}")]
    Internal(String),
}
