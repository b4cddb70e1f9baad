//! The embedded store: a buffer, a manifest of blocks, and an object store, for one shard.
//!
//! ```text
//!  write(seq, request) ─ normalize (caller's thread) ─► Buffer::apply ─► in memory
//!  flush() ─ cut buffer ─► encode_block (blocking pool) ─► PUT samples.parquet (+ symbols)
//!          ─► PUT manifest/<version>.json ─► drop flushed chunks from the buffer
//!  snapshot() ─► buffer chunks + manifest, for firn-query
//! ```
//!
//! Without a server the buffer is not logged: unflushed writes are lost if the process dies.
//! A server makes them durable in its Raft log and replays from `manifest.flushed_seq + 1`.

use std::sync::{Arc, Mutex, RwLock};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tracing::{debug, info};

use crate::block::{BlockMeta, BlockOptions, ByteRange, EncodedBlock, encode_block};
use crate::buffer::{Buffer, BufferSnapshot, WriteStats};
use crate::error::{Error, Result};
use crate::ids::{BlockId, Nanos, SeqNo, ShardId, TenantId};
use crate::manifest::Manifest;
use crate::normalize::{NormalizeLimits, Normalized, WriteRequest, normalize};
use crate::paths::Paths;
use crate::sums::{TenantSums, decode_sums};
use crate::symbols::{SymbolSource, SymbolTable, decode_symbols};

/// Configuration of one store.
#[derive(Clone, Copy, Debug)]
pub struct StoreConfig {
    /// The shard this store holds; part of block ids.
    pub shard: ShardId,
    /// Most bytes the buffer may hold; writes past it get [`Error::BufferFull`].
    pub buffer_budget: usize,
    pub limits: NormalizeLimits,
    pub block: BlockOptions,
    /// Most bytes a block's symbol file may decompress to.
    pub max_symbols_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            shard: ShardId(0),
            buffer_budget: 256 << 20,
            limits: NormalizeLimits::default(),
            block: BlockOptions::default(),
            max_symbols_bytes: 512 << 20,
        }
    }
}

/// What a reader sees: the buffer and the blocks at one moment.
#[derive(Clone, Debug)]
pub struct ReadSnapshot {
    pub buffer: BufferSnapshot,
    pub manifest: Arc<Manifest>,
}

/// One shard's storage over an object store.
#[derive(Debug)]
pub struct Store {
    object_store: Arc<dyn ObjectStore>,
    paths: Paths,
    config: StoreConfig,
    buffer: Mutex<Buffer>,
    manifest: RwLock<Arc<Manifest>>,
    flush_lock: tokio::sync::Mutex<()>,
    puts: std::sync::atomic::AtomicU64,
}

/// Marks the symbols in a block object, right before the copy of the Parquet footer (blocks
/// written before keep them in `symbols.bin` beside the object).
pub const SYMBOLS_TRAILER: &[u8; 8] = b"FIRNSYM1";

/// The footer section of a Parquet file: metadata, its 4-byte length and `PAR1`.
fn parquet_footer(file: &[u8]) -> Option<&[u8]> {
    let n = file.len();
    if n < 12 || &file[n - 4..] != b"PAR1" {
        return None;
    }
    let len = u32::from_le_bytes(file[n - 8..n - 4].try_into().ok()?) as usize;
    file.get(n.checked_sub(len + 8)?..)
}

impl Store {
    /// Opens the store under `prefix`, loading the newest manifest if there is one.
    pub async fn open(
        object_store: Arc<dyn ObjectStore>,
        prefix: Path,
        config: StoreConfig,
    ) -> Result<Self> {
        let paths = Paths::new(prefix);
        let manifest = load_latest_manifest(object_store.as_ref(), &paths)
            .await?
            .unwrap_or_default();
        info!(prefix = %paths.prefix(), blocks = manifest.blocks.len(), flushed_seq = %manifest.flushed_seq, "store opened");
        Ok(Self {
            buffer: Mutex::new(Buffer::new(config.buffer_budget, manifest.flushed_seq)),
            manifest: RwLock::new(Arc::new(manifest)),
            object_store,
            paths,
            config,
            flush_lock: tokio::sync::Mutex::new(()),
            puts: Default::default(),
        })
    }

