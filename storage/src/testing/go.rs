//! Go's `runtime/pprof` as a source of real profiles and `go tool pprof` as the merge oracle
//! (Debian `golang-go`; the README's test command installs it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::pprof::{DecodeLimits, Profile, decode};

/// The Go program that writes CPU profiles (with pprof labels) and a heap profile.
pub fn program_dir() -> PathBuf {
    // Cargo sets the running test's package directory, a sibling of query/; the compile-time one
    // can name another clone when a build directory is shared.
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    package.join("../query/tests/goprof")
}

/// Runs the Go program: `cpu` CPU profiles of `seconds` each and one heap profile, gzipped,
/// into `out`; returns their paths, sorted.
pub fn profiles(out: &Path, cpu: u32, seconds: u32) -> Vec<PathBuf> {
    let status = Command::new("go")
        .args(["run", ".", "-out"])
        .arg(out)
        .args(["-cpu", &cpu.to_string(), "-seconds", &seconds.to_string()])
        .current_dir(program_dir())
        .env("GOCACHE", out.join("gocache"))
        .env("GOFLAGS", "-mod=mod")
        .status()
        .expect("Go is needed for the oracle tests: apt-get install golang-go (the README's test command does)");
    assert!(status.success(), "go run failed: {status}");
    let mut files: Vec<PathBuf> = std::fs::read_dir(out)
        .expect("output dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gz"))
        .collect();
    files.sort();
    files
}

/// `go tool pprof -proto` merging `files`, decoded.
pub fn merge(files: &[PathBuf]) -> Profile {
    let output = Command::new("go")
        .args(["tool", "pprof", "-proto"])
        .args(files)
        .output()
        .expect("go tool pprof");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    decode(&output.stdout, DecodeLimits::default())
        .expect("pprof's output decodes")
        .into_profile()
}

/// Flat and cumulative value per function name for one sample index (a function counted once
/// per stack however often it recurses), as `go tool pprof -top` reports them.
pub fn per_function(p: &Profile, index: usize) -> BTreeMap<String, (i64, i64)> {
    let name = |id: u64| {
        let f = p.function.iter().find(|f| f.id == id).expect("function");
        p.string_table[f.name as usize].clone()
    };
    let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for s in &p.sample {
        let value = s.value[index];
        if value == 0 {
            continue;
        }
        let mut frames = Vec::new();
        for id in &s.location_id {
            let l = p.location.iter().find(|l| l.id == *id).expect("location");
            frames.extend(l.line.iter().map(|line| name(line.function_id)));
        }
        if let Some(leaf) = frames.first() {
            out.entry(leaf.clone()).or_default().0 += value;
        }
        frames.sort();
        frames.dedup();
        for f in frames {
            out.entry(f).or_default().1 += value;
        }
    }
    out
}

/// The profile type ID of sample index `index` of `p`, named `name`.
pub fn type_id(p: &Profile, name: &str, index: usize) -> String {
    let s = |i: i64| p.string_table[i as usize].as_str();
    let pt = p.period_type.expect("period type");
    let st = p.sample_type[index];
    format!(
        "{name}:{}:{}:{}:{}",
        s(st.r#type),
        s(st.unit),
        s(pt.r#type),
        s(pt.unit)
    )
}
