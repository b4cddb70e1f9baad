//! Tenant isolation over a real `firn serve` process and HTTP: a quiet tenant's write and
//! merge latencies alone and beside a noisy tenant whose clients write as fast as they can
//! at its ingestion rate limit (and mostly get 429). Phases of the two kinds alternate in one
//! run, so whatever else the machine does falls on both.
//!
//! ```text
//!  quiet: 1 client, a write then a merge, timed ─┐
//!                                                ├─► firn serve --auth none (X-Scope-OrgID)
//!  noisy: N clients, writes flat out ────────────┘   noisy held to 2 MiB/s, 4 MiB burst
//! ```
//!
//! `cargo bench -p firn-node --bench tenancy` (env `FIRN_BENCH_ROUNDS`: quiet rounds per
//! phase, default 200; `FIRN_BENCH_NOISY_CLIENTS`: default 8; `FIRN_BENCH_PHASES`: phases of
//! each kind, default 3). Prints a markdown table on stderr. Fails if the noisy tenant got
//! no 429, was admitted past its limit or starved below it, if the quiet tenant saw any error,
//! or if a quiet merge answered anything but its own preloaded data.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use firn_node::cli::urlencode;
use firn_storage::testing::workload::{Rng, cpu_profile, stack_universe};

const QUIET: &str = "quiet";
const NOISY: &str = "noisy";
/// Both tenants write this service, so a merge that saw the noisy tenant's data would differ
/// from the quiet tenant's reference answer.
const SERVICE: &str = "bench";
/// The quiet tenant's timed writes go to another service: its merges do the same work in
/// every phase, however many rounds came before.
const QUIET_WRITES: &str = "bench-writes";
const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const NOISY_RATE: usize = 2 << 20;
const NOISY_BURST: usize = 4 << 20;
const PRELOAD: usize = 200;
const SAMPLES_PER_PROFILE: usize = 500;
const WARMUP_ROUNDS: usize = 20;

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

/// A `firn serve` process, killed when dropped (so a failed assertion leaves none behind).
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(data_dir: &Path) -> (Node, String) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_firn"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--flush-interval-secs", "5"])
        .env("FIRN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn firn serve");
    (Node(child), format!("http://127.0.0.1:{port}"))
}

