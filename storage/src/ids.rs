//! Newtypes for the identifiers and units that cross module boundaries.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The tenant a row belongs to (`X-Scope-OrgID`, or the token's tenant).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TenantId(String);

impl TenantId {
    /// The tenant used when multi-tenancy is off.
    pub const ANONYMOUS: &'static str = "anonymous";
    /// Longest accepted tenant id, in bytes (Mimir/Pyroscope use 150).
    pub const MAX_LEN: usize = 150;

    /// Validates a tenant id: 1..=150 bytes of `[A-Za-z0-9!-_.*'()]`, not `.` or `..`
    /// (the characters Mimir and Pyroscope accept, safe in object-store keys).
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        let valid_char = |c: char| {
            c.is_ascii_alphanumeric() || matches!(c, '!' | '-' | '_' | '.' | '*' | '\'' | '(' | ')')
        };
        if id.is_empty()
            || id.len() > Self::MAX_LEN
            || id == "."
            || id == ".."
            || !id.chars().all(valid_char)
        {
            return Err(Error::InvalidTenant {
                tenant: id,
                max: Self::MAX_LEN,
            });
        }
        Ok(Self(id))
    }

    pub fn anonymous() -> Self {
        Self(Self::ANONYMOUS.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A point in time or a duration in nanoseconds since the Unix epoch.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Nanos(pub i64);

impl Nanos {
    pub const MIN: Nanos = Nanos(i64::MIN);
    pub const MAX: Nanos = Nanos(i64::MAX);

    pub fn from_millis(ms: i64) -> Self {
        Nanos(ms.saturating_mul(1_000_000))
    }

    pub fn from_secs(s: i64) -> Self {
        Nanos(s.saturating_mul(1_000_000_000))
    }

    pub fn as_millis(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    pub fn saturating_sub(self, other: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(other.0))
    }
}

impl fmt::Display for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ns", self.0)
    }
}

/// The sequence number of a write: strictly increasing per store (the Raft log index in a server).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct SeqNo(pub u64);

impl fmt::Display for SeqNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A 128-bit content fingerprint of a stack's frames: the same stack has the same id in every
/// block, shard and node, so partial aggregates merge by id without exchanging symbols.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StackId(pub u128);

impl StackId {
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let array: [u8; 16] = bytes.try_into().ok()?;
        Some(StackId(u128::from_be_bytes(array)))
    }
}

impl fmt::Debug for StackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StackId({:032x})", self.0)
    }
}

impl fmt::Display for StackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// One shard of the data: a slice of the series space (`hash(tenant, series) mod shards`) with
/// its own buffer, blocks and, in a server, its own Raft group.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct ShardId(pub u32);

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A block's id, derived from the shard and the sequence range it holds, so a retried flush of
/// the same rows produces the same key and never a second block.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlockId(String);

impl BlockId {
    /// `<shard>-<first seq>-<last seq>`, zero-padded so ids sort in write order.
    pub fn new(shard: ShardId, first: SeqNo, last: SeqNo) -> Self {
        BlockId(format!("{:05}-{:020}-{:020}", shard.0, first.0, last.0))
    }

    /// An id chosen by compaction or another writer; must be safe as an object-store key segment.
    pub fn from_raw(raw: impl Into<String>) -> Result<Self> {
        let raw = raw.into();
        if raw.is_empty()
            || !raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::InvalidBlockId { id: raw });
        }
        Ok(BlockId(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_validated() {
        assert!(TenantId::new("team-a_1").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(151)] {
            let err = TenantId::new(bad).expect_err(bad);
            assert!(err.to_string().contains("150"), "{err}");
        }
    }

    #[test]
    fn stack_id_bytes_round_trip() {
        let id = StackId(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        assert_eq!(StackId::from_bytes(&id.to_bytes()), Some(id));
        assert_eq!(StackId::from_bytes(&[1, 2, 3]), None);
    }

    #[test]
    fn block_ids_sort_in_write_order() {
        let a = BlockId::new(ShardId(0), SeqNo(9), SeqNo(10));
        let b = BlockId::new(ShardId(0), SeqNo(11), SeqNo(100));
        assert!(a < b);
        assert!(BlockId::from_raw("../x").is_err());
    }
}
