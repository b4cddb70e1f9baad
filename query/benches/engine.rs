//! End-to-end engine benchmark: ingest (decode + normalise + append), buffer and stored bytes per
//! sample, and a 10-million-sample merge into a flame graph, against DuckDB running the same
//! aggregation over the same Parquet files in the same run.
//!
//! `cargo bench -p firn-query --bench engine` (env `FIRN_BENCH_SAMPLES` sets the row count,
//! `FIRN_BENCH_PYTHON` the Python that has `duckdb`; DuckDB is skipped if it cannot import).
//! Prints a markdown table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use firn_query::{FlameGraph, ProfileQuery, QueryConfig, QueryEngine};
use firn_storage::block::BlockOptions;
use firn_storage::testing::{ProfileBuilder, pprof_write};
use firn_storage::{Nanos, SeqNo, Store, StoreConfig, TenantId};
use object_store::local::LocalFileSystem;
use object_store::path::Path;

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Stacks 20-40 deep sharing library frames near the root; popularity is Zipf-like.
fn stack_universe(rng: &mut Rng, stacks: usize) -> Vec<Vec<String>> {
    let roots = [
        "runtime.main",
        "main.main",
        "net/http.(*conn).serve",
        "main.handler",
    ];
    (0..stacks)
        .map(|i| {
            let depth = 20 + (rng.next() % 21) as usize;
            let mut frames: Vec<String> = roots.iter().map(|s| s.to_string()).collect();
            for d in roots.len()..depth {
                // Frames near the root are shared widely, deeper ones less.
                let width = 4 + d * d;
                frames.push(format!(
                    "pkg{}.fn{}",
                    d,
                    (rng.next() as usize + i / 7) % width
                ));
            }
            frames
        })
        .collect()
}

