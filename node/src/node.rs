//! A running node: its meta group member, the shard replicas it holds, the cluster loops, the
//! query coordinator and the one HTTP port (public APIs and node-to-node gRPC), started in
//! dependency order and stopped in reverse.
//!
//! ```text
//!  open object store ─► meta group member (its state from snapshot + log)
//!    ─► the shard replicas on disk (each rebuilt from snapshot + log) ─► serve the port
//!    ─► bootstrap (alone, --peers or --join) ─► reconciler, controller
//!  stop: the port stops taking requests ─► loops stop ─► replicas flush (leaders) and close
//!    ─► meta group member stops
//! ```

use std::sync::Arc;

use firn_query::{Coordinator, QueryConfig};
use firn_storage::StoreConfig;
use object_store::ObjectStore;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::cluster::flight::FlightShards;
use crate::cluster::peers::Peers;
use crate::cluster::replica::{ShardBudgets, ShardReplica};
use crate::cluster::rpc::ClusterService;
use crate::cluster::source::ClusterSource;
use crate::cluster::{self, Cluster, ShardSettings, bootstrap};
use crate::config::{ObjectStoreUrl, Settings};
use crate::error::{Error, Result};
use crate::ids::NodeId;
use crate::metrics::Metrics;
use crate::raft::RaftGroup;
use crate::tenancy::auth::{AuthMode, Authenticator};
use crate::tenancy::usage::Usage;
use crate::tenancy::{Tenancy, metering, retention};

/// `<data>/node.json`: whose data directory this is.
#[derive(Serialize, Deserialize)]
struct NodeFile {
    node_id: NodeId,
    /// The auth mode the node last ran with: a node of a `--auth=token` cluster restarted
    /// without it would open its Raft and admin surfaces to anyone, so that is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<AuthMode>,
}

