//! A real S3-compatible server for the cluster's blocks: moto (`moto_server`, from PyPI).
//! `FIRN_TEST_MOTO_SERVER` names it (`.ci/test` sets it up); otherwise the harness makes a
//! venv under `~/.cache/firn-venv` and installs `moto[server]` there. An outage is SIGSTOP:
//! the server stops answering, keeping what it stored.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait_until;

/// A running moto server with one bucket.
#[derive(Debug)]
pub struct S3 {
    child: Child,
    pub endpoint: String,
    pub bucket: String,
}

fn moto_server() -> PathBuf {
    if let Some(path) = std::env::var_os("FIRN_TEST_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/tmp".into());
    let venv = home.join(".cache").join("firn-venv");
    let bin = venv.join("bin").join("moto_server");
    if !bin.exists() {
        eprintln!("installing moto[server] into {}", venv.display());
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success());
        assert!(made, "python3 -m venv {} failed", venv.display());
        let installed = Command::new(venv.join("bin").join("pip"))
            .args(["install", "-q", "moto[server]"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(installed, "pip install moto[server] failed");
    }
    bin
}

impl S3 {
    /// Starts moto on `host` at a free port and creates the bucket.
    pub fn start(host: &str) -> Self {
        let port = std::net::TcpListener::bind((host, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new(moto_server())
            .args(["-H", host, "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let endpoint = format!("http://{host}:{port}");
        let bucket = "firn-cluster".to_owned();
        let url = format!("{endpoint}/{bucket}");
        assert!(
            wait_until(Duration::from_secs(60), || ureq::put(&url).call().is_ok()),
            "moto answers and the bucket is created"
        );
        Self {
            child,
            endpoint,
            bucket,
        }
    }

    /// The server stops answering (requests hang until their clients time out).
    pub fn pause(&self) {
        assert!(crate::signal(self.child.id(), "STOP"), "moto is running");
    }

    pub fn resume(&self) {
        assert!(crate::signal(self.child.id(), "CONT"), "moto is running");
    }

    /// How many objects the bucket holds under `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        let url = format!(
            "{}/{}?list-type=2&prefix={prefix}",
            self.endpoint, self.bucket
        );
        match ureq::get(&url).timeout(Duration::from_secs(10)).call() {
            Ok(r) => r.into_string().unwrap_or_default().matches("<Key>").count(),
            Err(_) => 0,
        }
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        crate::signal(self.child.id(), "CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
