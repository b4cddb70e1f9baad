//! Faults under ingest: killed leaders, restarts, partitions, pauses, an object-store outage,
//! and the whole cluster stopped.

use std::time::{Duration, Instant};

use firn_cluster_tests::client::{Writers, check};
use firn_cluster_tests::cluster::{Options, READY, TestCluster};
use firn_cluster_tests::{exclusive, narrate};

use crate::{PAUSE, all_targets};

#[test]
fn kill_the_leader_under_ingest_five_times() {
    let _one = exclusive();
    // One shard: every write needs the leader that is killed, so a write acknowledged after
    // the kill is one the new leader committed.
    let mut cluster = TestCluster::start(Options {
        shards: 1,
        ..Default::default()
    });
    let t = cluster.started;
    let writers = Writers::start(3, all_targets(&cluster), PAUSE);
    assert!(
        writers.wait_for_more(50, Duration::from_secs(30)),
        "writes are acknowledged"
    );
    for round in 1..=5 {
        let leader = cluster.shard_leader(0).expect("shard 0 has a leader");
        let i = cluster.index(leader);
        narrate(
            t,
            &format!("round {round}: SIGKILL node {leader}, the leader"),
        );
        let killed = Instant::now();
        cluster.nodes[i].kill();
        let next_ack = writers
            .first_ack_after(killed, Duration::from_secs(30))
            .expect("writes go on without the leader");
        narrate(
            t,
            &format!(
                "  a write sent after the kill acknowledged {:.2} s after it",
                (next_ack - killed).as_secs_f64()
            ),
        );
        assert!(
            writers.wait_for_more(30, Duration::from_secs(30)),
            "writes go on without the leader"
        );
        cluster.nodes[i].start();
        cluster.nodes[i].wait_ready(READY);
        cluster.wait_settled(READY);
        let next = cluster.shard_leader(0);
        assert!(
            next.is_some_and(|l| l != leader),
            "another node leads: {next:?}"
        );
        narrate(t, &format!("  node {leader} back; node {next:?} leads"));
    }
    cluster.wait_settled(READY);
    let writes = writers.finish();
    let verdict = check(&cluster, &writes, &[0, 1, 2]);
    narrate(
        t,
        &format!("{verdict:?}: every acknowledged write stored once, on every node"),
    );
}

#[test]
fn rolling_restart_of_every_node_under_ingest() {
    let _one = exclusive();
    let mut cluster = TestCluster::start(Options::default());
    let t = cluster.started;
    let writers = Writers::start(3, all_targets(&cluster), PAUSE);
    assert!(
        writers.wait_for_more(50, Duration::from_secs(30)),
        "writes are acknowledged"
    );
    let mut led_total = 0;
    for i in 0..cluster.nodes.len() {
        let id = cluster.nodes[i].spec.id;
        assert!(
            writers.wait_for_more(100, Duration::from_secs(30)),
            "writes go on"
        );
        let led: Vec<usize> = (0..3)
            .filter(|&s| cluster.shard_leader(s) == Some(id))
            .collect();
        led_total += led.len();
        let log_before = std::fs::read_to_string(cluster.nodes[i].log_path()).unwrap_or_default();
        narrate(
            t,
            &format!("SIGTERM node {id} (leading shards {led:?}), then start it again"),
        );
        cluster.nodes[i].stop(Duration::from_secs(30));
        // A stopping leader hands each of its shards to a caught-up voter before it exits.
        let log = std::fs::read_to_string(cluster.nodes[i].log_path()).unwrap_or_default();
        let stop_log = &log[log_before.len().min(log.len())..];
        for shard in &led {
            assert!(
                stop_log
                    .lines()
                    .any(|l| l.contains("leadership handed over")
                        && l.contains(&format!("group={shard} "))
                        && l.contains("moved=true")),
                "node {id} handed shard {shard} over:\n{stop_log}"
            );
        }
        cluster.nodes[i].start();
        cluster.nodes[i].wait_ready(READY);
        assert!(
            writers.wait_for_more(30, Duration::from_secs(30)),
            "writes go on after node {id} restarted"
        );
    }
    assert!(led_total > 0, "some stopped node led a shard");
    cluster.wait_settled(READY);
    let writes = writers.finish();
    let verdict = check(&cluster, &writes, &[0, 1, 2]);
    narrate(
        t,
        &format!("{verdict:?}: every acknowledged write stored once, on every node"),
    );
}

