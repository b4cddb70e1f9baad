//! Compaction across three real nodes: back-dated writes spread over three shards are
//! flushed, then compacted by each shard's leader; every node (whichever replica it reads)
//! answers exactly what was written, before and after, and again after a node is killed and
//! restarts from its snapshot and log.

use std::collections::BTreeMap;
use std::time::Duration;

use firn_cluster_tests::client::{SERVICE, encode, stored};
use firn_cluster_tests::cluster::{Options, TestCluster};
use firn_cluster_tests::node::metric;
use firn_cluster_tests::{exclusive, narrate, wait_until};

#[test]
fn compaction_keeps_every_write_on_every_node() {
    let _one = exclusive();
    let mut cluster = TestCluster::start(Options {
        extra: vec![
            "--compaction-interval-secs".into(),
            "1".into(),
            "--compaction-delete-delay-secs".into(),
            "2".into(),
        ],
        ..Default::default()
    });
    let t = cluster.started;
    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.url()).collect();
    // The start of an hour that ended over an hour ago: every round falls in one window that
    // is over, so blocks are compacted as they land.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let from = (now - 3 * 3600) / 3600 * 3600 + 60;
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for round in 0..3u64 {
        let flushes: u64 = cluster
            .nodes
            .iter()
            .map(|n| metric(n, "firn_flushes_total"))
            .sum();
        for (i, url) in urls.iter().enumerate() {
            for pod in 0..12 {
                let stack = format!("main;round{round};node{i}");
                let name = format!("{SERVICE}.cpu{{pod=p{pod}}}");
                let r = ureq::post(&format!(
                    "{url}/ingest?name={}&format=folded&from={}&until={}",
                    encode(&name),
                    from + round * 60,
                    from + round * 60 + 10
                ))
                .timeout(Duration::from_secs(30))
                .send_string(&format!("{stack} 1\n"))
                .expect("ingest");
                assert_eq!(r.status(), 200);
                // 1 sample at 100 Hz is 10 ms of CPU.
                *expected.entry(stack).or_default() += 10_000_000;
            }
        }
        assert!(
            wait_until(Duration::from_secs(60), || cluster
                .nodes
                .iter()
                .map(|n| metric(n, "firn_flushes_total"))
                .sum::<u64>()
                > flushes),
            "round {round} flushed"
        );
    }
    narrate(t, "written and flushed");
    // Settled: at most one block per shard on every node (one tenant, one window; a shard
    // the series did not hash to has none), nothing pending. (A shard whose rounds all landed
    // in one flush has nothing to compact.)
    let settled = wait_until(Duration::from_secs(120), || {
        let compactions: u64 = cluster
            .nodes
            .iter()
            .map(|n| metric(n, "firn_compactions_total"))
            .sum();
        compactions >= 1
            && cluster.nodes.iter().all(|n| {
                metric(n, "firn_compaction_pending_jobs") == 0 && metric(n, "firn_blocks") <= 3
            })
    });
    assert!(settled, "compaction settled:\n{}", cluster.logs());
    narrate(t, "compacted");
    for url in &urls {
        assert_eq!(
            stored(url).expect("merge"),
            expected,
            "{url} answers every write once"
        );
    }
    // A node killed and restarted loads the compacted manifest and answers the same.
    cluster.nodes[1].kill();
    cluster.nodes[1].start();
    cluster.nodes[1].wait_ready(Duration::from_secs(60));
    cluster.wait_settled(Duration::from_secs(60));
    assert_eq!(
        stored(&urls[1]).expect("merge"),
        expected,
        "after a restart"
    );
    let failures: u64 = cluster
        .nodes
        .iter()
        .map(|n| metric(n, "firn_compaction_failures_total"))
        .sum();
    assert_eq!(failures, 0, "{}", cluster.logs());
    narrate(t, "checked");
}
