//! Shard placement: which nodes hold each shard's replicas. Pure functions over the meta
//! state; the controller on the meta leader proposes what [`plan`] returns.
//!
//! Rules: a shard has `min(replication factor, active nodes)` replicas on distinct active
//! nodes; replicas on leaving nodes move away; loads (replicas per node) differ by at most one;
//! each step changes one replica of a shard, and only shards whose group has finished its last
//! change are changed, so at most [`MAX_MOVING`] shards move at once.

use std::collections::BTreeMap;

use firn_storage::ShardId;

use crate::cluster::meta::{ClusterSettings, MetaState};
use crate::ids::NodeId;

/// Shards whose replicas move at once, at most.
pub const MAX_MOVING: usize = 2;

/// The first replicas of a shard: consecutive nodes from a rotating start, so preferred
/// leaders spread over the nodes.
pub fn initial(shard: ShardId, active: &[NodeId], settings: &ClusterSettings) -> Vec<NodeId> {
    let n = active.len();
    let target = (settings.replication_factor as usize).min(n);
    (0..target)
        .map(|k| active[(shard.0 as usize + k) % n])
        .collect()
}

/// The placement changes to make next: a new desired replica list for some shards.
pub fn plan(state: &MetaState) -> Vec<(ShardId, Vec<NodeId>)> {
    let Some(settings) = &state.settings else {
        return Vec::new();
    };
    let active = state.active_nodes();
    if active.is_empty() {
        return Vec::new();
    }
    let target = (settings.replication_factor as usize).min(active.len());
    let mut desired: Vec<Vec<NodeId>> = state.shards.iter().map(|s| s.desired.clone()).collect();
    let mut moving = state
        .shards
        .iter()
        .filter(|s| !s.members.is_empty() && s.moving())
        .count();
    let mut changes = Vec::new();
    for (s, placement) in state.shards.iter().enumerate() {
        if moving >= MAX_MOVING {
            break;
        }
        // A shard not yet created keeps its first placement; one still moving finishes first.
        if placement.members.is_empty() || placement.moving() {
            continue;
        }
        let load = loads(&desired, &active);
        if let Some(next) = step(&desired[s], &active, &load, target) {
            desired[s] = next.clone();
            changes.push((ShardId(s as u32), next));
            moving += 1;
        }
    }
    changes
}

/// Replicas per active node over `desired`.
fn loads(desired: &[Vec<NodeId>], active: &[NodeId]) -> BTreeMap<NodeId, usize> {
    let mut load: BTreeMap<NodeId, usize> = active.iter().map(|n| (*n, 0)).collect();
    for replicas in desired {
        for n in replicas {
            if let Some(l) = load.get_mut(n) {
                *l += 1;
            }
        }
    }
    load
}