/// Serves until `shutdown` is cancelled, then drains: stops taking requests, flushes the
/// buffers of the shards it leads if it can, and returns.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<()> {
    let data_dir = settings.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| Error::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let (object_store, prefix) = open_object_store(&settings)?;
    // A remote store's block objects are cached on local disk; a local one needs no copy.
    let (object_store, disk_cache) = match &settings.object_store {
        ObjectStoreUrl::S3 { .. } if settings.cache_bytes > 0 => {
            let cache = Arc::new(
                firn_storage::disk_cache::DiskCache::new(
                    object_store,
                    &settings.cache_dir,
                    settings.cache_bytes,
                )
                .map_err(|source| Error::DataDir {
                    path: settings.cache_dir.clone(),
                    source,
                })?,
            );
            let stats = cache.stats.clone();
            (cache as Arc<dyn ObjectStore>, Some(stats))
        }
        _ => (object_store, None),
    };
    let auth = Authenticator::new(
        settings.auth,
        settings.admin_token.as_ref().map(|t| t.0.as_str()),
    )?;
    let peers = Arc::new(Peers::new(
        auth.internal_credential()
            .as_ref()
            .and_then(|c| c.to_str().ok()),
    ));
    let mut settings = settings;
    if settings.cluster.reserve_id {
        settings.cluster.node_id = match read_node_file(&data_dir)? {
            Some(file) => file.node_id,
            None => reserve_node_id(&settings, &peers, &shutdown).await?,
        };
    }
    claim_data_dir(&data_dir, settings.cluster.node_id, settings.auth)?;
    let (meta, meta_state) = RaftGroup::open_meta(
        &data_dir.join("raft").join("meta"),
        settings.cluster.node_id,
        peers.clone(),
    )
    .await?;
    let metrics = Arc::new(Metrics::default());
    if let Some(stats) = disk_cache {
        let _ = metrics.disk_cache.set(stats);
    }
    let clock = crate::tenancy::clock();
    let usage = Usage::new(settings.cluster.node_id);
    if let Err(e) = usage
        .load(object_store.as_ref(), &prefix, clock.now())
        .await
    {
        tracing::warn!(error = %e, "this node's usage records could not be read; counting afresh");
    }
    let tenancy = Arc::new(Tenancy::new(auth, usage, clock, meta_state.clone()));
    let shard_settings = ShardSettings {
        object_store,
        prefix,
        store: store_config(&settings),
        query: QueryConfig::default(),
        flush_bytes: settings.flush_bytes,
        flush_interval: settings.flush_interval,
        log_budget_bytes: settings.log_budget_bytes,
    };
    let cluster = Arc::new(Cluster::new(
        settings.clone(),
        meta,
        meta_state,
        peers,
        shard_settings,
        metrics.clone(),
        shutdown.clone(),
        tenancy.clone(),
    ));
    // A restart replays each shard replica's log before the port opens.
    if let Some(s) = cluster.state().settings.clone() {
        let budgets = ShardBudgets::new(&cluster.shard_settings, s.shards);
        for shard in cluster::shards_on_disk(&data_dir) {
            let replica =
                ShardReplica::open(&cluster, shard, budgets, cluster.peers.clone()).await?;
            cluster.insert_replica(replica);
        }
    }
    let query = Arc::new(
        Coordinator::new(
            Arc::new(ClusterSource::new(cluster.clone())),
            QueryConfig::default(),
        )?
        .with_policy(tenancy.clone()),
    );
    let internal = tonic::service::Routes::new(ClusterService::server(cluster.clone()))
        .add_service(FlightShards::server(cluster.clone()))
        .into_axum_router();
    let state = AppState {
        cluster: cluster.clone(),
        query,
        metrics,
        max_request_bytes: settings.max_request_bytes,
    };
    let app = api::router(state.clone())
        .merge(internal)
        .layer(axum::middleware::from_fn_with_state(state, api::authorize));
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: settings.listen,
            source,
        })?;
    tracing::info!(listen = %settings.listen, node = %cluster.id, advertise = %cluster.addr, data_dir = %data_dir.display(), "serving");
    // The server outlives `shutdown`: while the node drains, peers still reach it (the
    // handover's votes and replication), and only then does it close.
    let close_server = CancellationToken::new();
    let mut server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(close_server.clone().cancelled_owned())
            .into_future(),
    );
    let loops = tokio_util::task::TaskTracker::new();
    match bootstrap::run(&cluster).await {
        Ok(()) => {
            loops.spawn(cluster::reconciler::run(cluster.clone(), shutdown.clone()));
            loops.spawn(cluster::controller::run(cluster.clone(), shutdown.clone()));
            loops.spawn(metering::run(cluster.clone(), shutdown.clone()));
            loops.spawn(retention::run(cluster.clone(), shutdown.clone()));
            loops.spawn(cluster::compactor::run(cluster.clone(), shutdown.clone()));
        }
        Err(Error::ShuttingDown) => {}
        Err(e) => {
            tracing::error!(error = %e, "the node cannot join its cluster");
            shutdown.cancel();
            stop(&cluster, loops).await;
            close_server.cancel();
            let _ = server.await;
            cluster::shutdown_raft(&cluster).await;
            return Err(e);
        }
    }
    let ended_early = tokio::select! {
        () = shutdown.cancelled() => None,
        served = &mut server => Some(served),
    };
    shutdown.cancel();
    stop(&cluster, loops).await;
    close_server.cancel();
    let served = match ended_early {
        Some(served) => served,
        None => server.await,
    }
    .map_err(|e| Error::Internal(format!("HTTP server task failed: {e}")))?;
    cluster::shutdown_raft(&cluster).await;
    served.map_err(|e| Error::Internal(format!("HTTP server failed: {e}")))
}

/// Drains the node: refuses clients' requests, stops the loops and the replicas' (their
/// leaders flush first), and hands over the groups it leads. The Raft members keep running
/// until the server has closed ([`cluster::shutdown_raft`]).
async fn stop(cluster: &Cluster, loops: tokio_util::task::TaskTracker) {
    cluster.draining.cancel();
    loops.close();
    loops.wait().await;
    cluster.tasks.close();
    cluster.tasks.wait().await;
    let replicas = cluster.replicas();
    futures::future::join_all(replicas.iter().map(|r| r.stop_loops())).await;
    cluster::handoff::run(cluster).await;
}

