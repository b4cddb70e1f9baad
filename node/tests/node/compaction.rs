//! Compaction on a live node: per-flush blocks holding two tenants become one block per
//! tenant and window; every query answers the same before and after; the blocks compacted
//! away are deleted once the delay has passed; the metrics count the work.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use crate::harness::{CPU, Server, metric, now_nanos, urlencode, wait_until};

/// Block directories under the data dir's object store, by shard: their ids.
fn blocks(data: &Path) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut stack = vec![data.join("objects")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "samples.parquet") {
                let id = path
                    .parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                out.entry(id[..5].to_owned()).or_default().push(id);
            }
        }
    }
    out
}

/// Directories under any `blocks` directory of the object store, empty or not.
fn block_dirs(data: &Path) -> usize {
    let mut count = 0;
    let mut stack = vec![data.join("objects")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
            if dir.file_name().is_some_and(|n| n == "blocks") {
                count += 1;
            }
            stack.push(path);
        }
    }
    count
}

fn ingest(server: &Server, tenant: &str, from_secs: i64, text: &str) {
    let url = format!(
        "{}/ingest?name={}&format=folded&from={from_secs}&until={}",
        server.url,
        urlencode("app.cpu{pod=\"p1\"}"),
        from_secs + 10
    );
    let r = ureq::post(&url)
        .set("X-Scope-OrgID", tenant)
        .set("Content-Type", "text/plain")
        .send_string(text)
        .expect("ingest");
    assert_eq!(r.status(), 200);
}

/// Merged folded stacks and series over a fixed hour around `base` (fixed, so the series'
/// steps fall alike on every call).
fn merged(server: &Server, tenant: &str, base: i64) -> BTreeSet<String> {
    let url = format!(
        "{}/api/v1/merge?query={}&from={}&until={}&format=folded",
        server.url,
        urlencode(&format!("{CPU}{{}}")),
        base - 600,
        base + 3000
    );
    let text = ureq::get(&url)
        .set("X-Scope-OrgID", tenant)
        .call()
        .expect("merge")
        .into_string()
        .expect("body");
    text.lines().map(str::to_owned).collect()
}

fn series(server: &Server, tenant: &str, base: i64) -> String {
    let url = format!(
        "{}/api/v1/series?query={}&from={}&until={}&step=60",
        server.url,
        urlencode(&format!("{CPU}{{}}")),
        base - 600,
        base + 3000
    );
    ureq::get(&url)
        .set("X-Scope-OrgID", tenant)
        .call()
        .expect("series")
        .into_string()
        .expect("body")
}

#[test]
fn flushed_blocks_become_one_block_per_tenant_and_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        dir.path(),
        &[
            "--flush-interval-secs",
            "1",
            "--compaction-interval-secs",
            "1",
            "--compaction-delete-delay-secs",
            "2",
        ],
    );
    // The start of an hour that ended over an hour ago: every round falls in one window that
    // is over, so each flush is compacted as it lands.
    let base = (now_nanos() / 1_000_000_000 - 3 * 3600) / 3600 * 3600 + 60;
    for round in 0..3i64 {
        let flushes = metric(&server, "firn_flushes_total");
        for (tenant, frame) in [("alpha", "alpha_work"), ("beta", "beta_work")] {
            ingest(
                &server,
                tenant,
                base + round * 60,
                &format!("main;{frame} {}\nmain;shared_{round} 7\n", 10 + round),
            );
        }
        assert!(
            wait_until(Duration::from_secs(30), || metric(
                &server,
                "firn_flushes_total"
            ) > flushes),
            "round {round} flushed"
        );
    }
    let before: Vec<(BTreeSet<String>, String)> = ["alpha", "beta"]
        .iter()
        .map(|t| (merged(&server, t, base), series(&server, t, base)))
        .collect();
    assert!(before[0].0.iter().any(|l| l.contains("alpha_work")));
    assert!(!before[0].0.iter().any(|l| l.contains("beta_work")));

    // Settled: no job waiting, and every block left is a compaction's output, one per shard
    // and tenant.
    let settled = wait_until(Duration::from_secs(60), || {
        let all = blocks(dir.path());
        metric(&server, "firn_compaction_pending_jobs") == 0
            && !all.is_empty()
            && all.values().flatten().all(|id| id.contains("-c-"))
    });
    assert!(settled, "blocks left: {:?}", blocks(dir.path()));
    // A deleted block leaves no empty directory behind (a laptop node flushing every few
    // seconds would otherwise gather tens of thousands a day).
    let live: usize = blocks(dir.path()).values().map(Vec::len).sum();
    assert_eq!(
        block_dirs(dir.path()),
        live,
        "block directories beyond the live blocks"
    );
    for (shard, ids) in blocks(dir.path()) {
        let tenants: Vec<&str> = ids
            .iter()
            .map(|id| id.rsplit('-').nth(1).expect("the tenant part"))
            .collect();
        let distinct: BTreeSet<&&str> = tenants.iter().collect();
        assert_eq!(
            distinct.len(),
            tenants.len(),
            "shard {shard}: one block per tenant and window: {ids:?}"
        );
    }
    assert!(metric(&server, "firn_compactions_total") >= 2);
    assert!(metric(&server, "firn_compaction_output_bytes_total") > 0);
    assert_eq!(metric(&server, "firn_compaction_failures_total"), 0);

    let after: Vec<(BTreeSet<String>, String)> = ["alpha", "beta"]
        .iter()
        .map(|t| (merged(&server, t, base), series(&server, t, base)))
        .collect();
    assert_eq!(after, before, "every query answers the same");
}