/// Polls `condition` every 20 ms until it holds; panics after `deadline`.
fn wait_until(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The status and body of an answer; status 0 when there was none.
fn answer(response: Result<ureq::Response, ureq::Error>) -> (u16, String) {
    match response {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

/// One `/ingest` of a gzipped pprof as `tenant`.
fn post(agent: &ureq::Agent, url: &str, tenant: &str, service: &str, body: &[u8]) -> (u16, String) {
    answer(
        agent
            .post(&format!("{url}/ingest?name={service}&format=pprof"))
            .set("X-Scope-OrgID", tenant)
            .set("Content-Type", "application/octet-stream")
            .send_bytes(body),
    )
}

/// The sum of a metric's series in `/metrics`.
fn metric(url: &str, name: &str) -> f64 {
    let (status, text) = answer(ureq::get(&format!("{url}/metrics")).call());
    assert_eq!(status, 200, "/metrics: {text}");
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with([' ', '{']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The quiet tenant's client: its merge, and the answer every merge must give.
struct Quiet<'a> {
    agent: ureq::Agent,
    url: &'a str,
    merge_url: String,
    expected: String,
}

impl<'a> Quiet<'a> {
    /// Writes the quiet tenant's `profiles`, waits until they are flushed to blocks, and takes
    /// the merge every round must answer.
    fn preload(url: &'a str, profiles: &[Vec<u8>]) -> Self {
        let agent = ureq::AgentBuilder::new().build();
        for body in profiles {
            let (status, text) = post(&agent, url, QUIET, SERVICE, body);
            assert_eq!(status, 200, "preloading the quiet tenant: {text}");
        }
        wait_until("the preload is flushed", Duration::from_secs(120), || {
            metric(url, "firn_buffer_samples") == 0.0 && metric(url, "firn_blocks") > 0.0
        });
        let merge_url = format!(
            "{url}/api/v1/merge?query={}&from=now-1h&until=now%2B1h&format=folded",
            urlencode(&format!("{CPU}{{service_name=\"{SERVICE}\"}}"))
        );
        let (status, expected) = answer(agent.get(&merge_url).set("X-Scope-OrgID", QUIET).call());
        assert_eq!(status, 200, "the quiet tenant's merge: {expected}");
        assert!(!expected.is_empty(), "the quiet tenant's merge is empty");
        Self {
            agent,
            url,
            merge_url,
            expected,
        }
    }

    /// `rounds` of a timed write and a timed merge, or the first error.
    fn rounds(&self, profiles: &[Vec<u8>], rounds: usize) -> Result<Rounds, String> {
        let (mut writes, mut merges) = (Vec::new(), Vec::new());
        for body in profiles.iter().cycle().take(rounds) {
            let t = Instant::now();
            let (status, text) = post(&self.agent, self.url, QUIET, QUIET_WRITES, body);
            writes.push(t.elapsed());
            if status != 200 {
                return Err(format!("a quiet write answered {status}: {text}"));
            }
            let t = Instant::now();
            let (status, text) = answer(
                self.agent
                    .get(&self.merge_url)
                    .set("X-Scope-OrgID", QUIET)
                    .call(),
            );
            merges.push(t.elapsed());
            if status != 200 {
                return Err(format!("a quiet merge answered {status}: {text}"));
            }
            if text != self.expected {
                return Err(format!(
                    "a quiet merge answered {} bytes, not its {} bytes of preloaded data",
                    text.len(),
                    self.expected.len()
                ));
            }
        }
        Ok(Rounds { writes, merges })
    }
}

/// The latencies of a phase's quiet rounds.
struct Rounds {
    writes: Vec<Duration>,
    merges: Vec<Duration>,
}

/// What the noisy tenant's clients got, counted as they go.
#[derive(Default)]
struct Noisy {
    accepted: AtomicUsize,
    accepted_bytes: AtomicUsize,
    refused: AtomicUsize,
    /// An answer other than 200 or a 429 naming the rate limit; its client stops.
    unexpected: Mutex<Option<String>>,
}

impl Noisy {
    /// One client posting `profiles` in turn, as fast as the answers come, until `stop`.
    fn flood(&self, url: &str, profiles: &[Vec<u8>], stop: &AtomicBool) {
        let agent = ureq::AgentBuilder::new().build();
        for body in profiles.iter().cycle() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            match post(&agent, url, NOISY, SERVICE, body) {
                (200, _) => {
                    self.accepted.fetch_add(1, Ordering::Relaxed);
                    self.accepted_bytes.fetch_add(body.len(), Ordering::Relaxed);
                }
                (429, text) if text.contains("ingestion_rate_bytes") => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                }
                (status, text) => {
                    let mut unexpected = self.unexpected.lock().expect("lock");
                    unexpected.get_or_insert(format!("a noisy write answered {status}: {text}"));
                    return;
                }
            }
        }
    }
}

/// One noisy phase as the bench checks and reports it.
struct Flood {
    accepted: usize,
    accepted_bytes: usize,
    refused: usize,
    /// From the first client's start to the last one's end.
    elapsed: Duration,
    /// Bytes admitted after the burst was spent (the first 429), and over how long.
    steady_bytes: usize,
    steady: Duration,
}

/// Latencies of one kind of phase, over all its phases.
#[derive(Default)]
struct Latencies {
    writes: Vec<Duration>,
    merges: Vec<Duration>,
    /// Each phase's write and merge p50, to show the spread between phases.
    phases: Vec<(Duration, Duration)>,
    busy: Busy,
}

impl Latencies {
    fn add(&mut self, rounds: Rounds, busy: Busy) {
        let Rounds {
            mut writes,
            mut merges,
        } = rounds;
        self.busy.add(busy);
        writes.sort();
        merges.sort();
        self.phases
            .push((percentile(&writes, 0.5), percentile(&merges, 0.5)));
        self.writes.extend(writes);
        self.merges.extend(merges);
        self.writes.sort();
        self.merges.sort();
    }
}

/// Wall time, and the CPU time of the server and of this process (the clients) in it.
#[derive(Clone, Copy, Default)]
struct Busy {
    wall: Duration,
    server: Duration,
    clients: Duration,
}

impl Busy {
    /// Runs `phase`; its result and the times it took.
    fn of<T>(server: &str, phase: impl FnOnce() -> T) -> (T, Self) {
        let (started, server_cpu, clients_cpu) =
            (Instant::now(), cpu_time(server), cpu_time("self"));
        let result = phase();
        let busy = Self {
            wall: started.elapsed(),
            server: cpu_time(server).saturating_sub(server_cpu),
            clients: cpu_time("self").saturating_sub(clients_cpu),
        };
        (result, busy)
    }

    fn add(&mut self, other: Self) {
        self.wall += other.wall;
        self.server += other.server;
        self.clients += other.clients;
    }

    /// Cores kept busy: the server's and the clients'.
    fn cores(&self) -> String {
        let wall = self.wall.as_secs_f64();
        format!(
            "{:.2} / {:.2}",
            self.server.as_secs_f64() / wall,
            self.clients.as_secs_f64() / wall
        )
    }
}

/// User and system CPU time of a process, all its threads, from Linux's `/proc/<pid>/stat`
/// (zero elsewhere).
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command, which may hold spaces: state (field 3) first, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // Linux counts these in USER_HZ, 100 a second on every architecture.
    Duration::from_millis(ticks * 10)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// The quiet rounds beside `clients` noisy clients; the quiet rounds start once the noisy
/// tenant has spent its burst.
fn beside_noise(
    quiet: &Quiet<'_>,
    url: &str,
    profiles: &[Vec<u8>],
    rounds: usize,
    clients: usize,
) -> (Result<Rounds, String>, Flood) {
    let noisy = Noisy::default();
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let (measured, steady_from, steady_start) = std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| noisy.flood(url, profiles, &stop));
        }
        let spent = Instant::now() + Duration::from_secs(30);
        while noisy.refused.load(Ordering::Relaxed) == 0
            && noisy.unexpected.lock().expect("lock").is_none()
            && Instant::now() < spent
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let steady_from = noisy.accepted_bytes.load(Ordering::Relaxed);
        let steady_start = Instant::now();
        let measured = quiet.rounds(profiles, rounds);
        stop.store(true, Ordering::Relaxed);
        (measured, steady_from, steady_start)
    });
    let ended = Instant::now();
    if let Some(e) = noisy.unexpected.into_inner().expect("lock") {
        panic!("{e}");
    }
    let accepted_bytes = noisy.accepted_bytes.into_inner();
    let flood = Flood {
        accepted: noisy.accepted.into_inner(),
        accepted_bytes,
        refused: noisy.refused.into_inner(),
        elapsed: ended - started,
        steady_bytes: accepted_bytes - steady_from,
        steady: ended - steady_start,
    };
    (measured, flood)
}