/// Records which node owns `dir` and its auth mode, refusing a directory another node id
/// wrote (a node's Raft logs and votes must never be taken over by another id) or one of a
/// node that ran with `--auth=token` now started without it.
fn claim_data_dir(dir: &std::path::Path, id: NodeId, auth: AuthMode) -> Result<()> {
    let path = dir.join("node.json");
    if let Some(file) = &read_node_file(dir)? {
        if file.node_id != id {
            return Err(Error::Refused(format!(
                "data directory {} belongs to node {}, not node {id}; start it with \
                 --node-id {} or give this node its own directory",
                dir.display(),
                file.node_id,
                file.node_id
            )));
        }
        if file.auth == Some(AuthMode::Token) && auth != AuthMode::Token {
            return Err(Error::Refused(format!(
                "data directory {} belongs to a node that ran with --auth=token; start it with \
                 --auth=token and the cluster's admin token (to open it up on purpose, remove \
                 \"auth\" from {})",
                dir.display(),
                path.display()
            )));
        }
        if file.auth == Some(auth) {
            return Ok(());
        }
    }
    let bytes = serde_json::to_vec(&NodeFile {
        node_id: id,
        auth: Some(auth),
    })
    .expect("serialises");
    std::fs::write(&path, bytes).map_err(|source| Error::DataDir {
        path: path.clone(),
        source,
    })
}

/// The data directory's `node.json`: whose it is, if anyone's.
fn read_node_file(dir: &std::path::Path) -> Result<Option<NodeFile>> {
    let path = dir.join("node.json");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Refused(format!("{} is not valid: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::DataDir { path, source }),
    }
}

/// A StatefulSet pod on a fresh data directory asks its cluster, if it exists, for its id: its
/// ordinal + 1 unless a node ever had that id (a pod scaled away and back). A pod that joins
/// waits for a member to answer; a founding pod whose peers are not members yet forms the
/// cluster with its ordinal + 1.
async fn reserve_node_id(
    settings: &Settings,
    peers: &Peers,
    shutdown: &CancellationToken,
) -> Result<NodeId> {
    use crate::config::Membership;
    let (addrs, joining) = match &settings.cluster.membership {
        Membership::Join(addrs) => (addrs, true),
        Membership::Peers(addrs) => (addrs, false),
        Membership::Alone => return Ok(settings.cluster.node_id),
    };
    let me = &settings.cluster.advertise;
    loop {
        let mut any_member = false;
        for addr in addrs.iter().filter(|a| *a != me) {
            if shutdown.is_cancelled() {
                return Err(Error::ShuttingDown);
            }
            if !joining {
                match peers.hello(addr).await {
                    Ok(h) if h.member => any_member = true,
                    _ => continue,
                }
            }
            match peers
                .reserve_node_id(addr, me, settings.cluster.node_id.0)
                .await
            {
                Ok(id) => {
                    tracing::info!(node = id, via = %addr, "node id reserved");
                    return Ok(NodeId(id));
                }
                Err(Error::Refused(why)) => {
                    return Err(Error::Refused(format!(
                        "reserving a node id through {addr}: {why}"
                    )));
                }
                Err(e) => {
                    tracing::info!(via = %addr, error = %e, "node id not reserved yet; retrying")
                }
            }
        }
        if !joining && !any_member {
            return Ok(settings.cluster.node_id);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
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
            // A deleted block's directory goes with its last object (each block has its own,
            // never reused), else every compacted-away flush leaves one behind.
            let local = object_store::local::LocalFileSystem::new_with_prefix(path)
                .map_err(err)?
                .with_automatic_cleanup(true);
            (Arc::new(local), Path::from(""))
        }
        ObjectStoreUrl::Memory => (
            Arc::new(object_store::memory::InMemory::new()),
            Path::from(""),
        ),
        ObjectStoreUrl::S3 { bucket, prefix } => {
            let mut builder = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_region(&settings.s3_region)
                .with_client_options(
                    object_store::ClientOptions::new()
                        .with_timeout(std::time::Duration::from_secs(30))
                        .with_connect_timeout(std::time::Duration::from_secs(5)),
                );
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
