use std::collections::BTreeMap;

use super::*;
use crate::StoreConfig;
use crate::testing::{ProfileBuilder, memory_store, pprof_write};

const MINUTE: i64 = 60_000_000_000;

/// A tenant's value per (frames, pod, trace id, time) over every block the manifest holds for
/// it, read from the Parquet rows and symbols directly (not through compaction's reader).
async fn sums(store: &Store, tenant: &str) -> BTreeMap<String, i64> {
    let tenant = TenantId::new(tenant).expect("tenant");
    let mut out = BTreeMap::new();
    for block in &store.manifest().blocks {
        let Some(meta) = block.tenants.get(&tenant) else {
            continue;
        };
        let symbols = store.read_symbols(&block.id).await.expect("symbols");
        let samples = get(
            store.object_store().as_ref(),
            &store.paths().block_samples(&block.id),
        )
        .await
        .expect("samples")
        .slice(..block.samples_bytes as usize);
        let reader = ParquetRecordBatchReaderBuilder::try_new(samples)
            .and_then(|b| {
                b.with_row_groups((meta.row_groups.0..meta.row_groups.1).collect())
                    .build()
            })
            .expect("reader");
        let mut decoder = StackDecoder::new(block.stack);
        for batch in reader {
            let batch = batch.expect("batch");
            let stored = batch
                .column_by_name(schema::STACK)
                .expect("stack")
                .as_primitive::<Int32Type>();
            let stack = &decoder.decode(stored).expect("stack steps");
            let value = batch
                .column_by_name(schema::VALUE)
                .expect("value")
                .as_primitive::<Int64Type>();
            let pod = cast(
                batch.column_by_name("labels.pod").expect("pod"),
                &DataType::Utf8,
            )
            .expect("cast");
            let pod = pod.as_string::<i32>();
            let trace = batch
                .column_by_name(schema::TRACE_ID)
                .map(|c| cast(c, &DataType::Utf8).expect("cast"));
            let time = batch
                .column_by_name(schema::TIME)
                .expect("time")
                .as_primitive::<Int64Type>();
            for r in 0..batch.num_rows() {
                let frames: Vec<&str> = symbols.frame_names(stack.value(r) as u32).collect();
                let trace = trace
                    .as_ref()
                    .map(|t| t.as_string::<i32>())
                    .filter(|t| !t.is_null(r))
                    .map_or("", |t| t.value(r));
                let key = format!(
                    "{} pod={} trace={trace} t={}",
                    frames.join(";"),
                    pod.value(r),
                    time.value(r)
                );
                *out.entry(key).or_default() += value.value(r);
            }
        }
    }
    out
}

/// Three flushes, each with two tenants; tenant a's profiles carry a trace id on one sample.
async fn three_flushes() -> Store {
    let store = memory_store(StoreConfig::default()).await;
    let mut seq = 0;
    for flush in 0..3i64 {
        for (tenant, pod) in [("a", "a-0"), ("a", "a-1"), ("b", "b-0")] {
            seq += 1;
            let mut p = ProfileBuilder::cpu().time(Nanos(flush * 10 * MINUTE + seq * 1000));
            p.sample(
                &["main", &format!("{tenant}_work")],
                &[seq, seq * 10],
                &[("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")],
            );
            p.sample(&["main", "shared"], &[1, 10], &[]);
            let write = pprof_write(
                tenant,
                &[("service_name", "svc"), ("pod", pod)],
                p.gzip(),
                Nanos(0),
            );
            store.write(SeqNo(seq as u64), write).expect("write");
        }
        store.flush().await.expect("flush").expect("a block");
    }
    store
}

