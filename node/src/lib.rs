//! `firn-node`: the `firn` binary's server and CLI over the embedded engine
//! (`firn-storage` + `firn-query`).
//!
//! ```text
//!  HTTP ─► api (ingest, query) ─► writer ─► raft (log fsync, commit) ─► Store buffer ─► flusher ─► blocks
//!                                └────────► QueryEngine ◄────────────────────────────────────────┘
//! ```
//!
//! A node runs a one-member Raft group (openraft) over its own log ([`wal`]); the cluster
//! issue adds members.

pub mod api;
pub mod cli;
pub mod config;
pub mod error;
pub mod metrics;
pub mod node;
pub mod raft;
pub mod record;
pub mod time;
pub mod wal;
pub mod writer;

pub use error::{Error, Result};
