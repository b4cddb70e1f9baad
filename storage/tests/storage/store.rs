use std::sync::Arc;

use firn_storage::block::BlockOptions;
use firn_storage::testing::{ProfileBuilder, memory_store, pprof_write};
use firn_storage::{Error, Nanos, SeqNo, Store, StoreConfig, TenantId};
use futures::StreamExt;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;

fn cpu_profile(seed: usize, time: i64) -> Vec<u8> {
    let mut b = ProfileBuilder::cpu().time(Nanos(time));
    for i in 0..20 {
        let leaf = format!("leaf_{}", (i * 7 + seed) % 13);
        b.sample(
            &["main", "serve", &leaf],
            &[1 + i as i64 % 3, 10_000_000 * (1 + i as i64 % 3)],
            &[],
        );
    }
    b.gzip()
}

async fn fill(store: &Store, writes: usize, first_seq: u64) {
    for i in 0..writes {
        let labels = [
            ("service_name", "api"),
            ("pod", if i % 2 == 0 { "a" } else { "b" }),
        ];
        let request = pprof_write(
            "team-a",
            &labels,
            cpu_profile(i, 1_000 + i as i64),
            Nanos(0),
        );
        store
            .write(SeqNo(first_seq + i as u64), request)
            .expect("valid write");
    }
}

#[tokio::test]
async fn flush_writes_a_block_and_the_manifest_survives_reopen() {
    let os: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let store = Store::open(os.clone(), Path::from("shard"), StoreConfig::default())
        .await
        .expect("open");
    fill(&store, 10, 1).await;
    let samples = store.buffer_samples();
    assert!(samples > 0);
    let block = store.flush().await.expect("flush").expect("a block");
    assert_eq!(
        block.rows as usize, samples,
        "every sample of both sample types is a row"
    );
    assert_eq!((block.first_seq, block.last_seq), (SeqNo(1), SeqNo(10)));
    assert_eq!(store.buffer_samples(), 0);
    let tenant = &block.tenants[&TenantId::new("team-a").expect("valid")];
    assert_eq!(tenant.row_groups, (0, block.row_groups));
    assert!(
        tenant.labels["pod"]
            .values
            .as_ref()
            .expect("few values")
            .contains("b")
    );

    let reopened = Store::open(os, Path::from("shard"), StoreConfig::default())
        .await
        .expect("reopen");
    assert_eq!(reopened.manifest().blocks, vec![block]);
    assert_eq!(reopened.last_seq(), SeqNo(10));
    let err = reopened
        .write(
            SeqNo(10),
            pprof_write("t", &[], cpu_profile(0, 0), Nanos(0)),
        )
        .expect_err("old seq");
    assert!(matches!(err, Error::SequenceNotIncreasing { .. }), "{err}");
}

#[tokio::test]
async fn the_same_writes_give_the_same_bytes() {
    let mut outputs = Vec::new();
    for _ in 0..2 {
        let store = memory_store(StoreConfig::default()).await;
        fill(&store, 12, 5).await;
        let block = store.encode_buffer().await.expect("encode").expect("block");
        outputs.push((block.samples, block.symbols, block.meta));
    }
    assert_eq!(outputs[0], outputs[1]);
}

#[tokio::test]
async fn a_retried_flush_is_idempotent_and_a_conflict_is_refused() {
    let os: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let store = Store::open(os.clone(), Path::from("s"), StoreConfig::default())
        .await
        .expect("open");
    fill(&store, 3, 1).await;
    let block = store.encode_buffer().await.expect("encode").expect("block");
    store.upload_block(&block).await.expect("first upload");
    store
        .upload_block(&block)
        .await
        .expect("identical retry succeeds");

    // Different rows under the same sequence range: never overwrites.
    let other = memory_store(StoreConfig::default()).await;
    fill(&other, 2, 1).await;
    other
        .write(SeqNo(3), pprof_write("x", &[], cpu_profile(9, 9), Nanos(0)))
        .expect("write");
    let different = other.encode_buffer().await.expect("encode").expect("block");
    assert_eq!(different.meta.id, block.meta.id);
    let err = store.upload_block(&different).await.expect_err("conflict");
    assert!(matches!(err, Error::BlockConflict { .. }), "{err}");
}