#[tokio::test]
async fn a_tenants_window_becomes_one_block_with_the_same_rows() {
    let store = three_flushes().await;
    // One PUT, one object, per flush: the symbols ride in the block's object.
    assert_eq!(store.block_puts(), 3);
    let objects: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(
        store.object_store().list(Some(&store.paths().blocks_dir())),
    )
    .await
    .expect("list");
    assert_eq!(objects.len(), 3, "{objects:?}");
    let before_a = sums(&store, "a").await;
    let before_b = sums(&store, "b").await;
    assert!(!before_a.is_empty());
    let now = Nanos(24 * 60 * MINUTE);
    let jobs = plan(&store.manifest(), now, &CompactionOptions::default(), 10);
    assert_eq!(jobs.len(), 2, "one job per tenant: {jobs:?}");
    let job = jobs
        .iter()
        .find(|j| j.tenant.as_str() == "a")
        .expect("a's job")
        .clone();
    assert_eq!(job.inputs.len(), 3);
    assert_eq!((job.window_start, job.window), (Nanos(0), HOUR));

    let id = job.output_id(store.config().shard, 7).expect("id");
    let output = store
        .compact(&job, id.clone())
        .await
        .expect("compact")
        .expect("rows");
    assert_eq!(
        output
            .meta
            .tenants
            .keys()
            .map(TenantId::as_str)
            .collect::<Vec<_>>(),
        ["a"]
    );
    store.upload_block(&output).await.expect("upload");
    let mut manifest = Manifest::clone(&store.manifest());
    assert!(manifest.apply_compaction(&job, output.meta.clone(), Nanos(5)));
    assert!(
        !manifest.apply_compaction(&job, output.meta.clone(), Nanos(6)),
        "a second swap of the same inputs changes nothing"
    );
    store.reset(manifest);

    assert_eq!(
        sums(&store, "a").await,
        before_a,
        "a's rows, values, labels and links are kept"
    );
    assert_eq!(sums(&store, "b").await, before_b, "b is untouched");
    let m = store.manifest();
    assert_eq!(
        m.blocks
            .iter()
            .filter(|b| b.tenants.contains_key(&job.tenant))
            .count(),
        1
    );
    assert!(m.retired.is_empty(), "b still reads the input blocks");
    // The output's symbols hold a's stacks only.
    let symbols = store.read_symbols(&id).await.expect("symbols");
    assert!(symbols.strings().iter().any(|s| s == "a_work"));
    assert!(
        !symbols.strings().iter().any(|s| s == "b_work"),
        "no other tenant's frames"
    );

    // b's job then empties the inputs: they are retired, to be deleted after the delay.
    let job_b = plan(&store.manifest(), now, &CompactionOptions::default(), 10);
    assert_eq!(
        job_b.len(),
        1,
        "a's block is alone in its window: {job_b:?}"
    );
    let id_b = job_b[0].output_id(store.config().shard, 8).expect("id");
    let out_b = store
        .compact(&job_b[0], id_b)
        .await
        .expect("compact")
        .expect("rows");
    let mut manifest = Manifest::clone(&store.manifest());
    assert!(manifest.apply_compaction(&job_b[0], out_b.meta, Nanos(9)));
    assert_eq!(manifest.blocks.len(), 2);
    assert_eq!(manifest.retired.len(), 3);
    assert_eq!(manifest.retired_before(Nanos(9)).len(), 0);
    let ready = manifest.retired_before(Nanos(10));
    assert!(manifest.forget_retired(&ready));
    assert!(manifest.retired.is_empty());
    assert!(
        plan(&manifest, now, &CompactionOptions::default(), 10).is_empty(),
        "nothing left to do"
    );
}

#[tokio::test]
async fn recent_and_large_windows_wait() {
    let store = three_flushes().await;
    let options = CompactionOptions::default();
    // The hour is not over (plus the settling time): nothing yet.
    assert!(plan(&store.manifest(), Nanos(62 * MINUTE), &options, 10).is_empty());
    assert_eq!(
        plan(&store.manifest(), Nanos(66 * MINUTE), &options, 10).len(),
        2
    );
    // A job merges at most memory_bytes / JOB_BYTES_PER_ROW rows: with room for none, a
    // tenant's share of a shared block still leaves it, one block a job; with room for a
    // window's first two inputs, a job of those two.
    let small = CompactionOptions {
        memory_bytes: 1,
        ..options
    };
    let alone = plan(&store.manifest(), Nanos(66 * MINUTE), &small, 10);
    assert!(!alone.is_empty());
    assert!(alone.iter().all(|j| j.inputs.len() == 1), "{alone:?}");
    let job = &plan(&store.manifest(), Nanos(66 * MINUTE), &options, 10)[0];
    assert!(job.inputs.len() >= 3, "{job:?}");
    let rows_of = |id: &BlockId| {
        store
            .manifest()
            .blocks
            .iter()
            .find(|b| b.id == *id)
            .expect("input")
            .tenants[&job.tenant]
            .rows
    };
    let two = CompactionOptions {
        memory_bytes: (rows_of(&job.inputs[0]) + rows_of(&job.inputs[1])) * JOB_BYTES_PER_ROW,
        ..options
    };
    let capped = plan(&store.manifest(), Nanos(66 * MINUTE), &two, 10);
    let capped = capped
        .iter()
        .find(|j| j.tenant == job.tenant)
        .expect("a job");
    assert_eq!(capped.inputs, job.inputs[..2]);
    // Past a day, windows are days.
    let jobs = plan(&store.manifest(), Nanos(26 * 60 * MINUTE), &options, 10);
    assert!(jobs.iter().all(|j| j.window == DAY), "{jobs:?}");
}