fn profile(rng: &mut Rng, universe: &[Vec<String>], samples: usize, time: i64) -> Vec<u8> {
    // One sample type (cpu/nanoseconds, as Pyroscope's Go SDK sends), so every row is a
    // sample of the merged profile type.
    let mut b = ProfileBuilder::new(
        &[("cpu", "nanoseconds")],
        ("cpu", "nanoseconds"),
        10_000_000,
    )
    .duration(Nanos(10_000_000_000))
    .time(Nanos(time));
    let mut picked = std::collections::BTreeMap::new();
    while picked.len() < samples {
        let i = (rng.unit().powi(3) * universe.len() as f64) as usize;
        *picked.entry(i).or_insert(0i64) += 1 + (rng.next() % 3) as i64;
    }
    for (i, n) in picked {
        let frames: Vec<&str> = universe[i].iter().map(String::as_str).collect();
        b.sample(&frames, &[n * 10_000_000], &[]);
    }
    b.gzip()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let target_rows: usize = std::env::var("FIRN_BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    if std::env::var_os("FIRN_BENCH_KEEP").is_some() {
        eprintln!("keeping blocks in {}", dir.path().display());
    }
    let os = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).expect("fs"));
    let config = StoreConfig {
        buffer_budget: 4 << 30,
        block: BlockOptions {
            row_group_rows: 1 << 20,
            ..Default::default()
        },
        ..Default::default()
    };
    let store = Arc::new(
        runtime
            .block_on(Store::open(os, Path::from("s"), config))
            .expect("open"),
    );

    // Workload: 4000 stacks, profiles of 500 stacks every 10 s from 10 services x 10 pods.
    let mut rng = Rng(42);
    let universe = stack_universe(&mut rng, 4000);
    let profiles_needed = target_rows / 500; // 500 stacks a profile
    let payloads: Vec<(String, String, Vec<u8>)> = (0..profiles_needed)
        .map(|i| {
            let time = 1_700_000_000_000_000_000 + (i as i64 / 100) * 10_000_000_000;
            (
                format!("svc-{}", i % 10),
                format!("pod-{}", (i / 10) % 10),
                profile(&mut rng, &universe, 500, time),
            )
        })
        .collect();
    let input_bytes: usize = payloads.iter().map(|p| p.2.len()).sum();

    // Ingest on one thread: decode + validate + normalise + append.
    let started = Instant::now();
    let mut rows = 0usize;
    let mut buffer_peak_per_sample = 0f64;
    for (i, (service, pod, bytes)) in payloads.into_iter().enumerate() {
        let labels = [
            ("service_name", service.as_str()),
            ("pod", pod.as_str()),
            ("__name__", "process_cpu"),
        ];
        let stats = store
            .write(
                SeqNo(i as u64 + 1),
                pprof_write("bench", &labels, bytes, Nanos(0)),
            )
            .expect("write");
        rows += stats.samples;
        if rows >= 2_000_000 && store.buffer_samples() >= 2_000_000 {
            buffer_peak_per_sample = buffer_peak_per_sample
                .max(store.buffer_bytes() as f64 / store.buffer_samples() as f64);
            runtime.block_on(store.flush()).expect("flush");
        }
    }
    let ingest = started.elapsed();
    if store.buffer_samples() > 0 {
        buffer_peak_per_sample =
            buffer_peak_per_sample.max(store.buffer_bytes() as f64 / store.buffer_samples() as f64);
        runtime.block_on(store.flush()).expect("flush");
    }
    let manifest = store.manifest();
    let stored: u64 = manifest.blocks.iter().map(|b| b.bytes()).sum();
    let stored_rows: u64 = manifest.blocks.iter().map(|b| b.rows).sum();

    // Merge of every CPU sample into a flame graph.
    let engine = QueryEngine::new(
        store.clone(),
        QueryConfig {
            memory_limit: 4 << 30,
            ..Default::default()
        },
    )
    .expect("engine");
    let tenant = TenantId::new("bench").expect("tenant");
    let query = ProfileQuery::new(CPU, Nanos(0), Nanos(i64::MAX)).expect("query");
    let mut times = Vec::new();
    let mut graph_times = Vec::new();
    let mut merged_rows = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let merged = runtime
            .block_on(engine.merge(&tenant, &query))
            .expect("merge");
        let g = Instant::now();
        let fg = FlameGraph::from_merged(&merged, 8192);
        graph_times.push(g.elapsed());
        times.push(t.elapsed());
        merged_rows = merged.stacks.len();
        assert!(fg.root.total > 0);
    }
    let firn_merge = median(times);
    let graph = median(graph_times);

    // DuckDB over the very same Parquet files.
    let python = std::env::var("FIRN_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let glob = dir.path().join("s/blocks/*/samples.parquet");
    let script = format!(
        "import duckdb,time\nc=duckdb.connect()\nq=\"SELECT stack_id, sum(value) FROM read_parquet('{}') WHERE profile_type='{CPU}' GROUP BY 1\"\nc.execute(q).fetchall()\nts=[]\nfor _ in range(5):\n  t=time.perf_counter(); r=c.execute(q).fetchall(); ts.append(time.perf_counter()-t)\nts.sort(); print(ts[2], len(r))",
        glob.display()
    );
    let duck = std::process::Command::new(&python)
        .args(["-c", &script])
        .output();
    let duck = match duck {
        Ok(o) if o.status.success() => {
            let out = String::from_utf8_lossy(&o.stdout).to_string();
            let mut parts = out.split_whitespace();
            let secs: f64 = parts
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN);
            let groups: usize = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            assert_eq!(
                groups, merged_rows,
                "DuckDB and Firn see the same distinct stacks"
            );
            Some(Duration::from_secs_f64(secs))
        }
        _ => None,
    };

    let mb = input_bytes as f64 / 1e6;
    eprintln!("| measure | value |");
    eprintln!("|---|---|");
    eprintln!("| samples | {rows} |");
    eprintln!("| gzipped pprof input | {mb:.1} MB |");
    eprintln!(
        "| ingest, one thread | {:.1} MB/s, {:.2} M samples/s |",
        mb / ingest.as_secs_f64(),
        rows as f64 / ingest.as_secs_f64() / 1e6
    );
    eprintln!("| buffer bytes per sample (peak) | {buffer_peak_per_sample:.1} |");
    eprintln!(
        "| stored bytes per sample (Parquet + symbols) | {:.2} |",
        stored as f64 / stored_rows as f64
    );
    eprintln!(
        "| merge of {} CPU samples into a flame graph (median of 5) | {:.0} ms |",
        rows,
        firn_merge.as_secs_f64() * 1e3
    );
    eprintln!(
        "| of which building the flame graph | {:.0} ms |",
        graph.as_secs_f64() * 1e3
    );
    match duck {
        Some(d) => eprintln!(
            "| DuckDB GROUP BY stack_id over the same Parquet (median of 5) | {:.0} ms (Firn / DuckDB = {:.2}) |",
            d.as_secs_f64() * 1e3,
            firn_merge.as_secs_f64() / d.as_secs_f64()
        ),
        None => eprintln!("| DuckDB | not run: `{python}` cannot import duckdb |"),
    }
    if std::env::var_os("FIRN_BENCH_KEEP").is_some() {
        std::mem::forget(dir);
    }
}