#[test]
fn partition_the_leader_away_from_the_majority_for_20_s() {
    let _one = exclusive();
    let cluster = TestCluster::start(Options::default());
    let t = cluster.started;
    if !cluster.net.partitionable() {
        eprintln!("skipped: partitions need network namespaces (run as root, as CI does)");
        return;
    }
    let leader = cluster.shard_leader(0).expect("shard 0 has a leader");
    let isolated = cluster.index(leader);
    let majority: Vec<usize> = (0..cluster.nodes.len())
        .filter(|i| *i != isolated)
        .collect();
    let majority_targets = std::sync::Arc::new(std::sync::RwLock::new(
        majority
            .iter()
            .map(|i| cluster.nodes[*i].url())
            .collect::<Vec<_>>(),
    ));
    let minority_url = cluster.nodes[isolated].url();
    let minority_targets = std::sync::Arc::new(std::sync::RwLock::new(vec![minority_url.clone()]));
    let writers = Writers::start(2, majority_targets, PAUSE);
    let lonely = Writers::start_named(1, minority_targets, PAUSE, "m");
    assert!(
        writers.wait_for_more(50, Duration::from_secs(30)),
        "writes are acknowledged"
    );
    narrate(
        t,
        &format!("cut node {leader} (leader of shard 0) off from the others for 20 s"),
    );
    cluster.net.cut(&[isolated], &majority);
    let cut_at = Instant::now();
    let before = writers.acknowledged();
    std::thread::sleep(Duration::from_secs(20));
    let during = writers.acknowledged() - before;
    narrate(
        t,
        &format!("  the majority acknowledged {during} writes meanwhile; healing"),
    );
    let healed_at = Instant::now();
    cluster.net.heal();
    assert!(during > 50, "the majority side kept acknowledging writes");
    cluster.wait_settled(READY);
    let majority_writes = writers.finish();
    let lonely_writes = lonely.finish();
    let minority_acks: Vec<_> = lonely_writes
        .iter()
        .flat_map(|w| &w.attempts)
        .filter(|a| {
            a.node_url == minority_url
                && a.sent >= cut_at
                && a.answered < healed_at
                && a.status == 200
        })
        .collect();
    assert!(
        minority_acks.is_empty(),
        "the minority side acknowledged {} writes during the partition",
        minority_acks.len()
    );
    let writes: Vec<_> = majority_writes.into_iter().chain(lonely_writes).collect();
    let verdict = check(&cluster, &writes, &[0, 1, 2]);
    narrate(
        t,
        &format!("{verdict:?}: the minority acknowledged nothing; nothing lost or doubled"),
    );
}

#[test]
fn pause_a_follower_for_30_s() {
    let _one = exclusive();
    let cluster = TestCluster::start(Options::default());
    let t = cluster.started;
    let leader = cluster.shard_leader(0).expect("shard 0 has a leader");
    let follower = (0..cluster.nodes.len())
        .find(|i| cluster.nodes[*i].spec.id != leader)
        .expect("a follower");
    let writers = Writers::start(3, all_targets(&cluster), PAUSE);
    assert!(
        writers.wait_for_more(50, Duration::from_secs(30)),
        "writes are acknowledged"
    );
    narrate(
        t,
        &format!(
            "SIGSTOP node {} (a follower of shard 0) for 30 s",
            cluster.nodes[follower].spec.id
        ),
    );
    cluster.nodes[follower].pause();
    let before = writers.acknowledged();
    std::thread::sleep(Duration::from_secs(30));
    let during = writers.acknowledged() - before;
    cluster.nodes[follower].resume();
    narrate(
        t,
        &format!("  {during} writes acknowledged meanwhile; SIGCONT"),
    );
    assert!(during > 50, "the others kept acknowledging writes");
    cluster.wait_settled(READY);
    assert!(
        writers.wait_for_more(30, Duration::from_secs(30)),
        "writes go on"
    );
    let writes = writers.finish();
    let verdict = check(&cluster, &writes, &[0, 1, 2]);
    narrate(
        t,
        &format!("{verdict:?}: the paused node caught up; nothing lost or doubled"),
    );
}