/// One change to a shard's replicas, if it needs one: replace a replica on a node that is no
/// longer active, add one when short, drop one when over, or move one from the most to the
/// least loaded node.
fn step(
    current: &[NodeId],
    active: &[NodeId],
    load: &BTreeMap<NodeId, usize>,
    target: usize,
) -> Option<Vec<NodeId>> {
    let is_active = |n: &NodeId| load.contains_key(n);
    // The least loaded active node without a replica of this shard (lowest id on ties).
    let spare = || {
        active
            .iter()
            .filter(|n| !current.contains(n))
            .min_by_key(|n| (load[*n], **n))
            .copied()
    };
    if let Some(gone) = current.iter().position(|n| !is_active(n)) {
        let mut next = current.to_vec();
        match spare() {
            Some(replacement) if current.iter().filter(|n| is_active(n)).count() < target => {
                next[gone] = replacement
            }
            _ => {
                next.remove(gone);
            }
        }
        return Some(next);
    }
    if current.len() < target {
        let mut next = current.to_vec();
        next.push(spare()?);
        return Some(next);
    }
    if current.len() > target {
        // Drop the most loaded replica, never the preferred leader while others can go.
        let (at, _) = current
            .iter()
            .enumerate()
            .skip(1)
            .max_by_key(|(_, n)| (load[*n], **n))?;
        let mut next = current.to_vec();
        next.remove(at);
        return Some(next);
    }
    let (from_at, from) = current
        .iter()
        .enumerate()
        .max_by_key(|(_, n)| (load[*n], std::cmp::Reverse(**n)))?;
    let to = spare()?;
    if load[from] > load[&to] + 1 {
        let mut next = current.to_vec();
        next[from_at] = to;
        return Some(next);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::meta::MetaCommand;

    fn boot(nodes: u64, shards: u32, rf: u32) -> MetaState {
        let mut state = MetaState::default();
        state
            .apply(&MetaCommand::Bootstrap {
                settings: ClusterSettings {
                    shards,
                    replication_factor: rf,
                },
                nodes: (1..=nodes).map(|n| (NodeId(n), format!("n{n}"))).collect(),
            })
            .expect("bootstrap");
        // Every group created with its first placement.
        for s in 0..shards {
            let members = state.shards[s as usize].desired.clone();
            state
                .apply(&MetaCommand::ReportMembers {
                    shard: ShardId(s),
                    members,
                })
                .expect("report");
        }
        state
    }

    /// Plans and "completes" moves until the plan is empty; returns the rounds taken.
    fn settle(state: &mut MetaState) -> usize {
        for round in 0..100 {
            let changes = plan(state);
            if changes.is_empty() {
                return round;
            }
            for (shard, desired) in changes {
                state
                    .apply(&MetaCommand::Place {
                        shard,
                        desired: desired.clone(),
                    })
                    .expect("place");
                state
                    .apply(&MetaCommand::ReportMembers {
                        shard,
                        members: desired,
                    })
                    .expect("report");
            }
        }
        panic!("placement did not settle");
    }

    fn check_invariants(state: &MetaState) {
        let settings = state.settings.as_ref().expect("bootstrapped");
        let active = state.active_nodes();
        let target = (settings.replication_factor as usize).min(active.len());
        for p in &state.shards {
            assert_eq!(p.desired.len(), target, "{p:?}");
            let mut unique = p.desired.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), target, "two replicas on one node: {p:?}");
            assert!(p.desired.iter().all(|n| active.contains(n)), "{p:?}");
        }
        let load = loads(
            &state
                .shards
                .iter()
                .map(|s| s.desired.clone())
                .collect::<Vec<_>>(),
            &active,
        );
        let (min, max) = (
            load.values().min().copied().unwrap_or(0),
            load.values().max().copied().unwrap_or(0),
        );
        assert!(max - min <= 1, "unbalanced: {load:?}");
    }

    #[test]
    fn a_new_node_takes_a_share_of_replicas() {
        let mut state = boot(3, 3, 3);
        assert!(plan(&state).is_empty(), "a settled cluster plans nothing");
        state
            .apply(&MetaCommand::AddNode {
                id: NodeId(4),
                addr: "n4".into(),
            })
            .expect("join");
        let changes = plan(&state);
        assert!(!changes.is_empty() && changes.len() <= MAX_MOVING);
        settle(&mut state);
        check_invariants(&state);
        let on_new = state
            .shards
            .iter()
            .filter(|s| s.desired.contains(&NodeId(4)))
            .count();
        assert_eq!(on_new, 2, "9 replicas over 4 nodes: the new one takes 2");
    }

    #[test]
    fn a_leaving_node_hands_off_every_replica() {
        let mut state = boot(4, 4, 3);
        settle(&mut state);
        state
            .apply(&MetaCommand::NodeLeaving { id: NodeId(2) })
            .expect("leave");
        settle(&mut state);
        check_invariants(&state);
        assert!(state.shards_of(NodeId(2)).is_empty());
        state
            .apply(&MetaCommand::RetireNode { id: NodeId(2) })
            .expect("retire");
    }

    #[test]
    fn growing_from_one_node_reaches_the_replication_factor() {
        let mut state = boot(1, 2, 3);
        for n in 2..=5 {
            state
                .apply(&MetaCommand::AddNode {
                    id: NodeId(n),
                    addr: format!("n{n}"),
                })
                .expect("join");
            settle(&mut state);
            check_invariants(&state);
        }
        assert!(state.shards.iter().all(|s| s.desired.len() == 3));
    }

    #[test]
    fn shards_not_yet_created_keep_their_first_placement() {
        let mut state = MetaState::default();
        state
            .apply(&MetaCommand::Bootstrap {
                settings: ClusterSettings {
                    shards: 2,
                    replication_factor: 3,
                },
                nodes: vec![(NodeId(1), "a".into())],
            })
            .expect("bootstrap");
        state
            .apply(&MetaCommand::AddNode {
                id: NodeId(2),
                addr: "b".into(),
            })
            .expect("join");
        assert!(plan(&state).is_empty());
    }
}