/// Two leaders that flushed the same rows (one deposed mid-flush): whichever block is recorded
/// first counts, the other changes nothing and its objects can go, and no row counts twice.
#[tokio::test]
async fn a_block_overlapping_flushed_rows_is_not_added() {
    let os: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let store = Store::open(os.clone(), Path::from("s"), StoreConfig::default())
        .await
        .expect("open");
    fill(&store, 4, 1).await;
    let deposed = store.encode_buffer().await.expect("encode").expect("block");
    fill(&store, 2, 5).await;
    let current = store.encode_buffer().await.expect("encode").expect("block");
    assert_eq!(
        (current.meta.first_seq, current.meta.last_seq),
        (SeqNo(1), SeqNo(6))
    );
    let samples = store.buffer_samples() as u64;
    store.upload_block(&deposed).await.expect("upload");
    store.upload_block(&current).await.expect("upload");

    assert!(store.add_flushed_block(current.meta.clone()).expect("add"));
    assert!(!store.add_flushed_block(deposed.meta.clone()).expect("add"));
    assert!(
        !store.add_flushed_block(current.meta.clone()).expect("add"),
        "a replayed command changes nothing"
    );
    let manifest = store.manifest();
    assert_eq!(manifest.blocks, vec![current.meta.clone()]);
    assert_eq!(manifest.blocks.iter().map(|b| b.rows).sum::<u64>(), samples);

    assert!(
        !store
            .delete_unused_block(&current.meta.id)
            .await
            .expect("delete"),
        "a block in the manifest stays"
    );
    assert!(
        store
            .delete_unused_block(&deposed.meta.id)
            .await
            .expect("delete")
    );
    let left: Vec<_> = os
        .list(None)
        .map(|m| m.expect("listed").location.to_string())
        .collect::<Vec<_>>()
        .await;
    let id = deposed.meta.id.to_string();
    assert!(!left.iter().any(|k| k.contains(&id)), "{left:?}");
    assert!(
        left.iter()
            .any(|k| k.contains(&current.meta.id.to_string())),
        "{left:?}"
    );
}

#[tokio::test]
async fn the_budget_refuses_writes_without_changing_the_buffer() {
    let config = StoreConfig {
        buffer_budget: 64 * 1024,
        ..Default::default()
    };
    let store = memory_store(config).await;
    let mut refused = None;
    for i in 0..200u64 {
        match store.write(
            SeqNo(i + 1),
            pprof_write("t", &[], cpu_profile(i as usize, 0), Nanos(0)),
        ) {
            Ok(_) => {}
            Err(e) => {
                refused = Some((i + 1, e));
                break;
            }
        }
    }
    let (seq, err) = refused.expect("the budget is reached");
    assert!(err.is_overload(), "{err}");
    assert!(err.to_string().contains("budget is 65536 bytes"), "{err}");
    assert_eq!(
        store.last_seq(),
        SeqNo(seq - 1),
        "a refused write does not advance the sequence"
    );
    assert!(store.buffer_bytes() <= 64 * 1024 + 16 * 1024);
    store.flush().await.expect("flush");
    store
        .write(
            SeqNo(seq),
            pprof_write("t", &[], cpu_profile(0, 0), Nanos(0)),
        )
        .expect("room again after a flush");
}

#[tokio::test]
async fn bad_input_leaves_stored_data_untouched() {
    let store = memory_store(StoreConfig::default()).await;
    fill(&store, 2, 1).await;
    let before = (store.buffer_samples(), store.last_seq());
    let mut bad_location = ProfileBuilder::cpu();
    bad_location.sample(&["a"], &[1, 1], &[]);
    let mut p = bad_location.build();
    p.sample[0].location_id = vec![42];
    let inputs: Vec<Vec<u8>> = vec![
        cpu_profile(0, 0)[..30].to_vec(),
        vec![0xde, 0xad, 0xbe, 0xef],
        firn_storage::pprof::encode_gzip(&p),
    ];
    for input in inputs {
        let err = store
            .write(SeqNo(3), pprof_write("t", &[], input, Nanos(0)))
            .expect_err("bad");
        assert!(err.is_client_error(), "{err}");
    }
    assert_eq!((store.buffer_samples(), store.last_seq()), before);
}

