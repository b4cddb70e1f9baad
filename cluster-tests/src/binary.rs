//! The `firn` binary under test: `FIRN_BIN` if set, else the one beside this test binary.
//! `cargo test --workspace` builds it before any test runs; when it is missing or older than
//! the sources (`cargo test -p firn-cluster-tests` alone), it is built here first, so a test
//! never runs a stale node.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

/// The path of the `firn` binary, built if needed.
pub fn firn() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("FIRN_BIN") {
            return PathBuf::from(path);
        }
        // target/<profile>/deps/cluster-<hash> → target/<profile>/firn
        let exe = std::env::current_exe().expect("the test binary's path");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("a test binary lives in target/<profile>/deps");
        let bin = profile_dir.join("firn");
        // The running package's directory (set by cargo) before the compile-time one, which
        // can name another clone when a build directory is shared.
        let package = std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
        let workspace = package.parent().expect("the workspace");
        let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
        let sources = [
            "node/src",
            "node/proto",
            "node/ui",
            "storage/src",
            "query/src",
            "Cargo.lock",
        ]
        .iter()
        .map(|p| newest(&workspace.join(p)))
        .max()
        .flatten();
        if built.is_none() || sources > built {
            build(profile_dir, workspace);
        }
        assert!(bin.exists(), "{} was not built", bin.display());
        bin
    })
}

fn build(profile_dir: &Path, workspace: &Path) {
    eprintln!("building firn (it is missing or older than its sources)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command
        .args(["build", "-p", "firn-node", "--bin", "firn"])
        .current_dir(workspace);
    // Cargo gives a test its package's variables; left in place they would look like a new
    // environment to build scripts and rebuild the whole dependency tree.
    for (key, _) in std::env::vars_os() {
        if let Some(k) = key.to_str()
            && (k.starts_with("CARGO_") && k != "CARGO_HOME" || k == "OUT_DIR")
        {
            command.env_remove(k);
        }
    }
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        command.arg("--release");
    }
    if let Some(target) = profile_dir.parent() {
        command.env("CARGO_TARGET_DIR", target);
    }
    let status = command.status().expect("cargo runs");
    assert!(status.success(), "building firn failed");
}

/// The newest modification time under `path`.
fn newest(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| newest(&e.path()))
        .max()
}
