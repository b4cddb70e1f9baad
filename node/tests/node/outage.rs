//! An object-store outage: flushes fail and are retried, writes keep landing in the Raft log
//! up to its budget, then get 503 with `Retry-After`; when the store is back the backlog
//! flushes, writes are taken again, and every acknowledged write is there.

use std::time::Duration;

use crate::harness::{CPU, Server, metric, shard0, urlencode, wait_until};

/// Posts one folded write; returns the status, the `Retry-After` header and the body.
fn write(server: &Server, n: usize) -> (u16, Option<String>, String) {
    let body = format!("main;outage;f{n} 1\n") + &"main;pad 1\n".repeat(200);
    let result = ureq::post(&format!(
        "{}/ingest?name={}&format=folded",
        server.url,
        urlencode("outage.cpu")
    ))
    .send_bytes(body.as_bytes());
    match result {
        Ok(r) => (r.status(), None, r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (
            code,
            r.header("Retry-After").map(str::to_owned),
            r.into_string().unwrap_or_default(),
        ),
        Err(e) => panic!("request failed: {e}"),
    }
}

#[test]
fn writes_wait_in_the_log_while_the_object_store_is_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        dir.path(),
        &["--flush-interval-secs", "1", "--log-budget-bytes", "200000"],
    );
    let mut acknowledged = Vec::new();
    for n in 0..5 {
        let (status, _, body) = write(&server, n);
        assert_eq!(status, 200, "{body}");
        acknowledged.push(n);
    }
    assert!(
        wait_until(Duration::from_secs(20), || metric(&server, "firn_blocks")
            >= 1),
        "a block flushed while the store was up"
    );

    // The outage: where the object store's directory was, a file (even root cannot write
    // under it).
    let objects = dir.path().join("objects");
    let away = dir.path().join("objects.away");
    std::fs::rename(&objects, &away).expect("move the store away");
    std::fs::write(&objects, b"not a directory").expect("block the path");

    let mut refused = None;
    for n in 5..10_000 {
        let (status, retry_after, body) = write(&server, n);
        match status {
            200 => acknowledged.push(n),
            503 => {
                refused = Some((retry_after, body));
                break;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let (retry_after, body) = refused.expect("the log budget ran out during the outage");
    assert!(retry_after.is_some(), "503 carries Retry-After");
    assert!(
        body.contains("200000"),
        "the message names the limit: {body}"
    );
    assert!(
        acknowledged.len() > 10,
        "writes kept landing in the log first"
    );
    assert!(
        wait_until(Duration::from_secs(10), || metric(
            &server,
            "firn_flush_failures_total"
        ) > 0),
        "flushes failed and are retried"
    );
    // A query that needs a block cannot be answered now: 503, worth retrying, not a 500.
    let (status, body) = server.merge(&format!("{CPU}{{service_name=\"outage\"}}"), "folded");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("unavailable"), "{body}");

    // The store is back: the backlog flushes and writes are taken again.
    std::fs::remove_file(&objects).expect("unblock");
    std::fs::rename(&away, &objects).expect("move the store back");
    let mut n = 10_000;
    assert!(
        wait_until(Duration::from_secs(60), || {
            let (status, _, _) = write(&server, n);
            if status == 200 {
                acknowledged.push(n);
                n += 1;
                true
            } else {
                false
            }
        }),
        "writes are taken again once the backlog is flushed"
    );
    let (status, folded) = server.merge(&format!("{CPU}{{service_name=\"outage\"}}"), "folded");
    assert_eq!(status, 200, "{folded}");
    for n in &acknowledged {
        assert!(
            folded.contains(&format!("main;outage;f{n} ")),
            "acknowledged write {n} is stored"
        );
    }
}

/// Writes of empty profiles add no rows, yet they are logged: a flush point without a block
/// lets the log be purged, so an idle agent cannot fill the log budget.
#[test]
fn empty_profiles_do_not_hold_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--flush-interval-secs", "1"]);
    let empty = firn_storage::testing::ProfileBuilder::cpu().gzip();
    for _ in 0..20 {
        let (status, body) = crate::harness::post(
            &format!("{}/ingest?name=idle&format=pprof", server.url),
            "application/octet-stream",
            &empty,
        );
        assert_eq!(status, 200, "{body}");
    }
    assert!(
        wait_until(Duration::from_secs(20), || metric(
            &server,
            &shard0("firn_raft_purged_index")
        ) >= 20),
        "the log is purged through the empty writes"
    );
    assert_eq!(metric(&server, "firn_blocks"), 0, "no block was needed");
}