#[test]
fn object_store_down_for_60_s_under_ingest() {
    let _one = exclusive();
    let cluster = TestCluster::start(Options::default());
    let t = cluster.started;
    let writers = Writers::start(3, all_targets(&cluster), PAUSE);
    assert!(
        firn_cluster_tests::wait_until(Duration::from_secs(30), || cluster
            .s3
            .count("cluster/shards")
            > 0),
        "blocks reach the object store"
    );
    let blocks_before = cluster.s3.count("cluster/shards");
    narrate(t, "SIGSTOP the S3 server for 60 s");
    cluster.s3.pause();
    let before = writers.acknowledged();
    std::thread::sleep(Duration::from_secs(60));
    let during = writers.acknowledged() - before;
    narrate(
        t,
        &format!("  {during} writes acknowledged into the Raft logs meanwhile; SIGCONT"),
    );
    cluster.s3.resume();
    assert!(during > 100, "writes kept landing in the logs");
    assert!(
        firn_cluster_tests::wait_until(Duration::from_secs(120), || cluster
            .s3
            .count("cluster/shards")
            > blocks_before),
        "the backlog flushes once the store is back"
    );
    let writes = writers.finish();
    let verdict = check(&cluster, &writes, &[0, 1, 2]);
    narrate(t, &format!("{verdict:?}: nothing acknowledged was dropped"));
}

#[test]
fn stop_the_whole_cluster_and_start_it_again() {
    let _one = exclusive();
    let mut cluster = TestCluster::start(Options::default());
    let t = cluster.started;
    let writers = Writers::start(3, all_targets(&cluster), PAUSE);
    assert!(
        writers.wait_for_more(300, Duration::from_secs(60)),
        "writes are acknowledged"
    );
    narrate(t, "SIGKILL every node");
    for node in &mut cluster.nodes {
        node.kill();
    }
    narrate(t, "start every node again");
    for node in &mut cluster.nodes {
        node.start();
    }
    for node in &mut cluster.nodes {
        node.wait_ready(READY);
    }
    cluster.wait_settled(READY);
    assert!(
        writers.wait_for_more(50, Duration::from_secs(60)),
        "writes go on"
    );
    let writes = writers.finish();
    let verdict = check(&cluster, &writes, &[0, 1, 2]);
    narrate(
        t,
        &format!("{verdict:?}: the cluster came back with every acknowledged write"),
    );
}

#[test]
fn queries_reach_every_shard_and_fail_over_to_another_replica() {
    let _one = exclusive();
    // Four nodes, three replicas a shard: every node lacks some shard, so its queries fetch
    // fragments from other nodes over Flight.
    let mut cluster = TestCluster::start(Options {
        nodes: 4,
        max_nodes: 4,
        shards: 4,
        replication_factor: 3,
        ..Default::default()
    });
    let t = cluster.started;
    let writers = Writers::start(4, all_targets(&cluster), PAUSE);
    assert!(
        writers.wait_for_more(200, Duration::from_secs(60)),
        "writes are acknowledged"
    );
    let writes = writers.finish();
    let verdict = check(&cluster, &writes, &[0, 1, 2, 3]);
    narrate(t, &format!("{verdict:?} on all four nodes"));
    for i in 0..4 {
        let n = sql_count(&cluster.nodes[i].url());
        assert_eq!(n, Some(verdict.stored), "SQL on node {}", i + 1);
    }
    narrate(
        t,
        "SIGKILL node 4: fragments it would have answered go to other replicas",
    );
    cluster.nodes[3].kill();
    cluster.wait_settled(READY);
    let verdict = check(&cluster, &writes, &[0, 1, 2]);
    for i in 0..3 {
        let n = sql_count(&cluster.nodes[i].url());
        assert_eq!(n, Some(verdict.stored), "SQL on node {}", i + 1);
    }
    narrate(t, &format!("{verdict:?} on the three left"));
}

/// `SELECT count(*)` of the test service's samples through a node's SQL endpoint.
fn sql_count(url: &str) -> Option<usize> {
    let body = ureq::post(&format!("{url}/api/v1/sql"))
        .timeout(Duration::from_secs(60))
        .send_string("SELECT count(*) AS n FROM samples WHERE \"labels.service_name\" = 'chaos'")
        .ok()?
        .into_string()
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["rows"][0][0].as_str()?.parse().ok()
}