#[tokio::test]
async fn retention_deletes_only_blocks_wholly_past_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let os: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).expect("fs"));
    let config = StoreConfig {
        block: BlockOptions {
            row_group_rows: 1000,
            ..Default::default()
        },
        ..Default::default()
    };
    let store = Store::open(os.clone(), Path::from("s"), config)
        .await
        .expect("open");
    let hour = 3_600_000_000_000i64;
    store
        .write(
            SeqNo(1),
            pprof_write("old", &[], cpu_profile(1, hour), Nanos(0)),
        )
        .expect("write");
    let old = store.flush().await.expect("flush").expect("block");
    store
        .write(
            SeqNo(2),
            pprof_write("old", &[], cpu_profile(1, 10 * hour), Nanos(0)),
        )
        .expect("write");
    store
        .write(
            SeqNo(3),
            pprof_write("keep", &[], cpu_profile(1, hour), Nanos(0)),
        )
        .expect("write");
    let mixed = store.flush().await.expect("flush").expect("block");
    assert_eq!(mixed.tenants.len(), 2);

    let retention = |t: &TenantId| (t.as_str() == "old").then_some(Nanos(2 * hour));
    let deleted = store
        .apply_retention(&retention, Nanos(12 * hour))
        .await
        .expect("retention");
    assert_eq!(deleted, vec![old.id.clone()]);
    assert_eq!(store.manifest().blocks, vec![mixed]);
    assert!(
        !dir.path()
            .join("s/blocks")
            .join(old.id.as_str())
            .join("samples.parquet")
            .exists()
    );
}

