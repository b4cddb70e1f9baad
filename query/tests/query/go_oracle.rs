//! Real profiles from Go's `runtime/pprof`, merged by Firn and by `go tool pprof -proto`:
//! per-function flat and cumulative totals must be identical for every sample type.

use std::collections::BTreeMap;
use std::path::PathBuf;

use firn_query::ProfileQuery;
use firn_storage::pprof::encode_gzip;
use firn_storage::testing::go::{merge as go_merge, per_function, profiles, type_id};
use firn_storage::testing::pprof_write;
use firn_storage::{Nanos, SeqNo};

use crate::fixtures::{engine, tenant};

#[tokio::test]
async fn merged_profiles_match_go_tool_pprof() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = profiles(dir.path(), 3, 1);
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
