//! Membership under ingest: nodes added and removed while clients write.

use std::time::Duration;

use firn_cluster_tests::client::{Writers, check};
use firn_cluster_tests::cluster::{Options, READY, TestCluster};
use firn_cluster_tests::node::metric;
use firn_cluster_tests::{exclusive, narrate, wait_until};

use crate::{PAUSE, all_targets};

#[test]
fn add_a_fourth_node_then_remove_one_under_ingest() {
    let _one = exclusive();
    let mut cluster = TestCluster::start(Options::default());
    let t = cluster.started;
    let targets = all_targets(&cluster);
    let writers = Writers::start(3, targets.clone(), PAUSE);
    assert!(
        writers.wait_for_more(200, Duration::from_secs(60)),
        "writes are acknowledged"
    );
    // History in blocks before node 4 comes: it must get it from a snapshot (manifest +
    // buffer) and the object store, never by replaying the log.
    assert!(
        wait_until(Duration::from_secs(30), || metric(
            &cluster.nodes[0],
            "firn_blocks"
        ) > 0),
        "blocks flushed before the join"
    );
    narrate(t, "start node 4 with --join");
    let fourth = cluster.add_node();
    targets
        .write()
        .expect("targets")
        .push(cluster.nodes[fourth].url());
    assert!(
        wait_until(Duration::from_secs(120), || {
            let s = cluster.status();
            s["shards"].as_array().is_some_and(|shards| {
                shards
                    .iter()
                    .filter(|sh| {
                        sh["voters"]
                            .as_array()
                            .is_some_and(|v| v.iter().any(|n| n.as_u64() == Some(4)))
                    })
                    .count()
                    >= 2
            })
        }),
        "node 4 takes replicas: {}",
        cluster.status()
    );
    cluster.wait_settled(READY);
    narrate(
        t,
        &format!("node 4 holds replicas: {}", cluster.status()["shards"]),
    );
    assert!(
        metric(&cluster.nodes[fourth], "firn_blocks") > 0,
        "node 4's replicas know the blocks (their manifests came in snapshots)"
    );
    assert!(
        writers.wait_for_more(30, Duration::from_secs(30)),
        "writes go on"
    );

    narrate(t, "remove node 1");
    let leaving = cluster.nodes[0].url();
    targets.write().expect("targets").retain(|u| *u != leaving);
    cluster.remove_node(1, Duration::from_secs(120));
    cluster.wait_settled(READY);
    narrate(
        t,
        &format!("node 1 retired: {}", cluster.status()["shards"]),
    );
    cluster.nodes[0].stop(Duration::from_secs(30));
    assert!(
        writers.wait_for_more(30, Duration::from_secs(30)),
        "writes go on"
    );
    let writes = writers.finish();
    let verdict = check(&cluster, &writes, &[1, 2, 3]);
    narrate(
        t,
        &format!("{verdict:?}: every acknowledged write stored once, on every node"),
    );
}
