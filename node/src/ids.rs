//! Identifiers of the cluster: nodes (shards are [`firn_storage::ShardId`]).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A node of the cluster, as `--node-id` names it: unique, and never reused once a node has
/// been removed (the meta group remembers retired ids and refuses them).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Which Raft group a message is for: the meta group, or one shard's group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum GroupId {
    Meta,
    Shard(firn_storage::ShardId),
}

impl GroupId {
    /// The wire form: 0 for the meta group, shard + 1 for a shard.
    pub fn to_wire(self) -> u64 {
        match self {
            GroupId::Meta => 0,
            GroupId::Shard(s) => u64::from(s.0) + 1,
        }
    }

    pub fn from_wire(value: u64) -> Option<Self> {
        match value {
            0 => Some(GroupId::Meta),
            n => u32::try_from(n - 1)
                .ok()
                .map(|s| GroupId::Shard(firn_storage::ShardId(s))),
        }
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupId::Meta => f.write_str("meta"),
            GroupId::Shard(s) => write!(f, "shard {s}"),
        }
    }
}
