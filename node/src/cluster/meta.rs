//! What the meta group agrees on: the cluster's settings, its nodes, and where each shard's
//! replicas live. A pure state machine over data: [`MetaState::apply`] is deterministic and
//! unit-tested without Raft.
//!
//! ```text
//!  Bootstrap ─► settings + first nodes + initial placement
//!  AddNode / NodeLeaving / RetireNode ─► nodes, retired ids (never reused)
//!  Place ─► a shard's desired replicas (the placement controller's plan)
//!  ClaimInit ─► the one node that creates a shard's group
//!  ReportMembers ─► a shard's voters as its leader last changed them
//!  Tenancy ─► tenants, tokens, limits (crate::tenancy::registry)
//! ```

use std::collections::{BTreeMap, BTreeSet};

use firn_storage::ShardId;
use serde::{Deserialize, Serialize};

use crate::cluster::placement;
use crate::ids::NodeId;
use crate::tenancy::registry::{Registry, TenancyCommand};

/// Settings fixed when the cluster is created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSettings {
    /// Shard groups; fixed for the cluster's life.
    pub shards: u32,
    /// Replicas a shard wants; a cluster with fewer nodes holds one per node.
    pub replication_factor: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    /// Holds replicas and takes new ones.
    Active,
    /// Being removed: its replicas move elsewhere, then it is retired.
    Leaving,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The address other nodes reach it at (`--advertise`).
    pub addr: String,
    pub state: NodeState,
}

/// Where one shard's replicas live.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPlacement {
    /// The replicas the shard should have; the first is its preferred leader.
    pub desired: Vec<NodeId>,
    /// The voters of the shard's group as its leader last reported them; empty until the
    /// group exists.
    pub members: Vec<NodeId>,
    /// The node that creates the shard's group (once, with `desired` as its first voters).
    pub initializer: Option<NodeId>,
}

impl ShardPlacement {
    /// True while the group's voters are not yet the desired replicas.
    pub fn moving(&self) -> bool {
        sorted(&self.desired) != sorted(&self.members)
    }

    /// Every node that holds or should hold a replica.
    pub fn involved(&self) -> BTreeSet<NodeId> {
        self.desired.iter().chain(&self.members).copied().collect()
    }
}

fn sorted(nodes: &[NodeId]) -> Vec<NodeId> {
    let mut v = nodes.to_vec();
    v.sort_unstable();
    v
}

/// The meta group's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    /// `None` until the cluster is bootstrapped.
    pub settings: Option<ClusterSettings>,
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    /// Removed nodes: their ids are never accepted again.
    pub retired: BTreeSet<NodeId>,
    pub shards: Vec<ShardPlacement>,
    /// Ids given to addresses that asked for one (a StatefulSet pod on a fresh volume) and have
    /// not joined yet; a retry of the same address gets the same id.
    #[serde(default)]
    pub reserved: BTreeMap<String, NodeId>,
    /// Tenants, tokens and limits.
    #[serde(default)]
    pub tenancy: Registry,
    /// Bumped by every change, so watchers can tell states apart.
    pub version: u64,
}

/// Ids reserved for nodes that have not joined yet, at most.
const MAX_RESERVED_IDS: usize = 1024;

/// A change to the meta state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// Creates the cluster: settings, its first nodes, and the initial placement.
    Bootstrap {
        settings: ClusterSettings,
        nodes: Vec<(NodeId, String)>,
    },
    /// A node joined (or came back at another address).
    AddNode { id: NodeId, addr: String },
    /// An id for a node about to join at `addr`: `preferred` if no node has ever had it, else
    /// the next id never used.
    ReserveNodeId { addr: String, preferred: NodeId },
    /// Start removing a node: its replicas move to the others.
    NodeLeaving { id: NodeId },
    /// A node left for good: its id is never reused.
    RetireNode { id: NodeId },
    /// The placement controller's plan for a shard.
    Place {
        shard: ShardId,
        desired: Vec<NodeId>,
    },
    /// `node` creates the shard's group; refused if another node already claimed it.
    ClaimInit { shard: ShardId, node: NodeId },
    /// The shard's leader changed (or confirmed) its voters.
    ReportMembers {
        shard: ShardId,
        members: Vec<NodeId>,
    },
    /// Tenants, tokens, limits.
    Tenancy(TenancyCommand),
}

