//! Cluster benchmark over real `firn serve` processes on this machine, side by side in one
//! run: ingest throughput of three nodes with replication factor 3 against one node (same
//! workload, same S3 server, same clients), the time from killing a leader to the next
//! acknowledged write, and the latency of a merge over every shard against the same data on
//! one node.
//!
//! `cargo bench -p firn-cluster-tests --bench cluster` (env `FIRN_BENCH_POSTS`: profiles sent
//! per ingest phase, default 3000; `FIRN_BENCH_CLIENTS`: concurrent clients, default 16;
//! `FIRN_BENCH_KILLS`: leader kills, default 5). Prints a markdown table on stderr.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use firn_cluster_tests::client::{Writers, encode};
use firn_cluster_tests::cluster::{Options, READY, TestCluster};
use firn_storage::testing::workload::{Rng, cpu_profile, stack_universe};

const SAMPLES_PER_PROFILE: usize = 500;
const DISTINCT_PROFILES: usize = 400;
const MERGE: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name=\"bench\"}";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One acknowledged ingest of profile `n` (each with its own pod and time window).
fn post(agent: &ureq::Agent, url: &str, profiles: &[Vec<u8>], n: usize) -> usize {
    let body = &profiles[n % profiles.len()];
    let from = 1_700_000_000 + n as u64 * 10;
    for _ in 0..20 {
        let response = agent
            .post(&format!(
                "{url}/ingest?name=bench%7Bpod%3D%22pod-{}%22%7D&from={from}&until={}&format=pprof",
                n % 50,
                from + 10
            ))
            .set("Content-Type", "application/octet-stream")
            .set("Idempotency-Key", &format!("bench-{n}"))
            .send_bytes(body);
        match response {
            Ok(r) if r.status() == 200 => return body.len(),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    panic!("ingest of profile {n} failed 20 times");
}

/// `posts` profiles from `clients` closed-loop clients spread over `urls`; returns the time
/// and the bytes sent.
fn ingest(
    urls: &[String],
    profiles: &[Vec<u8>],
    clients: usize,
    posts: usize,
) -> (Duration, usize) {
    let next = AtomicUsize::new(0);
    let bytes = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for c in 0..clients {
            let (next, bytes) = (&next, &bytes);
            let url = urls[c % urls.len()].clone();
            s.spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(60))
                    .build();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= posts {
                        return;
                    }
                    bytes.fetch_add(post(&agent, &url, profiles, n), Ordering::Relaxed);
                }
            });
        }
    });
    (started.elapsed(), bytes.load(Ordering::Relaxed))
}

/// Merge latencies over everything ingested, `rounds` times, sorted, and the merged total
/// (the same data must merge to the same total however many shards hold it).
fn merge_latencies(url: &str, rounds: usize) -> (Vec<Duration>, i64) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build();
    let query = format!(
        "{url}/api/v1/merge?query={}&from=1699999000&until=1800000000&format=top",
        encode(MERGE)
    );
    let mut total = 0;
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            let r = agent.get(&query).call().expect("merge answers");
            assert_eq!(r.status(), 200);
            let body = r.into_string().expect("a body");
            let elapsed = t.elapsed();
            let top: serde_json::Value = serde_json::from_str(&body).expect("a top table");
            total = top
                .as_array()
                .expect("rows")
                .iter()
                .map(|row| row["flat"].as_i64().unwrap_or(0))
                .sum();
            elapsed
        })
        .collect();
    times.sort();
    (times, total)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Ingest then merge on a cluster of `options`; returns (MB/s, samples/s, merge p50, p90,
/// merged total).
fn measure(
    options: Options,
    profiles: &[Vec<u8>],
    clients: usize,
    posts: usize,
) -> (f64, f64, Duration, Duration, i64) {
    let cluster = TestCluster::start(options);
    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.url()).collect();
    // A warm-up, then the measured phase.
    ingest(&urls, profiles, clients, posts / 10);
    let (time, bytes) = ingest(&urls, profiles, clients, posts);
    let mbps = bytes as f64 / 1e6 / time.as_secs_f64();
    let samples = (posts * SAMPLES_PER_PROFILE) as f64 / time.as_secs_f64();
    let (merges, total) = merge_latencies(&urls[0], 11);
    if total == 0 {
        let types = ureq::get(&format!(
            "{}/api/v1/profile-types?from=1699999000&until=1800000000",
            urls[0]
        ))
        .call()
        .ok()
        .and_then(|r| r.into_string().ok());
        eprintln!("the merge found nothing; profile types stored: {types:?}");
    }
    (
        mbps,
        samples,
        percentile(&merges, 0.5),
        percentile(&merges, 0.9),
        total,
    )
}