/// A block refers to stacks by ordinal into its own stack table, stored as steps within a
/// profile (byte stream split Int32, the encoding named in the file); decoded, the ordinals rise
/// within each profile and are all in range; and the metadata a merge reads instead of columns
/// (periods, deltas, label row counts).
#[tokio::test]
async fn blocks_store_stacks_as_rising_ordinals_into_their_stack_table() {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int32Type, Int64Type};
    use firn_storage::stack_codec::{StackDecoder, StackEncoding};
    use object_store::ObjectStoreExt;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let store = memory_store(StoreConfig::default()).await;
    fill(&store, 10, 1).await;
    let block = store.flush().await.expect("flush").expect("a block");
    let symbols = store.read_symbols(&block.id).await.expect("symbols");
    let ids: Vec<_> = (0..symbols.stack_count() as u32)
        .map(|r| symbols.stack(r).id)
        .collect();

    let bytes = store
        .object_store()
        .get(&store.paths().block_samples(&block.id))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    assert!(
        bytes.windows(5).any(|w| w == b"FSYM2"),
        "the block's symbols are version 2 (stack ids recomputed on reading)"
    );
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("parquet");
    let metadata = builder.metadata().clone();
    let tenant = &block.tenants[&TenantId::new("team-a").expect("valid")];
    for (index, row_group) in metadata.row_groups().iter().enumerate() {
        let column = row_group
            .columns()
            .iter()
            .find(|c| c.column_path().string() == firn_storage::schema::STACK)
            .expect("a stack column");
        assert!(
            column
                .encodings()
                .any(|e| e == parquet::basic::Encoding::BYTE_STREAM_SPLIT),
            "stack steps are byte stream split: {:?}",
            column.encodings().collect::<Vec<_>>()
        );
        assert!(
            matches!(column.compression(), parquet::basic::Compression::ZSTD(_)),
            "{:?}",
            column.compression()
        );
        let types = row_group
            .columns()
            .iter()
            .find(|c| c.column_path().string() == firn_storage::schema::PROFILE_TYPE)
            .and_then(|c| c.statistics())
            .expect("profile type statistics");
        assert_eq!(
            types.min_bytes_opt(),
            types.max_bytes_opt(),
            "a row group holds one profile type"
        );
        // The block's metadata names it, so a scan of one type opens that type's only.
        let named: Vec<&String> = tenant
            .type_row_groups
            .iter()
            .filter(|(_, (start, end))| (*start..*end).contains(&index))
            .map(|(pt, _)| pt)
            .collect();
        assert_eq!(
            named.iter().map(|pt| pt.as_bytes()).collect::<Vec<_>>(),
            vec![types.min_bytes_opt().expect("a type")],
            "row group {index}: {:?}",
            tenant.type_row_groups
        );
    }
    assert_eq!(
        tenant.type_row_groups.keys().collect::<Vec<_>>(),
        tenant.profile_types.iter().collect::<Vec<_>>()
    );
    let cpu = tenant
        .profile_types
        .iter()
        .find(|pt| pt.contains(":cpu:"))
        .expect("a cpu type")
        .clone();
    let one_type = firn_storage::filter::ScanFilter {
        profile_types: Some(std::collections::BTreeSet::from([cpu.clone()])),
        ..Default::default()
    };
    let (start, end) = tenant.type_row_groups[&cpu];
    assert_eq!(
        tenant.row_groups_for(&one_type),
        (start..end).collect::<Vec<_>>()
    );
    assert!(
        metadata.num_row_groups() >= 2,
        "two sample types, two row groups"
    );
    assert!(builder.schema().field_with_name("stack_id").is_err());
    assert_eq!(block.stack, StackEncoding::Gaps, "a block stores steps");
    let described = metadata
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
        .find(|kv| kv.key == firn_storage::block::STACK_ENCODING_KEY)
        .and_then(|kv| kv.value.clone());
    assert_eq!(
        described.as_deref(),
        Some("\"gaps\""),
        "the file names its encoding"
    );
    let mut previous: Option<(u64, i64, String, i32)> = None;
    let mut uses = vec![0u64; ids.len()];
    let mut decoder = StackDecoder::new(block.stack);
    let mut steps = 0;
    for batch in builder.build().expect("reader") {
        let batch = batch.expect("batch");
        let stored = batch
            .column_by_name("stack")
            .expect("stack")
            .as_primitive::<Int32Type>();
        steps += stored.values().iter().filter(|&&v| v >= 0).count();
        let stack = &decoder.decode(stored).expect("steps decode");
        assert!(
            batch.column_by_name("series_id").is_none(),
            "blocks do not store series ids"
        );
        let series = firn_storage::schema::series_ids(&batch).expect("series ids from labels");
        let time = batch
            .column_by_name("time_nanos")
            .expect("time")
            .as_primitive::<Int64Type>();
        let types = arrow::compute::cast(
            batch.column_by_name("profile_type").expect("type"),
            &arrow::datatypes::DataType::Utf8,
        )
        .expect("cast");
        let types = types.as_string::<i32>();
        for i in 0..batch.num_rows() {
            let ordinal = stack.value(i);
            assert!(
                (0..ids.len() as i32).contains(&ordinal),
                "ordinal {ordinal} in range"
            );
            let profile = (series.value(i), time.value(i), types.value(i).to_owned());
            if let Some((s, t, p, o)) = &previous
                && (*s, *t, p.as_str()) == (profile.0, profile.1, profile.2.as_str())
            {
                assert!(ordinal >= *o, "ordinals never fall within a profile");
            }
            previous = Some((profile.0, profile.1, profile.2, ordinal));
        }
        for i in 0..batch.num_rows() {
            uses[stack.value(i) as usize] += 1;
        }
        assert_eq!(stack.null_count(), 0);
    }
    assert!(steps > 0, "most samples are steps from the one before");
    // One service: the most used stacks come first.
    assert!(
        uses.windows(2).all(|w| w[0] >= w[1]),
        "ordinals by use count, most first: {uses:?}"
    );
    assert!(
        uses.iter().all(|&u| u > 0),
        "every stack in the table is used"
    );

    let tenant = &block.tenants[&TenantId::new("team-a").expect("valid")];
    assert_eq!(tenant.deltas, std::collections::BTreeSet::from([true]));
    assert!(
        tenant.periods.values().all(|&p| p == 10_000_000),
        "{:?}",
        tenant.periods
    );
    assert_eq!(
        tenant.labels["pod"].rows, tenant.rows,
        "every row has a pod"
    );
}
