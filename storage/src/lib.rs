//! `firn-storage`: Firn's profile storage engine, usable on its own over any `object_store`.
//!
//! ```text
//!  pprof / folded ──► pprof::decode ──► normalize ──► Normalized { rows, LocalSymbols }
//!                                                         │
//!                                    Store::apply(seq) ──►│ Buffer: Arrow chunks + SymbolTable
//!                                                         │   (memory budget, dynamic labels.*)
//!                                    Store::flush() ─────►│ Block: Parquet + symbols.bin
//!                                                         │   (sorted, row groups per tenant)
//!                                                         ▼
//!                                    Manifest (blocks + metadata for pruning) in object storage
//! ```
//!
//! Rows are samples: tenant, profile type, labels (dynamic `labels.<name>` columns), stack id
//! (a 128-bit fingerprint of the frames), value, time. `firn-query` reads a [`ReadSnapshot`]
//! (buffer + manifest) with DataFusion. The crate knows nothing of networking, Raft or HTTP.

pub mod block;
pub mod buffer;
pub mod chunk;
pub mod clock;
pub mod compact;
pub mod disk_cache;
pub mod error;
pub mod filter;
pub mod ids;
pub mod labels;
pub mod manifest;
pub mod normalize;
pub mod paths;
pub mod pprof;
pub mod profile_type;
pub mod schema;
pub mod stack_codec;
pub mod store;
pub mod sums;
pub mod symbols;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::{Error, Result};
pub use ids::{BlockId, Nanos, SeqNo, ShardId, StackId, TenantId};
pub use normalize::{Payload, WriteRequest};
pub use profile_type::ProfileType;
pub use store::{ReadSnapshot, Store, StoreConfig};