fn main() {
    let rounds = env_usize("FIRN_BENCH_ROUNDS", 200);
    let clients = env_usize("FIRN_BENCH_NOISY_CLIENTS", 8);
    let phases = env_usize("FIRN_BENCH_PHASES", 3);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as i64;
    let mut rng = Rng(7);
    let universe = stack_universe(&mut rng, 4000);
    let profiles: Vec<Vec<u8>> = (0..PRELOAD)
        .map(|i| cpu_profile(&mut rng, &universe, SAMPLES_PER_PROFILE, now + i as i64))
        .collect();
    let mean_bytes = profiles.iter().map(Vec::len).sum::<usize>() / profiles.len();
    let largest = profiles.iter().map(Vec::len).max().expect("profiles");

    let temp = tempfile::tempdir().expect("tempdir");
    let (mut node, url) = spawn(temp.path());
    wait_until("firn serve is ready", Duration::from_secs(60), || {
        if let Ok(Some(status)) = node.0.try_wait() {
            panic!("firn serve exited: {status}");
        }
        ureq::get(&format!("{url}/ready")).call().is_ok()
    });

    let limits = serde_json::json!({
        "ingestion_rate_bytes": NOISY_RATE,
        "ingestion_burst_bytes": NOISY_BURST,
    });
    let (status, text) = answer(
        ureq::put(&format!("{url}/api/v1/admin/tenants/{NOISY}/limits"))
            .set("Content-Type", "application/json")
            .send_string(&limits.to_string()),
    );
    assert_eq!(status, 200, "setting the noisy tenant's limits: {text}");
    let set: serde_json::Value = serde_json::from_str(&text).expect("limits as JSON");
    assert_eq!(set["limits"]["ingestion_rate_bytes"], NOISY_RATE, "{text}");

    let quiet = Quiet::preload(&url, &profiles);
    quiet
        .rounds(&profiles, WARMUP_ROUNDS)
        .expect("warm-up rounds");

    let (mut alone, mut noisy) = (Latencies::default(), Latencies::default());
    let mut floods = Vec::new();
    let pid = node.0.id().to_string();
    for _ in 0..phases {
        let (measured, busy) = Busy::of(&pid, || quiet.rounds(&profiles, rounds));
        alone.add(measured.expect("quiet tenant alone"), busy);
        let ((measured, flood), busy) = Busy::of(&pid, || {
            beside_noise(&quiet, &url, &profiles, rounds, clients)
        });
        noisy.add(measured.expect("quiet tenant beside the noisy one"), busy);
        floods.push(flood);
    }
    drop(node);

    for (i, f) in floods.iter().enumerate() {
        assert!(f.refused > 0, "noisy phase {i}: no write was refused");
        let bound = NOISY_BURST as f64 + NOISY_RATE as f64 * f.elapsed.as_secs_f64();
        assert!(
            f.accepted_bytes as f64 <= bound,
            "noisy phase {i}: {} bytes admitted in {:?}, past the burst plus the rate ({bound:.0})",
            f.accepted_bytes,
            f.elapsed
        );
        // After the burst the bucket holds less than a profile; writes in flight when the
        // first 429 was seen may still land.
        let steady = NOISY_RATE as f64 * f.steady.as_secs_f64();
        assert!(
            f.steady_bytes as f64 <= steady + ((clients + 1) * largest) as f64,
            "noisy phase {i}: {} bytes admitted in {:?} after the burst, the rate allows {steady:.0}",
            f.steady_bytes,
            f.steady
        );
        assert!(
            f.steady_bytes as f64 >= steady / 2.0,
            "noisy phase {i}: {} bytes admitted in {:?}, under half its rate",
            f.steady_bytes,
            f.steady
        );
    }

    let sum = |get: fn(&Flood) -> usize| floods.iter().map(get).sum::<usize>();
    let secs = |get: fn(&Flood) -> Duration| floods.iter().map(get).sum::<Duration>().as_secs_f64();
    let (elapsed, steady) = (secs(|f| f.elapsed), secs(|f| f.steady));
    let (accepted, refused) = (sum(|f| f.accepted), sum(|f| f.refused));
    let offered = sum(|f| f.accepted + f.refused) * mean_bytes;
    let latencies = |what: &str, a: &[Duration], n: &[Duration]| {
        let at = |s: &[Duration], p| ms(percentile(s, p));
        eprintln!(
            "| quiet {what} p50 / p99 | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {:.2} / {:.2} |",
            at(a, 0.5),
            at(a, 0.99),
            at(n, 0.5),
            at(n, 0.99),
            at(n, 0.5) / at(a, 0.5),
            at(n, 0.99) / at(a, 0.99)
        );
    };

    let profile = if cfg!(debug_assertions) {
        " --profile dev"
    } else {
        ""
    };
    eprintln!(
        "command: FIRN_BENCH_ROUNDS={rounds} FIRN_BENCH_NOISY_CLIENTS={clients} \
         FIRN_BENCH_PHASES={phases} cargo bench{profile} -p firn-node --bench tenancy"
    );
    eprintln!(
        "{phases} phases of each kind, alternating, {rounds} quiet rounds (a write, then a merge \
         of {PRELOAD} profiles of {SAMPLES_PER_PROFILE} stacks) each; gzipped pprof ~{} KiB",
        mean_bytes / 1024
    );
    eprintln!();
    eprintln!("| measure | quiet alone | beside the noisy tenant | ratio |");
    eprintln!("|---|---|---|---|");
    latencies("write", &alone.writes, &noisy.writes);
    latencies("merge", &alone.merges, &noisy.merges);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    eprintln!(
        "| cores busy (of {cores}): firn serve / the bench's clients | {} | {} | |",
        alone.busy.cores(),
        noisy.busy.cores()
    );
    eprintln!(
        "| noisy admitted, after its burst (limit {:.0} MiB/s, burst {:.0} MiB) | | {:.2} MiB/s ({:.2} MiB/s over the whole phase, burst included) | |",
        mib(NOISY_RATE),
        mib(NOISY_BURST),
        mib(sum(|f| f.steady_bytes)) / steady,
        mib(sum(|f| f.accepted_bytes)) / elapsed
    );
    eprintln!(
        "| noisy writes, {clients} clients | | {accepted} accepted, {refused} refused with 429 ({:.0}/s, {:.0} MiB/s offered) | |",
        refused as f64 / elapsed,
        mib(offered) / elapsed
    );
    eprintln!();
    eprintln!("| phases in order | quiet alone, write / merge p50 | beside the noisy tenant |");
    eprintln!("|---|---|---|");
    for (i, (a, n)) in alone.phases.iter().zip(&noisy.phases).enumerate() {
        let p50s = |(w, m): &(Duration, Duration)| format!("{:.1} / {:.1} ms", ms(*w), ms(*m));
        eprintln!("| {} | {} | {} |", i + 1, p50s(a), p50s(n));
    }
}
