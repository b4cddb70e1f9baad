//! End-to-end engine benchmark: ingest (decode + normalise + append), buffer and stored bytes per
//! sample, and a 10-million-sample merge into a flame graph, against DuckDB running the same
//! aggregation over the same Parquet files in the same run.
//!
//! `cargo bench -p firn-query --bench engine` (env `FIRN_BENCH_SAMPLES` sets the row count,
//! `FIRN_BENCH_PYTHON` the Python that has `duckdb`; DuckDB is skipped if it cannot import;
//! `FIRN_BENCH_DIR` keeps the store, and a run over a kept store only queries).
//! Prints a markdown table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use firn_query::{FlameGraph, ProfileQuery, QueryConfig, QueryEngine};
use firn_storage::block::BlockOptions;
use firn_storage::testing::pprof_write;
use firn_storage::testing::workload::{Rng, cpu_profile, stack_universe};
use firn_storage::{Nanos, SeqNo, Store, StoreConfig, TenantId};
use object_store::local::LocalFileSystem;
use object_store::path::Path;

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

/// Rounds of each measured query, Firn's and DuckDB's interleaved.
const ROUNDS: usize = 9;

/// A Python process with DuckDB that runs the bench query each time it is asked.
struct DuckDb {
    child: std::process::Child,
    output: std::io::BufReader<std::process::ChildStdout>,
}

impl DuckDb {
    /// `None` (and a note) when `FIRN_BENCH_PYTHON` (default `python3`) cannot run DuckDB.
    fn start(glob: &std::path::Path) -> Option<Self> {
        use std::io::BufRead;
        let python = std::env::var("FIRN_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = format!(
            "import duckdb,time,glob,sys\nc=duckdb.connect()\nfiles=sorted(glob.glob('{}'))\nq=' UNION ALL '.join(f\"SELECT {{i}} AS block, stack, sum(value) AS v FROM read_parquet('{{f}}') WHERE profile_type='{CPU}' GROUP BY stack\" for i,f in enumerate(files))\nc.execute(q).fetchall()\nprint('ready', flush=True)\nfor _ in sys.stdin:\n  t=time.perf_counter(); r=c.execute(q).fetchall(); e=time.perf_counter()-t\n  print(e, sum(x[2] for x in r), flush=True)",
            glob.display()
        );
        let mut child = std::process::Command::new(&python)
            .args(["-c", &script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        let mut output = std::io::BufReader::new(child.stdout.take()?);
        let mut line = String::new();
        if output.read_line(&mut line).ok()? == 0 || line.trim() != "ready" {
            eprintln!("DuckDB not run: `{python}` cannot import duckdb");
            return None;
        }
        Some(Self { child, output })
    }

    /// Runs the query once: (elapsed, sum of all values).
    fn run(&mut self) -> (Duration, i64) {
        use std::io::{BufRead, Write};
        let stdin = self.child.stdin.as_mut().expect("stdin is piped");
        stdin.write_all(b"run\n").expect("write to DuckDB");
        stdin.flush().expect("flush to DuckDB");
        let mut line = String::new();
        self.output.read_line(&mut line).expect("DuckDB answers");
        let mut parts = line.split_whitespace();
        let secs: f64 = parts.next().and_then(|s| s.parse().ok()).expect("seconds");
        let total: i64 = parts.next().and_then(|s| s.parse().ok()).expect("total");
        (Duration::from_secs_f64(secs), total)
    }
}

impl Drop for DuckDb {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
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
    // FIRN_BENCH_DIR keeps the store; a second run over it skips ingest and only queries.
    let temp = tempfile::tempdir().expect("tempdir");
    let root = match std::env::var_os("FIRN_BENCH_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None => temp.path().to_owned(),
    };
    std::fs::create_dir_all(&root).expect("bench dir");
    let os = Arc::new(LocalFileSystem::new_with_prefix(&root).expect("fs"));
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

    let reuse = !store.manifest().blocks.is_empty();
    let (mut ingest, mut input_bytes, mut rows, mut buffer_peak_per_sample) =
        (Duration::ZERO, 0, 0, 0f64);
    if !reuse {
        (ingest, input_bytes, rows, buffer_peak_per_sample) =
            ingest_workload(&runtime, &store, target_rows);
    }
    let manifest = store.manifest();
    let stored: u64 = manifest.blocks.iter().map(|b| b.bytes()).sum();
    let stored_rows: u64 = manifest.blocks.iter().map(|b| b.rows).sum();
    if reuse {
        rows = stored_rows as usize;
    }
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
    // DuckDB over the very same Parquet files, in a Python process kept open so that its rounds
    // interleave with Firn's: both see the same machine load. A block stores a sample's stack as
    // an ordinal into its own stack table, so the same aggregation is by stack within each block
    // (a UNION ALL of one GROUP BY per file); Firn also maps each block's ordinals to global
    // ids, a step per distinct stack that DuckDB is spared.
    let mut duck = DuckDb::start(&root.join("s/blocks/*/samples.parquet"));
    let (mut times, mut graph_times, mut duck_times) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let merged = runtime
            .block_on(engine.merge(&tenant, &query))
            .expect("merge");
        let g = Instant::now();
        let fg = FlameGraph::from_merged(&merged, 8192);
        graph_times.push(g.elapsed());
        times.push(t.elapsed());
        assert!(fg.root.total > 0);
        if let Some(d) = &mut duck {
            let (elapsed, total) = d.run();
            assert_eq!(total, merged.total(), "DuckDB and Firn sum the same values");
            duck_times.push(elapsed);
        }
    }
    let firn_merge = median(times);
    let graph = median(graph_times);
    let duck = duck.map(|_| median(duck_times));

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
        "| merge of {} CPU samples into a flame graph (median of {ROUNDS}) | {:.0} ms |",
        rows,
        firn_merge.as_secs_f64() * 1e3
    );
    eprintln!(
        "| of which building the flame graph | {:.0} ms |",
        graph.as_secs_f64() * 1e3
    );
    match duck {
        Some(d) => eprintln!(
            "| DuckDB, the same sums by stack over the same Parquet (median of {ROUNDS}, interleaved) | {:.0} ms (Firn / DuckDB = {:.2}) |",
            d.as_secs_f64() * 1e3,
            firn_merge.as_secs_f64() / d.as_secs_f64()
        ),
        None => eprintln!("| DuckDB | not run |"),
    }
}

/// Ingests the workload on one thread, flushing every 2 M samples; returns the ingest time,
/// gzipped input bytes, samples and the buffer's peak bytes per sample.
fn ingest_workload(
    runtime: &tokio::runtime::Runtime,
    store: &Store,
    target_rows: usize,
) -> (Duration, usize, usize, f64) {
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
                cpu_profile(&mut rng, &universe, 500, time),
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
    (ingest, input_bytes, rows, buffer_peak_per_sample)
}
