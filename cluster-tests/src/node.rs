//! One `firn serve` process on its host, with its own data directory; it can be killed,
//! paused, stopped gracefully and started again on the same data.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::net::Net;
use crate::wait_until;

/// How a node is started.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub id: u64,
    /// Its host on the test network.
    pub host: usize,
    pub port: u16,
    pub data_dir: PathBuf,
    /// Flags after `serve` (cluster, object store, tuning).
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// A node of a test cluster.
#[derive(Debug)]
pub struct Node {
    pub spec: NodeSpec,
    net: Arc<Net>,
    child: Option<Child>,
}

impl Node {
    /// Spawns the node (it is not waited for).
    pub fn spawn(net: Arc<Net>, spec: NodeSpec) -> Self {
        let mut node = Self {
            spec,
            net,
            child: None,
        };
        node.start();
        node
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.net.host(self.spec.host).ip, self.spec.port)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts the process on the node's data directory (after a kill or stop).
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "node {} is running", self.spec.id);
        std::fs::create_dir_all(&self.spec.data_dir).expect("data dir");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.spec.data_dir.join("firn.log"))
            .expect("log file");
        let mut command = self.net.command(self.spec.host, crate::binary::firn());
        command
            .arg("serve")
            .arg("--node-id")
            .arg(self.spec.id.to_string())
            .arg("--listen")
            .arg(self.addr())
            .arg("--data-dir")
            .arg(&self.spec.data_dir)
            .args(&self.spec.args)
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .env(
                "FIRN_LOG",
                std::env::var("FIRN_TEST_NODE_LOG").unwrap_or_else(|_| "info,openraft=warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log);
        self.child = Some(command.spawn().expect("firn starts"));
    }

    /// True once the node answers `/ready` with 200.
    pub fn ready(&self) -> bool {
        ureq::get(&format!("{}/ready", self.url()))
            .timeout(Duration::from_secs(2))
            .call()
            .is_ok()
    }

    /// Waits until the node is ready; panics (with its log's tail) if it exits or times out.
    pub fn wait_ready(&mut self, deadline: Duration) {
        let id = self.spec.id;
        let ok = wait_until(deadline, || {
            assert!(self.running(), "node {id} exited:\n{}", self.log_tail());
            self.ready()
        });
        assert!(
            ok,
            "node {id} is not ready after {deadline:?}:\n{}",
            self.log_tail()
        );
    }

    /// SIGKILL: the process dies at once, mid-whatever.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit (SIGKILL after `grace`).
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        crate::signal(c.id(), "TERM");
        let exited = wait_until(grace, || matches!(c.try_wait(), Ok(Some(_))));
        if !exited {
            eprintln!(
                "node {} did not stop within {grace:?}; killed",
                self.spec.id
            );
            let _ = c.kill();
        }
        let _ = c.wait();
    }

    /// SIGSTOP: the process is frozen (its connections stay open, nothing answers).
    pub fn pause(&self) {
        let pid = self.pid().expect("running");
        assert!(crate::signal(pid, "STOP"), "node {} paused", self.spec.id);
    }

    pub fn resume(&self) {
        let pid = self.pid().expect("running");
        assert!(crate::signal(pid, "CONT"), "node {} resumed", self.spec.id);
    }

    /// Where the node's log is (kept across restarts, removed with the cluster).
    pub fn log_path(&self) -> PathBuf {
        self.spec.data_dir.join("firn.log")
    }

    /// The last lines of the node's log, for failure messages.
    /// The node's warnings and errors (the last 100), then its last 30 lines: what a failure
    /// message needs, since the log goes with the node's temporary directory.
    pub fn log_tail(&self) -> String {
        log_tail(&self.spec.data_dir.join("firn.log"))
    }
}

/// The first panics of the log at `path` (each with the lines after it), its warnings and
/// errors (the last 100), then its last 40 lines: what a failing test prints about a node.
pub fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let panics: Vec<String> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("panicked at"))
        .take(3)
        .map(|(i, _)| lines[i..lines.len().min(i + 4)].join("\n"))
        .collect();
    let warnings: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    format!(
        "{}\n... warnings:\n{}\n... last lines:\n{}",
        panics.join("\n"),
        warnings[warnings.len().saturating_sub(100)..].join("\n"),
        lines[lines.len().saturating_sub(40)..].join("\n")
    )
}

/// A metric a node reports now (`name` with its labels, as `/metrics` prints it); 0 when the
/// node does not answer or has no such series.
pub fn metric(node: &Node, name: &str) -> u64 {
    ureq::get(&format!("{}/metrics", node.url()))
        .timeout(Duration::from_secs(5))
        .call()
        .ok()
        .and_then(|r| r.into_string().ok())
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            crate::signal(pid, "CONT");
        }
        self.kill();
    }
}
