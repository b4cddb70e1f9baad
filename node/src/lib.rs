//! `firn-node`: the `firn` binary's server and CLI over the embedded engine
//! (`firn-storage` + `firn-query`).
//!
//! ```text
//!  HTTP ─► api (ingest, query) ─► writer ─► wal (fsync) ─► Store buffer ─► flusher ─► blocks
//!                                └────────► QueryEngine ◄──────────────────────────────┘
//! ```
//!
//! This is the single-node foundation of the server issue: durability comes from the node's
//! own write-ahead log; openraft replication builds on it.

pub mod api;
pub mod config;
pub mod error;
pub mod metrics;
pub mod node;
pub mod record;
pub mod time;
pub mod wal;
pub mod writer;

pub use error::{Error, Result};
