//! `firn-cluster-tests`: a harness that runs real `firn serve` processes, each with its own
//! data directory, over a real S3-compatible server (moto), injects faults and checks what
//! clients were promised.
//!
//! ```text
//!  Net      as root: one network namespace per node on a bridge (partitions are blackhole
//!           routes between namespaces); otherwise loopback, and partition tests skip
//!  S3       moto_server from a Python venv (set up here if .ci/test did not), SIGSTOP = outage
//!  Node     one firn process: SIGKILL, SIGSTOP/SIGCONT, SIGTERM, restart on its data
//!  Cluster  nodes formed with --peers, grown with --join, status from /api/v1/cluster
//!  Writers  client threads writing unique stacks, recording what was acknowledged
//!  check    every acknowledged write is queryable exactly once, on every node alike
//! ```
//!
//! Tests narrate their phases on stderr and wait for conditions, never for fixed sleeps
//! where a condition exists.

pub mod binary;
pub mod client;
pub mod cluster;
pub mod net;
pub mod node;
pub mod s3;

use std::time::{Duration, Instant};

/// Waits until `condition` holds or `deadline` passes; true if it held.
pub fn wait_until(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}

/// Prints a test's phase, with the time since the test began.
pub fn narrate(started: Instant, what: &str) {
    eprintln!("[{:>6.1} s] {what}", started.elapsed().as_secs_f64());
}

/// Scenarios share the machine: one runs at a time.
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sends a signal to a process (`kill -<signal> <pid>`); false if it is gone.
pub fn signal(pid: u32, signal: &str) -> bool {
    std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
