//! Server benchmark over real `firn serve` processes and HTTP: ingest throughput with the
//! fsynced Raft log (MB/s, samples/s), acknowledgement latency at half of that peak (p50,
//! p99), and the restart cost with a large unflushed log (as after an object-store outage).
//!
//! `cargo bench -p firn-node --bench server` (env `FIRN_BENCH_PEAK_MIB`: bytes sent at peak,
//! default 512; `FIRN_BENCH_LOG_MIB`: unflushed log before the restart, default 1024;
//! `FIRN_BENCH_CLIENTS`: concurrent clients, default 8; `FIRN_BENCH_DIR`: keep the restarted
//! node's data directory there). Prints a markdown table on stderr.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use firn_storage::testing::workload::{Rng, cpu_profile, stack_universe};

const SAMPLES_PER_PROFILE: usize = 500;
/// Distinct profiles generated; the ingest phases cycle through them, each post with its own
/// time window, so every post is a new profile to the store.
const DISTINCT_PROFILES: usize = 400;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn spawn(data_dir: &Path) -> (Child, String) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_firn"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data_dir)
        // An object-store outage, as far as the log is concerned: nothing flushes.
        .args(["--flush-bytes", &(16u64 << 30).to_string()])
        .args(["--flush-interval-secs", "86400"])
        .args(["--buffer-bytes", &(16u64 << 30).to_string()])
        .args(["--log-budget-bytes", &(8u64 << 30).to_string()])
        .env("FIRN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn firn serve");
    (child, format!("http://127.0.0.1:{port}"))
}

/// Polls `/ready` until it answers; returns the time it took.
fn wait_ready(url: &str, child: &mut Child) -> Duration {
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("firn serve exited: {status}");
        }
        if ureq::get(&format!("{url}/ready")).call().is_ok() {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(600), "not ready");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One acknowledged ingest: `n` picks the profile and its time window. Returns the bytes sent.
fn post(agent: &ureq::Agent, url: &str, profiles: &[Vec<u8>], n: usize) -> usize {
    let body = &profiles[n % profiles.len()];
    let from = 1_700_000_000 + n as u64 * 10;
    let response = agent
        .post(&format!(
            "{url}/ingest?name=bench.cpu{{pod=\"pod-{}\"}}&from={from}&until={}&format=pprof",
            n % 50,
            from + 10
        ))
        .set("Content-Type", "application/octet-stream")
        .send_bytes(body);
    match response {
        Ok(r) if r.status() == 200 => body.len(),
        Ok(r) => panic!("ingest answered {}", r.status()),
        Err(e) => panic!("ingest failed: {e}"),
    }
}

/// `posts` acknowledged ingests from `clients` closed-loop clients, numbered from `first`;
/// returns the time and the bytes sent.
fn closed_loop(
    url: &str,
    profiles: &[Vec<u8>],
    clients: usize,
    first: usize,
    posts: usize,
) -> (Duration, usize) {
    let sent = AtomicUsize::new(0);
    let bytes = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..clients {
            let (sent, bytes) = (&sent, &bytes);
            s.spawn(move || {
                let agent = ureq::AgentBuilder::new().build();
                loop {
                    let n = sent.fetch_add(1, Ordering::Relaxed);
                    if n >= posts {
                        return;
                    }
                    bytes.fetch_add(post(&agent, url, profiles, first + n), Ordering::Relaxed);
                }
            });
        }
    });
    (started.elapsed(), bytes.load(Ordering::Relaxed))
}

