//! Real profiles from Go's `runtime/pprof`, merged by Firn and by `go tool pprof -proto`:
//! per-function flat and cumulative totals must be identical for every sample type.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use firn_query::ProfileQuery;
use firn_storage::pprof::{DecodeLimits, Profile, decode, encode_gzip};
use firn_storage::testing::pprof_write;
use firn_storage::{Nanos, SeqNo};

use crate::fixtures::{engine, tenant};

/// Runs the Go program in `tests/goprof`, which writes CPU profiles and a heap profile.
fn go_profiles(out: &Path) -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/goprof");
    let cache = out.join("gocache");
    let status = Command::new("go")
        .args(["run", ".", "-out"])
        .arg(out)
        .args(["-cpu", "3", "-seconds", "1"])
        .current_dir(&src)
        .env("GOCACHE", &cache)
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
fn go_merge(files: &[PathBuf]) -> Profile {
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

/// Flat and cumulative value per function name for one sample index.
fn per_function(p: &Profile, index: usize) -> BTreeMap<String, (i64, i64)> {
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

fn type_id(p: &Profile, name: &str, index: usize) -> String {
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

#[tokio::test]
async fn merged_profiles_match_go_tool_pprof() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = go_profiles(dir.path());
    let (heap, cpu): (Vec<PathBuf>, Vec<PathBuf>) = files
        .into_iter()
        .partition(|f| f.to_string_lossy().contains("heap"));
    assert_eq!((cpu.len(), heap.len()), (3, 1));
    let e = engine().await;
    let mut seq = 0;
    for (i, file) in cpu.iter().chain(&heap).enumerate() {
        let name = if heap.contains(file) {
            "memory"
        } else {
            "process_cpu"
        };
        let labels = [("__name__", name), ("service_name", "goprof")];
        seq += 1;
        e.store()
            .write(
                SeqNo(seq),
                pprof_write("go", &labels, std::fs::read(file).expect("read"), Nanos(0)),
            )
            .expect("write");
        if i == 0 {
            e.store().flush().await.expect("flush"); // one profile in a block, the rest buffered
        }
    }

    for (inputs, name) in [(&cpu, "process_cpu"), (&heap, "memory")] {
        let oracle = go_merge(inputs);
        let labels: Vec<String> = oracle
            .sample
            .iter()
            .flat_map(|s| {
                s.label
                    .iter()
                    .map(|l| oracle.string_table[l.key as usize].clone())
            })
            .collect();
        if name == "process_cpu" {
            assert!(
                labels.iter().any(|l| l == "worker"),
                "the Go profiles carry pprof labels"
            );
        }
        for index in 0..oracle.sample_type.len() {
            let id = type_id(&oracle, name, index);
            let query = ProfileQuery::new(
                &format!("{id}{{service_name=\"goprof\"}}"),
                Nanos(0),
                Nanos(i64::MAX),
            )
            .expect("query");
            let merged = e.merge(&tenant("go"), &query).await.expect("merge");
            let ours: BTreeMap<String, (i64, i64)> = merged
                .top()
                .into_iter()
                .map(|t| (t.function, (t.flat, t.cumulative)))
                .collect();
            let theirs = per_function(&oracle, index);
            assert!(!theirs.is_empty(), "{id}: the oracle has samples");
            assert_eq!(ours, theirs, "{id}: flat and cumulative per function");

            // Our pprof export loads in go tool pprof and says the same.
            let exported = dir.path().join(format!("firn-{name}-{index}.pb.gz"));
            std::fs::write(&exported, encode_gzip(&merged.to_pprof())).expect("write export");
            let reloaded = go_merge(std::slice::from_ref(&exported));
            assert_eq!(per_function(&reloaded, 0), theirs, "{id}: exported pprof");
        }
    }
}