impl MetaState {
    /// Applies a command; an `Err` names why it was refused and changes nothing. The same
    /// commands in the same order give the same state on every replica.
    pub fn apply(&mut self, command: &MetaCommand) -> Result<(), String> {
        match command {
            MetaCommand::Bootstrap { settings, nodes } => {
                if self.settings.is_some() {
                    // A second bootstrap (a restarted bootstrapper proposing again) is a no-op.
                    return Ok(());
                }
                if settings.shards == 0 || settings.replication_factor == 0 {
                    return Err("shards and replication factor must be positive".into());
                }
                if nodes.is_empty() {
                    return Err("a cluster needs at least one node".into());
                }
                for (id, addr) in nodes {
                    self.nodes.insert(
                        *id,
                        NodeInfo {
                            addr: addr.clone(),
                            state: NodeState::Active,
                        },
                    );
                }
                let active = self.active_nodes();
                self.shards = (0..settings.shards)
                    .map(|s| ShardPlacement {
                        desired: placement::initial(ShardId(s), &active, settings),
                        ..Default::default()
                    })
                    .collect();
                self.settings = Some(settings.clone());
            }
            MetaCommand::AddNode { id, addr } => {
                if self.retired.contains(id) {
                    return Err(format!(
                        "node id {id} belonged to a node removed from the cluster; node ids are \
                         never reused, start this node with a new --node-id"
                    ));
                }
                if self.reserved.get(addr).is_some_and(|r| r != id) {
                    return Err(format!(
                        "node id {} is reserved for {addr}, not {id}",
                        self.reserved[addr]
                    ));
                }
                self.reserved.remove(addr);
                match self.nodes.get_mut(id) {
                    Some(node) if node.addr == *addr => return Ok(()),
                    Some(node) => node.addr = addr.clone(),
                    None => {
                        self.nodes.insert(
                            *id,
                            NodeInfo {
                                addr: addr.clone(),
                                state: NodeState::Active,
                            },
                        );
                    }
                }
            }
            MetaCommand::ReserveNodeId { addr, preferred } => {
                if self.reserved.contains_key(addr) {
                    return Ok(());
                }
                if let Some((id, _)) = self.nodes.iter().find(|(_, n)| n.addr == *addr) {
                    return Err(format!(
                        "{addr} is node {id}'s address; a node at it restarts with its own data \
                         directory, or is removed first"
                    ));
                }
                if self.reserved.len() >= MAX_RESERVED_IDS {
                    return Err(format!(
                        "{MAX_RESERVED_IDS} node ids are reserved and not yet joined; refusing more"
                    ));
                }
                let used = |n: &NodeId| {
                    self.nodes.contains_key(n)
                        || self.retired.contains(n)
                        || self.reserved.values().any(|r| r == n)
                };
                let id = if preferred.0 > 0 && !used(preferred) {
                    *preferred
                } else {
                    let highest = self
                        .nodes
                        .keys()
                        .chain(self.retired.iter())
                        .chain(self.reserved.values())
                        .map(|n| n.0)
                        .max()
                        .unwrap_or(0);
                    NodeId(highest + 1)
                };
                self.reserved.insert(addr.clone(), id);
            }
            MetaCommand::NodeLeaving { id } => {
                let state = self
                    .nodes
                    .get(id)
                    .ok_or_else(|| format!("node {id} is not a member of the cluster"))?
                    .state;
                if state == NodeState::Leaving {
                    return Ok(());
                }
                let others = self
                    .nodes
                    .iter()
                    .filter(|(n, i)| *n != id && i.state == NodeState::Active)
                    .count();
                if others == 0 {
                    return Err(format!(
                        "node {id} is the cluster's last active node; it cannot be removed"
                    ));
                }
                if let Some(node) = self.nodes.get_mut(id) {
                    node.state = NodeState::Leaving;
                }
            }
            MetaCommand::RetireNode { id } => {
                if self.shards.iter().any(|s| s.involved().contains(id)) {
                    return Err(format!("node {id} still holds shard replicas"));
                }
                if self.nodes.remove(id).is_none() && self.retired.contains(id) {
                    return Ok(());
                }
                self.retired.insert(*id);
            }
            MetaCommand::Place { shard, desired } => {
                for n in desired {
                    if self
                        .nodes
                        .get(n)
                        .is_none_or(|i| i.state != NodeState::Active)
                    {
                        return Err(format!("node {n} is not an active member"));
                    }
                }
                let mut unique = desired.clone();
                unique.sort_unstable();
                unique.dedup();
                if unique.len() != desired.len() || desired.is_empty() {
                    return Err("a shard's replicas must be distinct nodes, at least one".into());
                }
                let placement = self.shard_mut(*shard)?;
                if placement.desired == *desired {
                    return Ok(());
                }
                placement.desired = desired.clone();
            }
            MetaCommand::ClaimInit { shard, node } => {
                let placement = self.shard_mut(*shard)?;
                match placement.initializer {
                    Some(n) if n == *node => return Ok(()),
                    Some(n) => return Err(format!("shard {shard} is created by node {n}")),
                    None if !placement.members.is_empty() => {
                        return Err(format!("shard {shard} already exists"));
                    }
                    None => placement.initializer = Some(*node),
                }
            }
            MetaCommand::ReportMembers { shard, members } => {
                let placement = self.shard_mut(*shard)?;
                if placement.members == *members {
                    return Ok(());
                }
                placement.members = members.clone();
            }
            MetaCommand::Tenancy(command) => self.tenancy.apply(command)?,
        }
        self.version += 1;
        Ok(())
    }

    fn shard_mut(&mut self, shard: ShardId) -> Result<&mut ShardPlacement, String> {
        let count = self.shards.len();
        self.shards
            .get_mut(shard.0 as usize)
            .ok_or_else(|| format!("shard {shard} does not exist (the cluster has {count})"))
    }

    pub fn shard(&self, shard: ShardId) -> Option<&ShardPlacement> {
        self.shards.get(shard.0 as usize)
    }

    /// Nodes that take replicas, sorted.
    pub fn active_nodes(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.state == NodeState::Active)
            .map(|(id, _)| *id)
            .collect()
    }

    /// How many nodes take replicas (the rate limits' share), without collecting them.
    pub fn active_count(&self) -> usize {
        self.nodes
            .values()
            .filter(|n| n.state == NodeState::Active)
            .count()
    }

    pub fn addr(&self, node: NodeId) -> Option<&str> {
        self.nodes.get(&node).map(|n| n.addr.as_str())
    }

    /// The shards `node` holds or should hold a replica of.
    pub fn shards_of(&self, node: NodeId) -> Vec<ShardId> {
        (0..self.shards.len() as u32)
            .map(ShardId)
            .filter(|s| self.shards[s.0 as usize].involved().contains(&node))
            .collect()
    }
}

#[cfg(test)]
mod tests;
