use object_store::ObjectStoreExt;
use object_store::memory::InMemory;

use super::*;

fn block(i: usize) -> Path {
    Path::from(format!("s/shard-0/blocks/b{i}/samples.parquet"))
}

async fn setup(max: u64) -> (Arc<InMemory>, DiskCache, tempfile::TempDir) {
    let remote = Arc::new(InMemory::new());
    for i in 0..6 {
        remote
            .put(&block(i), PutPayload::from(vec![i as u8; 100]))
            .await
            .expect("put");
    }
    remote
        .put(
            &Path::from("s/manifest/1.json"),
            PutPayload::from_static(b"{}"),
        )
        .await
        .expect("put");
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = DiskCache::new(remote.clone(), &dir.path().join("cache"), max).expect("cache");
    (remote, cache, dir)
}

#[tokio::test]
async fn block_objects_are_read_once_then_from_disk() {
    let (remote, cache, dir) = setup(1000).await;
    let got = cache.get_range(&block(1), 10..20).await.expect("range");
    assert_eq!(got.as_ref(), &[1u8; 10]);
    assert_eq!(cache.stats.misses.load(Ordering::Relaxed), 1);
    // Gone from the remote store, still served (blocks never change).
    remote.delete(&block(1)).await.expect("delete");
    let again = cache
        .get_ranges(&block(1), &[0..5, 90..100])
        .await
        .expect("ranges");
    assert_eq!(again.iter().map(|b| b.len()).collect::<Vec<_>>(), [5, 10]);
    assert_eq!(cache.stats.hits.load(Ordering::Relaxed), 1);
    assert!(
        dir.path()
            .join("cache/s/shard-0/blocks/b1/samples.parquet")
            .exists()
    );
    // Anything but block objects is read through, never cached.
    cache
        .get(&Path::from("s/manifest/1.json"))
        .await
        .expect("manifest");
    assert_eq!(cache.stats.misses.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn the_cache_is_bounded_and_evicts_the_least_recently_read() {
    let (_, cache, _dir) = setup(400).await;
    for i in [0, 1, 2, 3, 0, 4] {
        cache.get(&block(i)).await.expect("get");
    }
    // 0 was read again after 1, so 1 went when 4 came.
    {
        let index = cache.index();
        assert_eq!(index.bytes, 400);
        for i in [0, 2, 3, 4] {
            assert!(index.entries.contains_key(&block(i)), "{i}");
        }
        assert!(!index.entries.contains_key(&block(1)));
    }
    assert_eq!(cache.stats.evictions.load(Ordering::Relaxed), 1);
    // An object larger than a quarter of the cache is read through.
    let big = Path::from("s/shard-0/blocks/big/samples.parquet");
    cache
        .put(&big, PutPayload::from(vec![9u8; 100]))
        .await
        .expect("put");
    let small =
        DiskCache::new(cache.remote.clone(), &_dir.path().join("small"), 300).expect("cache");
    small.get(&big).await.expect("get");
    assert_eq!(small.index().bytes, 0);
}

#[tokio::test]
async fn a_deleted_block_is_not_served_from_the_cache() {
    let (_, cache, dir) = setup(1000).await;
    cache.get(&block(3)).await.expect("get");
    cache.delete(&block(3)).await.expect("delete");
    assert!(cache.get(&block(3)).await.is_err(), "deleted everywhere");
    assert!(
        !dir.path()
            .join("cache/s/shard-0/blocks/b3/samples.parquet")
            .exists()
    );
    assert_eq!(cache.index().bytes, 0);
}
