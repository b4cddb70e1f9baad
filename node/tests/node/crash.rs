//! Crash safety: `firn serve` killed with SIGKILL at arbitrary moments while a client writes;
//! after every restart each acknowledged write is there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{CPU, Server};

#[test]
fn every_acknowledged_write_survives_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Small flush thresholds so kills also land during flushes and log truncation.
    let mut server = Server::start(
        dir.path(),
        &["--flush-bytes", "20000", "--flush-interval-secs", "1"],
    );
    let acknowledged: Arc<Mutex<Vec<u64>>> = Arc::default();
    let mut next = 0u64;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for cycle in 0..20 {
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (url, acknowledged, stop) =
                (server.url.clone(), acknowledged.clone(), stop.clone());
            let start = next;
            std::thread::spawn(move || {
                let mut n = start;
                while !stop.load(Ordering::Relaxed) {
                    let body = format!("main;w{n} 1\n");
                    let (status, _) = crate::harness::post(
                        &format!("{url}/ingest?name=crash.cpu&format=folded"),
                        "text/plain",
                        body.as_bytes(),
                    );
                    if status == 200 {
                        acknowledged.lock().expect("lock").push(n);
                    }
                    n += 1;
                }
                n
            })
        };
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(50 + seed % 400));
        server.kill_and_restart();
        stop.store(true, Ordering::Relaxed);
        next = writer.join().expect("writer thread");

        let (status, folded) = server.merge(&format!("{CPU}{{service_name=\"crash\"}}"), "folded");
        assert_eq!(status, 200, "{folded}");
        let present: std::collections::HashSet<u64> = folded
            .lines()
            .filter_map(|l| l.strip_prefix("main;w"))
            .filter_map(|l| l.split(' ').next())
            .filter_map(|n| n.parse().ok())
            .collect();
        let acknowledged = acknowledged.lock().expect("lock");
        let lost: Vec<u64> = acknowledged
            .iter()
            .copied()
            .filter(|n| !present.contains(n))
            .collect();
        assert!(
            lost.is_empty(),
            "cycle {cycle}: {} of {} acknowledged writes lost, first {:?}",
            lost.len(),
            acknowledged.len(),
            &lost[..lost.len().min(5)]
        );
    }
    assert!(
        acknowledged.lock().expect("lock").len() > 100,
        "the client kept writing"
    );
}

/// A log bigger than the buffer's budget after a restart (the budget was lowered): the node
/// replays all of it, then flushes, snapshots and purges the log; a further crash after that
/// recovers from the snapshot, the blocks and what is left of the log, losing nothing.
#[test]
fn a_restart_replays_then_flushes_and_recovers_from_the_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path(), &["--flush-interval-secs", "3600"]);
    for n in 0..200 {
        let (status, body) = server.ingest_folded("replay.cpu", &format!("main;r{n} 1\n"));
        assert_eq!(status, 200, "{body}");
    }
    server.kill_and_restart_with(&["--buffer-bytes", "300000", "--flush-bytes", "100000"]);
    let query = format!("{CPU}{{service_name=\"replay\"}}");
    let (status, folded) = server.merge(&query, "folded");
    assert_eq!(status, 200, "{folded}");
    assert_eq!(folded.lines().count(), 200, "{folded}");
    use crate::harness::{metric, shard0};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while metric(&server, &shard0("firn_raft_purged_index")) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no flush, snapshot and purge after the restart"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(metric(&server, "firn_blocks") > 0);
    assert!(
        metric(&server, &shard0("firn_raft_snapshot_index"))
            >= metric(&server, &shard0("firn_raft_purged_index"))
    );
    for n in 200..220 {
        let (status, body) = server.ingest_folded("replay.cpu", &format!("main;r{n} 1\n"));
        assert_eq!(status, 200, "{body}");
    }
    server.kill_and_restart_with(&[]);
    let (status, folded) = server.merge(&query, "folded");
    assert_eq!(status, 200, "{folded}");
    assert_eq!(folded.lines().count(), 220, "{folded}");
}
