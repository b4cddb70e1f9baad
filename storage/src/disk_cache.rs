//! A local disk cache of block objects in front of a remote object store. Blocks are
//! immutable (written create-only, deleted whole), so a cached copy never goes stale: the
//! first read of a block object downloads it whole into the cache directory, later reads
//! (footers, row groups, symbols) are served from the local file. The cache holds at most
//! `max_bytes`, evicting the least recently read objects; it starts empty (its directory is
//! cleared when opened). Everything else (writes, lists, the manifest, usage records) goes to
//! the remote store untouched, and a delete removes the cached copy too.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// Objects larger than this share of the cache are read from the remote store, not cached.
const MAX_OBJECT_SHARE: u64 = 4;

/// What the cache has done, for metrics.
#[derive(Debug, Default)]
pub struct DiskCacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub evictions: AtomicU64,
    pub bytes: AtomicU64,
}

#[derive(Debug, Default)]
struct Index {
    /// Path → (size, last use tick).
    entries: HashMap<Path, (u64, u64)>,
    /// Last use tick → path, oldest first.
    by_use: BTreeMap<u64, Path>,
    bytes: u64,
    tick: u64,
}

impl Index {
    fn touch(&mut self, path: &Path) -> bool {
        let Some((_, used)) = self.entries.get(path).copied() else {
            return false;
        };
        self.by_use.remove(&used);
        self.tick += 1;
        self.by_use.insert(self.tick, path.clone());
        if let Some(e) = self.entries.get_mut(path) {
            e.1 = self.tick;
        }
        true
    }

    fn insert(&mut self, path: Path, size: u64) {
        self.remove(&path);
        self.tick += 1;
        self.by_use.insert(self.tick, path.clone());
        self.entries.insert(path, (size, self.tick));
        self.bytes += size;
    }

    fn remove(&mut self, path: &Path) -> bool {
        match self.entries.remove(path) {
            Some((size, used)) => {
                self.by_use.remove(&used);
                self.bytes -= size;
                true
            }
            None => false,
        }
    }

    /// Paths to evict so that the cache holds at most `max` bytes.
    fn evict_to(&mut self, max: u64) -> Vec<Path> {
        let mut out = Vec::new();
        while self.bytes > max {
            let Some((_, path)) = self.by_use.pop_first() else {
                break;
            };
            if let Some((size, _)) = self.entries.remove(&path) {
                self.bytes -= size;
            }
            out.push(path);
        }
        out
    }
}

/// The remote store with block objects cached on local disk.
pub struct DiskCache {
    remote: Arc<dyn ObjectStore>,
    local: LocalFileSystem,
    dir: std::path::PathBuf,
    max_bytes: u64,
    index: Arc<Mutex<Index>>,
    /// One download per object at a time; others wait for it.
    fills: tokio::sync::Mutex<HashMap<Path, Arc<tokio::sync::Mutex<()>>>>,
    pub stats: Arc<DiskCacheStats>,
}

impl fmt::Debug for DiskCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskCache")
            .field("remote", &self.remote.to_string())
            .field("dir", &self.dir)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl fmt::Display for DiskCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DiskCache({}, {})", self.remote, self.dir.display())
    }
}

impl DiskCache {
    /// A cache of at most `max_bytes` in `dir` (created, and emptied) over `remote`.
    pub fn new(
        remote: Arc<dyn ObjectStore>,
        dir: &std::path::Path,
        max_bytes: u64,
    ) -> std::io::Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
        // An evicted block's directory goes with its last file.
        let local = LocalFileSystem::new_with_prefix(dir)
            .map_err(std::io::Error::other)?
            .with_automatic_cleanup(true);
        Ok(Self {
            remote,
            local,
            dir: dir.to_owned(),
            max_bytes,
            index: Arc::new(Mutex::new(Index::default())),
            fills: tokio::sync::Mutex::new(HashMap::new()),
            stats: Arc::new(DiskCacheStats::default()),
        })
    }

    /// Block objects are immutable; everything else is read through.
    fn cacheable(location: &Path) -> bool {
        location.parts().any(|p| p.as_ref() == "blocks")
            && location
                .filename()
                .is_some_and(|f| f == "samples.parquet" || f == "symbols.bin")
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().expect("disk cache index lock poisoned")
    }

    /// Makes sure `location` is cached; false if it is too large to cache.
    async fn fill(&self, location: &Path) -> Result<bool> {
        if self.index().touch(location) {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(true);
        }
        let lock = {
            let mut fills = self.fills.lock().await;
            fills.entry(location.clone()).or_default().clone()
        };
        let _filling = lock.lock().await;
        if self.index().touch(location) {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(true);
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let head = self.remote.head(location).await?;
        if head.size > self.max_bytes / MAX_OBJECT_SHARE {
            return Ok(false);
        }
        let bytes = self
            .remote
            .get_opts(location, GetOptions::default())
            .await?
            .bytes()
            .await?;
        let size = bytes.len() as u64;
        self.local
            .put_opts(location, PutPayload::from(bytes), PutOptions::default())
            .await?;
        let evicted = {
            let mut index = self.index();
            index.insert(location.clone(), size);
            let evicted = index.evict_to(self.max_bytes);
            self.stats.bytes.store(index.bytes, Ordering::Relaxed);
            evicted
        };
        for path in evicted {
            self.stats.evictions.fetch_add(1, Ordering::Relaxed);
            // An open reader keeps its file; a failed delete only leaves a stray file.
            if let Err(e) = self.local.delete(&path).await {
                tracing::debug!(%path, error = %e, "evicting a cached block object failed");
            }
        }
        self.fills.lock().await.remove(location);
        Ok(true)
    }

    async fn forget(&self, location: &Path) {
        let removed = {
            let mut index = self.index();
            let removed = index.remove(location);
            self.stats.bytes.store(index.bytes, Ordering::Relaxed);
            removed
        };
        if removed {
            let _ = self.local.delete(location).await;
        }
    }
}

#[async_trait]
impl ObjectStore for DiskCache {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.remote.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.remote.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let conditional = options.if_match.is_some()
            || options.if_none_match.is_some()
            || options.if_modified_since.is_some()
            || options.if_unmodified_since.is_some()
            || options.version.is_some();
        if !conditional && Self::cacheable(location) && self.fill(location).await? {
            match self.local.get_opts(location, options.clone()).await {
                Ok(result) => return Ok(result),
                // Evicted between the fill and the read: read it remotely this time.
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.remote.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        if Self::cacheable(location) && self.fill(location).await? {
            match self.local.get_ranges(location, ranges).await {
                Ok(result) => return Ok(result),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.remote.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        // The cached copy goes first, so a deleted block is never served from the cache.
        let (index, dir, stats) = (self.index.clone(), self.dir.clone(), self.stats.clone());
        let locations = locations
            .map(move |p| {
                if let Ok(path) = &p {
                    let mut index = index.lock().expect("disk cache index lock poisoned");
                    if index.remove(path) {
                        stats.bytes.store(index.bytes, Ordering::Relaxed);
                        let _ = std::fs::remove_file(dir.join(path.as_ref()));
                    }
                }
                p
            })
            .boxed();
        self.remote.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.remote.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.remote.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.forget(to).await;
        self.remote.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests;
