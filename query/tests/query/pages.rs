//! Scans that skip pages through the page index read a block's stack steps correctly: every
//! page of every column starts on a restart of the stack column, also when large label values
//! end pages off the usual restart rows.

use std::collections::BTreeMap;

use bytes::Bytes;
use firn_query::{ProfileQuery, QueryEngine};
use firn_storage::stack_codec::{RESTART_ROWS, StackEncoding};
use firn_storage::testing::{ProfileBuilder, pprof_write};
use firn_storage::{BlockId, Nanos, SeqNo};
use object_store::ObjectStoreExt;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};

use crate::fixtures::{CPU, SEC, engine, tenant, write_cpu};

/// Function, flat and cumulative value of a merge, by function.
async fn top(e: &QueryEngine, selector: &str, from: i64, to: i64) -> BTreeMap<String, (i64, i64)> {
    let query = ProfileQuery::new(selector, Nanos(from), Nanos(to)).expect("valid query");
    let merged = e.merge(&tenant("a"), &query).await.expect("merge");
    merged
        .top()
        .into_iter()
        .map(|t| (t.function, (t.flat, t.cumulative)))
        .collect()
}

/// The first row (within its row group) of every page of every column of a block.
async fn page_starts(e: &QueryEngine, block: &BlockId) -> Vec<i64> {
    let store = e.store();
    let bytes: Bytes = store
        .object_store()
        .get(&store.paths().block_samples(block))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    let metadata = ParquetMetaDataReader::new()
        .with_page_index_policy(PageIndexPolicy::Required)
        .parse_and_finish(&bytes)
        .expect("metadata");
    metadata
        .offset_index()
        .expect("a page index")
        .iter()
        .flatten()
        .flat_map(|c| c.page_locations().iter().map(|p| p.first_row_index))
        .collect()
}

/// `n` stacks `main;f<first>`, `main;f<first+step>`, ...
fn stacks(first: usize, step: usize, n: usize) -> Vec<(Vec<String>, i64)> {
    (0..n)
        .map(|k| {
            let leaf = format!("f{}", (first + k * step) % 3000);
            (vec![leaf, "main".to_owned()], 1 + ((first + k) % 5) as i64)
        })
        .collect()
}

fn write(e: &QueryEngine, seq: u64, labels: &[(&str, &str)], time: i64, s: &[(Vec<String>, i64)]) {
    let refs: Vec<Vec<&str>> = s
        .iter()
        .map(|(f, _)| f.iter().map(String::as_str).collect())
        .collect();
    let pairs: Vec<(&[&str], i64)> = refs.iter().zip(s).map(|(f, (_, n))| (&f[..], *n)).collect();
    write_cpu(e, seq, "a", labels, time, &pairs);
}

#[tokio::test]
async fn time_pruned_scans_of_long_row_groups_decode_steps() {
    let e = engine().await;
    // 120 profiles of 500 samples in one series: 60,000 rows, pages of 20 restarts each.
    for i in 0..120u64 {
        let s = stacks(i as usize * 7, 3, 500);
        write(&e, i + 1, &[("service_name", "api")], i as i64 * SEC, &s);
    }
    let selector = format!("{CPU}{{service_name=\"api\"}}");
    let ranges = [(0, 120), (100, 120), (41, 43), (82, 119)];
    let mut before = Vec::new();
    for (from, to) in ranges {
        before.push(top(&e, &selector, from * SEC, to * SEC).await);
    }
    let block = e.store().flush().await.expect("flush").expect("a block");
    assert_eq!(block.stack, StackEncoding::Gaps);
    let starts = page_starts(&e, &block.id).await;
    assert!(starts.iter().any(|&s| s > 0), "pages to skip: {starts:?}");
    assert!(
        starts
            .iter()
            .all(|&s| (s as usize).is_multiple_of(RESTART_ROWS)),
        "{starts:?}"
    );
    for ((from, to), want) in ranges.into_iter().zip(before) {
        let got = top(&e, &selector, from * SEC, to * SEC).await;
        assert_eq!(got, want, "{from}s..{to}s read from the block");
        assert!(!got.is_empty());
    }
}

#[tokio::test]
async fn pages_that_end_off_restarts_become_restarts() {
    let e = engine().await;
    // 48 profiles of 1,000 samples, each sample with its own trace id: the trace id column's
    // dictionary fills (48,000 ids of 32 bytes) and spills wherever it fills, not on a restart.
    let trace = |i: usize, k: usize| format!("{i:08x}{:024x}", k * 7919 % 1000);
    for i in 0..48usize {
        let mut b = ProfileBuilder::cpu().time(Nanos(i as i64 * SEC));
        for (k, (frames, n)) in stacks(i * 7, 3, 1000).into_iter().enumerate() {
            let frames: Vec<&str> = frames.iter().map(String::as_str).collect();
            b.sample(&frames, &[n, n * 10_000_000], &[("trace_id", &trace(i, k))]);
        }
        let labels = [("__name__", "process_cpu"), ("service_name", "api")];
        e.store()
            .write(
                SeqNo(i as u64 + 1),
                pprof_write("a", &labels, b.gzip(), Nanos(0)),
            )
            .expect("write");
    }
    let pick = |i: usize, k: usize| {
        let mut q = ProfileQuery::new(CPU, Nanos(0), Nanos(48 * SEC)).expect("query");
        q.links.trace_ids = vec![trace(i, k)];
        q
    };
    let picks: Vec<(usize, usize)> = (0..48).map(|i| (i, i * 37 % 1000)).collect();
    let mut before = Vec::new();
    for &(i, k) in &picks {
        let m = e.merge(&tenant("a"), &pick(i, k)).await.expect("merge");
        before.push(m.top());
    }
    let block = e.store().flush().await.expect("flush").expect("a block");
    let starts = page_starts(&e, &block.id).await;
    assert!(
        starts
            .iter()
            .any(|&s| !(s as usize).is_multiple_of(RESTART_ROWS)),
        "some page starts off a multiple of {RESTART_ROWS}: {starts:?}"
    );
    assert_eq!(block.stack, StackEncoding::Gaps, "the second pass lines up");
    for (&(i, k), want) in picks.iter().zip(before) {
        let got = e
            .merge(&tenant("a"), &pick(i, k))
            .await
            .expect("merge")
            .top();
        assert_eq!(
            got.len(),
            2,
            "profile {i} sample {k}: one leaf and main: {got:?}"
        );
        let pairs = |t: &[firn_query::TopEntry]| {
            let mut v: Vec<_> = t
                .iter()
                .map(|t| (t.function.clone(), t.flat, t.cumulative))
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            pairs(&got),
            pairs(&want),
            "profile {i} sample {k} read from the block"
        );
    }
}