/// The node's `firn_log_bytes`: Raft log not yet purged.
fn log_bytes(url: &str) -> u64 {
    ureq::get(&format!("{url}/metrics"))
        .call()
        .ok()
        .and_then(|r| r.into_string().ok())
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("firn_log_bytes "))
                .and_then(|v| v.parse().ok())
        })
        .expect("firn_log_bytes")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let log_target = env_usize("FIRN_BENCH_LOG_MIB", 1024) << 20;
    let clients = env_usize("FIRN_BENCH_CLIENTS", 8);
    let mut rng = Rng(7);
    let universe = stack_universe(&mut rng, 4000);
    let profiles: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..DISTINCT_PROFILES)
            .map(|i| {
                cpu_profile(
                    &mut rng,
                    &universe,
                    SAMPLES_PER_PROFILE,
                    1_700_000_000_000_000_000 + i as i64,
                )
            })
            .collect(),
    );
    let mean_bytes = profiles.iter().map(Vec::len).sum::<usize>() / profiles.len();
    let peak_target = env_usize("FIRN_BENCH_PEAK_MIB", 512) << 20;
    let temp = tempfile::tempdir().expect("tempdir");
    let (mut child, url) = spawn(&temp.path().join("peak"));
    wait_ready(&url, &mut child);

    // Peak: `clients` closed-loop clients.
    let peak_posts = peak_target.div_ceil(mean_bytes);
    let (peak_time, peak_bytes) = closed_loop(&url, &profiles, clients, 0, peak_posts);
    let peak_rate = peak_posts as f64 / peak_time.as_secs_f64();

    // Half of peak, open loop: posts start on a fixed schedule whatever the answers do.
    let half_rate = peak_rate / 2.0;
    let latency_posts = ((half_rate * 20.0) as usize).clamp(100, 4000);
    let interval = Duration::from_secs_f64(1.0 / half_rate);
    let latencies = Mutex::new(Vec::with_capacity(latency_posts));
    let next = AtomicUsize::new(0);
    let schedule = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..clients * 2 {
            let (next, latencies, profiles, url) = (&next, &latencies, &profiles, &url);
            s.spawn(move || {
                let agent = ureq::AgentBuilder::new().build();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= latency_posts {
                        return;
                    }
                    let due = schedule + interval * k as u32;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let t = Instant::now();
                    post(&agent, url, profiles, peak_posts + k);
                    latencies.lock().expect("lock").push(t.elapsed());
                }
            });
        }
    });
    let mut latencies = latencies.into_inner().expect("lock");
    latencies.sort();
    let achieved = latency_posts as f64 / schedule.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();

    // Restart: a node whose log holds `log_target` bytes, SIGKILL, then the time until it
    // serves again (the replay is done by then). FIRN_BENCH_DIR keeps this node's data
    // directory (to profile a restart by hand, for example).
    let dir =
        std::env::var_os("FIRN_BENCH_DIR").map_or_else(|| temp.path().join("restart"), Into::into);
    let (mut child, url) = spawn(&dir);
    wait_ready(&url, &mut child);
    let mut n = 0;
    while log_bytes(&url) < log_target as u64 {
        let posts = (log_target as u64 - log_bytes(&url)).div_ceil(mean_bytes as u64) as usize;
        closed_loop(&url, &profiles, clients, n, posts);
        n += posts;
    }
    let logged = log_bytes(&url);
    child.kill().expect("kill");
    child.wait().expect("wait");
    let (mut child, url) = spawn(&dir);
    let restart = wait_ready(&url, &mut child);
    let status = ureq::get(&format!(
        "{url}/api/v1/merge?query=process_cpu:cpu:nanoseconds:cpu:nanoseconds{{service_name=\"bench\"}}&from=1600000000&until=1800000000&format=top"
    ))
    .call()
    .map(|r| r.status())
    .unwrap_or(0);
    assert_eq!(status, 200, "query after restart");
    let _ = child.kill();
    let _ = child.wait();

    eprintln!("| measure | value |");
    eprintln!("|---|---|");
    eprintln!(
        "| ingest peak, {clients} clients, gzipped pprof of {SAMPLES_PER_PROFILE} stacks (~{} KiB each) | {:.1} MB/s, {:.0} samples/s, {:.0} requests/s |",
        mean_bytes / 1024,
        peak_bytes as f64 / 1e6 / peak_time.as_secs_f64(),
        (peak_posts * SAMPLES_PER_PROFILE) as f64 / peak_time.as_secs_f64(),
        peak_rate
    );
    eprintln!(
        "| ack latency at half of peak ({half_rate:.0} requests/s offered, {achieved:.0} achieved, {} requests) | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms |",
        latencies.len(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
    eprintln!(
        "| restart with {:.0} MiB of unflushed log, until /ready | {:.2} s |",
        logged as f64 / (1 << 20) as f64,
        restart.as_secs_f64()
    );
}
