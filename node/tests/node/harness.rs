//! Starts `firn serve` as a real process on a free port and talks HTTP to it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

/// A `firn serve` process; killed (SIGKILL) when dropped.
pub struct Server {
    child: Child,
    pub url: String,
    pub data_dir: PathBuf,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until `condition` holds or `deadline` passes.
pub fn wait_until(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}

impl Server {
    pub fn start(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(data_dir, extra, &[])
    }

    /// Starts with extra flags and environment variables.
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (child, url) = spawn(data_dir, extra, &env);
        let mut server = Self {
            child,
            url,
            data_dir: data_dir.to_owned(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let ready = wait_until(Duration::from_secs(30), || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("firn serve exited early: {status}");
            }
            ureq::get(&format!("{}/ready", self.url)).call().is_ok()
        });
        assert!(ready, "firn serve did not become ready");
    }

    /// SIGKILL, then start again on the same data directory with other flags.
    pub fn kill_and_restart_with(&mut self, extra: &[&str]) {
        self.extra = extra.iter().map(|s| s.to_string()).collect();
        self.kill_and_restart();
    }

    /// SIGKILL, then start again on the same data directory (and a new port).
    pub fn kill_and_restart(&mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        (self.child, self.url) = spawn(&self.data_dir, &extra, &self.env);
        self.wait_ready();
    }

    /// `POST /ingest` with folded text; returns the status and body.
    pub fn ingest_folded(&self, name: &str, text: &str) -> (u16, String) {
        post(
            &format!("{}/ingest?name={}&format=folded", self.url, urlencode(name)),
            "text/plain",
            text.as_bytes(),
        )
    }

    /// `GET /api/v1/merge` over the last hour in `format`.
    pub fn merge(&self, selector: &str, format: &str) -> (u16, String) {
        get(&format!(
            "{}/api/v1/merge?query={}&from=now-1h&until=now%2B1h&format={format}",
            self.url,
            urlencode(selector)
        ))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(data_dir: &Path, extra: &[&str], env: &[(String, String)]) -> (Child, String) {
    let objects = data_dir.join("objects");
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_firn"));
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"));
    if !extra.contains(&"--object-store") {
        command
            .arg("--object-store")
            .arg(format!("file://{}", objects.display()));
    }
    let child = command
        .args(extra)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("FIRN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn firn serve");
    (child, format!("http://127.0.0.1:{port}"))
}

pub fn post(url: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    let response = ureq::post(url)
        .set("Content-Type", content_type)
        .send_bytes(body);
    answer(response)
}

pub fn get(url: &str) -> (u16, String) {
    answer(ureq::get(url).call())
}

fn answer(response: Result<ureq::Response, ureq::Error>) -> (u16, String) {
    match response {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

pub use firn_node::cli::urlencode;

/// A metric's value as the node reports it now; `name` may carry labels,
/// `firn_raft_purged_index{group="0"}`.
pub fn metric(server: &Server, name: &str) -> u64 {
    let (_, metrics) = get(&format!("{}/metrics", server.url));
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {metrics}"))
}

/// The name of a shard group's series of a Raft metric (the single node's shard is 0).
pub fn shard0(name: &str) -> String {
    format!("{name}{{group=\"0\"}}")
}

/// The answer to an RPC that failed: HTTP status and body.
#[derive(Debug)]
pub struct RpcError {
    pub status: u16,
    pub body: String,
}

impl Server {
    /// A Connect unary call with `application/proto`, as `tenant`.
    pub fn connect_proto<Req: prost::Message, Resp: prost::Message + Default>(
        &self,
        method: &str,
        request: &Req,
        tenant: &str,
    ) -> Result<Resp, RpcError> {
        let response = ureq::post(&format!("{}/{method}", self.url))
            .set("Content-Type", "application/proto")
            .set("Connect-Protocol-Version", "1")
            .set("X-Scope-OrgID", tenant)
            .send_bytes(&request.encode_to_vec());
        match response {
            Ok(r) => {
                assert_eq!(r.content_type(), "application/proto", "{method}");
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut r.into_reader(), &mut bytes).expect("body");
                Ok(Resp::decode(bytes.as_slice()).expect("a valid response message"))
            }
            Err(ureq::Error::Status(status, r)) => Err(RpcError {
                status,
                body: r.into_string().unwrap_or_default(),
            }),
            Err(e) => panic!("{method}: {e}"),
        }
    }

    /// A Connect unary call with `application/json`, as `tenant`: status and parsed body.
    pub fn connect_json(
        &self,
        method: &str,
        request: &serde_json::Value,
        tenant: &str,
    ) -> (u16, serde_json::Value) {
        let response = ureq::post(&format!("{}/{method}", self.url))
            .set("Content-Type", "application/json")
            .set("Connect-Protocol-Version", "1")
            .set("X-Scope-OrgID", tenant)
            .send_string(&request.to_string());
        let (status, text) = answer(response);
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method}: {status} {text:?} is not JSON: {e}"));
        (status, value)
    }
}

/// A gzip-compressed copy of `bytes`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("compress");
    e.finish().expect("finish")
}

/// Unix time now, in nanoseconds.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64
}

/// The node's clock follows a file, so usage hours and retention move without waiting.
pub struct TestClock {
    path: std::path::PathBuf,
}

impl TestClock {
    pub fn new(dir: &std::path::Path, secs: i64) -> Self {
        let clock = Self {
            path: dir.join("clock"),
        };
        clock.set(secs);
        clock
    }

    pub fn set(&self, secs: i64) {
        std::fs::write(&self.path, secs.to_string()).expect("write the clock");
    }

    pub fn env(&self) -> (&'static str, String) {
        ("FIRN_TEST_CLOCK_FILE", self.path.display().to_string())
    }
}

/// The merged pprof of `selector` over the last hour, from Firn's API (`extra`: more query
/// parameters, `&trace_id=...`).
pub fn fetch_pprof(server: &Server, selector: &str, extra: &str) -> firn_storage::pprof::Profile {
    let url = format!(
        "{}/api/v1/merge?query={}&from=now-1h&until=now%2B1h&format=pprof{extra}",
        server.url,
        urlencode(selector)
    );
    let response = ureq::get(&url).call().expect("merge");
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut response.into_reader(), &mut bytes).expect("body");
    firn_storage::pprof::decode(&bytes, firn_storage::pprof::DecodeLimits::default())
        .expect("Firn's pprof decodes")
        .into_profile()
}