    /// A store whose blocks are `manifest` (kept by a server's Raft group, not read from the
    /// object store) and whose buffer is empty.
    pub fn with_manifest(
        object_store: Arc<dyn ObjectStore>,
        prefix: Path,
        config: StoreConfig,
        manifest: Manifest,
    ) -> Self {
        Self {
            buffer: Mutex::new(Buffer::new(config.buffer_budget, manifest.flushed_seq)),
            manifest: RwLock::new(Arc::new(manifest)),
            object_store,
            paths: Paths::new(prefix),
            config,
            flush_lock: tokio::sync::Mutex::new(()),
            puts: Default::default(),
        }
    }

    /// Replaces the blocks with `manifest` and empties the buffer (a Raft snapshot installed).
    pub fn reset(&self, manifest: Manifest) {
        let mut buffer = self.buffer.lock().expect("buffer lock poisoned");
        *buffer = Buffer::new(self.config.buffer_budget, manifest.flushed_seq);
        *self.manifest.write().expect("manifest lock poisoned") = Arc::new(manifest);
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.object_store
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// Normalises and applies one write. CPU-bound: async callers run it on a blocking pool.
    pub fn write(&self, seq: SeqNo, request: WriteRequest) -> Result<WriteStats> {
        let normalized = normalize(request, &self.config.limits)?;
        self.apply(seq, &normalized)
    }

    /// Applies an already normalised write.
    pub fn apply<S: SymbolSource>(
        &self,
        seq: SeqNo,
        normalized: &Normalized<S>,
    ) -> Result<WriteStats> {
        self.buffer
            .lock()
            .expect("buffer lock poisoned")
            .apply(seq, normalized)
    }

    /// Applies a write a Raft group has committed. The buffer's budget is not checked: it was
    /// checked when the write was admitted, and a committed write must apply the same way on
    /// every replica and every replay.
    pub fn apply_committed<S: SymbolSource>(
        &self,
        seq: SeqNo,
        normalized: &Normalized<S>,
    ) -> Result<WriteStats> {
        self.buffer
            .lock()
            .expect("buffer lock poisoned")
            .apply_unbudgeted(seq, normalized)
    }

    /// Records a block a server uploaded and its Raft group committed: the block joins the
    /// manifest (in memory; Raft persists it) and the rows it holds leave the buffer; true
    /// when it joined. A block holding any write the manifest's blocks already hold changes
    /// nothing: replaying the command is harmless, and of two leaders that each flushed the
    /// same rows (one deposed mid-flush) only the first block counts.
    pub fn add_flushed_block(&self, block: BlockMeta) -> Result<bool> {
        let current = self.manifest();
        if block.first_seq <= current.flushed_seq || current.blocks.iter().any(|b| b.id == block.id)
        {
            return Ok(false);
        }
        let through = block.last_seq;
        let mut manifest = Manifest::clone(&current);
        manifest.add_block(block);
        *self.manifest.write().expect("manifest lock poisoned") = Arc::new(manifest);
        self.buffer
            .lock()
            .expect("buffer lock poisoned")
            .drop_through(through)?;
        Ok(true)
    }

    /// Deletes the objects of an uploaded block the manifest did not take (see
    /// [`Store::add_flushed_block`]); a block the manifest holds is left alone.
    pub async fn delete_unused_block(&self, id: &BlockId) -> Result<bool> {
        if self.manifest().blocks.iter().any(|b| &b.id == id) {
            return Ok(false);
        }
        delete(self.object_store.as_ref(), &self.paths.block_samples(id)).await?;
        delete(self.object_store.as_ref(), &self.paths.block_symbols(id)).await?;
        Ok(true)
    }

    /// Records that every write up to `seq` is in blocks when the buffer holds none of them
    /// (writes of empty profiles add no rows), so the log can be purged through it. Changes
    /// nothing, and says so, when the buffer holds a write at or below `seq`.
    pub fn mark_flushed_through(&self, seq: SeqNo) -> bool {
        let buffer = self.buffer.lock().expect("buffer lock poisoned");
        let current = self.manifest();
        if seq <= current.flushed_seq || buffer.first_seq().is_some_and(|first| first <= seq) {
            return false;
        }
        let mut manifest = Manifest::clone(&current);
        manifest.flushed_seq = seq;
        manifest.version += 1;
        *self.manifest.write().expect("manifest lock poisoned") = Arc::new(manifest);
        true
    }

    /// Refuses a write the buffer's budget cannot take, changing nothing (see
    /// [`Buffer::check_fits`](crate::buffer::Buffer::check_fits)).
    pub fn check_fits<S: SymbolSource>(&self, normalized: &Normalized<S>) -> Result<()> {
        self.buffer
            .lock()
            .expect("buffer lock poisoned")
            .check_fits(normalized)
    }

    /// Normalises a write under the store's limits, without applying it.
    pub fn normalize(&self, request: WriteRequest) -> Result<Normalized> {
        normalize(request, &self.config.limits)
    }

    /// The last sequence number applied.
    pub fn last_seq(&self) -> SeqNo {
        self.buffer.lock().expect("buffer lock poisoned").last_seq()
    }

    pub fn buffer_bytes(&self) -> usize {
        self.buffer
            .lock()
            .expect("buffer lock poisoned")
            .memory_bytes()
    }

    pub fn buffer_samples(&self) -> usize {
        self.buffer
            .lock()
            .expect("buffer lock poisoned")
            .sample_count()
    }

    pub fn manifest(&self) -> Arc<Manifest> {
        self.manifest
            .read()
            .expect("manifest lock poisoned")
            .clone()
    }

    /// The buffer, then the manifest: rows a flush has put into a block but not yet dropped
    /// from the buffer are left out of the buffer's view, so no row is seen twice and none is
    /// missed.
    pub fn snapshot(&self) -> ReadSnapshot {
        let mut buffer = self.buffer.lock().expect("buffer lock poisoned").snapshot();
        let manifest = self.manifest();
        buffer.chunks.retain(|c| c.seq > manifest.flushed_seq);
        ReadSnapshot { buffer, manifest }
    }

    /// Encodes the whole buffer as a block without changing anything; `None` when empty.
    pub async fn encode_buffer(&self) -> Result<Option<EncodedBlock>> {
        // `snapshot()` leaves out rows a block already holds (were their drop to have failed,
        // they would otherwise be flushed again).
        let snapshot = self.snapshot().buffer;
        let (Some(first), Some(last)) = (snapshot.chunks.first(), snapshot.chunks.last()) else {
            return Ok(None);
        };
        let id = BlockId::new(self.config.shard, first.seq, last.seq);
        let options = self.config.block;
        let encoded = tokio::task::spawn_blocking(move || {
            let symbols = snapshot.symbols.read().expect("symbol lock poisoned");
            encode_block(id, &snapshot.chunks, &symbols, &options)
        })
        .await
        .expect("block encoding does not panic")?;
        Ok(Some(encoded))
    }

    /// Writes the buffer as a block, records it in the manifest and drops the flushed rows.
    /// Safe to retry after a failure: the block's keys derive from its sequence range and are
    /// written create-only, so a retry rewrites identical bytes or nothing.
    pub async fn flush(&self) -> Result<Option<BlockMeta>> {
        let _guard = self.flush_lock.lock().await;
        let Some(encoded) = self.encode_buffer().await? else {
            return Ok(None);
        };
        self.upload_block(&encoded).await?;
        let meta = encoded.meta;
        let mut manifest = Manifest::clone(&self.manifest());
        manifest.add_block(meta.clone());
        self.publish_manifest(manifest).await?;
        self.buffer
            .lock()
            .expect("buffer lock poisoned")
            .drop_through(meta.last_seq)?;
        info!(block = %meta.id, rows = meta.rows, bytes = meta.bytes(), "block flushed");
        Ok(Some(meta))
    }

    /// Uploads a block as one object, create-only: one PUT per flush. The object is a valid
    /// Parquet file that carries the block's stack sums and symbols: the Parquet file as
    /// written, then the sums (where the block metadata places them), then the symbols, their
    /// length and [`SYMBOLS_TRAILER`], then a copy of the file's footer (its
    /// offsets are absolute, so they still point at the row groups). Any Parquet reader reads
    /// it from its last footer; Firn reads the first `samples_bytes` as the file and finds the
    /// symbols from the end (see [`read_block_symbols`]).
    pub async fn upload_block(&self, block: &EncodedBlock) -> Result<()> {
        let samples = &block.samples;
        let footer = parquet_footer(samples)
            .ok_or(Error::Internal("an encoded block is not a Parquet file"))?;
        let mut object = bytes::BytesMut::with_capacity(
            samples.len() + block.sums.len() + block.symbols.len() + 16 + footer.len(),
        );
        object.extend_from_slice(samples);
        object.extend_from_slice(&block.sums);
        object.extend_from_slice(&block.symbols);
        object.extend_from_slice(&(block.symbols.len() as u64).to_le_bytes());
        object.extend_from_slice(SYMBOLS_TRAILER);
        object.extend_from_slice(footer);
        self.puts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        put_create_only(
            self.object_store.as_ref(),
            &self.paths.block_samples(&block.meta.id),
            object.freeze(),
        )
        .await
    }

    /// Block objects written (PUTs, retries included).
    pub fn block_puts(&self) -> u64 {
        self.puts.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Persists a new manifest version and makes it the current one.
    async fn publish_manifest(&self, manifest: Manifest) -> Result<()> {
        let key = self.paths.manifest(manifest.version);
        let json = serde_json::to_vec(&manifest).map_err(|source| Error::ManifestCodec {
            key: key.to_string(),
            source,
        })?;
        put_create_only(self.object_store.as_ref(), &key, json.into()).await?;
        let previous = manifest.version.saturating_sub(2);
        *self.manifest.write().expect("manifest lock poisoned") = Arc::new(manifest);
        // Keep the last few versions for readers that listed them; older ones go. The new
        // version is already in force, so failing to clean up is logged, not returned.
        if let Err(e) = self.delete_manifests_before(previous).await {
            tracing::warn!(error = %e, "old manifest versions not deleted");
        }
        Ok(())
    }

    async fn delete_manifests_before(&self, version: u64) -> Result<()> {
        let old: Vec<Path> = self
            .object_store
            .list(Some(&self.paths.manifests_dir()))
            .try_filter_map(|meta| {
                let v = self.paths.manifest_version(&meta.location);
                futures::future::ready(Ok(v.filter(|&v| v < version).map(|_| meta.location)))
            })
            .try_collect()
            .await
            .map_err(|source| Error::List {
                prefix: self.paths.manifests_dir().to_string(),
                source,
            })?;
        for key in old {
            delete(self.object_store.as_ref(), &key).await?;
        }
        Ok(())
    }

    /// Deletes the blocks whose every tenant's rows are older than that tenant's retention
    /// (`retention(tenant)`, `None` = keep forever). Returns the deleted blocks.
    pub async fn apply_retention(
        &self,
        retention: &(dyn Fn(&TenantId) -> Option<Nanos> + Send + Sync),
        now: Nanos,
    ) -> Result<Vec<BlockId>> {
        let _guard = self.flush_lock.lock().await;
        let current = self.manifest();
        let expired = self.expired_blocks(retention, now);
        if expired.is_empty() {
            return Ok(expired);
        }
        let mut manifest = Manifest::clone(&current);
        manifest.remove_blocks(&expired);
        self.publish_manifest(manifest).await?;
        for id in &expired {
            delete(self.object_store.as_ref(), &self.paths.block_samples(id)).await?;
            delete(self.object_store.as_ref(), &self.paths.block_symbols(id)).await?;
            info!(block = %id, "block deleted by retention");
        }
        Ok(expired)
    }

    /// The blocks whose every tenant's rows are older than that tenant's retention
    /// (`retention(tenant)`, `None` = keep forever) at `now`.
    pub fn expired_blocks(
        &self,
        retention: &(dyn Fn(&TenantId) -> Option<Nanos> + Send + Sync),
        now: Nanos,
    ) -> Vec<BlockId> {
        self.manifest()
            .blocks
            .iter()
            .filter(|b| {
                b.tenants.iter().all(|(tenant, t)| {
                    retention(tenant).is_some_and(|keep| t.max_time < now.saturating_sub(keep))
                })
            })
            .map(|b| b.id.clone())
            .collect()
    }

    /// Takes blocks out of the manifest (in memory; a Raft group persists the change): they
    /// are no longer read. True when any was there.
    pub fn drop_blocks(&self, ids: &[BlockId]) -> bool {
        let current = self.manifest();
        if !current.blocks.iter().any(|b| ids.contains(&b.id)) {
            return false;
        }
        let mut manifest = Manifest::clone(&current);
        manifest.remove_blocks(ids);
        *self.manifest.write().expect("manifest lock poisoned") = Arc::new(manifest);
        true
    }

    /// Changes the manifest in memory (a Raft group persists the change) when `change` says
    /// it changed something; returns that.
    pub(crate) fn update_manifest(&self, change: impl FnOnce(&mut Manifest) -> bool) -> bool {
        let mut guard = self.manifest.write().expect("manifest lock poisoned");
        let mut manifest = Manifest::clone(&guard);
        if !change(&mut manifest) {
            return false;
        }
        *guard = Arc::new(manifest);
        true
    }

    /// Reads one tenant's stack sums in a block (`range` from its metadata).
    pub async fn read_sums(&self, block: &BlockId, range: ByteRange) -> Result<TenantSums> {
        read_block_sums(
            self.object_store.as_ref(),
            &self.paths,
            block,
            range,
            self.config.max_symbols_bytes,
        )
        .await
    }

    /// Reads a block's symbol table.
    pub async fn read_symbols(&self, block: &BlockId) -> Result<SymbolTable> {
        read_block_symbols(
            self.object_store.as_ref(),
            &self.paths,
            block,
            self.config.max_symbols_bytes,
        )
        .await
    }
}

/// Reads and decodes one tenant's stack sums from a block object, where its metadata places
/// them, decompressing at most `max_bytes`.
pub async fn read_block_sums(
    store: &dyn ObjectStore,
    paths: &Paths,
    block: &BlockId,
    range: ByteRange,
    max_bytes: usize,
) -> Result<TenantSums> {
    let key = paths.block_samples(block);
    if range.len > max_bytes as u64 {
        return Err(Error::Corrupt {
            key: key.to_string(),
            reason: format!(
                "its stack sums are {} bytes, past the limit of {max_bytes}",
                range.len
            ),
        });
    }
    let bytes = store
        .get_range(&key, range.range())
        .await
        .map_err(|source| Error::Download {
            key: key.to_string(),
            source,
        })?;
    decode_sums(&bytes, max_bytes).map_err(|reason| Error::Corrupt {
        key: key.to_string(),
        reason,
    })
}

/// Reads and decodes a block's symbol table: from its object (before the last footer), or
/// from the `symbols.bin` of a block written before symbols moved into it.
pub async fn read_block_symbols(
    store: &dyn ObjectStore,
    paths: &Paths,
    block: &BlockId,
    max_bytes: usize,
) -> Result<SymbolTable> {
    let key = paths.block_samples(block);
    let download = |source| Error::Download {
        key: key.to_string(),
        source,
    };
    let corrupt = |reason: String| Error::Corrupt {
        key: key.to_string(),
        reason,
    };
    let suffix = |n: u64| object_store::GetOptions {
        range: Some(object_store::GetRange::Suffix(n)),
        ..Default::default()
    };
    // The last footer's length, then what precedes it: the symbols' length and the marker.
    let tail = store.get_opts(&key, suffix(8)).await.map_err(download)?;
    let size = tail.meta.size;
    let tail = tail.bytes().await.map_err(download)?;
    if tail.len() != 8 || &tail[4..] != b"PAR1" {
        return Err(corrupt("it does not end as a Parquet file".into()));
    }
    let footer = u64::from(u32::from_le_bytes(tail[..4].try_into().expect("4 bytes"))) + 8;
    let marker_end = size
        .checked_sub(footer)
        .filter(|&e| e >= 16)
        .ok_or_else(|| corrupt(format!("its footer claims {footer} of {size} bytes")))?;
    let marker = store
        .get_range(&key, marker_end - 16..marker_end)
        .await
        .map_err(download)?;
    let bytes = if &marker[8..] == SYMBOLS_TRAILER {
        let len = u64::from_le_bytes(marker[..8].try_into().expect("8 bytes"));
        if len > max_bytes as u64 {
            return Err(corrupt(format!(
                "its symbols are {len} bytes, past the limit of {max_bytes}"
            )));
        }
        let start = (marker_end - 16)
            .checked_sub(len)
            .ok_or_else(|| corrupt(format!("its symbols claim {len} of {size} bytes")))?;
        store
            .get_range(&key, start..marker_end - 16)
            .await
            .map_err(download)?
    } else {
        get(store, &paths.block_symbols(block)).await?
    };
    decode_symbols(&bytes, max_bytes).map_err(|reason| Error::Corrupt {
        key: key.to_string(),
        reason,
    })
}

pub(crate) async fn get(store: &dyn ObjectStore, key: &Path) -> Result<bytes::Bytes> {
    let download = |source| Error::Download {
        key: key.to_string(),
        source,
    };
    store
        .get(key)
        .await
        .map_err(download)?
        .bytes()
        .await
        .map_err(download)
}

pub(crate) async fn delete(store: &dyn ObjectStore, key: &Path) -> Result<()> {
    match store.delete(key).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(source) => Err(Error::Delete {
            key: key.to_string(),
            source,
        }),
    }
}

/// PUTs an object only if absent. If it exists with the same bytes (a retried write) that is
/// success; different bytes are a conflict and nothing is overwritten.
async fn put_create_only(store: &dyn ObjectStore, key: &Path, bytes: bytes::Bytes) -> Result<()> {
    let options = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match store
        .put_opts(key, PutPayload::from(bytes.clone()), options)
        .await
    {
        Ok(_) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. }) => {
            let existing = get(store, key).await?;
            if existing == bytes {
                debug!(%key, "object already written by an earlier attempt");
                Ok(())
            } else {
                Err(Error::BlockConflict {
                    key: key.to_string(),
                })
            }
        }
        Err(source) => Err(Error::Upload {
            key: key.to_string(),
            source,
        }),
    }
}

async fn load_latest_manifest(store: &dyn ObjectStore, paths: &Paths) -> Result<Option<Manifest>> {
    let dir = paths.manifests_dir();
    let listed: Vec<object_store::ObjectMeta> = store
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(|source| Error::List {
            prefix: dir.to_string(),
            source,
        })?;
    let Some(latest) = listed
        .iter()
        .filter_map(|m| {
            paths
                .manifest_version(&m.location)
                .map(|v| (v, &m.location))
        })
        .max()
    else {
        return Ok(None);
    };
    let bytes = get(store, latest.1).await?;
    let manifest = serde_json::from_slice(&bytes).map_err(|source| Error::ManifestCodec {
        key: latest.1.to_string(),
        source,
    })?;
    Ok(Some(manifest))
}
