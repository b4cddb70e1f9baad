//! Clients that write while faults happen, recording every attempt and what was
//! acknowledged, and the checker of what they were promised.
//!
//! Every write is one folded stack of its own (`main;c<client>;w<seq>`), so the merged
//! profile says exactly which writes are stored and how many times each. A write carries an
//! `Idempotency-Key` and is retried with it (at the next node) when an attempt fails, as a
//! careful client does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cluster::TestCluster;

/// The profile type `/ingest?name=<service>.cpu` stores folded stacks as.
pub const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
/// The service every test write belongs to.
pub const SERVICE: &str = "chaos";
/// Attempts per write at most.
const ATTEMPTS: usize = 4;
/// How long a client waits for an answer; it then retries elsewhere with the same key.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a node that failed an attempt is skipped.
const BENCH: Duration = Duration::from_secs(10);

fn url_of(write: &Write) -> String {
    write
        .attempts
        .last()
        .map(|a| a.node_url.clone())
        .unwrap_or_default()
}

/// One attempt at a write.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub node_url: String,
    pub sent: Instant,
    pub answered: Instant,
    /// The HTTP status, 0 when no answer came.
    pub status: u16,
}

/// One write and its attempts.
#[derive(Clone, Debug)]
pub struct Write {
    pub stack: String,
    pub attempts: Vec<Attempt>,
}

impl Write {
    pub fn acknowledged(&self) -> bool {
        self.attempts.iter().any(|a| a.status == 200)
    }
}

/// Where writers send: node URLs, changed by the test as nodes come and go.
pub type Targets = Arc<RwLock<Vec<String>>>;

/// Writer threads and what they recorded.
#[derive(Debug)]
pub struct Writers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub log: Arc<Mutex<Vec<Write>>>,
}

impl Writers {
    /// Starts `clients` writers; each cycles through `targets`, pausing `pause` between
    /// writes.
    pub fn start(clients: usize, targets: Targets, pause: Duration) -> Self {
        Self::start_named(clients, targets, pause, "c")
    }

    /// [`Writers::start`] with client names starting with `prefix` (to tell writer groups
    /// apart).
    pub fn start_named(clients: usize, targets: Targets, pause: Duration, prefix: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|c| {
                let (stop, log, targets) = (stop.clone(), log.clone(), targets.clone());
                let client = format!("{prefix}{c}");
                std::thread::spawn(move || writer(&client, c, &targets, &stop, &log, pause))
            })
            .collect();
        Self { stop, threads, log }
    }

    /// Stops the writers (each finishes the write it is on) and returns what they recorded.
    pub fn finish(self) -> Vec<Write> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let log = self.log.lock().expect("log lock");
        log.clone()
    }

    /// Writes acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.log
            .lock()
            .expect("log lock")
            .iter()
            .filter(|w| w.acknowledged())
            .count()
    }

    /// Waits for the first write sent after `at` to be acknowledged; returns when it was.
    pub fn first_ack_after(&self, at: Instant, deadline: Duration) -> Option<Instant> {
        let mut found = None;
        crate::wait_until(deadline, || {
            let log = self.log.lock().expect("log lock");
            found = log
                .iter()
                .flat_map(|w| &w.attempts)
                .filter(|a| a.status == 200 && a.sent > at)
                .map(|a| a.answered)
                .min();
            found.is_some()
        });
        found
    }

    /// Waits until `more` writes beyond those acknowledged now are acknowledged; false on
    /// timeout.
    pub fn wait_for_more(&self, more: usize, deadline: Duration) -> bool {
        let since = self.acknowledged();
        crate::wait_until(deadline, || self.acknowledged() >= since + more)
    }
}

fn writer(
    client: &str,
    offset: usize,
    targets: &Targets,
    stop: &AtomicBool,
    log: &Mutex<Vec<Write>>,
    pause: Duration,
) {
    let agent = ureq::AgentBuilder::new().timeout(CLIENT_TIMEOUT).build();
    let mut turn = offset;
    // Nodes that failed an attempt lately are skipped for a while, as a load balancer would.
    let mut benched: BTreeMap<String, Instant> = BTreeMap::new();
    for seq in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let stack = format!("main;{client};w{seq}");
        let key = format!("{client}-{seq}");
        let mut write = Write {
            stack: stack.clone(),
            attempts: Vec::new(),
        };
        for _ in 0..ATTEMPTS {
            let url = {
                let t = targets.read().expect("targets lock");
                if t.is_empty() {
                    break;
                }
                let now = Instant::now();
                benched.retain(|_, until| *until > now);
                let pick = (0..t.len())
                    .map(|k| &t[(turn + k) % t.len()])
                    .find(|u| !benched.contains_key(*u))
                    .unwrap_or(&t[turn % t.len()]);
                pick.clone()
            };
            turn += 1;
            let sent = Instant::now();
            let status = match agent
                .post(&format!(
                    "{url}/ingest?name={SERVICE}.cpu%7Bclient%3D{client}%7D&format=folded"
                ))
                .set("Idempotency-Key", &key)
                .send_string(&format!("{stack} 1\n"))
            {
                Ok(r) => r.status(),
                Err(ureq::Error::Status(code, _)) => code,
                Err(_) => 0,
            };
            write.attempts.push(Attempt {
                node_url: url,
                sent,
                answered: Instant::now(),
                status,
            });
            if status == 200 || (400..500).contains(&status) {
                break;
            }
            benched.insert(url_of(&write), Instant::now() + BENCH);
            std::thread::sleep(Duration::from_millis(100));
        }
        log.lock().expect("log lock").push(write);
        std::thread::sleep(pause);
    }
}