/// One flush of `tenants` at `minute`, each with `samples` distinct stacks.
async fn flush_at(store: &Store, seq: &mut u64, minute: i64, tenants: &[&str]) -> BlockId {
    for tenant in tenants {
        let mut p = ProfileBuilder::cpu().time(Nanos(minute * MINUTE));
        p.sample(&["main", "work"], &[1, 10], &[]);
        let labels = [("service_name", "svc"), ("pod", "p")];
        let write = pprof_write(tenant, &labels, p.gzip(), Nanos(0));
        *seq += 1;
        store.write(SeqNo(*seq), write).expect("write");
    }
    store.flush().await.expect("flush").expect("a block").id
}

/// Plans at `now`, runs the first job and applies it; its output's id.
async fn compact_first(store: &Store, now: Nanos, options: &CompactionOptions) -> BlockId {
    let job = plan(&store.manifest(), now, options, 10).remove(0);
    // The manifest's version differs after every swap: a fresh nonce per output.
    let nonce = store.manifest().version;
    let id = job.output_id(store.config().shard, nonce).expect("id");
    let output = store
        .compact(&job, id.clone())
        .await
        .expect("compact")
        .expect("rows");
    store.upload_block(&output).await.expect("upload");
    assert!(store.apply_compaction(&job, output.meta, now));
    id
}

#[tokio::test]
async fn a_window_still_filling_is_merged_a_generation_at_a_time() {
    let store = memory_store(StoreConfig::default()).await;
    let options = CompactionOptions {
        open_fan_in: 3,
        ..CompactionOptions::default()
    };
    let now = Nanos(20 * MINUTE);
    let t = TenantId::new("t").expect("t");
    let mut seq = 0;
    let mut flushes = vec![
        flush_at(&store, &mut seq, 1, &["t"]).await,
        flush_at(&store, &mut seq, 2, &["t"]).await,
    ];
    assert!(
        plan(&store.manifest(), now, &options, 10).is_empty(),
        "two of three"
    );
    flushes.push(flush_at(&store, &mut seq, 3, &["t"]).await);
    let jobs = plan(&store.manifest(), now, &options, 10);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].inputs, flushes, "the three flushes");
    assert_eq!((jobs[0].window_start, jobs[0].window), (Nanos(0), HOUR));
    let merged = compact_first(&store, now, &options).await;
    let generation = |id: &BlockId| {
        store
            .manifest()
            .blocks
            .iter()
            .find(|b| b.id == *id)
            .expect("block")
            .tenants[&t]
            .generation
    };
    assert_eq!(generation(&merged), 1);

    // The merged block is small, but older: two more flushes do not merge it again.
    let mut newer = vec![
        flush_at(&store, &mut seq, 4, &["t"]).await,
        flush_at(&store, &mut seq, 5, &["t"]).await,
    ];
    assert!(plan(&store.manifest(), now, &options, 10).is_empty());
    newer.push(flush_at(&store, &mut seq, 6, &["t"]).await);
    let jobs = plan(&store.manifest(), now, &options, 10);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let mut inputs = jobs[0].inputs.clone();
    inputs.sort();
    newer.sort();
    assert_eq!(inputs, newer, "the new flushes, not the merged block");
    compact_first(&store, now, &options).await;
    // Two blocks of the first generation: not yet three.
    assert!(plan(&store.manifest(), now, &options, 10).is_empty());
    // Once the window is over, everything in it is merged, a generation older still.
    let closed = plan(&store.manifest(), Nanos(66 * MINUTE), &options, 10);
    assert_eq!(closed[0].inputs.len(), 2, "{closed:?}");
    let last = compact_first(&store, Nanos(66 * MINUTE), &options).await;
    assert_eq!(generation(&last), 2);
    assert_eq!(sums(&store, "t").await.values().sum::<i64>(), 6 * 11);
}

#[tokio::test]
async fn a_shared_block_waits_for_its_window_to_close() {
    let store = memory_store(StoreConfig::default()).await;
    let options = CompactionOptions {
        open_fan_in: 2,
        ..CompactionOptions::default()
    };
    let mut seq = 0;
    flush_at(&store, &mut seq, 1, &["t", "u"]).await;
    // Alone in a filling window, a shared block is left for the window's end.
    assert!(plan(&store.manifest(), Nanos(20 * MINUTE), &options, 10).is_empty());
    let closed = plan(&store.manifest(), Nanos(66 * MINUTE), &options, 10);
    assert_eq!(closed.len(), 2, "each tenant leaves it: {closed:?}");
    // Two shared blocks in a filling window are merged, tenant by tenant.
    flush_at(&store, &mut seq, 2, &["t", "u"]).await;
    let jobs = plan(&store.manifest(), Nanos(20 * MINUTE), &options, 10);
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert!(jobs.iter().all(|j| j.inputs.len() == 2), "{jobs:?}");
}
