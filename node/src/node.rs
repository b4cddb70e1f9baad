//! A running node: the store over its object store, its Raft group (log, state machine),
//! the flusher, the query engine and the HTTP server, started in dependency order and stopped
//! in reverse.
//!
//! ```text
//!  open object store ─► Store (empty) ─► RaftNode::start: snapshot + log replayed ─► writer
//!  flusher: buffer past --flush-bytes or --flush-interval ─► upload block ─► commit BlockFlushed
//!           ─► snapshot (manifest + buffer) ─► purge the log through the block
//!  HTTP (axum, HTTP/1.1 + h2c on one port) ─► writer / QueryEngine
//! ```

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use firn_query::{QueryConfig, QueryEngine};
use firn_storage::{Store, StoreConfig};
use object_store::ObjectStore;
use object_store::path::Path;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::config::{ObjectStoreUrl, Settings};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::raft::RaftNode;
use crate::writer::Writer;

/// This node's id in its Raft group (the cluster issue makes it configurable).
const NODE_ID: u64 = 1;

/// Serves until `shutdown` is cancelled, then drains: stops accepting requests, flushes the
/// buffer if it can, and returns.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<()> {
    let data_dir = &settings.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|source| Error::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let (object_store, prefix) = open_object_store(&settings)?;
    // The manifest lives in the Raft state (snapshot + log), not in the object store.
    let store = Arc::new(Store::with_manifest(
        object_store,
        prefix,
        store_config(&settings),
        Default::default(),
    ));
    let raft = Arc::new(
        RaftNode::start(
            &data_dir.join("raft"),
            store.clone(),
            NODE_ID,
            &settings.listen.to_string(),
        )
        .await?,
    );
    let metrics = Arc::new(Metrics::default());
    let writer = Writer::new(
        raft.clone(),
        store.clone(),
        settings.log_budget_bytes,
        settings.max_inflight_write_bytes,
        metrics.clone(),
    );
    let engine = Arc::new(QueryEngine::new(store.clone(), QueryConfig::default())?);

    let flusher = tokio::spawn(flush_loop(
        store.clone(),
        raft.clone(),
        metrics.clone(),
        settings.flush_bytes,
        settings.flush_interval,
        shutdown.clone(),
    ));
    let app = api::router(AppState {
        writer: writer.clone(),
        engine,
        metrics,
        max_request_bytes: settings.max_request_bytes,
    });
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: settings.listen,
            source,
        })?;
    tracing::info!(listen = %settings.listen, data_dir = %data_dir.display(), "serving");
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
    shutdown.cancel();
    if let Err(e) = flusher.await {
        tracing::error!(error = %e, "flusher task failed");
    }
    drop(writer);
    raft.shutdown().await;
    served.map_err(|e| Error::Internal(format!("HTTP server failed: {e}")))
}

fn store_config(settings: &Settings) -> StoreConfig {
    let mut config = StoreConfig {
        buffer_budget: settings.buffer_bytes,
        ..Default::default()
    };
    config.limits.decode.max_decompressed_bytes = settings.max_profile_bytes;
    config
}

fn open_object_store(settings: &Settings) -> Result<(Arc<dyn ObjectStore>, Path)> {
    let err = |e: object_store::Error| Error::ObjectStore(e.to_string());
    Ok(match &settings.object_store {
        ObjectStoreUrl::File(path) => {
            std::fs::create_dir_all(path).map_err(|source| Error::DataDir {
                path: path.clone(),
                source,
            })?;
            (
                Arc::new(object_store::local::LocalFileSystem::new_with_prefix(path).map_err(err)?),
                Path::from(""),
            )
        }
        ObjectStoreUrl::Memory => (
            Arc::new(object_store::memory::InMemory::new()),
            Path::from(""),
        ),
        ObjectStoreUrl::S3 { bucket, prefix } => {
            let mut builder = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_region(&settings.s3_region);
            if let Some(endpoint) = &settings.s3_endpoint {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_virtual_hosted_style_request(false);
            }
            (
                Arc::new(builder.build().map_err(err)?),
                Path::from(prefix.as_str()),
            )
        }
    })
}

/// Flushes the buffer when it passes `flush_bytes` or its oldest write passes `interval`:
/// uploads the block, commits `BlockFlushed` through Raft, snapshots and purges the log.
/// Failed uploads are retried with backoff (writes keep landing in the log meanwhile, up to
/// its budget). A final flush is attempted at shutdown.
async fn flush_loop(
    store: Arc<Store>,
    raft: Arc<RaftNode>,
    metrics: Arc<Metrics>,
    flush_bytes: usize,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let tick = Duration::from_millis(200);
    let mut dirty_since: Option<Instant> = None;
    let mut backoff = Duration::ZERO;
    let mut next_try = Instant::now();
    loop {
        let stopping = tokio::select! {
            () = shutdown.cancelled() => true,
            () = tokio::time::sleep(tick) => false,
        };
        // Unflushed: rows in the buffer, or logged writes (of empty profiles) that no flush
        // point covers yet, which would keep the log from being purged.
        let unflushed =
            store.buffer_samples() > 0 || store.last_seq() > store.manifest().flushed_seq;
        if !unflushed {
            dirty_since = None;
            if stopping {
                return;
            }
            continue;
        }
        let since = *dirty_since.get_or_insert_with(Instant::now);
        let due = store.buffer_bytes() >= flush_bytes
            || raft.log_bytes() >= flush_bytes as u64
            || since.elapsed() >= interval
            || stopping;
        if !due || Instant::now() < next_try {
            continue;
        }
        let started = Instant::now();
        match flush(&store, &raft).await {
            Ok(block) => {
                metrics.flush_time.observe(started.elapsed());
                if block.is_some() {
                    metrics.flushes.fetch_add(1, Ordering::Relaxed);
                }
                backoff = Duration::ZERO;
                dirty_since = None;
                if let Some(block) = block {
                    tracing::info!(block = %block.id, rows = block.rows, bytes = block.bytes(), ms = started.elapsed().as_millis() as u64, "block flushed");
                }
            }
            Err(e) => {
                metrics.flush_failures.fetch_add(1, Ordering::Relaxed);
                backoff = (backoff * 2).clamp(Duration::from_millis(500), Duration::from_secs(30));
                next_try = Instant::now() + backoff;
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, log_bytes = raft.log_bytes(), "flush failed");
            }
        }
        if stopping {
            return;
        }
    }
}

/// One flush: the buffer as a block in the object store, then committed through Raft (which
/// adds it to the manifest and drops its rows from the buffer), then the log compacted.
async fn flush(store: &Store, raft: &RaftNode) -> Result<Option<firn_storage::block::BlockMeta>> {
    let Some(encoded) = store.encode_buffer().await? else {
        // No rows, yet logged writes past the flush point: record the point so the log can
        // be purged.
        let last = store.last_seq();
        if last > store.manifest().flushed_seq {
            let index = raft.flushed_through(last.0).await?;
            raft.compact(index, last.0).await?;
        }
        return Ok(None);
    };
    store.upload_block(&encoded).await?;
    let meta = encoded.meta;
    let flushed = meta.last_seq.0;
    let index = raft.block_flushed(meta.clone()).await?;
    raft.compact(index, flushed).await?;
    Ok(Some(meta))
}
