//! `firn-node`: the `firn` binary's server and CLI over the embedded engine
//! (`firn-storage` + `firn-query`).
//!
//! ```text
//!  HTTP / gRPC ─► api ─► cluster::router ─► shard leader (here, or Forward) ─► writer
//!                  │        ─► raft: shard group (log fsync on a quorum, commit) ─► Store buffer
//!                  │        ─► flusher (leader) ─► blocks in object storage
//!                  └─► Coordinator ─► cluster::source ─► each shard's replica (here, or Flight)
//!  meta group (raft) ─► cluster placement ─► reconciler / controller ─► shard memberships
//! ```
//!
//! Every node is a member of the meta group and holds replicas of some shards; each shard is
//! its own Raft group (openraft) over a log of its own ([`wal`]). A single node is a cluster
//! of one: the same code, with one member per group.

pub mod api;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod error;
pub mod ids;
pub mod metrics;
pub mod node;
pub mod raft;
pub mod record;
pub mod tenancy;
pub mod time;
pub mod wal;
pub mod writer;

pub use error::{Error, Result};
