//! `firn-query`: profile queries and read-only SQL over `firn-storage`, planned by DataFusion.
//!
//! ```text
//!  selector + time range ──► QueryEngine ──► SampleTable (TableProvider: buffer + blocks)
//!                                │                 filters pushed down, blocks pruned
//!                                ├─ merge: SumByStackExec (partial sums by stack id per
//!                                │         partition) ──► final sums ──► symbols for the
//!                                │         surviving stacks ──► flame graph / pprof / top / folded
//!                                ├─ series: per profile, then per step, grouped by labels
//!                                ├─ labels, label values, profile types, diff
//!                                └─ sql: read-only, over `samples` (and `stacks` for frames)
//!
//!  Coordinator (many shards) ─► ShardSource::read_points ─► ShardExchangeExec: one partition
//!     per shard, each a Fragment (partial aggregate) run by that shard's QueryEngine on a
//!     replica ─► final aggregate ─► symbols of the surviving stacks from their shards
//! ```
//!
//! Execution is memory-bounded: one DataFusion memory pool per engine, no spilling, and a
//! query that needs more fails with [`Error::MemoryLimit`].

pub mod block_exec;
pub mod buffer_exec;
pub mod cluster_table;
pub mod coordinator;
pub mod engine;
pub mod error;
pub mod exchange;
pub mod flamegraph;
pub mod fragment;
mod hash;
pub mod merged;
pub mod selector;
pub mod series;
mod sql;
pub mod stack_sum;
pub mod symbol_cache;
pub mod table;
pub mod tenant;

pub use coordinator::Coordinator;
pub use engine::{
    Aggregation, LinkSelector, ProfileQuery, QueryConfig, QueryEngine, Series, SeriesOptions,
    ValuePage,
};
pub use error::{Error, Result};
pub use exchange::{ReadPoint, ShardSource};
pub use flamegraph::{FlameGraph, FlameNode};
pub use fragment::{Fragment, FragmentOutput};
pub use merged::{MergedProfile, StackFilter, TopEntry};
pub use selector::Selector;
pub use tenant::{TenantLimits, TenantPolicy};
