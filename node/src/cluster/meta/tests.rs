use super::*;

fn boot(nodes: u64, shards: u32, rf: u32) -> MetaState {
    let mut state = MetaState::default();
    state
        .apply(&MetaCommand::Bootstrap {
            settings: ClusterSettings {
                shards,
                replication_factor: rf,
            },
            nodes: (1..=nodes)
                .map(|n| (NodeId(n), format!("10.0.0.{n}:4040")))
                .collect(),
        })
        .expect("bootstrap");
    state
}

#[test]
fn bootstrap_places_every_shard_on_distinct_nodes() {
    let state = boot(3, 3, 3);
    assert_eq!(state.shards.len(), 3);
    for (s, p) in state.shards.iter().enumerate() {
        assert_eq!(sorted(&p.desired), vec![NodeId(1), NodeId(2), NodeId(3)]);
        assert!(p.members.is_empty() && p.moving());
        // Preferred leaders rotate, so each node leads one shard.
        assert_eq!(p.desired[0], NodeId(s as u64 + 1));
    }
    let single = boot(1, 1, 3);
    assert_eq!(single.shards[0].desired, vec![NodeId(1)]);
    // A second bootstrap changes nothing.
    let mut again = state.clone();
    again
        .apply(&MetaCommand::Bootstrap {
            settings: ClusterSettings {
                shards: 9,
                replication_factor: 1,
            },
            nodes: vec![(NodeId(7), "x:1".into())],
        })
        .expect("no-op");
    assert_eq!(again, state);
}

#[test]
fn a_fresh_node_gets_its_preferred_id_unless_one_ever_had_it() {
    let mut state = boot(3, 1, 3);
    let reserve = |state: &mut MetaState, addr: &str, preferred: u64| {
        state
            .apply(&MetaCommand::ReserveNodeId {
                addr: addr.into(),
                preferred: NodeId(preferred),
            })
            .map(|()| state.reserved[addr])
    };
    // Free: the preferred id (a StatefulSet pod's ordinal + 1); asked again, the same.
    assert_eq!(reserve(&mut state, "firn-3:4040", 4), Ok(NodeId(4)));
    assert_eq!(reserve(&mut state, "firn-3:4040", 4), Ok(NodeId(4)));
    // Taken by a member, or reserved: the next id never used.
    assert_eq!(reserve(&mut state, "firn-9:4040", 2), Ok(NodeId(5)));
    assert_eq!(reserve(&mut state, "other:4040", 4), Ok(NodeId(6)));
    // A member's address cannot ask.
    assert!(reserve(&mut state, "10.0.0.1:4040", 1).is_err());
    // Joining takes the reservation; another id at that address is refused.
    assert!(
        state
            .apply(&MetaCommand::AddNode {
                id: NodeId(7),
                addr: "firn-3:4040".into()
            })
            .is_err()
    );
    state
        .apply(&MetaCommand::AddNode {
            id: NodeId(4),
            addr: "firn-3:4040".into(),
        })
        .expect("join");
    assert!(!state.reserved.contains_key("firn-3:4040"));
    // A retired id is not given again.
    state.nodes.remove(&NodeId(4));
    state.retired.insert(NodeId(4));
    assert_eq!(reserve(&mut state, "firn-3:4040", 4), Ok(NodeId(7)));
}

#[test]
fn retired_ids_are_never_reused() {
    let mut state = boot(2, 1, 1);
    let shard = ShardId(0);
    let holder = state.shards[0].desired[0];
    state
        .apply(&MetaCommand::NodeLeaving { id: holder })
        .expect("leaving");
    assert!(
        state
            .apply(&MetaCommand::RetireNode { id: holder })
            .expect_err("still a replica")
            .contains("still holds")
    );
    let other = NodeId(3 - holder.0);
    state
        .apply(&MetaCommand::Place {
            shard,
            desired: vec![other],
        })
        .expect("place");
    state
        .apply(&MetaCommand::ReportMembers {
            shard,
            members: vec![other],
        })
        .expect("report");
    state
        .apply(&MetaCommand::RetireNode { id: holder })
        .expect("retire");
    let err = state
        .apply(&MetaCommand::AddNode {
            id: holder,
            addr: "10.0.0.9:4040".into(),
        })
        .expect_err("reused id");
    assert!(err.contains("never reused"), "{err}");
    assert!(
        state
            .apply(&MetaCommand::NodeLeaving { id: other })
            .expect_err("last node")
            .contains("last active node")
    );
}

#[test]
fn placement_refuses_duplicates_and_strangers() {
    let mut state = boot(3, 2, 3);
    let version = state.version;
    for desired in [vec![NodeId(1), NodeId(1)], vec![NodeId(9)], vec![]] {
        assert!(
            state
                .apply(&MetaCommand::Place {
                    shard: ShardId(0),
                    desired
                })
                .is_err()
        );
    }
    assert!(
        state
            .apply(&MetaCommand::Place {
                shard: ShardId(5),
                desired: vec![NodeId(1)]
            })
            .expect_err("no such shard")
            .contains("has 2")
    );
    assert_eq!(state.version, version, "refused commands change nothing");
}

#[test]
fn one_node_claims_a_shards_creation() {
    let mut state = boot(3, 1, 3);
    let claim = |n| MetaCommand::ClaimInit {
        shard: ShardId(0),
        node: NodeId(n),
    };
    state.apply(&claim(1)).expect("first claim");
    state.apply(&claim(1)).expect("the same claim again");
    assert!(state.apply(&claim(2)).is_err());
}