fn main() {
    let posts = env_usize("FIRN_BENCH_POSTS", 3000);
    let clients = env_usize("FIRN_BENCH_CLIENTS", 16);
    let kills = env_usize("FIRN_BENCH_KILLS", 5);
    let mut rng = Rng(7);
    let universe = stack_universe(&mut rng, 4000);
    let profiles: Vec<Vec<u8>> = (0..DISTINCT_PROFILES)
        .map(|i| {
            cpu_profile(
                &mut rng,
                &universe,
                SAMPLES_PER_PROFILE,
                1_700_000_000_000_000_000 + i as i64,
            )
        })
        .collect();
    let mean_bytes = profiles.iter().map(Vec::len).sum::<usize>() / profiles.len();

    let one = measure(
        Options {
            nodes: 1,
            max_nodes: 1,
            shards: 1,
            replication_factor: 1,
            flush_interval_secs: 10,
            ..Default::default()
        },
        &profiles,
        clients,
        posts,
    );
    let three = measure(
        Options {
            nodes: 3,
            max_nodes: 3,
            shards: 3,
            replication_factor: 3,
            flush_interval_secs: 10,
            ..Default::default()
        },
        &profiles,
        clients,
        posts,
    );

    // Killing the leader of the only shard, while clients write: the time until a write sent
    // after the kill is acknowledged.
    let mut cluster = TestCluster::start(Options {
        shards: 1,
        max_nodes: 3,
        ..Default::default()
    });
    let targets = Arc::new(RwLock::new(
        cluster.nodes.iter().map(|n| n.url()).collect::<Vec<_>>(),
    ));
    let writers = Writers::start(3, targets, Duration::from_millis(10));
    assert!(writers.wait_for_more(50, Duration::from_secs(30)));
    let mut recoveries = Vec::new();
    for _ in 0..kills {
        let leader = cluster.shard_leader(0).expect("a leader");
        let i = cluster.index(leader);
        let killed = Instant::now();
        cluster.nodes[i].kill();
        // When a survivor first names another leader: the election's share of the recovery.
        let survivors: Vec<String> = (0..cluster.nodes.len())
            .filter(|&k| k != i)
            .map(|k| cluster.nodes[k].url())
            .collect();
        let elected = firn_cluster_tests::wait_until(Duration::from_secs(30), || {
            survivors.iter().any(|url| {
                ureq::get(&format!("{url}/api/v1/cluster"))
                    .timeout(Duration::from_millis(500))
                    .call()
                    .ok()
                    .and_then(|r| r.into_string().ok())
                    .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
                    .and_then(|v| v["shards"][0]["leader"].as_u64())
                    .is_some_and(|l| l != leader)
            })
        })
        .then(|| killed.elapsed());
        let ack = writers
            .first_ack_after(killed, Duration::from_secs(60))
            .expect("writes go on");
        eprintln!(
            "kill of node {leader}: another leader named after {:.2} s, next write acknowledged after {:.2} s",
            elected.map_or(f64::NAN, |d| d.as_secs_f64()),
            (ack - killed).as_secs_f64()
        );
        recoveries.push(ack - killed);
        cluster.nodes[i].start();
        cluster.nodes[i].wait_ready(READY);
        cluster.wait_settled(READY);
    }
    drop(writers.finish());
    recoveries.sort();
    // FIRN_BENCH_LOGS=<dir> keeps the nodes' logs of the kills.
    if let Ok(dir) = std::env::var("FIRN_BENCH_LOGS") {
        for (k, node) in cluster.nodes.iter().enumerate() {
            let _ = std::fs::copy(node.log_path(), format!("{dir}/node-{}.log", k + 1));
        }
    }

    assert!(
        one.4 > 0 && three.4 > 0,
        "both merges find the samples (totals {} and {})",
        one.4,
        three.4
    );
    assert_eq!(
        one.4, three.4,
        "both clusters merge the same data to the same total"
    );
    eprintln!("| measure | one node | 3 nodes, RF 3 | ratio |");
    eprintln!("|---|---|---|---|");
    eprintln!(
        "| ingest, {clients} clients, {posts} gzipped pprof of {SAMPLES_PER_PROFILE} stacks (~{} KiB each) | {:.1} MB/s, {:.0} samples/s | {:.1} MB/s, {:.0} samples/s | {:.2} |",
        mean_bytes / 1024,
        one.0,
        one.1,
        three.0,
        three.1,
        three.0 / one.0
    );
    eprintln!(
        "| merge of all {} samples into a top table (p50 / p90 of 11) | {:.0} / {:.0} ms | {:.0} / {:.0} ms (3 shards) | {:.2} |",
        posts * SAMPLES_PER_PROFILE * 11 / 10,
        ms(one.2),
        ms(one.3),
        ms(three.2),
        ms(three.3),
        three.2.as_secs_f64() / one.2.as_secs_f64()
    );
    eprintln!(
        "| kill the leader → next acknowledged write ({kills} kills) | | p50 {:.2} s, max {:.2} s | |",
        percentile(&recoveries, 0.5).as_secs_f64(),
        recoveries.last().map_or(0.0, |d| d.as_secs_f64())
    );
}