/// The merged profile of the test service on one node: stack → value.
pub fn stored(node_url: &str) -> Result<BTreeMap<String, i64>, String> {
    let selector = format!("{CPU}{{service_name=\"{SERVICE}\"}}");
    let url = format!(
        "{node_url}/api/v1/merge?query={}&from=now-6h&until=now%2B1h&format=folded",
        encode(&selector)
    );
    let text = match ureq::get(&url).timeout(Duration::from_secs(60)).call() {
        Ok(r) => r.into_string().map_err(|e| e.to_string())?,
        Err(ureq::Error::Status(code, r)) => {
            return Err(format!("{code}: {}", r.into_string().unwrap_or_default()));
        }
        Err(e) => return Err(e.to_string()),
    };
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let (stack, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| format!("not a folded line: {line:?}"))?;
        let value: i64 = value
            .parse()
            .map_err(|_| format!("bad value in {line:?}"))?;
        *out.entry(stack.to_owned()).or_default() += value;
    }
    Ok(out)
}

/// Percent-encodes everything but URL-safe characters (for query values).
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What the checker found.
#[derive(Debug)]
pub struct Verdict {
    pub acknowledged: usize,
    pub stored: usize,
}

/// The promise: every acknowledged write is stored exactly once, nothing is stored that was
/// not written, and every node in `nodes` answers the same. Retries queries for a while, as
/// nodes may still be catching up after the faults healed.
pub fn check(cluster: &TestCluster, writes: &[Write], nodes: &[usize]) -> Verdict {
    let acked: BTreeSet<&str> = writes
        .iter()
        .filter(|w| w.acknowledged())
        .map(|w| w.stack.as_str())
        .collect();
    let written: BTreeSet<&str> = writes.iter().map(|w| w.stack.as_str()).collect();
    let mut last_problem = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match check_once(cluster, &acked, &written, nodes) {
            Ok(stored) => {
                return Verdict {
                    acknowledged: acked.len(),
                    stored,
                };
            }
            Err(problem) => last_problem = problem,
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!(
        "the promise is broken: {last_problem}\n{} acknowledged of {} written\n{}",
        acked.len(),
        written.len(),
        cluster.logs()
    );
}

fn check_once(
    cluster: &TestCluster,
    acked: &BTreeSet<&str>,
    written: &BTreeSet<&str>,
    nodes: &[usize],
) -> Result<usize, String> {
    let mut first: Option<(u64, BTreeMap<String, i64>)> = None;
    for &i in nodes {
        let node = &cluster.nodes[i];
        let got = stored(&node.url()).map_err(|e| format!("node {}: {e}", node.spec.id))?;
        // One write's value (the profile's period times 1).
        let unit = got.values().copied().min().unwrap_or(1);
        let lost: Vec<&&str> = acked.iter().filter(|s| !got.contains_key(**s)).collect();
        if !lost.is_empty() {
            return Err(format!(
                "node {}: {} acknowledged writes are missing, first {:?}",
                node.spec.id,
                lost.len(),
                &lost[..lost.len().min(5)]
            ));
        }
        let twice: Vec<(&String, &i64)> = got.iter().filter(|(_, v)| **v != unit).collect();
        if !twice.is_empty() {
            return Err(format!(
                "node {}: {} writes are stored more than once (one write is {unit}), first {:?}",
                node.spec.id,
                twice.len(),
                &twice[..twice.len().min(5)]
            ));
        }
        let phantom: Vec<&String> = got
            .keys()
            .filter(|s| !written.contains(s.as_str()))
            .collect();
        if !phantom.is_empty() {
            return Err(format!(
                "node {}: stacks nobody wrote: {:?}",
                node.spec.id,
                &phantom[..phantom.len().min(5)]
            ));
        }
        match &first {
            None => first = Some((node.spec.id, got)),
            Some((id, other)) if *other != got => {
                return Err(format!(
                    "nodes {id} and {} answer differently ({} and {} stacks)",
                    node.spec.id,
                    other.len(),
                    got.len()
                ));
            }
            Some(_) => {}
        }
    }
    Ok(first.map_or(0, |(_, m)| m.len()))
}
